"""The report's answer, as data: how to split capacity and NFEs under a FLOP budget, with paired statistics.

Pure functions over the results DataFrame (``fvbench.load_results``; no I/O):

- the frontier: for each budget (each configuration's mean FLOPs per video), the configuration with the best mean
  score among those costing at most that;
- for every cascade configuration, the best single-stage configuration at equal or higher FLOPs (best mean score) and
  the paired difference of scores over the (prompt_id, sample) units both finished, with a paired-bootstrap 95%
  interval (units resampled together, so a per-prompt effect shared by both cancels);
- the cheapest cascade configuration whose interval's lower bound is at least ``-margin``.

Scores are higher-is-better (:meth:`fvbench.metrics.semantics.Semantics.score`: v, -v or -|v - target|). When no
metric of the run may rank, the answer holds costs only and says so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fvbench.metrics.semantics import Semantics, ranking_metric
from fvbench.report.data import json_ready
from fvbench.report.tables import bootstrap_ci

UNIT = ("prompt_id", "sample")
N_BOOT = 2000
SEED = 0


@dataclass(frozen=True)
class CostRow:
    """A configuration's costs: mean FLOPs per video, wall seconds per video (all stages), seconds to the preview."""

    config: str
    family: str
    videos: int
    flops: float
    total_s: float
    preview_s: float | None


@dataclass(frozen=True)
class BudgetRow:
    """Best configuration at or under ``budget_flops``: its mean raw value with a 95% bootstrap interval over units."""

    budget_flops: float
    config: str
    value: float
    ci95: tuple[float, float]
    flops: float
    total_s: float


@dataclass(frozen=True)
class PairedDiff:
    """Cascade minus baseline, in score space (higher = the cascade is better), over paired (prompt, sample) units."""

    metric: str
    cascade: str
    baseline: str
    n_pairs: int
    mean_diff: float
    ci95: tuple[float, float]
    raw_mean_cascade: float
    raw_mean_baseline: float
    flops_ratio: float


@dataclass(frozen=True)
class Answer:
    """The report's first section. ``metric`` is None when no metric of the run may rank (costs only)."""

    metric: str | None
    direction: str | None
    target: float | None
    why: str
    margin: float | None
    margin_source: str
    unit_of_pairing: str
    n_boot: int
    seed: int
    costs: tuple[CostRow, ...]
    frontier: tuple[BudgetRow, ...] = ()
    comparisons: tuple[PairedDiff, ...] = ()
    other_metrics: tuple[PairedDiff, ...] = ()  # the same cascade/baseline pairs on the run's other ranking metrics
    cheapest_non_inferior: PairedDiff | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (tuples as lists, NaN as None)."""
        return json_ready(dataclasses.asdict(self))


def unpaired_diff_ci(a: np.ndarray, b: np.ndarray, n_boot: int = N_BOOT, seed: int = SEED) -> tuple[float, float]:
    """95% interval of mean(a) - mean(b) resampling each side on its own (for comparison with the paired one)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = (a[rng.integers(len(a), size=(n_boot, len(a)))].mean(axis=1)
            - b[rng.integers(len(b), size=(n_boot, len(b)))].mean(axis=1))
    return float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))


def costs(df: pd.DataFrame) -> pd.DataFrame:
    """Per configuration of the finished videos: family, videos, mean FLOPs, s/video and s to preview."""
    done = df[df.status == "done"]
    g = done.groupby("config", sort=False)
    out = pd.DataFrame({"family": g.family.first(), "videos": g.size(), "flops": g.flops_total.mean(),
                        "total_s": g.total_s.mean(), "preview_s": g.preview_s.mean()})
    return out.sort_values("flops", kind="stable")


def unit_matrix(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """(prompt_id, sample) x config of a column's values over finished videos (mean if a unit repeats)."""
    done = df[df.status == "done"]
    return done.pivot_table(index=list(UNIT), columns="config", values=column, aggfunc="mean", dropna=False)


def mean_scores(raw: pd.DataFrame, sem: Semantics) -> pd.Series:
    """Per configuration, the mean over units of each video's score (for a target metric the mean distance, not the
    distance of the mean: a configuration whose videos scatter around the target is not close to it)."""
    scores = pd.DataFrame(sem.score(raw.to_numpy(float)), index=raw.index, columns=raw.columns)
    return scores.mean(axis=0, skipna=True)


def paired_diff(sem: Semantics, raw: pd.DataFrame, cascade: str, baseline: str, flops: pd.Series,
                n_boot: int = N_BOOT, seed: int = SEED) -> PairedDiff:
    """Score of ``cascade`` minus score of ``baseline`` over the units both have, with a paired-bootstrap interval."""
    a, b = raw[cascade].to_numpy(float), raw[baseline].to_numpy(float)
    both = np.isfinite(a) & np.isfinite(b)
    d = sem.score(a[both]) - sem.score(b[both])
    mean = float(d.mean()) if len(d) else float("nan")
    return PairedDiff(sem.name, cascade, baseline, int(both.sum()), mean, bootstrap_ci(d, n_boot, seed),
                      float(a[both].mean()) if both.any() else float("nan"),
                      float(b[both].mean()) if both.any() else float("nan"),
                      float(flops[cascade] / flops[baseline]))


def _cost_rows(table: pd.DataFrame) -> tuple[CostRow, ...]:
    return tuple(CostRow(str(c), str(r.family), int(r.videos), float(r.flops), float(r.total_s),
                         None if pd.isna(r.preview_s) else float(r.preview_s)) for c, r in table.iterrows())


def compute_answer(df: pd.DataFrame, metrics: Sequence[Semantics], *, primary: str | None = None,
                   margin: float | None = None, margin_source: str = "none given", n_boot: int = N_BOOT,
                   seed: int = SEED) -> Answer:
    """The answer section of a run's results (``metrics``: the run's metric declarations, in the run's order)."""
    table = costs(df)
    sem, why = ranking_metric(metrics, primary)
    base = dict(margin=margin, margin_source=margin_source, unit_of_pairing="(prompt_id, sample)", n_boot=n_boot,
                seed=seed, costs=_cost_rows(table))
    if sem is None or table.empty:
        note = "no finished videos" if table.empty else "costs only: no configuration is ranked"
        return Answer(None, None, None, why, notes=(note,), **base)
    raw = unit_matrix(df, f"metric:{sem.name}").reindex(columns=table.index)
    mean_score = mean_scores(raw, sem)
    flops = table.flops
    notes: list[str] = []

    frontier = []
    for budget in sorted(set(flops.dropna())):
        ok = mean_score[(flops <= budget) & mean_score.notna()]
        if ok.empty:
            continue
        best = ok.index[int(np.argmax(ok.to_numpy()))]  # ties: the cheapest (configs are sorted by FLOPs)
        col = raw[best].to_numpy(float)
        frontier.append(BudgetRow(float(budget), str(best), float(np.nanmean(col)),
                                  bootstrap_ci(col[np.isfinite(col)], n_boot, seed), float(flops[best]),
                                  float(table.total_s[best])))

    singles = [c for c in table.index if table.family[c] != "cascade" and pd.notna(mean_score[c])]
    comparisons, pairs = [], []
    for c in (c for c in table.index if table.family[c] == "cascade" and pd.notna(mean_score[c])):
        at_least = [s for s in singles if flops[s] >= flops[c]]
        if not at_least:
            notes.append(f"{c}: no single-stage configuration at equal or higher FLOPs in this run")
            continue
        b = max(at_least, key=lambda s: (mean_score[s], -flops[s]))
        pairs.append((c, b))
        comparisons.append(paired_diff(sem, raw, c, b, flops, n_boot, seed))
    if not singles:
        notes.append("no single-stage configuration with this metric in the run: no cascade comparison")

    others = []
    for m in metrics:
        if m.direction == "descriptive" or m.name == sem.name or f"metric:{m.name}" not in df.columns:
            continue
        other = unit_matrix(df, f"metric:{m.name}")
        for c, b in pairs:
            if c in other.columns and b in other.columns:
                others.append(paired_diff(m, other, c, b, flops, n_boot, seed))

    cheapest = None
    if margin is None:
        notes.append("no non-inferiority margin given (report --margin, or the suite's margin): no cheapest "
                     "non-inferior cascade is named")
    else:
        ok = [p for p in comparisons if np.isfinite(p.ci95[0]) and p.ci95[0] >= -margin]
        cheapest = min(ok, key=lambda p: flops[p.cascade]) if ok else None
        if cheapest is None and comparisons:
            notes.append(f"no cascade configuration is within the margin {margin:g} of its baseline "
                         f"(every paired interval's lower bound is below -{margin:g})")
    return Answer(sem.name, sem.direction, sem.target, why, frontier=tuple(frontier), comparisons=tuple(comparisons),
                  other_metrics=tuple(others), cheapest_non_inferior=cheapest, notes=tuple(notes), **base)


def num(x: Any) -> str:
    """How the report prints every number of the answer (HTML and Markdown alike): 4 significant digits."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, (bool, np.bool_)):
        return str(x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.4g}"


def _ci(ci: tuple[float, float]) -> str:
    return f"[{num(ci[0])}, {num(ci[1])}]"


def _diff_table(rows: Sequence[PairedDiff]) -> pd.DataFrame:
    return pd.DataFrame([{"metric": p.metric, "cascade": p.cascade, "baseline": p.baseline, "pairs": num(p.n_pairs),
                          "cascade mean": num(p.raw_mean_cascade), "baseline mean": num(p.raw_mean_baseline),
                          "score diff [95% CI]": f"{num(p.mean_diff)} {_ci(p.ci95)}",
                          "FLOPs ratio": num(p.flops_ratio)} for p in rows])


def blocks(a: Answer) -> list[tuple[str, list[str], pd.DataFrame | None]]:
    """The answer laid out once as (heading, lines, table) blocks; HTML and Markdown render the same blocks."""
    if a.metric is None:
        head = [f"Ranking: {a.why}. This section shows costs only: no configuration is ranked or called better.",
                f"Pairing unit {a.unit_of_pairing}; bootstrap {num(a.n_boot)} resamples, seed {num(a.seed)}."]
    else:
        what = f"closeness to {num(a.target)}" if a.direction == "target" else f"{a.direction} is better"
        head = [f"Ranking metric: {a.metric} ({what}); chosen as {a.why}.",
                f"Scores: value, -value or -|value - target|; differences are cascade minus baseline in score space "
                f"(positive = the cascade is better), paired over {a.unit_of_pairing} units both configurations "
                f"finished; 95% intervals by paired bootstrap ({num(a.n_boot)} resamples, seed {num(a.seed)}).",
                f"Non-inferiority margin: {num(a.margin)} ({a.margin_source})." if a.margin is not None
                else f"Non-inferiority margin: none given ({a.margin_source})."]
    if a.cheapest_non_inferior is not None:
        p = a.cheapest_non_inferior
        head.append(f"Cheapest cascade not worse than the best single-stage baseline by more than {num(a.margin)}: "
                    f"{p.cascade} ({a.metric} {num(p.raw_mean_cascade)} vs {p.baseline} {num(p.raw_mean_baseline)}, "
                    f"score diff {num(p.mean_diff)} {_ci(p.ci95)} over {num(p.n_pairs)} pairs, FLOPs ratio "
                    f"{num(p.flops_ratio)}).")
    head += list(a.notes)
    out: list[tuple[str, list[str], pd.DataFrame | None]] = [("Answer: how to split capacity and NFEs", head, None)]
    costs_df = pd.DataFrame([{"config": c.config, "family": c.family, "videos": num(c.videos),
                              "FLOPs/video": num(c.flops), "s/video": num(c.total_s), "s to preview": num(c.preview_s)}
                             for c in a.costs])
    out.append(("Costs per configuration", ["means over the finished videos; s/video = wall seconds of all stages"],
                costs_df))
    if a.frontier:
        out.append(("Best configuration under each FLOP budget",
                    [f"budget = each configuration's FLOPs per video; value = mean {a.metric} with a 95% bootstrap "
                     f"interval over units"],
                    pd.DataFrame([{"budget FLOPs": num(r.budget_flops), "config": r.config, "value": num(r.value),
                                   "95% CI": _ci(r.ci95), "FLOPs/video": num(r.flops), "s/video": num(r.total_s)}
                                  for r in a.frontier])))
    if a.comparisons:
        out.append(("Cascades against the best single-stage baseline at equal or higher FLOPs",
                    [f"baseline = the single-stage configuration with the best mean {a.metric} among those costing "
                     f"at least the cascade's FLOPs"], _diff_table(a.comparisons)))
    if a.other_metrics:
        out.append(("The same pairs on the run's other metrics",
                    ["read beside the ranking metric; a target metric's score is -|value - target|"],
                    _diff_table(a.other_metrics)))
    return out
