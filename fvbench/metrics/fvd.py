"""FVD: Frechet distance between I3D features of a configuration's videos and a reference configuration's.

The I3D network is a Kinetics-400 I3D exported to TorchScript and loaded from a local file ($FVBENCH_I3D); nothing
is downloaded. Convention (recorded in the version): 16 frames sampled uniformly over the clip (the last frame
repeated for shorter clips), shorter side resized to 224 (bilinear, antialiased) and centre-cropped to 224x224,
values scaled to [-1, 1], input (N, 3, 16, 224, 224); the network's output (logits or features) is the embedding.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from fvbench.metrics.base import LocalFileMetric

ENV = "FVBENCH_I3D"


@lru_cache(maxsize=2)
def load_torchscript(path: str) -> torch.jit.ScriptModule:
    return torch.jit.load(path, map_location="cpu").eval()


def i3d_input(video: np.ndarray, frames: int = 16, size: int = 224) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float (3, frames, size, size) in [-1, 1] per the convention above."""
    idx = np.linspace(0, len(video) - 1, frames).round().astype(int) if len(video) >= frames else \
        np.concatenate([np.arange(len(video)), np.full(frames - len(video), len(video) - 1)])
    x = torch.from_numpy(np.ascontiguousarray(video[idx])).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[2:]
    s = size / min(h, w)
    x = F.interpolate(x, size=(max(size, round(h * s)), max(size, round(w * s))), mode="bilinear",
                      align_corners=False, antialias=True)
    top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
    x = x[:, :, top:top + size, left:left + size]
    return (x * 2 - 1).permute(1, 0, 2, 3)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two feature sets (N, D), in float64."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    eig = torch.linalg.eigvals(sa @ sb).real.clamp_min(0)
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(sa) + torch.trace(sb) - 2 * eig.sqrt().sum())


class FVD(LocalFileMetric):
    """Frechet Video Distance of a set of videos to a reference set (lower is better)."""

    name = "fvd"
    higher_is_better = False
    level = "set"
    needs_reference = True
    version = "1-16f-224-centercrop"
    requires = f"a Kinetics-400 I3D TorchScript file in ${ENV}"
    env = ENV
    file_kind = "a local TorchScript I3D (Kinetics-400) file"
    description = "Frechet distance of I3D features to the reference configuration's videos (local TorchScript I3D)"

    @torch.no_grad()
    def features(self, videos: list[np.ndarray]) -> torch.Tensor:
        model = load_torchscript(str(self.path))
        return torch.cat([model(i3d_input(v)[None]).flatten(1) for v in videos])

    def compute_set(self, videos: list[np.ndarray], references: list[np.ndarray]) -> float:
        if len(videos) < 2 or len(references) < 2:
            raise ValueError("FVD needs at least 2 videos in each set")
        return frechet_distance(self.features(videos), self.features(references))

    def score(self, video, *, prompt, reference=None):
        raise ValueError("fvd is set-level: use fvbench score RUN --metrics fvd --reference CONFIG")
