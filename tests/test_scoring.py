"""`fvbench.score_run` owns post-hoc scoring: the CLI only parses and prints, with the same defaults; the run records
what its machine could compute (`metrics_at_run`) and scoring updates that record."""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

import fvbench
from fvbench.cli import main
from fvbench.store import load_metrics, open_store

REFERENCE = "tiny-dit_s1-2"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run of a tiny cascade and a tiny single-stage model on two prompts, through the library."""
    root = tmp_path_factory.mktemp("scoring")
    prompts = root / "p.txt"
    prompts.write_text("a red cat\na blue dog\n")
    sweep = fvbench.plan_sweep(str(prompts), presets=("tiny-flashvideo", "tiny-dit"), stage1_nfe=(2,), stage2_nfe=(1,))
    result = fvbench.run_sweep(sweep, out=root / "run", warmup=False)
    assert result.summary.done == 4
    return result.run_dir


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def _metric_rows(run: Path):
    df = load_metrics(run).sort_values(["unit_hash", "metric"]).reset_index(drop=True)
    return df[["unit_hash", "metric", "value", "error", "version", "source"]]


def test_score_run_library_equals_cli(tiny_run, tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    i3d = tmp_path / "i3d.pt"  # stands in for a Kinetics-400 I3D: (N, 3, 16, 224, 224) -> (N, 4) features
    torch.jit.script(torch.nn.Sequential(torch.nn.Conv3d(3, 4, (4, 32, 32), stride=(4, 32, 32)),
                                         torch.nn.Flatten(2), torch.nn.AdaptiveAvgPool1d(1))).save(str(i3d))
    monkeypatch.setenv("FVBENCH_I3D", str(i3d))
    by_cli, by_lib = _copy(tiny_run, tmp_path / "cli"), _copy(tiny_run, tmp_path / "lib")
    names = ["psnr_vs_ref", "detail_hf_ratio", "fvd"]
    assert main(["score", str(by_cli), "--metrics", ",".join(names), "--reference", REFERENCE]) == 0
    printed = capsys.readouterr().out
    result = fvbench.score_run(by_lib, metrics=names, reference=REFERENCE)

    assert isinstance(result, fvbench.ScoreResult)
    assert result.scored == {"psnr_vs_ref": 4, "detail_hf_ratio": 4} and not result.lost
    assert "scored 4 videos with psnr_vs_ref, detail_hf_ratio (decoded from the saved mp4s)" in printed
    (fvd,) = result.set_metrics
    assert (fvd.metric, fvd.config, fvd.reference, fvd.videos, fvd.reference_videos) == (
        "fvd", "tiny-flashvideo_s1-2_s2-1", REFERENCE, 2, 2)
    assert f"{fvd.config}: fvd = {fvd.value:.4g} against {REFERENCE} (2 vs 2 videos" in printed
    # the same rows in both stores: per-video values (with the input they read) and the set-level row
    pd.testing.assert_frame_equal(_metric_rows(by_cli), _metric_rows(by_lib))
    assert set(_metric_rows(by_lib).metric) >= {"psnr_vs_ref", "detail_hf_ratio"}
    assert open_store(by_cli).set_metric("fvd", fvd.config) == open_store(by_lib).set_metric("fvd", fvd.config)
    scored = load_metrics(by_lib).query("metric == 'psnr_vs_ref'")
    assert set(scored.source) == {"mp4"}


def test_the_cli_passes_score_runs_own_defaults(tiny_run, monkeypatch):
    """`fvbench score RUN --metrics X` calls score_run with exactly the defaults a Python caller gets."""
    params = inspect.signature(fvbench.score_run).parameters
    seen = {}
    monkeypatch.setattr("fvbench.scoring.score_run", lambda run_dir, **kw: seen.update(kw, run_dir=run_dir))
    assert main(["score", str(tiny_run), "--metrics", "motion_px"]) == 0
    assert seen.pop("run_dir") == tiny_run and seen.pop("metrics") == ["motion_px"]
    seen.pop("progress")  # how the CLI prints
    assert seen == {k: params[k].default for k in seen}
    assert set(seen) == set(params) - {"run_dir", "metrics", "progress"}  # every option reaches the library


def test_score_run_errors_are_fvbench_errors(tiny_run):
    with pytest.raises(fvbench.errors.FvbenchError, match="--metrics NAMES"):
        fvbench.score_run(tiny_run)
    with pytest.raises(fvbench.errors.FvbenchError, match="need --reference"):
        fvbench.score_run(tiny_run, metrics=["psnr_vs_ref"])
    with pytest.raises(fvbench.errors.UnknownNameError):
        fvbench.score_run(tiny_run, metrics=["no_such_metric"])


def test_metrics_at_run_recorded_by_the_run_and_updated_by_score(tiny_run, tmp_path, monkeypatch):
    run = _copy(tiny_run, tmp_path / "run")
    at_run = fvbench.metrics_at_run(run)
    from fvbench.metrics.registry import DEFAULT_METRICS, list_metrics

    assert set(at_run) == set(list_metrics())  # every registered metric, as the run's machine saw it
    for name in DEFAULT_METRICS:
        entry = at_run[name]
        assert entry["stored"] and entry["available"] and entry["missing"] == [] and entry["level"] == "video"
    assert at_run["temporal_flickering"]["source"] == "mp4"  # it reads the written video
    assert at_run["motion_px"]["source"] == "frames"
    fvd = at_run["fvd"]
    assert (fvd["level"], fvd["source"], fvd["stored"]) == ("set", None, False)
    if not fvd["available"]:
        assert "$FVBENCH_I3D" in fvd["missing"][0]
    assert at_run["psnr_vs_ref"]["stored"] is False

    # what the report reads does not depend on the machine that reads it
    monkeypatch.setattr("fvbench.metrics.offline.TemporalFlickering.missing", lambda self: ["gone here"])
    assert fvbench.metrics_at_run(run) == at_run

    fvbench.score_run(run, metrics=["psnr_vs_ref"], reference=REFERENCE)
    after = fvbench.metrics_at_run(run)
    assert after["psnr_vs_ref"] == {"version": at_run["psnr_vs_ref"]["version"], "level": "video", "source": "mp4",
                                    "available": True, "missing": [], "stored": True}
    assert {k: v for k, v in after.items() if k != "psnr_vs_ref"} == {k: v for k, v in at_run.items()
                                                                        if k != "psnr_vs_ref"}


def test_metrics_at_run_of_an_older_run_is_empty_and_reading_changes_nothing(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "store_schema1_a9c3d54"  # a store written by a9c3d54's code
    run = tmp_path / "old"
    run.mkdir()
    shutil.copy(fixture / "results.sqlite", run)
    before = hashlib.sha256((run / "results.sqlite").read_bytes()).hexdigest()
    assert fvbench.metrics_at_run(run) == {}
    assert hashlib.sha256((run / "results.sqlite").read_bytes()).hexdigest() == before


def _has_vbench() -> bool:
    try:
        importlib.metadata.distribution("vbench")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# Plan hashes of `fvbench run` without --presets, measured on 82ab01b (before the default families moved into the
# ShapesWorld plug-in) with `fvbench.plan_sweep(**kwargs).plan_hash`.
@pytest.mark.parametrize("kwargs, plan_hash", [
    pytest.param({}, "d4f188b54fd4f2e52720e1c70cd7376f9c88ed84903e52cf022d26ae6c970f6f",
                 marks=pytest.mark.skipif(not _has_vbench(), reason="suite vbench needs the vbench package's prompts")),
    ({"suite": "shapesworld"}, "347112d501a3ec73297007980254d525754f0d4efde77f9e5ffc3e944812c62f"),
])
def test_default_run_is_the_same_plan_as_before(kwargs, plan_hash, capsys):
    sweep = fvbench.plan_sweep(**kwargs)
    assert sweep.plan_hash == plan_hash
    assert [p.base for p in sweep.plan.points] == ["sw-flashvideo-s", "sw-dit-s", "sw-dit-p4-s"]
    assert main(["run", "--dry-run", *(["--suite", kwargs["suite"]] if kwargs else [])]) == 0
    assert f"plan sha256 {plan_hash[:16]}" in capsys.readouterr().out
