"""ShapesWorld's report section: its targets read off a run's configuration table, with the margin of each.

Registered through the report-section seam (:func:`fvbench.report.sections.register_section`) when this module is
imported, as a third-party section would; shown when a run carries ShapesWorld's exact metrics (``sw_all_three``;
detail from ``sw_detail_ratio``). Every line says which configurations and how many videos it compares; a target
the run cannot answer (a point not in the run) says so instead of a verdict. Light to import (matplotlib loads when
the figure is drawn).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fvbench.report.sections import register_section

if TYPE_CHECKING:
    import pandas as pd

    from fvbench.report.data import RunData, Section

ACCURACY = "sw_all_three"
DETAIL = "sw_detail_ratio"
CASCADE_POINT = (30, 4)  # the targets' cascade: stage I about 30 NFE + stage II 4 NFE
SINGLE_NFE = 50
MIN_VIDEOS = 144
FLAT_FRACTION = 0.25  # "flat by 4-8": the 4->8 change is at most this fraction of the 1->4 gain


def applies(table: pd.DataFrame) -> bool:
    return ACCURACY in table.columns and table[ACCURACY].notna().any()


def _n(row) -> str:
    flag = "" if row.n >= MIN_VIDEOS else f", fewer than the {MIN_VIDEOS} the targets ask"
    return f"{int(row.n)} videos{flag}"


def _verdict(ok: bool, margin: str) -> str:
    return f"met ({margin})" if ok else f"MISSED ({margin})"


def _finite(*values) -> bool:
    return all(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values)


def _cascade_curves(table: pd.DataFrame):
    """(preset, stage-I NFE, rows sorted by stage-II NFE) of each cascade swept over stage-II NFE."""
    rows = table[(table.family == "cascade") & table.stage2_nfe.notna()]
    for (preset, s1), g in rows.groupby(["preset", "stage1_nfe"]):
        yield preset, s1, g.sort_values("stage2_nfe")


def _stage2_verdict(preset: str, s1: int, g: pd.DataFrame) -> str | None:
    """Rises with NFE, 1 NFE measurably worse, flat by 4-8, judged on detail quality = -|detail ratio - 1|."""
    by_nfe = g.set_index(g.stage2_nfe.astype(int))
    if not {1, 4, 8} <= set(by_nfe.index):
        return None
    d = by_nfe[DETAIL]
    if not _finite(d[1], d[4], d[8]):
        return (f"{preset} stage I {s1}: target rises and flattens by 4-8: not answerable (detail ratio missing at 1, "
                f"4 or 8 stage-II NFE)")
    q = {n: -abs(d[n] - 1.0) for n in (1, 4, 8)}
    gain, late = q[4] - q[1], q[8] - q[4]
    ci = by_nfe.get(f"{DETAIL} ci95")
    separated = None
    if ci is not None and all(isinstance(ci[n], tuple) for n in (1, 4)):
        (lo1, hi1), (lo4, hi4) = ci[1], ci[4]
        separated = hi1 < lo4 or hi4 < lo1  # the 95% intervals over prompts do not overlap
    worse = gain > 0 and separated is not False
    flat = abs(late) <= FLAT_FRACTION * abs(gain)
    parts = [f"1 NFE measurably worse: {'yes' if worse else 'NO'} (quality gain 1->4 {gain:+.3f}"
             + ("" if separated is None else f", 95% intervals {'separate' if separated else 'overlap'}") + ")",
             f"flat by 4-8: {'yes' if flat else 'NO'} (change 4->8 {late:+.3f}, limit {FLAT_FRACTION:g} x the 1->4 gain)"]
    verdict = "met" if worse and flat else "MISSED"
    return (f"{preset} stage I {s1}: detail ratio {d[1]:.3f} / {d[4]:.3f} / {d[8]:.3f} at 1 / 4 / 8 stage-II NFE, "
            f"quality = closeness to 1.0; target rises and flattens by 4-8: {verdict} ({'; '.join(parts)})")


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
            d_acc = round(100 * (getattr(c, ACCURACY) - best[ACCURACY]), 6)
            ratio = c.flops / best.flops
            lines.append(f"{c.config} vs best single stage {best.config}: all three {getattr(c, ACCURACY):.3f} vs "
                         f"{best[ACCURACY]:.3f} ({d_acc:+.1f} points; target no worse than -2: "
                         f"{_verdict(d_acc >= -2, f'{d_acc + 2:+.1f} points of margin')}); "
                         f"FLOPs {c.flops / 1e9:.1f} vs {best.flops / 1e9:.1f} GFLOP per video = {ratio:.3f} "
                         f"(target <= 0.2: {_verdict(ratio <= 0.2, f'{0.2 - ratio:+.3f}')}); {_n(c)} vs {_n(best)}")
            if not has_detail:
                continue
            cd, bd = getattr(c, DETAIL), best[DETAIL]
            if not _finite(cd, bd) or bd == 0:
                lines.append(f"{c.config} vs {best.config} detail: not answerable (detail ratio missing or zero)")
                continue
            rel = cd / bd - 1
            lines.append(f"{c.config} detail ratio {cd:.3f} vs {best.config} {bd:.3f}: {100 * rel:+.1f}% (target within "
                         f"10%: {_verdict(abs(rel) <= 0.10, f'{100 * (0.10 - abs(rel)):+.1f} points of margin')}; "
                         f"ideal 1.0, distance {abs(cd - 1):.3f} vs {abs(bd - 1):.3f})")
    for preset, s1, g in _cascade_curves(table):
        if g.stage2_nfe.nunique() < 2:
            continue
        for metric in [m for m in (DETAIL, ACCURACY) if m in g.columns]:
            vals = ", ".join(f"{int(r.stage2_nfe)}: {getattr(r, metric):.3f}" for r in g.itertuples())
            lines.append(f"{preset} stage I {s1} NFE, {metric} by stage-II NFE: {vals}")
        if has_detail and (line := _stage2_verdict(preset, s1, g)):
            lines.append(line)
    return lines


def stage2_curves(table: pd.DataFrame) -> bytes:
    """All-three accuracy and detail ratio against stage-II NFE, a line per cascade and stage-I NFE; single-stage
    baselines as horizontal lines at their NFE."""
    import matplotlib.pyplot as plt

    from fvbench.report.plots import png

    metrics = [m for m in (ACCURACY, DETAIL) if m in table.columns]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for preset, s1, g in _cascade_curves(table):
            g = g[g[metric].notna()]
            if len(g):
                ax.plot(g.stage2_nfe, g[metric], marker="o", label=f"{preset}, stage I {s1}")
        for r in table[(table.family == "single-stage") & table[metric].notna()].itertuples():
            ax.axhline(getattr(r, metric), ls="--", lw=1, color="tab:red", alpha=0.3 + 0.7 * (r.stage1_nfe == SINGLE_NFE))
            ax.annotate(f"{r.preset} {r.stage1_nfe} NFE", (0.01, getattr(r, metric)), xycoords=("axes fraction", "data"),
                        fontsize=7, color="tab:red")
        if metric == DETAIL:
            ax.axhspan(0.8, 1.2, color="tab:green", alpha=0.08, label="detail 0.8-1.2")
        if ax.lines and any(len(line.get_xdata()) > 1 for line in ax.lines if line.get_marker() == "o"):
            ax.set_xscale("log", base=2)
        ax.set_xlabel("stage-II NFE")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7)
    fig.suptitle("ShapesWorld: quality against stage-II NFE (means over videos; dashed: single-stage baselines)")
    return png(fig)


NOTE = ("ShapesWorld targets, from this run's means; accuracy = all three attributes right (exact detectors), detail = "
        "energy above the 16x16 limit relative to the real world (ideal 1.0).")


def section(run: RunData) -> Section | None:
    """The targets' verdicts, and quality against stage-II NFE when the run has cascades; None for other runs."""
    from fvbench.report.data import Figure, Section, Text

    table = run.table
    if not len(table) or not applies(table):
        return None
    lines = findings(table)
    blocks: list = [Text((NOTE,), "small"), Text(tuple(lines), "list")]
    if (table.family == "cascade").any():
        blocks.append(Figure("ShapesWorld: quality against stage-II NFE", png=stage2_curves(table)))
    return Section("shapesworld", "ShapesWorld targets", {"findings": lines}, tuple(blocks))


register_section("shapesworld", "fvbench.shapesworld.report_section:section", order=20, origin="fvbench.shapesworld")
