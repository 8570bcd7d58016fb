"""The metric interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import numpy as np


class Metric(ABC):
    """A per-video metric: declares its direction, level, version and what it needs, then scores a video."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    level: ClassVar[Literal["video", "set"]] = "video"
    version: ClassVar[str] = "1"
    needs_reference: ClassVar[bool] = False
    requires: ClassVar[str] = "nothing (offline)"
    description: ClassVar[str] = ""

    def missing(self) -> list[str]:
        """What this machine lacks for the metric (files, packages); empty when it can run."""
        return []

    @abstractmethod
    def score(self, video: np.ndarray, *, prompt: str, reference: np.ndarray | None = None) -> float:
        """Score uint8 frames (F, H, W, 3)."""
