"""The metric interface."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
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


class LocalFileMetric(Metric):
    """A metric whose network is one local file named by an environment variable (never downloaded)."""

    env: ClassVar[str]
    file_kind: ClassVar[str]  # what the file is, for the message: "a local TorchScript I3D (Kinetics-400) file"

    def __init__(self, path: str | None = None):
        self.path = path or os.environ.get(self.env)

    def missing(self) -> list[str]:
        if not self.path:
            return [f"set {self.env} to {self.file_kind}"]
        if not Path(self.path).is_file():
            return [f"missing {self.path}"]
        return []
