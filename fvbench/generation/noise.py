"""Where a sampler's random draws come from: a seeded generator (the default) or a recorded sequence (replay).

Every Gaussian draw of a stage (initial noise, SDE noise, VAE posterior sample, latent degradation) goes through one
``NoiseSource`` per stage, in the order the sampler makes them. ``SeededNoise`` is what fvbench always did (a CPU
``torch.Generator`` seeded per stage); ``ReplayNoise`` hands back draws recorded from another implementation (the
FlashVideo release) so that a differential test can compare outputs computed from the very same noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from fvbench.errors import FvbenchError


class NoiseSource(Protocol):
    """A stream of standard-normal tensors, drawn in order."""

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor: ...


class SeededNoise:
    """Draws from a CPU ``torch.Generator`` seeded once (bitwise what ``torch.randn(..., generator=g)`` gives)."""

    def __init__(self, seed: int):
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=self.generator, dtype=dtype)


class ReplayNoise:
    """Returns recorded tensors one per draw, in order; a draw of another shape, or one too many, is an error."""

    def __init__(self, draws: Sequence[torch.Tensor], name: str = "replayed noise"):
        self._draws = list(draws)
        self._next = 0
        self.name = name

    @property
    def remaining(self) -> int:
        """Recorded draws not yet used (a complete replay ends at 0)."""
        return len(self._draws) - self._next

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if self._next >= len(self._draws):
            raise FvbenchError(f"{self.name}: draw {self._next + 1} requested, only {len(self._draws)} recorded")
        draw = self._draws[self._next]
        if tuple(draw.shape) != tuple(shape):
            raise FvbenchError(f"{self.name}: draw {self._next + 1} has shape {tuple(draw.shape)}, "
                               f"the sampler asked for {tuple(shape)}")
        self._next += 1
        return draw.to(dtype)


def generator_of(noise: NoiseSource, solver: str) -> torch.Generator:
    """The torch.Generator behind ``noise``, for diffusers' schedulers (which draw through a generator only)."""
    gen = getattr(noise, "generator", None)
    if gen is None:
        raise FvbenchError(f"solver {solver!r} draws through diffusers' scheduler and cannot replay recorded noise; "
                           f"use a seeded noise source")
    return gen
