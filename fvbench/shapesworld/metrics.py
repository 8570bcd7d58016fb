"""Exact, analytic ShapesWorld metrics: what a video shows, recovered without any learned network.

Every detector works on the 16x16 view of a video (its 4x4-block mean for a 64x64 video; the texture vanishes there
exactly), so stage-I previews and final videos are read the same way:

* colour - the palette colour nearest the median of the clearly-foreground pixels;
* coverage - per pixel, how much of it the shape covers, from the projection of (pixel - background) on
  (colour - background); the shape's centroid per frame comes from it;
* direction - the sign of the dominant axis of the centroid's displacement from the first to the last frame;
* shape - template matching: each shape is rendered at the measured centroid, pooled to 16x16 and compared with
  the coverage; the smallest squared error over all frames wins.

On rendered ground truth these recover the attributes exactly (tests/test_shapesworld.py checks every combination).
The quality metrics are: detail (energy of a 64x64 video above the 16x16 Nyquist limit, relative to the mean of
rendered ground truth of the same colour and shape: 1.0 is the real world, noise and block artifacts inflate it),
fidelity (PSNR against the true 64x64 video), consistency (PSNR of the 4x-pooled output against the 16x16 input) and
temporal consistency (RMS deviation, in 64x64 pixels, of the centroid track from constant velocity).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fvbench.errors import FvbenchError
from fvbench.shapesworld.world import (BACKGROUND, COLOURS, DIRECTIONS, FACTOR, HIGH_RES, LOW_RES, SHAPES, Attributes,
                                       parse_prompt, pool, render_many, shape_mask)

_BG = np.array(BACKGROUND, dtype=np.float64)
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float64)
_MIN_CONTRAST = 20.0  # a 16x16 pixel this far (L2, uint8 levels) from the background may hold the shape


def _as_video(video: np.ndarray) -> np.ndarray:
    v = np.asarray(video)
    if v.ndim != 4 or v.shape[-1] != 3:
        raise FvbenchError(f"expected a video (frames, height, width, 3), got shape {v.shape}")
    if v.shape[1] % LOW_RES or v.shape[2] % LOW_RES or v.shape[1] != v.shape[2]:
        raise FvbenchError(f"ShapesWorld videos are square multiples of {LOW_RES} pixels, got {v.shape[1]}x{v.shape[2]}")
    return v


def low_view(video: np.ndarray) -> np.ndarray:
    """The 16x16 view (F, 16, 16, 3) float64 of a video of any multiple of 16 (block means)."""
    v = _as_video(video)
    return pool(v, v.shape[1] // LOW_RES)


@dataclass(frozen=True)
class Reading:
    """What the detectors read from one video (None where nothing was found)."""

    colour: str | None
    shape: str | None
    direction: str | None
    centroids: np.ndarray  # (F, 2) x, y in 64x64 pixel units (nan where the frame shows no shape)
    areas: np.ndarray  # (F,) shape area per frame in 64x64 pixels

    def matches(self, attrs: Attributes) -> dict[str, bool]:
        c, s, d = attrs.colour == self.colour, attrs.shape == self.shape, attrs.direction == self.direction
        return {"colour": c, "shape": s, "direction": d, "all_three": c and s and d}


def _colour(lv: np.ndarray) -> str | None:
    dist = np.linalg.norm(lv - _BG, axis=-1)
    if dist.max() < _MIN_CONTRAST:
        return None
    core = lv[dist >= 0.6 * dist.max()]
    median = np.median(core, axis=0)
    return list(COLOURS)[int(np.argmin(np.linalg.norm(_PALETTE - median, axis=1)))]


def coverage(lv: np.ndarray, colour: str) -> np.ndarray:
    """(F, 16, 16) fraction of each 16x16 pixel covered by a shape of ``colour`` (projection on colour - background)."""
    axis = np.array(COLOURS[colour], dtype=np.float64) - _BG
    return np.clip((lv - _BG) @ axis / (axis @ axis), 0.0, 1.0)


def _centroids(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:LOW_RES, 0:LOW_RES].astype(np.float64)
    mass = cov.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (cov * xs).sum(axis=(1, 2)) / mass
        cy = (cov * ys).sum(axis=(1, 2)) / mass
    # a 16x16 pixel i spans 64x64 pixels [4i, 4i + 4): its centre is at 4i + 2 in the continuous frame
    centroids = np.stack([(cx + 0.5) * FACTOR, (cy + 0.5) * FACTOR], axis=1)
    centroids[mass < 1e-6] = np.nan
    return centroids, mass * FACTOR * FACTOR


def _direction(centroids: np.ndarray) -> str | None:
    valid = centroids[~np.isnan(centroids).any(axis=1)]
    if len(valid) < 2:
        return None
    dx, dy = valid[-1] - valid[0]
    if max(abs(dx), abs(dy)) < 1.0:  # under one 64x64 pixel over the whole clip: not moving
        return None
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


@lru_cache(maxsize=8)
def _centroid_offset(shape: str) -> tuple[float, float]:
    """Mask centroid minus box centre of a rendered shape (the triangle's centroid sits below its box centre)."""
    m = shape_mask(shape, HIGH_RES / 2, HIGH_RES / 2).astype(np.float64)
    ys, xs = np.mgrid[0:HIGH_RES, 0:HIGH_RES].astype(np.float64) + 0.5
    return float((m * xs).sum() / m.sum() - HIGH_RES / 2), float((m * ys).sum() / m.sum() - HIGH_RES / 2)


def _template(shape: str, centroid: np.ndarray) -> np.ndarray:
    ox, oy = _centroid_offset(shape)
    m = shape_mask(shape, centroid[0] - ox, centroid[1] - oy).astype(np.float64)
    return m.reshape(LOW_RES, FACTOR, LOW_RES, FACTOR).mean(axis=(1, 3))


def _shape(cov: np.ndarray, centroids: np.ndarray) -> str | None:
    errors = np.zeros(len(SHAPES))
    used = 0
    for f in range(len(cov)):
        if np.isnan(centroids[f]).any():
            continue
        used += 1
        for k, s in enumerate(SHAPES):
            errors[k] += np.square(cov[f] - _template(s, centroids[f])).sum()
    return SHAPES[int(np.argmin(errors))] if used else None


def read_video(video: np.ndarray) -> Reading:
    """Colour, shape, direction, centroid track and areas of a ShapesWorld-like video (uint8 F, H, W, 3)."""
    lv = low_view(video)
    colour = _colour(lv)
    frames = lv.shape[0]
    if colour is None:
        return Reading(None, None, None, np.full((frames, 2), np.nan), np.zeros(frames))
    cov = coverage(lv, colour)
    centroids, areas = _centroids(cov)
    return Reading(colour, _shape(cov, centroids), _direction(centroids), centroids, areas)


def attribute_scores(video: np.ndarray, prompt: str | Attributes) -> dict[str, bool]:
    """Whether the video shows the prompt's colour, shape, direction, and all three."""
    attrs = prompt if isinstance(prompt, Attributes) else parse_prompt(prompt)
    return read_video(video).matches(attrs)


def temporal_rms_px(video: np.ndarray) -> float:
    """RMS distance (64x64 pixels) of the centroid track from its least-squares constant-velocity line; 0 is ideal.

    A shape that jumps, stalls, changes size unevenly or flickers in and out moves its centroid off the line.
    A video without a detectable shape scores nan.
    """
    c = read_video(video).centroids
    ok = ~np.isnan(c).any(axis=1)
    if ok.sum() < 3:
        return float("nan")
    t = np.arange(len(c))[ok].astype(np.float64)
    design = np.stack([np.ones_like(t), t], axis=1)
    coef, *_ = np.linalg.lstsq(design, c[ok], rcond=None)
    return float(np.sqrt(np.square(c[ok] - design @ coef).sum(axis=1).mean()))


# -- detail, fidelity, consistency --------------------------------------------------------------------------------
def high_frequency_energy(video: np.ndarray) -> float:
    """Mean per-frame spectral energy of a 64x64 video above the 16x16 Nyquist limit (|k| > 8 of 64 on either axis).

    That band is exactly what 4x pooling cannot represent; the mean (DC) is excluded by construction.
    """
    v = _as_video(video).astype(np.float64)
    if v.shape[1] != HIGH_RES:
        raise FvbenchError(f"detail is measured on {HIGH_RES}x{HIGH_RES} videos, got {v.shape[1]}x{v.shape[2]}")
    spec = np.fft.fft2(v, axes=(1, 2))
    k = np.abs(np.fft.fftfreq(HIGH_RES) * HIGH_RES)
    band = (k[:, None] > HIGH_RES // (2 * FACTOR)) | (k[None, :] > HIGH_RES // (2 * FACTOR))
    energy = np.square(np.abs(spec))[:, band, :].sum(axis=(1, 2))
    return float(energy.mean() / (HIGH_RES * HIGH_RES))


@lru_cache(maxsize=64)
def reference_energy(colour: str, shape: str, samples: int = 8) -> float:
    """Mean high-frequency energy of rendered ground truth of one colour and shape (4 directions x ``samples`` seeds)."""
    attrs = [Attributes(colour, shape, d) for d in DIRECTIONS for _ in range(samples)]
    seeds = [10_000 + i for d in DIRECTIONS for i in range(samples)]
    videos = render_many(attrs, seeds)
    return float(np.mean([high_frequency_energy(v) for v in videos]))


def detail_ratio(video: np.ndarray, prompt: str | Attributes) -> float:
    """High-frequency energy relative to the real world's for the prompt's colour and shape (1.0 = real).

    Never read alone: noise and blocking inflate it; read it beside fidelity and consistency.
    """
    attrs = prompt if isinstance(prompt, Attributes) else parse_prompt(prompt)
    return high_frequency_energy(video) / reference_energy(attrs.colour, attrs.shape)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two videos of equal shape (uint8 levels or floats on the same scale)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise FvbenchError(f"PSNR needs videos of equal shape, got {a.shape} and {b.shape}")
    mse = float(np.square(a - b).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)


def fidelity_psnr(output: np.ndarray, true_high: np.ndarray) -> float:
    """PSNR of a stage-II output against the true 64x64 video."""
    return psnr(output, true_high)


def consistency_psnr(output: np.ndarray, low_input: np.ndarray) -> float:
    """PSNR of the 4x average pool of a 64x64 output against the 16x16 input it was given (uint8 levels)."""
    out = _as_video(output)
    return psnr(pool(out, out.shape[1] // np.asarray(low_input).shape[1]), low_input)


# -- the Metric interface (fvbench.metrics): per-video rows like every other metric --------------------------------
try:  # noqa: E402  (kept beside the functions it wraps)
    from fvbench.metrics.base import VideoMetric as _VideoMetric
except ImportError:  # the interface before per-video and set-level metrics were split
    from fvbench.metrics.base import Metric as _VideoMetric


class _Attribute(_VideoMetric):
    """1.0 when the video shows the prompt's attribute, else 0.0; the mean over a suite is the accuracy."""

    direction = "higher"
    level = "video"
    key: str = ""

    def score(self, video, *, prompt, reference=None):
        return float(attribute_scores(video, prompt)[self.key])


class ColourAccuracy(_Attribute):
    name, key = "sw_colour", "colour"
    description = "ShapesWorld: the video's colour is the prompt's (analytic detector; mean = accuracy)"


class ShapeAccuracy(_Attribute):
    name, key = "sw_shape", "shape"
    description = "ShapesWorld: the video's shape is the prompt's (template matching at 16x16; mean = accuracy)"


class DirectionAccuracy(_Attribute):
    name, key = "sw_direction", "direction"
    description = "ShapesWorld: the shape moves in the prompt's direction (centroid track; mean = accuracy)"


class AllThreeAccuracy(_Attribute):
    name, key = "sw_all_three", "all_three"
    description = "ShapesWorld: colour, shape and direction all right (mean = accuracy)"


class DetailRatio(_VideoMetric):
    name = "sw_detail_ratio"
    level = "video"
    direction, target = "target", 1.0  # 1.0 is the real world's; below is blur, above is noise or artifacts
    description = ("ShapesWorld: energy above the 16x16 Nyquist limit / ground truth's for the prompt's colour and "
                   "shape (1.0 = real world; noise and blocking inflate it, read with PSNR)")

    def score(self, video, *, prompt, reference=None):
        return detail_ratio(video, prompt)


class TemporalRMS(_VideoMetric):
    name = "sw_temporal_rms_px"
    level = "video"
    direction = "lower"
    description = "ShapesWorld: RMS deviation (64x64 px) of the shape's centroid track from constant velocity"

    def score(self, video, *, prompt, reference=None):
        return temporal_rms_px(video)


class FidelityPSNR(_VideoMetric):
    name = "sw_fidelity_psnr"
    level = "video"
    higher_is_better = True
    needs_reference = True
    description = "ShapesWorld: PSNR (dB) of a 64x64 output against the true 64x64 video"

    def score(self, video, *, prompt, reference=None):
        if reference is None:
            raise FvbenchError("sw_fidelity_psnr needs the true 64x64 video as reference")
        return fidelity_psnr(video, reference)


class ConsistencyPSNR(_VideoMetric):
    name = "sw_consistency_psnr"
    level = "video"
    higher_is_better = True
    needs_reference = True
    description = "ShapesWorld: PSNR (dB) of the 4x-pooled output against the 16x16 input (pool of the reference)"

    def score(self, video, *, prompt, reference=None):
        if reference is None:
            raise FvbenchError("sw_consistency_psnr needs the true 64x64 video as reference")
        return consistency_psnr(video, np.clip(np.rint(pool(reference)), 0, 255))
