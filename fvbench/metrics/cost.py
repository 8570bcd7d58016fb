"""What a metric costs on this machine: wall seconds per video on a random clip of a given size.

Used by ``fvbench metrics --time FxHxW``, so "mind the cost at real resolution" is a measurement, not a guess.
Per-video metrics are timed on one call of ``score`` (reference metrics against a perturbed copy of the clip);
set-level metrics on one ``update`` of the evaluated set (the per-video feature extraction; the final Frechet
distance is a one-off of a few milliseconds for D <= 2048). Random content: these metrics' cost does not depend on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fvbench.errors import FvbenchError
from fvbench.metrics.base import Metric, SetMetric, VideoMetric


@dataclass(frozen=True)
class Cost:
    """Median wall seconds per video over ``runs`` runs (after one warm-up call that loads weights)."""

    metric: str
    shape: tuple[int, int, int]
    seconds: float
    runs: int


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"49x480x720"`` -> (49, 480, 720): frames, height, width."""
    try:
        f, h, w = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise FvbenchError(f"expected FRAMESxHEIGHTxWIDTH such as 49x480x720, got {text!r}") from None
    if min(f, h, w) < 1 or f * h * w > 200 * 1080 * 1920:
        raise FvbenchError(f"clip size {text!r} is out of range")
    return f, h, w


def time_metric(metric: Metric, shape: tuple[int, int, int], runs: int = 3, seed: int = 0) -> Cost:
    """Median seconds per video of ``metric`` on a random uint8 clip of ``shape`` (F, H, W)."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    reference = np.clip(video.astype(np.int16) + rng.integers(-8, 9, size=video.shape), 0, 255).astype(np.uint8)
    if isinstance(metric, SetMetric):
        metric.reset(keep_reference=False)
        metric.update([reference], real=True)

        def call() -> None:
            metric.update([video], real=False)
    elif isinstance(metric, VideoMetric):
        def call() -> None:
            metric.score(video, prompt="a red fox running through snow", reference=reference)
    else:
        raise TypeError(f"not a metric: {metric!r}")
    call()  # warm-up: loads weights, starts workers
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return Cost(metric.name, shape, float(np.median(times)), runs)
