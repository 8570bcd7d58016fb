"""The metric interface, in the torchmetrics spirit: a metric declares what it is and what it needs, then scores.

Every metric declares its ``name``, its ``direction`` (higher, lower, a ``target`` value, or descriptive: never ranked;
``higher_is_better`` is derived from it for older callers) and whether it ``rewards_still`` video, its ``level`` ("video": one value per video, stored on the
video's row; "set": one value per configuration, like FVD and FID), a ``version`` that changes whenever its numbers
would (frame sampling, resolution, cut-offs are part of it), and its :class:`Needs`: local weight files or folders
(each named by an environment variable and a constructor argument, never downloaded), optional Python packages, an
external interpreter (for tools that cannot live beside this stack), and whether it needs a GPU.
:meth:`Metric.missing` says exactly which file, package or interpreter is absent on this machine, so a run can fail
before generating anything.

Per-video metrics implement :meth:`VideoMetric.score`; set-level metrics keep state across
:meth:`SetMetric.update` calls and :meth:`SetMetric.compute` a value, like torchmetrics' FID.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal, Sequence

import numpy as np

Level = Literal["video", "set"]
Direction = Literal["higher", "lower", "target", "descriptive"]
DIRECTIONS: tuple[str, ...] = ("higher", "lower", "target", "descriptive")


@dataclass(frozen=True)
class WeightPath:
    """A local weight file or folder a metric loads (never fetched from a hub).

    ``key`` is the metric's constructor argument, ``env`` the environment variable read when the argument is not
    given. For a folder, ``files`` lists what must be inside it: each entry is a group of alternatives, at least one
    of which must exist (e.g. ``("model.safetensors", "pytorch_model.bin")``).
    """

    key: str
    env: str
    what: str
    folder: bool = False
    files: tuple[tuple[str, ...], ...] = ()

    def missing(self, value: str | None) -> list[str]:
        """What is absent for this path given its configured value (empty when everything is there)."""
        if not value:
            return [f"set ${self.env} (or {self.key}=) to {self.what}"]
        root = Path(value).expanduser()
        if not self.folder:
            return [] if root.is_file() else [f"missing {root} ({self.what})"]
        out = []
        for group in self.files:
            if not any((root / name).is_file() for name in group):
                out.append(f"missing {root / group[0]}" + (f" (or {', '.join(group[1:])})" if len(group) > 1 else ""))
        if not self.files and not root.is_dir():
            out.append(f"missing folder {root} ({self.what})")
        return out


@dataclass(frozen=True)
class Needs:
    """What a metric needs besides this package: weight paths, importable packages, an interpreter, a GPU."""

    weights: tuple[WeightPath, ...] = ()
    packages: tuple[str, ...] = ()
    interpreter_env: str | None = None  # environment variable naming an external Python (out-of-process tools)
    gpu: bool = False

    def describe(self) -> str:
        """One line for listings: ``$FVBENCH_I3D (a TorchScript I3D file)``, or ``nothing (offline)``."""
        parts = [f"${w.env} ({w.what})" for w in self.weights]
        parts += [f"package {p}" for p in self.packages]
        if self.interpreter_env:
            parts.append(f"interpreter ${self.interpreter_env}")
        if self.gpu:
            parts.append("a CUDA GPU")
        return ", ".join(parts) or "nothing (offline)"


class Metric(ABC):
    """Common declarations of per-video and set-level metrics."""

    name: ClassVar[str]
    # What a value means for ranking: "higher" or "lower" is better, "target" (closeness to ``target`` is better) or
    # "descriptive" (describes a video, e.g. its motion; never ranks). Older declarations give only
    # ``higher_is_better``; each one is derived from the other when a subclass is created.
    direction: ClassVar[Direction | None] = None
    target: ClassVar[float | None] = None
    rewards_still: ClassVar[bool] = False  # a still video scores well: never the sole ranking metric
    higher_is_better: ClassVar[bool]
    level: ClassVar[Level]
    version: ClassVar[str] = "1"
    needs: ClassVar[Needs] = Needs()
    needs_reference: ClassVar[bool] = False  # compares against a reference configuration (same prompt and seed)
    description: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "direction" in own:
            if cls.direction not in DIRECTIONS:
                raise TypeError(f"{cls.__name__}.direction must be one of {DIRECTIONS}, got {cls.direction!r}")
            if (cls.direction == "target") != (cls.target is not None):
                raise TypeError(f"{cls.__name__}: a target value goes with direction 'target' and only with it")
            if "higher_is_better" not in own:  # compatibility reading: only "lower" is lower-is-better
                cls.higher_is_better = cls.direction != "lower"
        elif "higher_is_better" in own:
            cls.direction = "higher" if cls.higher_is_better else "lower"

    def __init__(self, **paths: str | None):
        known = {w.key for w in self.needs.weights}
        unknown = set(paths) - known
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown argument(s) {sorted(unknown)}; known: {sorted(known)}")
        self.paths: dict[str, str | None] = {w.key: paths.get(w.key) or os.environ.get(w.env) or None
                                             for w in self.needs.weights}

    @property
    def requires(self) -> str:
        """What the metric needs, as one line (for listings)."""
        return self.needs.describe()

    def path(self, key: str) -> Path:
        """The configured local path for weight ``key`` (call :meth:`missing` first for a helpful error)."""
        value = self.paths.get(key)
        if not value:
            raise KeyError(key)
        return Path(value).expanduser()

    def missing(self) -> list[str]:
        """Exactly what this machine lacks for the metric (files, packages, interpreter, GPU); empty = can run."""
        out: list[str] = []
        for w in self.needs.weights:
            out += w.missing(self.paths.get(w.key))
        for pkg in self.needs.packages:
            if importlib.util.find_spec(pkg) is None:
                out.append(f"package {pkg} is not installed")
        if self.needs.interpreter_env:
            python = os.environ.get(self.needs.interpreter_env)
            if not python:
                out.append(f"set ${self.needs.interpreter_env} to a Python interpreter of an environment with the tool")
            elif not (shutil.which(python) or Path(python).is_file()):
                out.append(f"missing interpreter {python} (${self.needs.interpreter_env})")
        if self.needs.gpu:
            import torch

            if not torch.cuda.is_available():
                out.append("a CUDA GPU (none visible)")
        return out

    def prepare(self) -> None:
        """Load now what scoring will need (weights, worker processes), so a broken file fails before generation.

        Called by ``resolve`` after :meth:`missing` found nothing absent; the default loads nothing.
        """


class VideoMetric(Metric):
    """A per-video metric: one value per video, stored on the video's row."""

    level: ClassVar[Level] = "video"
    # Score the written mp4 (what VBench and `fvbench score` read) rather than the generated frames: for a metric that
    # mirrors a VBench dimension, codec noise would otherwise separate the in-run value from VBench's.
    reads_encoded: ClassVar[bool] = False

    @abstractmethod
    def score(self, video: np.ndarray, *, prompt: str, reference: np.ndarray | None = None) -> float:
        """Score uint8 frames (F, H, W, 3); ``reference`` is the reference configuration's video (same prompt, seed)."""


class SetMetric(Metric):
    """A set-level metric (FVD, FID): state accumulates over videos, one value per configuration.

    ``update(videos, real=True)`` feeds the reference set, ``update(videos, real=False)`` the evaluated set;
    ``reset()`` clears the evaluated set only, so one reference set serves several configurations.
    """

    level: ClassVar[Level] = "set"
    needs_reference: ClassVar[bool] = True

    @abstractmethod
    def update(self, videos: Iterable[np.ndarray], *, real: bool) -> None:
        """Add uint8 videos (F, H, W, 3) to the reference (``real``) or evaluated set."""

    @abstractmethod
    def compute(self) -> float:
        """The metric of the evaluated set against the reference set."""

    @abstractmethod
    def reset(self, *, keep_reference: bool = True) -> None:
        """Forget the evaluated set (and the reference set unless ``keep_reference``)."""

    def details(self) -> dict[str, Any]:
        """What a stored value depends on besides the videos (stored beside it); at least the version."""
        return {"version": self.version}

    def compute_set(self, videos: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> float:
        """Convenience: the metric of ``videos`` against ``references`` from a clean state."""
        self.reset(keep_reference=False)
        self.update(references, real=True)
        self.update(videos, real=False)
        return self.compute()

    def score(self, video: np.ndarray, *, prompt: str, reference: np.ndarray | None = None) -> float:
        """Set-level metrics have no per-video value."""
        raise ValueError(f"{self.name} is set-level: use fvbench score RUN --metrics {self.name} --reference CONFIG")


def sample_indices(num_frames: int, count: int) -> np.ndarray:
    """Up to ``count`` frame indices spread evenly over ``num_frames`` (first and last included), no repeats."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    return np.unique(np.linspace(0, num_frames - 1, min(count, num_frames)).round().astype(int))


def check_video(video: np.ndarray) -> np.ndarray:
    """``video`` as a C-contiguous uint8 (F, H, W, 3) array, or ValueError naming what is wrong."""
    v = np.asarray(video)
    if v.dtype != np.uint8 or v.ndim != 4 or v.shape[-1] != 3 or v.shape[0] < 1:
        raise ValueError(f"expected uint8 frames (F, H, W, 3), got {v.dtype} {v.shape}")
    return np.ascontiguousarray(v)
