"""fvbench: FlashVideo two-stage generation vs single-stage DiT baselines, measured."""

from __future__ import annotations

__version__ = "0.1.0"


def load_results(run_dir):
    """A run's results as a pandas DataFrame (one row per video, metrics as ``metric:<name>`` columns)."""
    from fvbench.store import load_results as _load

    return _load(run_dir)


def __getattr__(name: str):
    """The library API (fvbench.api, fvbench.scoring), imported on first use so ``import fvbench`` stays light."""
    if name in ("plan_sweep", "run_sweep", "RayOptions", "SweepPlan", "SweepResult"):
        from fvbench import api

        return getattr(api, name)
    if name in ("score_run", "ScoreResult", "metrics_at_run"):
        from fvbench import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'fvbench' has no attribute {name!r}")


__all__ = ["load_results", "plan_sweep", "run_sweep", "RayOptions", "SweepPlan", "SweepResult", "score_run",
           "ScoreResult", "metrics_at_run", "__version__"]
