"""What a metric's value means for ranking, and which metric of a run ranks its configurations.

A metric ranks by its score: the value (higher is better), minus the value (lower), or minus the distance to its
target value (target). Descriptive metrics never rank; a metric that rewards still video never ranks alone, so it is
never the ranking metric. Pure functions: no store, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# VBench's temporal-quality dimensions that a still video maximises (VBench adds dynamic_degree for this reason).
VBENCH_STILL_REWARDING = frozenset({"temporal_flickering", "subject_consistency", "background_consistency",
                                    "motion_smoothness"})


@dataclass(frozen=True)
class Semantics:
    """A metric's ranking declaration: direction (higher, lower, target, descriptive), target value, still bias."""

    name: str
    direction: str
    target: float | None = None
    rewards_still: bool = False

    @property
    def ranks(self) -> bool:
        """Whether this metric may rank configurations on its own."""
        return self.direction != "descriptive" and not self.rewards_still

    def score(self, values):
        """Higher-is-better score: v, -v or -|v - target|; NaN for a descriptive metric."""
        v = np.asarray(values, dtype=float)
        if self.direction == "higher":
            return v
        if self.direction == "lower":
            return -v
        if self.direction == "target":
            return -np.abs(v - float(self.target))
        return np.full_like(v, np.nan)

    def label(self) -> str:
        """For captions: how to read the value."""
        if self.direction == "target":
            return f"closer to {self.target:g} is better"
        if self.direction == "descriptive":
            return "descriptive, not ranked"
        return f"{self.direction} is better" + (", rewards still video" if self.rewards_still else "")


def semantics(name: str) -> Semantics:
    """The declaration of a registered metric; ``vbench:<dimension>`` is higher-is-better (VBench's scale), still
    rewarding for its temporal-quality dimensions; an unregistered name is taken as higher-is-better."""
    from fvbench.metrics.registry import get_metric, list_metrics

    if name.startswith("vbench:"):
        return Semantics(name, "higher", None, name.removeprefix("vbench:") in VBENCH_STILL_REWARDING)
    if name not in list_metrics():
        return Semantics(name, "higher")
    m = get_metric(name)
    return Semantics(name, m.direction or ("higher" if m.higher_is_better else "lower"), m.target, m.rewards_still)


def ranking_metric(metrics: Sequence[Semantics], primary: str | None = None) -> tuple[Semantics | None, str]:
    """The metric that ranks a run, and why: the suite's primary metric when the run has it and it may rank, else
    the first of the run's metrics that may rank, else none (the answer then shows costs only)."""
    by_name = {m.name: m for m in metrics}
    skipped = [f"{m.name} ({m.label()})" for m in metrics if not m.ranks]
    why_not = f"; not ranking: {', '.join(skipped)}" if skipped else ""
    if primary is not None and primary in by_name and by_name[primary].ranks:
        return by_name[primary], f"the suite's primary metric ({by_name[primary].label()}){why_not}"
    lead = (f"the suite's primary metric {primary} is not in this run or may not rank; " if primary else "")
    for m in metrics:
        if m.ranks:
            return m, f"{lead}the run's first metric that measures quality ({m.label()}){why_not}"
    return None, f"{lead}no metric of this run measures quality meaningfully{why_not}"
