"""Where fvbench finds its data folders (``suites/``, ``baselines/``, ``reports/``) and default run/weight roots."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir(name: str) -> Path:
    """A top-level data folder of the project (``baselines``, ``suites``, ``reports``); FVBENCH_HOME overrides the root."""
    root = Path(os.environ.get("FVBENCH_HOME", REPO_ROOT))
    return root / name


def weights_root() -> Path:
    """Root for presets whose ``weights`` is a relative folder: $FVBENCH_WEIGHTS, else ~/.cache/fvbench/weights."""
    return Path(os.environ.get("FVBENCH_WEIGHTS", Path.home() / ".cache" / "fvbench" / "weights")).expanduser()


def default_runs_dir() -> Path:
    """Where ``fvbench run`` writes when no --out is given: $FVBENCH_RUNS, else ./runs."""
    return Path(os.environ.get("FVBENCH_RUNS", "runs"))
