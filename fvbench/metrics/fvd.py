"""FVD: Frechet distance between Kinetics-400 I3D embeddings of a configuration's videos and a reference's.

The I3D is a local TorchScript file ($FVBENCH_I3D), e.g. StyleGAN-V's ``i3d_torchscript.pt`` port of the TF-Hub
model; nothing is downloaded. Convention (part of the version), after the original TF implementation
(Unterthiner et al.) and StyleGAN-V's FVD_16:

* clip: the first 16 consecutive frames (``clip="uniform"``: 16 frames spread over the video); a video shorter
  than 16 frames is padded by repeating its last frame;
* resize: bilinear straight to 224x224, aspect ratio not kept, as TF's ``resize_bilinear`` (``resize="crop"``:
  shorter side to 224 with antialiasing, then a centre crop);
* values in [-1, 1], input (N, 3, 16, 224, 224); the embedding is the network's output (the 400 logits for the
  TF-Hub I3D). A network whose forward declares ``rescale``/``resize``/``return_features`` (StyleGAN-V's) is
  called with ``rescale=False, resize=False, return_features=True``, as StyleGAN-V does.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from fvbench.metrics.base import Needs, WeightPath
from fvbench.metrics.frechet import FrechetMetric, frechet_distance, load_network

__all__ = ["FVD", "i3d_input", "frechet_distance", "load_network"]

ENV = "FVBENCH_I3D"
I3D_FILE = WeightPath(key="path", env=ENV, what="a Kinetics-400 I3D as a local TorchScript file")


def i3d_input(video: np.ndarray, frames: int = 16, size: int = 224, clip: Literal["first", "uniform"] = "first",
              resize: Literal["stretch", "crop"] = "stretch") -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float (3, frames, size, size) in [-1, 1] per the convention above."""
    n = len(video)
    if n >= frames:
        idx = np.arange(frames) if clip == "first" else np.linspace(0, n - 1, frames).round().astype(int)
    else:
        idx = np.concatenate([np.arange(n), np.full(frames - n, n - 1)])
    x = torch.from_numpy(np.ascontiguousarray(video[idx])).permute(0, 3, 1, 2).float() / 255.0
    if resize == "stretch":
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    else:
        h, w = x.shape[2:]
        s = size / min(h, w)
        x = F.interpolate(x, size=(max(size, round(h * s)), max(size, round(w * s))), mode="bilinear",
                          align_corners=False, antialias=True)
        top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
        x = x[:, :, top:top + size, left:left + size]
    return (x.clamp(0, 1) * 2 - 1).permute(1, 0, 2, 3)


class FVD(FrechetMetric):
    """Frechet Video Distance of a configuration's videos to a reference configuration's (lower is better)."""

    name = "fvd"
    needs = Needs(weights=(I3D_FILE,))
    call_kwargs = {"rescale": False, "resize": False, "return_features": True}
    probe_shape = (1, 3, 16, 224, 224)
    description = "Frechet distance of Kinetics-400 I3D embeddings to the reference configuration's (local TorchScript)"

    def __init__(self, path: str | None = None, clip: Literal["first", "uniform"] = "first",
                 resize: Literal["stretch", "crop"] = "stretch"):
        if clip not in ("first", "uniform") or resize not in ("stretch", "crop"):
            raise ValueError(f"clip must be first|uniform and resize stretch|crop, got {clip!r}, {resize!r}")
        super().__init__(path=path)
        self.clip, self.resize = clip, resize

    @property
    def version(self) -> str:  # type: ignore[override]
        return f"2-16{self.clip}-padlast-224{self.resize}"

    def network_input(self, video: np.ndarray, called_with: dict[str, Any]) -> torch.Tensor:
        return i3d_input(video, clip=self.clip, resize=self.resize)[None]
