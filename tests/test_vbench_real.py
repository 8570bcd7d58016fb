"""The REAL vbench 0.1.5, in the environment scripts/setup_vbench_env.sh builds (path in $FVBENCH_VBENCH_PYTHON;
.ci/run builds it and sets it). A tiny run is scored through `fvbench score --vbench-python`; every stored value must
equal what VBench's own API gives when called directly in that environment on the same videos; then `fvbench report`
must show VBench's per-dimension table.

Dimensions: temporal_flickering (no learned weights) with the default dimension list of a run of VBench's first two
prompts (README's main job, both in temporal_flickering only), and imaging_quality on a MUSIQ checkpoint made here
from pyiqa's own architecture with random weights (seed 0), saved where VBench looks for it: real loading, real
per-video 0-100 scale, meaningless scores. The other dimensions load weights this machine cannot fetch (or need
detectron2, not on the package registry).
"""

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from fvbench.cli import main
from fvbench.store import load_results, open_store
from fvbench.suites import vbench_info_path

PYTHON = os.environ.get("FVBENCH_VBENCH_PYTHON")
pytestmark = [
    pytest.mark.vbench_real,
    pytest.mark.skipif(not PYTHON, reason="no real VBench environment: set FVBENCH_VBENCH_PYTHON to the python that "
                                          "`bash scripts/setup_vbench_env.sh` prints (.ci/run does)"),
]

DIRECT = textwrap.dedent("""
    import json, sys
    from vbench import VBench
    req = json.loads(sys.argv[1])
    VBench("cpu", req["full_info"], req["out"]).evaluate(videos_path=req["videos"], name="direct",
                                                         dimension_list=req["dimensions"], local=True,
                                                         mode="vbench_standard")
""")
MUSIQ = textwrap.dedent("""
    import sys, torch
    from pyiqa.archs.musiq_arch import MUSIQ
    torch.manual_seed(0)
    torch.save(MUSIQ(pretrained=False).state_dict(), sys.argv[1])  # as MUSIQ(pretrained_model_path=...) loads it
""")


def _vbench(args: list[str], env: dict) -> None:
    proc = subprocess.run([PYTHON, *args], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """$VBENCH_CACHE_DIR with only a random-weight MUSIQ-SPAQ checkpoint built from pyiqa's architecture."""
    assert Path(PYTHON).is_file(), f"FVBENCH_VBENCH_PYTHON={PYTHON} does not exist: the environment was not built"
    root = tmp_path_factory.mktemp("vbench-cache")
    ckpt = root / "pyiqa_model" / "musiq_spaq_ckpt-358bb6af.pth"
    ckpt.parent.mkdir()
    _vbench(["-c", MUSIQ, str(ckpt)], dict(os.environ))
    return root


def _direct(videos: Path, out: Path, dimensions: list[str], cache: Path) -> dict:
    """VBench's API called directly on a copy of the folder fvbench staged: its results JSON."""
    out.mkdir()
    req = {"full_info": str(vbench_info_path()), "out": str(out), "videos": str(videos), "dimensions": dimensions}
    _vbench(["-c", DIRECT, json.dumps(req)], dict(os.environ, VBENCH_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1"))
    return json.loads((out / "direct_eval_results.json").read_text())


def _check_equal(run: Path, config: str, direct: dict, dimensions: dict[str, float]) -> None:
    """Stored per-video values (times the per-video scale) and aggregates equal VBench's own, exactly."""
    df = load_results(run)
    rows = df[df.config == config]
    final = rows.s2_video_path.where(rows.s2_video_path.notna(), rows.s1_video_path).map(lambda p: Path(p).name)
    stored_info = open_store(run).info()[f"vbench:{config}"]
    for dim, scale in dimensions.items():
        aggregate, videos = direct[dim]
        assert videos, f"VBench scored no video for {dim}"
        want = {Path(v["video_path"]).name: v["video_results"] * scale for v in videos}
        got = {name: value for name, value in zip(final, rows[f"metric:vbench:{dim}"]) if value == value}
        assert got == want, dim
        assert stored_info["dimensions"][dim] == aggregate, dim
        assert stored_info["scored_per_dimension"][dim] == len(videos)


def test_real_vbench_scores_the_main_job_with_default_dimensions_then_reports(cache, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert main(["run", "--suite", "vbench", "--presets", "tiny-flashvideo,tiny-dit", "--limit", "2",
                 "--out", str(run)]) == 0
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(cache))
    capsys.readouterr()
    assert main(["score", str(run), "--vbench-python", PYTHON]) == 0  # no dimension flag
    printed = capsys.readouterr().out
    assert "VBench dimensions of this run's prompts: temporal_flickering" in printed
    configs = sorted(load_results(run).config.unique())
    assert len(configs) == 2
    for config in configs:
        folder = next(p for p in (run / "vbench").iterdir() if p.name.startswith(config + "-"))
        direct = _direct(folder / "videos", tmp_path / f"direct-{config}", ["temporal_flickering"], cache)
        _check_equal(run, config, direct, {"temporal_flickering": 1.0})
        assert f"{config}: VBench (2 videos, standard protocol, cpu)" in printed
    # the in-run offline metric reads the same mp4: it equals VBench's per-video value
    df = load_results(run)
    assert (df["metric:temporal_flickering"] - df["metric:vbench:temporal_flickering"]).abs().max() < 1e-6
    assert main(["report", str(run)]) == 0
    md = (run / "report" / "report.md").read_text()
    for config in configs:
        section = md.split(f"### {config}\n", 1)[1]
        row = next(line for line in section.splitlines() if line.startswith("| temporal_flickering |"))
        value = open_store(run).info()[f"vbench:{config}"]["dimensions"]["temporal_flickering"]
        assert f"| {value:.4g} |" in row
    assert "VBench: per-dimension scores by configuration" in md


def test_real_vbench_imaging_quality_on_a_random_musiq(cache, tmp_path, monkeypatch):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Turtle swimming in ocean.\n")  # in imaging_quality, not in temporal_flickering
    run = tmp_path / "run"
    assert main(["run", "--suite", str(prompts), "--presets", "tiny-dit", "--out", str(run)]) == 0
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(cache))
    assert main(["score", str(run), "--vbench-python", PYTHON, "--vbench-dimensions",
                 "imaging_quality,temporal_flickering", "--device", "cpu"]) == 0
    (config,) = load_results(run).config.unique()
    (folder,) = (run / "vbench").iterdir()
    direct = _direct(folder / "videos", tmp_path / "direct", ["imaging_quality", "temporal_flickering"], cache)
    _check_equal(run, config, direct, {"imaging_quality": 0.01})  # per-video on the aggregate's scale
    info = open_store(run).info()[f"vbench:{config}"]
    assert info["dimensions"]["temporal_flickering"] is None  # VBench's NaN: no flickering prompt here; kept apart
    assert info["no_value"] == ["temporal_flickering"]
    per_video = load_results(run)["metric:vbench:imaging_quality"]
    assert per_video.mean() == pytest.approx(info["dimensions"]["imaging_quality"], rel=1e-9)
