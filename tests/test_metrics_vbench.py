"""VBench out of process: the real driver runs in a stand-in interpreter whose ``vbench`` package is a fake that
writes VBench's exact results format (and misbehaves on request); Total arithmetic against hand-computed values."""

import json
import os
import re
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from fvbench.errors import FvbenchError, MissingWeightsError, UnknownNameError
from fvbench.metrics.vbench import (DIMENSION_FILES, DIMENSIONS, missing_weights, parse_results, run_vbench,
                                    stage_videos, total_scores)
from fvbench.suites import vbench_info_path

FAKE_VBENCH = '''
import json, os, socket


class VBench:
    def __init__(self, device, full_info_dir, output_path):
        self.device, self.full_info_dir, self.output_path = device, full_info_dir, output_path

    def evaluate(self, videos_path, name, prompt_list=[], dimension_list=None, local=False, read_frame=False,
                 mode="vbench_standard", **kwargs):
        how = os.environ.get("FAKE_VBENCH", "ok")
        side = {"local": local, "mode": mode, "device": self.device, "hf_offline": os.environ.get("HF_HUB_OFFLINE"),
                "cache": os.environ.get("VBENCH_CACHE_DIR"), "dimensions": list(dimension_list)}
        try:
            socket.create_connection(("93.184.216.34", 80), timeout=3).close()
            side["network"] = "open"
        except OSError as e:
            side["network"] = str(e)
        with open(os.path.join(self.output_path, "fake-side.json"), "w") as f:
            json.dump(side, f)
        if how == "raise":
            raise RuntimeError("fake VBench failed on purpose")
        if how == "nojson":
            return
        info = json.load(open(self.full_info_dir))
        files = set(os.listdir(videos_path))
        results = {}
        for k, d in enumerate(dimension_list):  # the lookup of VBench's build_full_info_json, standard mode
            videos = []
            for entry in info:
                if d in entry["dimension"]:
                    for i in range(5):
                        n = f"{entry['prompt_en']}-{i}.mp4"
                        if n in files:
                            videos.append({"video_path": os.path.join(videos_path, n),
                                           "video_results": 0.3 + 0.04 * k + 0.01 * i, "cnt_per_video": 3})
            if how == "drop_video":
                videos = videos[1:]
            agg = sum(v["video_results"] for v in videos) / len(videos) if videos else float("nan")
            if d == "imaging_quality":  # as vbench 0.1.5: per-video MUSIQ on 0-100, only the aggregate divided by 100
                for v in videos:
                    v["video_results"] *= 100.0
            results[d] = [agg, videos]
        if how == "drop_dim":
            results.pop(dimension_list[-1])
        with open(os.path.join(self.output_path, name + "_eval_results.json"), "w") as f:
            json.dump(results, f)
'''

PROMPTS = ["a red bicycle", "alley", "In a still frame, a stop sign"]  # color; scene + background; flickering


@pytest.fixture
def vbench_env(tmp_path, monkeypatch):
    """A stand-in interpreter with the fake vbench first on its path; every weight file present (empty)."""
    fake = tmp_path / "fake"
    (fake / "vbench").mkdir(parents=True)
    (fake / "vbench" / "__init__.py").write_text(FAKE_VBENCH)
    marker = tmp_path / "started"
    python = tmp_path / "vbench-python"
    python.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        touch {marker}
        PYTHONPATH={fake} exec {sys.executable} "$@"
        """))
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    cache = tmp_path / "vbench-cache"
    for files in DIMENSION_FILES.values():
        for f in files:
            (cache / f).parent.mkdir(parents=True, exist_ok=True)
            (cache / f).write_bytes(b"")
    (tmp_path / "hf" / "hub" / "models--bert-base-uncased").mkdir(parents=True)
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return {"python": str(python), "cache": cache, "marker": marker, "tmp": tmp_path}


def _staged(tmp_path, names):
    src = tmp_path / "src.mp4"
    src.write_bytes(b"not really a video: the fake does not read it")
    return stage_videos([(n, src) for n in names], tmp_path / "stage" / "videos")


def test_total_follows_the_official_normalisation_by_hand():
    scores = dict(subject_consistency=0.95, background_consistency=0.96, temporal_flickering=0.97,
                  motion_smoothness=0.98, aesthetic_quality=0.6, imaging_quality=0.65, dynamic_degree=0.4,
                  object_class=0.8, multiple_objects=0.5, human_action=0.9, color=0.85, spatial_relationship=0.6,
                  scene=0.4, appearance_style=0.22, temporal_style=0.24, overall_consistency=0.26)
    # by hand from vbench.md: (s - min) / (max - min) * weight; Quality and Semantic weighted means; Total 4:1
    q = ((0.95 - 0.1462) / (1 - 0.1462) + (0.96 - 0.2615) / (1 - 0.2615) + (0.97 - 0.6293) / (1 - 0.6293)
         + (0.98 - 0.706) / (0.9975 - 0.706) + 0.6 + 0.65 + 0.5 * 0.4) / 6.5
    s = (0.8 + 0.5 + 0.9 + 0.85 + 0.6 + 0.4 / 0.8222 + (0.22 - 0.0009) / (0.2855 - 0.0009) + 0.24 / 0.364
         + 0.26 / 0.364) / 9
    assert (q, s) == pytest.approx((0.7994326385983741, 0.6977753814674471), abs=1e-12)
    t = total_scores(scores)
    assert t["quality"] == pytest.approx(q, abs=1e-12) and t["semantic"] == pytest.approx(s, abs=1e-12)
    assert t["total"] == pytest.approx(0.7791011871721887, abs=1e-12)
    del scores["scene"]
    assert total_scores(scores) == {"quality": pytest.approx(q), "semantic": None, "total": None}


def test_parse_results_reads_the_exact_format_and_computes_totals(tmp_path):
    data = {d: [0.5 + 0.01 * k, [{"video_path": f"/x/{d}-0.mp4", "video_results": 0.5 + 0.01 * k},
                                 {"video_path": f"/x/{d}-1.mp4", "video_results": k % 2 == 0}]]
            for k, d in enumerate(DIMENSIONS)}
    path = tmp_path / "run_eval_results.json"
    path.write_text(json.dumps(data))
    r = parse_results(path, list(DIMENSIONS))
    assert r.per_dimension["color"] == pytest.approx(0.5 + 0.01 * DIMENSIONS.index("color"))
    assert r.per_video["dynamic_degree"]["dynamic_degree-1.mp4"] == 1.0  # a boolean (True), as VBench writes them
    assert r.per_video["human_action"]["human_action-1.mp4"] == 0.0  # False
    assert r.totals == total_scores(r.per_dimension) and r.totals["total"] is not None
    with pytest.raises(FvbenchError, match="no value for 1 staged video"):
        parse_results(path, ["color"], {"color": {"color-0.mp4", "color-7.mp4"}})
    path.write_text(json.dumps({"color": [0.5, [{"video_results": 1.0}]]}))
    with pytest.raises(FvbenchError, match="dimension color is not"):
        parse_results(path, ["color"])


def test_weights_are_checked_before_anything_starts(vbench_env, tmp_path):
    (vbench_env["cache"] / "clip_model" / "ViT-B-32.pt").unlink()
    videos = _staged(tmp_path, [f"{p}-0.mp4" for p in PROMPTS])
    with pytest.raises(MissingWeightsError) as e:
        run_vbench(vbench_env["python"], videos, tmp_path / "out", "cfg", ["scene", "appearance_style"],
                   vbench_info_path(), "cpu")
    assert f"{vbench_env['cache'] / 'clip_model' / 'ViT-B-32.pt'} (for appearance_style)" in str(e.value)
    assert not vbench_env["marker"].exists()  # the interpreter was never started
    assert missing_weights(["temporal_flickering"]) == []
    with pytest.raises(UnknownNameError, match="known:"):
        missing_weights(["colour"])


def test_run_vbench_with_the_stand_in(vbench_env, tmp_path):
    names = [f"{p}-{i}.mp4" for p in PROMPTS for i in (0, 1)]
    videos = _staged(tmp_path, names)
    out = tmp_path / "out"
    r = run_vbench(vbench_env["python"], videos, out, "cfg", ["color", "scene", "temporal_flickering"],
                   vbench_info_path(), "cpu")
    assert r.per_video["color"] == {"a red bicycle-0.mp4": pytest.approx(0.3), "a red bicycle-1.mp4": pytest.approx(0.31)}
    assert r.per_video["scene"] == {"alley-0.mp4": pytest.approx(0.34), "alley-1.mp4": pytest.approx(0.35)}
    assert r.per_dimension["temporal_flickering"] == pytest.approx(0.385)
    assert r.totals == {"quality": None, "semantic": None, "total": None}
    assert r.vbench_version == "0.1.5" and r.protocol == "vbench_standard"
    side = json.loads((out / "fake-side.json").read_text())
    assert side["local"] is True and side["mode"] == "vbench_standard" and side["device"] == "cpu"
    assert side["hf_offline"] == "1" and side["cache"] == str(vbench_env["cache"])
    assert "blocks network access" in side["network"]


@pytest.mark.parametrize("how,message", [
    ("nojson", "wrote no cfg_eval_results.json \\(exit code 0"),  # exit 0 and nothing written: not trusted
    ("raise", "RuntimeError: fake VBench failed on purpose"),
    ("drop_dim", "lacks dimension\\(s\\) \\['scene'\\]"),
    ("drop_video", "dimension color has no value for 1 staged video"),
])
def test_vbench_failures_are_caught_whatever_the_exit_code(vbench_env, tmp_path, monkeypatch, how, message):
    monkeypatch.setenv("FAKE_VBENCH", how)
    videos = _staged(tmp_path, [f"{p}-{i}.mp4" for p in PROMPTS for i in (0, 1)])
    with pytest.raises(FvbenchError, match=message):
        run_vbench(vbench_env["python"], videos, tmp_path / "out", "cfg", ["color", "scene"], vbench_info_path(), "cpu")


def test_stage_videos_uses_a_fresh_folder(tmp_path):
    videos = _staged(tmp_path, ["alley-0.mp4"])
    assert sorted(os.listdir(videos)) == ["alley-0.mp4"]
    assert os.stat(videos / "alley-0.mp4").st_ino == os.stat(tmp_path / "src.mp4").st_ino  # a hard link
    with pytest.raises(FvbenchError, match="fresh"):
        stage_videos([("alley-1.mp4", tmp_path / "src.mp4")], videos)
    with pytest.raises(FvbenchError, match="not a VBench file name"):
        stage_videos([("../x-0.mp4", tmp_path / "src.mp4")], tmp_path / "other")


def test_weight_names_match_the_installed_vbench_source():
    """Every file fvbench checks is named in vbench 0.1.5's own source (the wheel is installed for its prompts)."""
    from importlib.metadata import distribution

    root = Path(distribution("vbench").locate_file("vbench"))
    source = "\n".join(p.read_text(errors="replace") for p in root.rglob("*.py"))
    for dimension, files in DIMENSION_FILES.items():
        for f in files:
            folder, base = f.rsplit("/", 1)
            if base == "hubconf.py":  # the DINO repository clone torch.hub.load(source='local') reads
                assert f"{{CACHE_DIR}}/{folder}/" in source
                continue
            assert base in source, (dimension, f)
            assert re.search(re.escape(folder.split("/")[0]), source), (dimension, f)


def test_score_command_end_to_end(vbench_env, tmp_path, capsys):
    from fvbench import load_results
    from fvbench.cli import main
    from fvbench.store import open_store

    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "run"
    assert main(["run", "--suite", str(prompts), "--presets", "tiny-dit", "--stage1-nfe", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["score", str(out), "--vbench-python", vbench_env["python"], "--vbench-dimensions",
                 "color,scene", "--device", "cpu"]) == 0
    assert "tiny-dit_s1-1: VBench (3 videos, standard protocol, cpu)" in capsys.readouterr().out
    df = load_results(out).set_index("prompt")
    assert df.loc["a red bicycle", "metric:vbench:color"] == pytest.approx(0.3)
    assert df.loc["alley", "metric:vbench:scene"] == pytest.approx(0.34)
    info = open_store(out).info()["vbench:tiny-dit_s1-1"]
    assert info["dimensions"] == {"color": pytest.approx(0.3), "scene": pytest.approx(0.34)}
    assert info["vbench"] == "0.1.5" and info["scored_per_dimension"] == {"color": 1, "scene": 1}
    # missing weights: refused before staging anything
    (vbench_env["cache"] / "grit_model" / "grit_b_densecap_objectdet.pth").unlink()
    before = sorted((out / "vbench").iterdir())
    assert main(["score", str(out), "--vbench-python", vbench_env["python"], "--vbench-dimensions", "color"]) == 2
    assert "grit_b_densecap_objectdet.pth (for color)" in capsys.readouterr().err
    assert sorted((out / "vbench").iterdir()) == before


def _tiny_run(tmp_path, prompts=PROMPTS, presets="tiny-dit"):
    from fvbench.cli import main

    f = tmp_path / "p.txt"
    f.write_text("\n".join(prompts) + "\n")
    out = tmp_path / "run"
    assert main(["run", "--suite", str(f), "--presets", presets, "--stage1-nfe", "1", "--stage2-nfe", "1",
                 "--out", str(out)]) == 0
    return out


def test_a_weight_file_shared_by_dimensions_is_listed_once(vbench_env):
    """Issue 14, bug 7: GRiT serves four dimensions; the message named its file four times."""
    grit = vbench_env["cache"] / "grit_model" / "grit_b_densecap_objectdet.pth"
    grit.unlink()
    absent = missing_weights(["object_class", "multiple_objects", "color", "spatial_relationship", "scene"])
    assert absent == [f"{grit} (for object_class, multiple_objects, color, spatial_relationship)"]


def test_score_defaults_to_the_dimensions_of_the_run_prompts(vbench_env, tmp_path, capsys):
    """Issue 14, bug 2: with no --vbench-dimensions, fvbench asks for the 16 dimensions, VBench returns NaN for those
    no prompt belongs to, and fvbench threw the whole configuration away. Now it asks for the prompts' dimensions,
    and a dimension that comes back NaN is stored as having no value while the others are kept. Bug 4: every
    dimension's score is printed."""
    from fvbench import load_results
    from fvbench.cli import main
    from fvbench.store import open_store

    out = _tiny_run(tmp_path)
    capsys.readouterr()
    assert main(["score", str(out), "--vbench-python", vbench_env["python"]]) == 0
    printed = capsys.readouterr().out
    staged = next((out / "vbench").iterdir())
    side = json.loads((staged / "results" / "fake-side.json").read_text())
    # the prompts' own dimensions, in VBench's order, from VBench_full_info.json
    assert side["dimensions"] == ["background_consistency", "temporal_flickering", "color", "scene"]
    expected = side["dimensions"]
    assert "VBench dimensions of this run's prompts: " + ", ".join(expected) in printed
    assert re.search(r"^  color +0\.\d{4} \(1\)$", printed, re.M)  # per-dimension lines
    assert re.search(r"^  scene +0\.\d{4} \(1\)$", printed, re.M)
    df = load_results(out).set_index("prompt")
    assert df.loc["a red bicycle", "metric:vbench:color"] == pytest.approx(0.3 + 0.04 * expected.index("color"))
    # a dimension no staged video belongs to: NaN from VBench, kept as "no value", the others stored
    capsys.readouterr()
    assert main(["score", str(out), "--vbench-python", vbench_env["python"], "--vbench-dimensions",
                 "color,human_action"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^  human_action +no value \(none of the staged videos belongs to it\) \(0\)$", printed, re.M)
    vb = open_store(out).info()["vbench:tiny-dit_s1-1"]
    assert vb["dimensions"] == {"color": pytest.approx(0.3), "human_action": None}
    assert vb["no_value"] == ["human_action"] and vb["totals"]["semantic"] is None


def test_device_defaults_to_auto_and_a_failed_attempt_leaves_no_staging_folder(vbench_env, tmp_path, monkeypatch,
                                                                                capsys):
    """Issue 14, bug 3: --device defaulted to cuda on a machine without one; a failure left its folder behind."""
    from fvbench.cli import main
    from fvbench.store import open_store

    out = _tiny_run(tmp_path)
    monkeypatch.setenv("FAKE_VBENCH", "raise")
    assert main(["score", str(out), "--vbench-python", vbench_env["python"], "--vbench-dimensions", "color"]) != 0
    assert "fake VBench failed on purpose" in capsys.readouterr().err
    assert list((out / "vbench").iterdir()) == []
    monkeypatch.setenv("FAKE_VBENCH", "ok")
    assert main(["score", str(out), "--vbench-python", vbench_env["python"], "--vbench-dimensions", "color"]) == 0
    (staged,) = (out / "vbench").iterdir()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"  # the stand-in interpreter runs this torch
    assert json.loads((staged / "results" / "fake-side.json").read_text())["device"] == device
    assert open_store(out).info()["vbench:tiny-dit_s1-1"]["device"] == device
    assert f"standard protocol, {device})" in capsys.readouterr().out


def test_imaging_quality_per_video_values_are_stored_on_the_aggregate_scale(vbench_env, tmp_path):
    """Issue 14, bug 5: VBench writes imaging_quality per video on 0-100 and its aggregate on 0-1."""
    prompts = PROMPTS + ["Turtle swimming in ocean.", "Close up of grapes on a rotating table."]  # 2 in imaging_quality
    videos = _staged(tmp_path, [f"{p}-{i}.mp4" for p in prompts for i in (0, 1, 2)])
    r = run_vbench(vbench_env["python"], videos, tmp_path / "out", "cfg", ["imaging_quality", "color"],
                   vbench_info_path(), "cpu")
    per_video = r.per_video["imaging_quality"]
    assert len(per_video) == 6 and all(0 < v < 1 for v in per_video.values())
    assert sum(per_video.values()) / len(per_video) == pytest.approx(r.per_dimension["imaging_quality"])
    assert r.metric_version("imaging_quality") == "vbench0.1.5-vbench_standard-pervideo-x0.01"
    assert r.metric_version("color") == "vbench0.1.5-vbench_standard"


def test_in_run_temporal_flickering_reads_the_written_video(tmp_path):
    """Issue 14, bug 6: the in-run value came from the frames before encoding, VBench's from the mp4; both were stored
    under one name and version. Now the run scores the written mp4 and the version records the input."""
    from fvbench import load_results
    from fvbench.cli import main
    from fvbench.metrics.offline import TemporalFlickering
    from fvbench.store import open_store
    from fvbench.video import read_mp4

    out = _tiny_run(tmp_path)
    df = load_results(out)
    for path, prompt, value in zip(df.s1_video_path, df.prompt, df["metric:temporal_flickering"]):
        assert value == TemporalFlickering().score(read_mp4(out / path), prompt=prompt)
    versions = dict(open_store(out).conn.execute("SELECT metric, version FROM metrics WHERE unit_hash = ?",
                                                 (df.unit_hash[0],)).fetchall())
    assert versions["temporal_flickering"] == "1+mp4" and versions["motion_px"].endswith("+frames")
    before = df["metric:temporal_flickering"].tolist()
    assert main(["score", str(out), "--metrics", "temporal_flickering"]) == 0
    assert load_results(out)["metric:temporal_flickering"].tolist() == before  # re-scored from the mp4: equal
    # without saved videos the run still scores what the mp4 would be
    f = tmp_path / "p.txt"
    assert main(["run", "--suite", str(f), "--presets", "tiny-dit", "--stage1-nfe", "1", "--save-videos", "none",
                 "--out", str(tmp_path / "nosave")]) == 0
    assert load_results(tmp_path / "nosave")["metric:temporal_flickering"].tolist() == before


def test_report_of_a_vbench_scored_run_shows_every_dimension(vbench_env, tmp_path):
    """Issue 14, bug 1: `fvbench report` crashed on ``vbench:<dimension>`` metric columns (itertuples renames them);
    bug 4: it showed no per-dimension scores."""
    from fvbench.cli import main

    out = _tiny_run(tmp_path, presets="tiny-flashvideo,tiny-dit")
    assert main(["score", str(out), "--vbench-python", vbench_env["python"], "--vbench-dimensions",
                 "color,scene,temporal_flickering,human_action"]) == 0
    assert main(["report", str(out)]) == 0
    md = (out / "report" / "report.md").read_text()
    page = (out / "report" / "index.html").read_text()
    assert "## VBench" in md and "### tiny-dit_s1-1" in md
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "| color | semantic | 0.3 | 0.3 | 1 |" in rows["color"]
    assert "| temporal_flickering | quality | 0.38 |" in rows["temporal_flickering"]
    assert "no value" in rows["human_action"]
    assert "Pareto: vbench:color against FLOPs and wall time" in md  # the metric columns are plotted too
    assert "VBench: per-dimension scores by configuration" in md and (out / "report" / "plot-vbench.png").is_file()
    assert "<h3>tiny-dit_s1-1</h3>" in page and "<h3>tiny-flashvideo_s1-1_s2-1</h3>" in page
