"""fvbench: FlashVideo two-stage generation vs single-stage DiT baselines, measured."""

from __future__ import annotations

__version__ = "0.1.0"


def load_results(run_dir):
    """A run's results as a pandas DataFrame (one row per video, metrics as ``metric:<name>`` columns)."""
    from fvbench.store import load_results as _load

    return _load(run_dir)


__all__ = ["load_results", "__version__"]
