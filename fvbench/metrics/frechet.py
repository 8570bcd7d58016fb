"""Shared machinery of FVD and FID: a local feature network, and the Frechet distance of two feature sets.

The network is a TorchScript file (``torch.jit.save``) or a ``torch.export`` program (``.pt2``) on local disk,
never downloaded. The statistics are torchmetrics' ``FrechetInceptionDistance`` with that network as its custom
``feature`` module: running sums in float64 (memory O(D^2), not O(videos)), the reference set kept across
configurations, and its Frechet distance ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``. torchmetrics'
default Inception would need torch-fidelity and torchvision; a custom module needs neither.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np
import torch

from fvbench.errors import MissingWeightsError
from fvbench.metrics.base import SetMetric, check_video


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance of two feature sets (N, D) fitted as Gaussians, in float64 (a functional twin)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    eig = torch.linalg.eigvals(sa @ sb).real.clamp_min(0)
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(sa) + torch.trace(sb) - 2 * eig.sqrt().sum())


class LocalFeatures(torch.nn.Module):
    """A local feature network called the way its signature says; output flattened to (N, D) float.

    ``call_kwargs`` are passed only when the network's ``forward`` declares them (e.g. StyleGAN-V's I3D takes
    ``rescale``, ``resize``, ``return_features``; StyleGAN2-ADA's Inception takes ``return_features``).
    """

    def __init__(self, net: Any, arguments: list[str], call_kwargs: dict[str, Any], probe: torch.Tensor):
        super().__init__()
        self.net = net
        self.kwargs = {k: v for k, v in call_kwargs.items() if k in arguments}
        with torch.no_grad():
            self.num_features = int(self.forward(probe).shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, **self.kwargs).flatten(1).float()


@lru_cache(maxsize=4)
def load_network(path: str) -> tuple[Any, list[str]]:
    """(network, names of its forward arguments) from a TorchScript or ``.pt2`` file, on CPU, in eval mode."""
    import inspect

    p = Path(path)
    if p.suffix == ".pt2":
        net = torch.export.load(str(p)).module()
        return net, list(inspect.signature(net.forward).parameters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is deprecated in favour of torch.export
        net = torch.jit.load(str(p), map_location="cpu").eval()
    return net, [a.name for a in net.forward.schema.arguments][1:]


class FrechetMetric(SetMetric):
    """A Frechet distance between features of a configuration's videos and a reference configuration's."""

    higher_is_better = False
    call_kwargs: ClassVar[dict[str, Any]] = {}  # passed when the network's forward declares them
    probe_shape: ClassVar[tuple[int, ...]]
    probe_dtype: ClassVar[torch.dtype] = torch.float32

    def __init__(self, path: str | None = None):
        super().__init__(path=path)
        self._state: Any = None
        self._net: LocalFeatures | None = None
        self._called_with: dict[str, Any] | None = None
        self.videos = {True: 0, False: 0}

    def network(self) -> LocalFeatures:
        """The loaded network, probed once for its feature size (MissingWeightsError naming an absent file)."""
        if self._net is None:
            missing = self.missing()
            if missing:
                raise MissingWeightsError(f"{self.name}: " + "; ".join(missing))
            net, arguments = load_network(str(self.path("path")))
            self._net = LocalFeatures(net, arguments, self.call_kwargs,
                                      torch.zeros(self.probe_shape, dtype=self.probe_dtype))
        return self._net

    def prepare(self) -> None:
        self.network()

    @abstractmethod
    def network_input(self, video: np.ndarray, called_with: dict[str, Any]) -> torch.Tensor:
        """The network's input batch for one uint8 video, given the keyword arguments its forward accepted."""

    def update(self, videos: Iterable[np.ndarray], *, real: bool) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        if self._state is None:
            net = self.network()
            self._called_with = dict(net.kwargs)
            self._state = FrechetInceptionDistance(feature=net, reset_real_features=False)
        with torch.no_grad():
            for v in videos:
                self._state.update(self.network_input(check_video(v), self._called_with), real=real)
                self.videos[real] += 1

    def compute(self) -> float:
        if self._state is None or self.videos[True] < 2 or self.videos[False] < 2:
            raise ValueError(f"{self.name} needs at least 2 videos in each set "
                             f"(reference {self.videos[True]}, evaluated {self.videos[False]})")
        return float(self._state.compute())

    def reset(self, *, keep_reference: bool = True) -> None:
        if not keep_reference:
            self._state, self.videos = None, {True: 0, False: 0}
        elif self._state is not None:
            self._state.reset()
            self.videos[False] = 0

    def details(self) -> dict[str, Any]:
        """Version, network file and the call arguments its forward accepted (stored beside the value)."""
        return {"version": self.version, "network": str(self.paths.get("path")), "called_with": self._called_with}
