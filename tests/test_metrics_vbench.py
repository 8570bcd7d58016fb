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
                "cache": os.environ.get("VBENCH_CACHE_DIR")}
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
    assert "tiny-dit_s1-1: VBench (3 videos, standard protocol)" in capsys.readouterr().out
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
