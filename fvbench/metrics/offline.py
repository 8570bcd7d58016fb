"""Metrics that need no weights: VBench's temporal flickering, detail, global motion, and full-reference PSNR/SSIM.

All take uint8 frames (F, H, W, 3) as generated (``fvbench run``) or as decoded from the saved mp4 (``fvbench
score``); the stored version ends in ``+frames`` or ``+mp4`` to say which. ``temporal_flickering`` mirrors a VBench
dimension, so in a run too it reads the written mp4 (VBench's input): codec noise would otherwise shift it by up to
0.008 per video, systematically. Costs on this 2-core CPU are
listed by ``fvbench metrics --time FxHxW``; at 49x480x720 SSIM at full size would take about 26 s, so SSIM runs on
frames average-pooled to at most 256 px on the long side (part of its version).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fvbench.metrics.base import VideoMetric, check_video


def luma(video: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) RGB -> float32 (F, H, W) luma in [0, 255] (ITU-R BT.601 weights)."""
    return torch.from_numpy(check_video(video)).to(torch.float32) @ torch.tensor([0.299, 0.587, 0.114])


def pool_to(x: torch.Tensor, max_side: int) -> tuple[torch.Tensor, int]:
    """Average-pool (N, C, H, W) by the smallest integer factor bringing the long side to <= ``max_side``."""
    factor = max(1, int(np.ceil(max(x.shape[-2:]) / max_side)))
    return (F.avg_pool2d(x, factor) if factor > 1 else x), factor


class TemporalFlickering(VideoMetric):
    """VBench's temporal_flickering for one video: (255 - mean |frame_i - frame_{i+1}|) / 255.

    The mean runs over all pixels, channels and consecutive pairs (VBench averages per pair first; the pairs have
    equal size, so it is the same number). VBench scores static-scene prompts only; here every video gets a value.
    """

    name = "temporal_flickering"
    direction = "higher"
    rewards_still = True  # a still video scores 1.0: never ranks alone
    reads_encoded = True  # in a run too it scores the written mp4, the file VBench reads (stored version "1+mp4")
    description = "VBench formula: (255 - mean abs difference of consecutive frames) / 255, on the written mp4"

    def score(self, video, *, prompt, reference=None):
        v = check_video(video)
        if len(v) < 2:
            raise ValueError("temporal flickering needs at least 2 frames")
        diff = np.abs(np.diff(v.astype(np.int16), axis=0))
        return float((255.0 - diff.mean(dtype=np.float64)) / 255.0)


class LaplacianVariance(VideoMetric):
    """Sharpness: variance of the 3x3 Laplacian of the luma (valid region), averaged over frames."""

    name = "detail_laplacian_var"
    direction = "descriptive"  # noise inflates it and there is no reference level: describes, does not rank
    description = "mean over frames of Var(Laplacian(luma)); higher = more fine detail (or noise: read with PSNR)"

    def score(self, video, *, prompt, reference=None):
        g = luma(video)
        # the 4-neighbour Laplacian [[0, 1, 0], [1, -4, 1], [0, 1, 0]] by slicing: 3x faster than a 1-channel conv2d
        lap = g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:] - 4 * g[:, 1:-1, 1:-1]
        return float(lap.flatten(1).var(dim=1).mean())


class HighFrequencyRatio(VideoMetric):
    """Share of the luma's spectral energy above 1/8 cycle per pixel: the band a 4x-upsampled video lacks.

    A frequency counts as high when either its horizontal or vertical component exceeds the cut-off; the DC term is
    removed per frame. Averaged over frames.
    """

    name = "detail_hf_ratio"
    direction = "descriptive"  # noise inflates it and there is no reference level: describes, does not rank
    version = "1-cutoff0.125"
    cutoff = 0.125
    description = "energy at spatial frequencies > 0.125 cycles/px over all non-DC energy (luma, mean over frames)"

    def score(self, video, *, prompt, reference=None):
        g = luma(video)
        g = g - g.mean(dim=(1, 2), keepdim=True)
        power = torch.fft.rfft2(g).abs() ** 2
        fy = torch.fft.fftfreq(g.shape[1]).abs()[:, None]
        fx = torch.fft.rfftfreq(g.shape[2])[None, :]
        high = (torch.maximum(fy, fx) > self.cutoff).to(power.dtype)
        total = power.sum(dim=(1, 2)).clamp_min(1e-12)
        return float(((power * high).sum(dim=(1, 2)) / total).mean())


def phase_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sub-pixel shifts (dy, dx) taking each frame of ``a`` (N, H, W) to ``b``.

    The phase-correlation peak is refined along each axis with Foroosh et al.'s (2002) estimator from the peak and
    its larger neighbour, which fits the sinc-shaped peak better than a parabola (on crops of a textured image
    moving 0.1-7 px per frame, pooled 3x: error <= 0.11 px, against 0.41 px for a parabola). No window: a Hann
    window lowered that error to 0.07 px but made exact circular shifts inexact.
    """
    n, h, w = a.shape
    fa = torch.fft.fft2(a - a.mean(dim=(1, 2), keepdim=True))
    fb = torch.fft.fft2(b - b.mean(dim=(1, 2), keepdim=True))
    cross = fb * fa.conj()
    corr = torch.fft.ifft2(cross / cross.abs().clamp_min(1e-12)).real
    idx = corr.flatten(1).argmax(dim=1)
    py, px = idx // w, idx % w
    rows = torch.arange(n)
    c0 = corr[rows, py, px]

    def refine(c_minus: torch.Tensor, c_plus: torch.Tensor) -> torch.Tensor:
        side = torch.where(c_plus >= c_minus, 1.0, -1.0).to(c0.dtype)
        c1 = torch.maximum(c_plus, c_minus)
        d1, d2 = c1 / (c1 + c0), c1 / (c1 - c0)
        ok1, ok2 = (d1 >= 0) & (d1 < 1), (d2 >= 0) & (d2 < 1)
        offset = torch.where(ok1, d1, torch.where(ok2, d2, torch.zeros_like(d1)))
        return side * torch.where(c1 > 0, offset, torch.zeros_like(offset))  # no positive neighbour: on the pixel

    dy = py.to(a.dtype) + refine(corr[rows, (py - 1) % h, px], corr[rows, (py + 1) % h, px])
    dx = px.to(a.dtype) + refine(corr[rows, py, (px - 1) % w], corr[rows, py, (px + 1) % w])
    dy = torch.where(dy > h / 2, dy - h, dy)
    dx = torch.where(dx > w / 2, dx - w, dx)
    return torch.stack([dy, dx], dim=1)


class MotionMagnitude(VideoMetric):
    """Mean global (camera-like) motion between consecutive frames, in pixels of the video's own resolution.

    Phase correlation on the luma average-pooled to <= 256 px on the long side, sub-pixel peak (Foroosh). It sees a global
    shift (pan, tilt, a large moving object), not the magnitude of local object motion.
    """

    name = "motion_px"
    direction = "descriptive"  # how much a video moves, not how well: a prompt may ask for stillness
    version = "2-phasecorr-max256-foroosh"
    max_side = 256
    description = "global shift between consecutive frames by phase correlation (<= 256 px, sub-pixel), mean, px"

    def score(self, video, *, prompt, reference=None):
        g = luma(video)
        if len(g) < 2:
            raise ValueError("motion needs at least 2 frames")
        pooled, factor = pool_to(g[:, None], self.max_side)
        pooled = pooled.double()
        shifts = phase_correlation(pooled[:-1, 0], pooled[1:, 0]) * factor
        return float(shifts.norm(dim=1).mean())


class PSNR(VideoMetric):
    """PSNR (dB) of a video against the reference configuration's video of the same prompt and seed."""

    name = "psnr_vs_ref"
    higher_is_better = True
    needs_reference = True
    version = "1-pooled"
    description = "PSNR in dB of the whole clip (MSE pooled over frames) against the reference configuration, torchmetrics"

    def score(self, video, *, prompt, reference=None):
        from torchmetrics.functional.image import peak_signal_noise_ratio

        a, b = _pair(video, reference)
        return float(peak_signal_noise_ratio(a, b, data_range=1.0))


class SSIM(VideoMetric):
    """SSIM against the reference configuration's video, on frames average-pooled to <= 256 px (cost)."""

    name = "ssim_vs_ref"
    higher_is_better = True
    needs_reference = True
    version = "1-max256"
    max_side = 256
    description = "SSIM (mean over frames) against the reference configuration, frames pooled to <= 256 px, torchmetrics"

    def score(self, video, *, prompt, reference=None):
        from torchmetrics.functional.image import structural_similarity_index_measure

        a, b = _pair(video, reference)
        a, _ = pool_to(a, self.max_side)
        b, _ = pool_to(b, self.max_side)
        return float(structural_similarity_index_measure(a, b, data_range=1.0))


def _pair(video: np.ndarray, reference: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Video and reference as float (F, 3, H, W) in [0, 1]; they must match in shape."""
    if reference is None:
        raise ValueError("needs a reference video (fvbench score --reference CONFIG)")
    video, reference = check_video(video), check_video(reference)
    if video.shape != reference.shape:
        raise ValueError(f"video {video.shape} and reference {reference.shape} differ in shape")

    def t(v: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(v).float().permute(0, 3, 1, 2) / 255.0

    return t(video), t(reference)
