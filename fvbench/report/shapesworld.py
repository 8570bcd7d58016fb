"""The report's ShapesWorld section: issue-8 targets read off a run's configuration table, with the margin of each.

Shown when a run carries ShapesWorld's exact metrics (``sw_all_three``; detail from ``sw_detail_ratio``). Every line
says which configurations and how many videos it compares; a target the run cannot answer (a point not in the run)
says so instead of a verdict.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd

from fvbench.report.plots import _png

ACCURACY = "sw_all_three"
DETAIL = "sw_detail_ratio"
CASCADE_POINT = (30, 4)  # the cascade: stage I about 30 NFE + stage II 4 NFE
SINGLE_NFE = 50
MIN_VIDEOS = 144


def applies(table: pd.DataFrame) -> bool:
    return ACCURACY in table.columns and table[ACCURACY].notna().any()


def _n(row) -> str:
    flag = "" if row.n >= MIN_VIDEOS else f", fewer than the {MIN_VIDEOS} the targets ask"
    return f"{int(row.n)} videos{flag}"


def _verdict(ok: bool, margin: str) -> str:
    return f"met ({margin})" if ok else f"MISSED ({margin})"


def findings(table: pd.DataFrame) -> list[str]:
    """One line per target this run can answer: values, target, met or missed and by how much."""
    lines: list[str] = []
    has_detail = DETAIL in table.columns
    singles = table[(table.family == "single-stage") & (table.stage1_nfe == SINGLE_NFE) & table[ACCURACY].notna()]
    cascades = table[(table.family == "cascade") & (table.stage1_nfe == CASCADE_POINT[0])
                     & (table.stage2_nfe == CASCADE_POINT[1]) & table[ACCURACY].notna()]
    if singles.empty or cascades.empty:
        lines.append(f"cascade vs single stage: not answerable from this run (needs a cascade at "
                     f"{CASCADE_POINT[0]}+{CASCADE_POINT[1]} NFE and a single-stage baseline at {SINGLE_NFE} NFE)")
    else:
        best = singles.sort_values(ACCURACY, ascending=False).iloc[0]
        for c in cascades.itertuples():
            d_acc = 100 * (getattr(c, ACCURACY) - best[ACCURACY])
            ratio = c.flops / best.flops
            lines.append(f"{c.config} vs best single stage {best.config}: all three {getattr(c, ACCURACY):.3f} vs "
                         f"{best[ACCURACY]:.3f} ({d_acc:+.1f} points; target no worse than -2: "
                         f"{_verdict(d_acc >= -2, f'{d_acc + 2:+.1f} points of margin')}); "
                         f"FLOPs {c.flops / 1e9:.1f} vs {best.flops / 1e9:.1f} GFLOP per video = {ratio:.3f} "
                         f"(target <= 0.2: {_verdict(ratio <= 0.2, f'{0.2 - ratio:+.3f}')}); {_n(c)} vs {_n(best)}")
            if has_detail and not math.isnan(getattr(c, DETAIL)) and not math.isnan(best[DETAIL]):
                rel = getattr(c, DETAIL) / best[DETAIL] - 1
                lines.append(f"{c.config} detail ratio {getattr(c, DETAIL):.3f} vs {best.config} {best[DETAIL]:.3f}: "
                             f"{100 * rel:+.1f}% (target within 10%: "
                             f"{_verdict(abs(rel) <= 0.10, f'{100 * (0.10 - abs(rel)):+.1f} points of margin')}; "
                             f"ideal 1.0, distance {abs(getattr(c, DETAIL) - 1):.3f} vs {abs(best[DETAIL] - 1):.3f})")
    curves = table[(table.family == "cascade") & table.stage2_nfe.notna()]
    for (preset, s1), g in curves.groupby(["preset", "stage1_nfe"]):
        g = g.sort_values("stage2_nfe")
        if g.stage2_nfe.nunique() < 2:
            continue
        for metric in [m for m in (DETAIL, ACCURACY) if m in g.columns]:
            vals = ", ".join(f"{int(r.stage2_nfe)}: {getattr(r, metric):.3f}" for r in g.itertuples())
            lines.append(f"{preset} stage I {s1} NFE, {metric} by stage-II NFE: {vals}")
        if has_detail and {1, 4, 8} <= set(g.stage2_nfe.astype(int)):
            d = g.set_index(g.stage2_nfe.astype(int))[DETAIL]
            lines.append(f"{preset} stage I {s1}: detail gain 1->4 NFE {d[4] - d[1]:+.3f}, 4->8 NFE {d[8] - d[4]:+.3f} "
                         f"(target: rises, flattens by 4-8, 1 NFE measurably worse: "
                         f"{_verdict(d[4] > d[1] and abs(d[8] - d[4]) < abs(d[4] - d[1]), 'gain 4->8 below gain 1->4')})")
    return lines


def stage2_curves(table: pd.DataFrame) -> bytes:
    """All-three accuracy and detail ratio against stage-II NFE, a line per cascade and stage-I NFE; single-stage
    baselines as horizontal lines at their NFE."""
    metrics = [m for m in (ACCURACY, DETAIL) if m in table.columns]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for (preset, s1), g in table[(table.family == "cascade") & table.stage2_nfe.notna()].groupby(
                ["preset", "stage1_nfe"]):
            g = g.sort_values("stage2_nfe")
            ax.plot(g.stage2_nfe, g[metric], marker="o", label=f"{preset}, stage I {s1}")
        for r in table[table.family == "single-stage"].itertuples():
            ax.axhline(getattr(r, metric), ls="--", lw=1, color="tab:red", alpha=0.3 + 0.7 * (r.stage1_nfe == SINGLE_NFE))
            ax.annotate(f"{r.preset} {r.stage1_nfe} NFE", (0.01, getattr(r, metric)), xycoords=("axes fraction", "data"),
                        fontsize=7, color="tab:red")
        if metric == DETAIL:
            ax.axhspan(0.8, 1.2, color="tab:green", alpha=0.08, label="detail 0.8-1.2")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("stage-II NFE")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("ShapesWorld: quality against stage-II NFE (means over videos; dashed: single-stage baselines)")
    return _png(fig)
