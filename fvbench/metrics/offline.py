"""Metrics that need no weights: VBench's temporal flickering, detail, motion, and full-reference PSNR/SSIM.

Costs on a 49x480x720 clip (2 threads, environment.md): flicker 0.07 s, Laplacian variance 0.06 s, FFT
high-frequency ratio 0.6 s, phase correlation 0.26 s; SSIM would take 26 s at full size, so it is computed on
frames downsampled to at most 256 pixels on the long side (recorded in its version).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fvbench.metrics.base import Metric


def _gray(video: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float (F, H, W) luma in [0, 255] (ITU-R BT.601 weights)."""
    v = torch.from_numpy(np.ascontiguousarray(video)).float()
    return v[..., 0] * 0.299 + v[..., 1] * 0.587 + v[..., 2] * 0.114


class TemporalFlickering(Metric):
    """VBench temporal_flickering on one video: (255 - mean |frame_i - frame_{i+1}|) / 255 over all pixels/channels.

    VBench applies it to static-scene prompts only; here it is computed for every video and read per dimension.
    """

    name = "temporal_flickering"
    higher_is_better = True
    description = "VBench formula: (255 - mean abs difference of consecutive frames) / 255"

    def score(self, video, *, prompt, reference=None):
        v = video.astype(np.float64)
        if len(v) < 2:
            return 1.0
        return float((255.0 - np.abs(np.diff(v, axis=0)).mean()) / 255.0)


class LaplacianVariance(Metric):
    """Sharpness: variance of the 3x3 Laplacian of the luma, averaged over frames."""

    name = "detail_laplacian_var"
    higher_is_better = True
    description = "mean over frames of Var(Laplacian(luma)); higher = more fine detail (or noise: read with PSNR)"

    def score(self, video, *, prompt, reference=None):
        g = _gray(video)[:, None]
        k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
        lap = F.conv2d(g, k)
        return float(lap.flatten(1).var(dim=1).mean())


class HighFrequencyRatio(Metric):
    """Share of spectral energy above 1/8 cycle per pixel: the band a 4x-upsampled video lacks and stage II adds."""

    name = "detail_hf_ratio"
    higher_is_better = True
    version = "1-cutoff0.125"
    cutoff = 0.125
    description = "energy at spatial frequencies > 0.125 cycles/px over all non-DC energy (luma, mean over frames)"

    def score(self, video, *, prompt, reference=None):
        g = _gray(video)
        g = g - g.mean(dim=(1, 2), keepdim=True)
        power = torch.fft.rfft2(g).abs() ** 2
        fy = torch.fft.fftfreq(g.shape[1]).abs()[:, None]
        fx = torch.fft.rfftfreq(g.shape[2])[None, :]
        high = (torch.maximum(fy, fx) > self.cutoff).to(power.dtype)
        total = power.sum(dim=(1, 2)).clamp_min(1e-12)
        return float(((power * high).sum(dim=(1, 2)) / total).mean())


class MotionMagnitude(Metric):
    """Mean global motion between consecutive frames, by phase correlation, in pixels at the video's resolution."""

    name = "motion_px"
    higher_is_better = True
    version = "1-phasecorr-max128"
    description = "phase-correlation shift between consecutive frames (frames downsampled to <= 128 px), mean, px"

    def score(self, video, *, prompt, reference=None):
        g = _gray(video)
        if len(g) < 2:
            return 0.0
        scale = max(1, int(np.ceil(max(g.shape[1:]) / 128)))
        if scale > 1:
            g = F.avg_pool2d(g[:, None], scale)[:, 0]
        spec = torch.fft.fft2(g - g.mean(dim=(1, 2), keepdim=True))
        cross = spec[1:] * spec[:-1].conj()
        corr = torch.fft.ifft2(cross / cross.abs().clamp_min(1e-9)).real
        h, w = g.shape[1:]
        idx = corr.flatten(1).argmax(dim=1)
        dy, dx = (idx // w).float(), (idx % w).float()
        dy = torch.where(dy > h / 2, dy - h, dy)
        dx = torch.where(dx > w / 2, dx - w, dx)
        return float(torch.sqrt(dy**2 + dx**2).mean() * scale)


class PSNR(Metric):
    """PSNR (dB) of a video against the reference configuration's video of the same prompt and seed."""

    name = "psnr_vs_ref"
    higher_is_better = True
    needs_reference = True
    description = "PSNR in dB against the reference configuration (same prompt and seed), torchmetrics"

    def score(self, video, *, prompt, reference=None):
        from torchmetrics.functional.image import peak_signal_noise_ratio

        a, b = _pair(video, reference)
        return float(peak_signal_noise_ratio(a, b, data_range=1.0))


class SSIM(Metric):
    """SSIM against the reference configuration's video, on frames downsampled to at most 256 px (cost)."""

    name = "ssim_vs_ref"
    higher_is_better = True
    needs_reference = True
    version = "1-max256"
    description = "SSIM against the reference configuration on frames downsampled to <= 256 px, torchmetrics"

    def score(self, video, *, prompt, reference=None):
        from torchmetrics.functional.image import structural_similarity_index_measure

        a, b = _pair(video, reference)
        scale = max(1, int(np.ceil(max(a.shape[2:]) / 256)))
        if scale > 1:
            a, b = F.avg_pool2d(a, scale), F.avg_pool2d(b, scale)
        return float(structural_similarity_index_measure(a, b, data_range=1.0))


def _pair(video: np.ndarray, reference: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    if reference is None:
        raise ValueError("needs a reference video (fvbench score --reference CONFIG)")
    if video.shape != reference.shape:
        raise ValueError(f"video {video.shape} and reference {reference.shape} differ in shape")
    t = lambda v: torch.from_numpy(np.ascontiguousarray(v)).float().permute(0, 3, 1, 2) / 255.0  # noqa: E731
    return t(video), t(reference)
