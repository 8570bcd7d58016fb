"""Metric registry: names -> lazy ``module:Class`` targets, so listing metrics imports nothing heavy. A plug-in adds
its own with :func:`register_metric` from its plugin module (see :mod:`fvbench.plugins`).

The runner's API:

* ``resolve(names)`` before any generation: the metric objects, or MissingWeightsError naming every absent file,
  package or interpreter (UnknownNameError for a name that does not exist);
* ``score_video(metrics, video, prompt, reference)`` per video: ``{name: MetricResult(value, error, version)}``;
  a metric that raises records its error there and the others still run;
* ``make_metric_fn(names)``: the per-video hook ``fn(video, unit, encoded)`` the workers call (per-video metrics that need
  no reference only; set-level and reference metrics are added after a run with ``fvbench score``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from fvbench.errors import FvbenchError, MissingWeightsError
from fvbench.metrics.base import Metric, VideoMetric
from fvbench.plugins import Registry

METRICS: Registry[type[Metric]] = Registry("metric")


def register_metric(name: str, target: str | type[Metric], *, replace: bool = False, origin: str = "") -> None:
    """Make a metric available by ``name`` (``fvbench metrics``, ``--metrics``, ``fvbench score``). ``target`` is a
    ``"module:Class"`` string (imported on first use, so listing metrics stays light) or the class itself; its
    constructor takes the options of :func:`get_metric`. Plug-ins call this from their plugin module."""
    if isinstance(target, str) and ":" not in target:
        raise FvbenchError(f"metric {name!r}: the target must be 'module:Class', got {target!r}")
    METRICS.register(name, target, replace=replace, origin=origin)


for _name, _target in {
    "temporal_flickering": "fvbench.metrics.offline:TemporalFlickering",
    "detail_laplacian_var": "fvbench.metrics.offline:LaplacianVariance",
    "detail_hf_ratio": "fvbench.metrics.offline:HighFrequencyRatio",
    "motion_px": "fvbench.metrics.offline:MotionMagnitude",
    "psnr_vs_ref": "fvbench.metrics.offline:PSNR",
    "ssim_vs_ref": "fvbench.metrics.offline:SSIM",
    "clip_score": "fvbench.metrics.clip:CLIPScore",
    "fvd": "fvbench.metrics.fvd:FVD",
    "fid": "fvbench.metrics.fid:FID",
    "musiq": "fvbench.metrics.iqa:MUSIQ",
    "clip_iqa": "fvbench.metrics.iqa:CLIPIQA",
    "niqe": "fvbench.metrics.iqa:NIQE",
    "maniqa": "fvbench.metrics.iqa:MANIQA",
}.items():
    register_metric(_name, _target)

# The offline per-video metrics every run stores unless --metrics says otherwise.
DEFAULT_METRICS: tuple[str, ...] = ("temporal_flickering", "detail_laplacian_var", "detail_hf_ratio", "motion_px")


class MetricResult(NamedTuple):
    """One metric on one video: a finite value, or None and the error; the metric's version either way."""

    value: float | None
    error: str | None
    version: str


def list_metrics() -> list[str]:
    """Every registered metric name, available here or not."""
    return list(METRICS)


def get_metric(name: str, **options: Any) -> Metric:
    """An instance of the metric called ``name`` (``options`` go to its constructor, e.g. ``path=``).

    A registered class that cannot be imported is a one-line error naming the metric and who registered it."""
    try:
        cls = METRICS.get_entry(name)
    except (ImportError, AttributeError) as e:
        raise FvbenchError(f"metric {name!r} (registered by {METRICS.origin(name) or 'fvbench'}) cannot be "
                           f"imported: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}") from e
    return cls(**options)


def resolve(names: Sequence[str]) -> list[Metric]:
    """Metrics by name, failing fast (before any generation) when one lacks a file, package or interpreter here.

    Every metric's absent items are reported together; then each metric loads what it needs (``prepare``), so a
    corrupt weight file also fails here rather than on the first video.
    """
    seen: set[str] = set()
    metrics = []
    for n in names:
        if n not in seen:
            seen.add(n)
            metrics.append(get_metric(n))
    problems = [f"metric {m.name!r} cannot run here: {'; '.join(miss)}" for m in metrics if (miss := m.missing())]
    if problems:
        raise MissingWeightsError(" | ".join(problems))
    for m in metrics:
        m.prepare()
    return metrics


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"[:500]


def score_video(metrics: Sequence[Metric], video: np.ndarray, prompt: str,
                reference: np.ndarray | None = None, source: str | None = None) -> dict[str, MetricResult]:
    """Every metric on one video; a metric that fails records its error and the others still run.

    ``source`` says what the frames are ("frames": as generated; "mp4": decoded from the written video); it is
    recorded in each stored version as ``<version>+<source>``, so the store tells which input made a number.
    """
    out: dict[str, MetricResult] = {}
    for m in metrics:
        version = f"{m.version}+{source}" if source else m.version
        try:
            if not isinstance(m, VideoMetric):
                raise ValueError(f"{m.name} is {m.level}-level: it has no per-video value")
            value = float(m.score(video, prompt=prompt, reference=reference))
            out[m.name] = (MetricResult(value, None, version) if np.isfinite(value)
                           else MetricResult(None, f"non-finite value {value}", version))
        except Exception as e:  # recorded on the row; the run goes on
            out[m.name] = MetricResult(None, _first_line(e), version)
    return out


def make_metric_fn(names: Sequence[str]) -> Callable[[Any, Any], dict[str, MetricResult]]:
    """The per-video hook the runner calls as each video finishes: ``fn(video, unit) -> {name: MetricResult}``.

    Fails fast on missing weights; refuses metrics that compare against a reference (they run after the run,
    with ``fvbench score RUN_DIR --metrics ... --reference CONFIG``).
    """
    metrics = resolve(names)
    refs = [m.name for m in metrics if m.needs_reference or m.level == "set"]
    if refs:
        raise FvbenchError(f"{', '.join(refs)} compare against a reference configuration: add them after the run "
                           f"with `fvbench score RUN_DIR --metrics ... --reference CONFIG`")

    def fn(video: Any, unit: Any, encoded: Path | None = None) -> dict[str, MetricResult]:
        """``encoded``: the mp4 written for this video, if any (else metrics that read the encoded video get the
        frames through the same encoder in a temporary file)."""
        from fvbench.video import encode_roundtrip, read_mp4

        frames = video.numpy() if hasattr(video, "numpy") else np.asarray(video)
        out = score_video([m for m in metrics if not m.reads_encoded], frames, unit.prompt.text, source="frames")
        on_mp4 = [m for m in metrics if m.reads_encoded]
        if on_mp4:
            decoded = read_mp4(encoded) if encoded else encode_roundtrip(frames)
            out.update(score_video(on_mp4, decoded, unit.prompt.text, source="mp4"))
        return {m.name: out[m.name] for m in metrics}

    return fn
