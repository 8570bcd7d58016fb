"""VBench out of process: a stand-in interpreter writing VBench's exact JSON, and the Total arithmetic by hand."""

import stat

import pytest

from fvbench.cli import main
from fvbench.metrics.vbench import DIMENSION_FILES, QUALITY, SEMANTIC, normalized, total_scores

STAND_IN = """#!{python}
import json, os, sys
req = json.load(open(sys.argv[2]))
if os.environ.get("STANDIN_FAIL"):
    sys.exit(0)  # like `vbench evaluate`: exit 0 without results
out = {{}}
files = sorted(os.listdir(req["videos_path"]))
for i, d in enumerate(req["dimensions"]):
    vals = [0.5 + 0.01 * i + 0.001 * j for j in range(len(files))]
    out[d] = [sum(vals) / len(vals), [{{"video_path": os.path.join(req["videos_path"], f), "video_results": v}}
                                      for f, v in zip(files, vals)]]
json.dump(out, open(os.path.join(req["output_path"], req["name"] + "_eval_results.json"), "w"))
"""


def test_total_follows_the_official_normalisation_by_hand():
    scores = {d: 0.5 for d in QUALITY + SEMANTIC}
    scores.update(subject_consistency=0.9, dynamic_degree=0.6, scene=0.4, temporal_style=0.2)
    assert normalized("subject_consistency", 0.9) == pytest.approx((0.9 - 0.1462) / (1 - 0.1462))
    assert normalized("dynamic_degree", 0.6) == pytest.approx(0.3)
    q = ((0.9 - 0.1462) / 0.8538 + (0.5 - 0.2615) / 0.7385 + (0.5 - 0.6293) / 0.3707 + (0.5 - 0.706) / 0.2915
         + 0.5 + 0.5 + 0.5 * 0.6) / 6.5
    s = (0.5 + 0.5 + 0.5 + 0.5 + 0.5 + 0.4 / 0.8222 + (0.5 - 0.0009) / 0.2846 + 0.2 / 0.364 + 0.5 / 0.364) / 9
    t = total_scores(scores)
    assert t["quality"] == pytest.approx(q) and t["semantic"] == pytest.approx(s)
    assert t["total"] == pytest.approx((4 * q + s) / 5)
    assert total_scores({"color": 0.5})["total"] is None


def test_score_with_a_stand_in_vbench_interpreter(tmp_path, monkeypatch, capsys):
    import sys

    from fvbench import load_results

    stand_in = tmp_path / "vbench-python"
    stand_in.write_text(STAND_IN.format(python=sys.executable))
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IEXEC)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\na dog/../x\n")
    out = tmp_path / "run"
    assert main(["run", "--suite", str(prompts), "--presets", "tiny-dit", "--stage1-nfe", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "vbench-cache"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert main(["score", str(out), "--vbench-python", str(stand_in), "--vbench-dimensions", "color,scene"]) == 2
    err = capsys.readouterr().err
    assert "VBench weights missing" in err and "tag2text_swin_14m.pth (for scene)" in err  # checked before starting
    for f in DIMENSION_FILES["color"] + DIMENSION_FILES["scene"]:
        (tmp_path / "vbench-cache" / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "vbench-cache" / f).write_bytes(b"stand-in weights")
    (tmp_path / "hf" / "hub" / "models--bert-base-uncased").mkdir(parents=True)
    assert main(["score", str(out), "--vbench-python", str(stand_in), "--vbench-dimensions", "color,scene"]) == 0
    text = capsys.readouterr().out
    assert "1 video(s) whose prompt VBench's naming cannot represent" in text
    df = load_results(out)
    row = df[df.prompt == "a red cat"].iloc[0]
    assert row["metric:vbench:color"] == pytest.approx(0.5) and row["metric:vbench:scene"] == pytest.approx(0.51)
    from fvbench.store import open_store

    info = open_store(out).info()["vbench:tiny-dit_s1-1"]
    assert info["dimensions"] == {"color": pytest.approx(0.5), "scene": pytest.approx(0.51)}
    assert info["totals"]["total"] is None  # only 2 of 16 dimensions
    monkeypatch.setenv("STANDIN_FAIL", "1")
    assert main(["score", str(out), "--vbench-python", str(stand_in), "--vbench-dimensions", "color"]) == 2
    assert "wrote no tiny-dit_s1-1_eval_results.json" in capsys.readouterr().err
    assert main(["score", str(out), "--vbench-python", "/nonexistent/python"]) == 2
