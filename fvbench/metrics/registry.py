"""Metric registry: names -> lazy ``module:Class`` targets, so listing metrics imports nothing heavy."""

from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np

from fvbench.errors import MissingWeightsError, UnknownNameError
from fvbench.metrics.base import Metric

METRICS: dict[str, str] = {
    "temporal_flickering": "fvbench.metrics.offline:TemporalFlickering",
    "detail_laplacian_var": "fvbench.metrics.offline:LaplacianVariance",
    "detail_hf_ratio": "fvbench.metrics.offline:HighFrequencyRatio",
    "motion_px": "fvbench.metrics.offline:MotionMagnitude",
    "psnr_vs_ref": "fvbench.metrics.offline:PSNR",
    "ssim_vs_ref": "fvbench.metrics.offline:SSIM",
    "clip_score": "fvbench.metrics.clip:CLIPScore",
    "fvd": "fvbench.metrics.fvd:FVD",
    "fid": "fvbench.metrics.fid:FID",
    **{f"sw_{k}": f"fvbench.shapesworld.metrics:{c}" for k, c in [  # ShapesWorld's exact metrics
        ("colour", "ColourAccuracy"), ("shape", "ShapeAccuracy"), ("direction", "DirectionAccuracy"),
        ("all_three", "AllThreeAccuracy"), ("detail_ratio", "DetailRatio"), ("temporal_rms_px", "TemporalRMS"),
        ("fidelity_psnr", "FidelityPSNR"), ("consistency_psnr", "ConsistencyPSNR")]},
}
DEFAULT_METRICS = ("temporal_flickering", "detail_laplacian_var", "detail_hf_ratio", "motion_px")


def list_metrics() -> list[str]:
    return list(METRICS)


def get_metric(name: str) -> Metric:
    """An instance of the metric called ``name``."""
    if name not in METRICS:
        raise UnknownNameError("metric", name, list(METRICS))
    module, cls = METRICS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def resolve(names: tuple[str, ...] | list[str]) -> list[Metric]:
    """Metrics by name, failing fast (before any generation) when one lacks a file or package here."""
    metrics = [get_metric(n) for n in names]
    for m in metrics:
        missing = m.missing()
        if missing:
            raise MissingWeightsError(f"metric {m.name!r} cannot run here: {'; '.join(missing)}")
    return metrics


def score_video(metrics: list[Metric], video: np.ndarray, prompt: str,
                reference: np.ndarray | None = None) -> dict[str, tuple[float | None, str | None, str]]:
    """Every metric on one video; a metric that fails records its error and the others still run."""
    out: dict[str, tuple[float | None, str | None, str]] = {}
    for m in metrics:
        try:
            value = m.score(video, prompt=prompt, reference=reference)
            out[m.name] = (value, None, m.version) if np.isfinite(value) else (None, f"non-finite value {value}", m.version)
        except Exception as e:  # recorded on the row; the run goes on
            out[m.name] = (None, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"[:500], m.version)
    return out


def make_metric_fn(names: tuple[str, ...] | list[str]) -> Callable[[Any, Any], dict]:
    """A per-video hook for the runner: metrics that need a reference are refused here (use fvbench score)."""
    metrics = resolve(names)
    refs = [m.name for m in metrics if m.needs_reference or m.level == "set"]
    if refs:
        from fvbench.errors import FvbenchError

        raise FvbenchError(f"{', '.join(refs)} compare against a reference configuration: add them after the run "
                           f"with `fvbench score RUN_DIR --metrics ... --reference CONFIG`")

    def fn(video, unit) -> dict:
        return score_video(metrics, video.numpy(), unit.prompt.text)

    return fn
