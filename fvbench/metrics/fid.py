"""FID on frames: Frechet distance between Inception features of a configuration's frames and a reference
configuration's, with the feature network loaded from a local TorchScript file ($FVBENCH_INCEPTION), never a hub.

Convention (recorded in the version): up to 8 frames per video sampled uniformly, resized to 299x299 (bilinear,
antialiased), float RGB in [0, 1], input (N, 3, 299, 299); the network's output (e.g. 2048-d pool features) is the
embedding. torchmetrics' FID is not used because its default feature extractor needs torchvision weights.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from fvbench.metrics.base import LocalFileMetric
from fvbench.metrics.fvd import frechet_distance, load_torchscript

ENV = "FVBENCH_INCEPTION"


class FID(LocalFileMetric):
    """Frechet Inception Distance of a set's frames to the reference set's frames (lower is better)."""

    name = "fid"
    higher_is_better = False
    level = "set"
    needs_reference = True
    version = "1-8frames-299"
    requires = f"an Inception TorchScript file in ${ENV}"
    env = ENV
    file_kind = "a local TorchScript Inception feature extractor"
    description = "Frechet distance of Inception features of frames to the reference configuration's (local TorchScript)"

    @torch.no_grad()
    def features(self, videos: list[np.ndarray]) -> torch.Tensor:
        model = load_torchscript(str(self.path))
        feats = []
        for v in videos:
            idx = np.unique(np.linspace(0, len(v) - 1, min(8, len(v))).round().astype(int))
            x = torch.from_numpy(np.ascontiguousarray(v[idx])).permute(0, 3, 1, 2).float() / 255.0
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
            feats.append(model(x).flatten(1))
        return torch.cat(feats)

    def compute_set(self, videos: list[np.ndarray], references: list[np.ndarray]) -> float:
        a, b = self.features(videos), self.features(references)
        if len(a) < 2 or len(b) < 2:
            raise ValueError("FID needs at least 2 frames in each set")
        return frechet_distance(a, b)

    def score(self, video, *, prompt, reference=None):
        raise ValueError("fid is set-level: use fvbench score RUN --metrics fid --reference CONFIG")
