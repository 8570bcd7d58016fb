"""FID on frames: Frechet distance between Inception features of a configuration's frames and a reference's.

The Inception network is a local TorchScript file ($FVBENCH_INCEPTION), never downloaded. torchmetrics' built-in
Inception is not used: it needs torch-fidelity, which needs torchvision, which does not import beside the CPU torch
here. Convention (part of the version): 8 frames per video spread evenly over it, and

* a network whose forward declares ``return_features`` (StyleGAN2-ADA's ``inception-2015-12-05.pt``, the usual
  TorchScript FID Inception) gets the frames as uint8 (N, 3, H, W) at their own size with
  ``return_features=True``: it resizes to 299x299 itself, as StyleGAN2-ADA's FID does;
* any other network gets float RGB in [0, 1], (N, 3, 299, 299), resized bilinearly with antialiasing, aspect
  ratio not kept; its flattened output (e.g. 2048 pool features) is the embedding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fvbench.metrics.base import Needs, WeightPath, sample_indices
from fvbench.metrics.frechet import FrechetMetric

ENV = "FVBENCH_INCEPTION"
INCEPTION_FILE = WeightPath(key="path", env=ENV, what="an Inception feature network as a local TorchScript file")


class FID(FrechetMetric):
    """Frechet Inception Distance of a configuration's frames to the reference configuration's (lower is better)."""

    name = "fid"
    version = "2-8frames-299"
    frames = 8
    needs = Needs(weights=(INCEPTION_FILE,))
    call_kwargs = {"return_features": True}
    probe_shape = (1, 3, 299, 299)
    description = "Frechet distance of Inception features of 8 frames per video to the reference configuration's"

    def network_input(self, video: np.ndarray, called_with: dict[str, Any]) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(video[sample_indices(len(video), self.frames)])).permute(0, 3, 1, 2)
        if "return_features" in called_with:
            return x
        x = x.float() / 255.0
        return F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
