"""The registry and the runner's API: fail fast, isolate failures, list everything; `fvbench metrics` and `score`."""

import numpy as np
import pytest
import torch

from fvbench.errors import FvbenchError, MissingWeightsError, UnknownNameError
from fvbench.metrics.base import Needs, VideoMetric, WeightPath
from fvbench.metrics.registry import (DEFAULT_METRICS, METRICS, MetricResult, get_metric, list_metrics,
                                      make_metric_fn, register_metric, resolve, score_video)


class AlwaysFails(VideoMetric):
    """Registered by the tests below: raises on every video."""

    name = "always_fails"
    higher_is_better = True

    def score(self, video, *, prompt, reference=None):
        raise RuntimeError("boom\nsecond line not stored")


class NotFinite(VideoMetric):
    name = "not_finite"
    higher_is_better = True

    def score(self, video, *, prompt, reference=None):
        return float("nan")


@pytest.fixture
def failing_metrics():
    """always_fails and not_finite registered for one test, through the seam plug-ins use."""
    names = {"always_fails": "AlwaysFails", "not_finite": "NotFinite"}
    for name, cls in names.items():
        register_metric(name, f"test_metrics_registry:{cls}", origin="tests")
    yield
    for name in names:
        METRICS.unregister(name)


def _video():
    return np.random.default_rng(0).integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as e:
        get_metric("fvd_typo")
    assert "fvd" in str(e.value) and "temporal_flickering" in str(e.value)
    with pytest.raises(UnknownNameError):
        resolve(["temporal_flickering", "nope"])


def test_resolve_reports_every_missing_item_at_once(monkeypatch, tmp_path):
    monkeypatch.delenv("FVBENCH_CLIP_DIR", raising=False)
    monkeypatch.setenv("FVBENCH_I3D", str(tmp_path / "i3d.pt"))
    with pytest.raises(MissingWeightsError) as e:
        resolve(["temporal_flickering", "clip_score", "fvd"])
    text = str(e.value)
    assert "metric 'clip_score'" in text and "$FVBENCH_CLIP_DIR" in text
    assert f"missing {tmp_path / 'i3d.pt'}" in text and "temporal_flickering" not in text
    assert [m.name for m in resolve(["motion_px", "motion_px"])] == ["motion_px"]


def test_score_video_records_a_failure_and_runs_the_others(failing_metrics):
    metrics = resolve(["always_fails", "temporal_flickering", "not_finite", "psnr_vs_ref"])
    out = score_video(metrics, _video(), "a prompt")
    assert out["always_fails"] == MetricResult(None, "RuntimeError: boom", "1")
    assert out["not_finite"].value is None and "non-finite" in out["not_finite"].error
    assert out["psnr_vs_ref"].value is None and "reference" in out["psnr_vs_ref"].error
    value, error, version = out["temporal_flickering"]  # a plain 3-tuple for the store
    assert np.isfinite(value) and error is None and version == "1"


def test_default_metrics_are_offline_per_video_and_available_here():
    for name in DEFAULT_METRICS:
        m = get_metric(name)
        assert m.level == "video" and m.needs == Needs() and not m.needs_reference and m.missing() == []
    assert set(DEFAULT_METRICS) <= set(list_metrics())


def test_make_metric_fn_is_the_runner_hook(monkeypatch):
    class Unit:
        class prompt:  # noqa: N801 - shaped like the runner's unit
            text = "a cat"

    fn = make_metric_fn(DEFAULT_METRICS)
    out = fn(torch.from_numpy(_video()), Unit())
    assert set(out) == set(DEFAULT_METRICS) and all(r.error is None for r in out.values())
    with pytest.raises(FvbenchError, match="psnr_vs_ref compare against a reference"):
        make_metric_fn(["temporal_flickering", "psnr_vs_ref"])


def test_weight_path_and_needs_declarations(tmp_path):
    folder = WeightPath(key="folder", env="X_DIR", what="a folder", folder=True, files=(("a.json",), ("b", "c")))
    assert folder.missing(None) == ["set $X_DIR (or folder=) to a folder"]
    (tmp_path / "c").write_text("")
    assert folder.missing(str(tmp_path)) == [f"missing {tmp_path / 'a.json'}"]
    assert Needs(weights=(folder,), packages=("pkg",), gpu=True).describe() == "$X_DIR (a folder), package pkg, a CUDA GPU"

    class NeedsPackage(VideoMetric):
        name, higher_is_better = "p", True
        needs = Needs(packages=("surely_not_installed_pkg",))

        def score(self, video, *, prompt, reference=None):
            return 0.0

    assert NeedsPackage().missing() == ["package surely_not_installed_pkg is not installed"]
    with pytest.raises(TypeError, match="folder"):
        get_metric("fvd", folder="/x")


def test_metrics_command_lists_everything_with_what_is_missing(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from fvbench.cli import cli

    monkeypatch.setenv("FVBENCH_I3D", str(tmp_path / "missing-i3d.pt"))
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "vb"))
    result = CliRunner().invoke(cli, ["metrics", "--vbench", "--time", "3x24x32", "--runs", "1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in list_metrics():
        (line,) = [x for x in lines if x.startswith(name + " ")]
        assert ("[available]" in line) != ("unavailable: " in line)
    (fvd,) = [x for x in lines if x.startswith("fvd ")]
    assert "set-level, lower is better" in fvd and f"missing {tmp_path / 'missing-i3d.pt'}" in fvd
    (detail,) = [x for x in lines if x.startswith("detail_laplacian_var ")]
    (sw_detail,) = [x for x in lines if x.startswith("sw_detail_ratio ")]
    assert "descriptive, not ranked" in detail and "closer to 1 is better" in sw_detail  # as the report ranks them
    assert any(x.strip().startswith("background_consistency") and str(tmp_path / "vb" / "clip_model" / "ViT-B-32.pt")
               in x for x in lines)
    timed = [x for x in lines if x.startswith("  temporal_flickering") and x.endswith("s per video")]
    assert len(timed) == 1 and float(timed[0].split()[1]) >= 0
    assert "3x24x32 clip, CPU" in result.output
    bad = CliRunner().invoke(cli, ["metrics", "--time", "3x24"])
    assert bad.exit_code != 0


def test_run_stores_offline_metrics_records_failures_and_score_adds_metrics(tmp_path, monkeypatch, capsys,
                                                                          failing_metrics):
    """The issue's checks end to end: offline metrics on every row of a weightless CPU run; a failing metric's error
    on its row while the run goes on; reference and set-level metrics added afterwards by `fvbench score`."""
    from fvbench import load_results
    from fvbench.cli import main
    from fvbench.store import load_metric_errors, open_store

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\na blue dog\na green tree\n")
    out = tmp_path / "run"
    assert main(["run", "--suite", str(prompts), "--presets", "tiny-flashvideo,tiny-dit", "--stage1-nfe", "2",
                 "--stage2-nfe", "1", "--out", str(out), "--metrics", ",".join(DEFAULT_METRICS + ("always_fails",))]) == 0
    df = load_results(out)
    assert len(df) == 6 and (df.status == "done").all()
    for name in DEFAULT_METRICS:
        assert df[f"metric:{name}"].notna().all(), name
    errors = load_metric_errors(out)
    assert len(errors) == 6 and set(errors.metric) == {"always_fails"} and set(errors.error) == {"RuntimeError: boom"}

    torch.manual_seed(0)
    i3d = tmp_path / "i3d.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Conv3d(3, 4, (4, 32, 32), stride=(4, 32, 32)),
                                         torch.nn.Flatten(2), torch.nn.AdaptiveAvgPool1d(1))).save(str(i3d))
    monkeypatch.setenv("FVBENCH_I3D", str(i3d))
    capsys.readouterr()
    assert main(["score", str(out), "--metrics", "psnr_vs_ref,fvd", "--reference", "tiny-dit_s1-2"]) == 0
    df = load_results(out).set_index("config")
    assert np.isfinite(df.loc["tiny-flashvideo_s1-2_s2-1", "metric:psnr_vs_ref"]).all()
    own = load_metric_errors(out).query("metric == 'psnr_vs_ref'")  # the reference against itself: PSNR is inf
    assert len(own) == 3 and set(own.error) == {"non-finite value inf"}
    info = open_store(out).set_metric("fvd", "tiny-flashvideo_s1-2_s2-1")
    assert info["error"] is None and info["value"] > 0 and info["videos"] == 3 and info["reference_videos"] == 3
    assert info["version"] == get_metric("fvd").version and info["called_with"] == {}
    assert main(["score", str(out), "--metrics", "ssim_vs_ref"]) == 2
    assert "need --reference" in capsys.readouterr().err
