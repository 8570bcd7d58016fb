"""Report figures (matplotlib, Agg backend, PNG bytes)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fvbench.metrics.semantics import Semantics  # noqa: E402
from fvbench.report.tables import pareto_front  # noqa: E402

COLORS = {"cascade": "tab:blue", "single-stage": "tab:red"}


def png(fig) -> bytes:
    """A finished matplotlib figure as PNG bytes (tight layout, 110 dpi); the figure is closed."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _split(row) -> str:
    return f"{row.stage1_nfe}/{int(row.stage2_nfe)}" if pd.notna(row.stage2_nfe) else f"{row.stage1_nfe}"


def pareto(table: pd.DataFrame, metric: str, sem: Semantics, score: np.ndarray | None = None) -> bytes:
    """Metric against FLOPs and against wall time, a series per family, the frontier drawn, NFE splits labelled.
    The frontier follows ``score`` (per table row, higher is better; the report passes the mean per-video score),
    else the metric's score of the plotted means (value, -value or -|value - target|)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, cost, label in ((axes[0], "flops", "FLOPs per video"), (axes[1], "total_s", "wall s per video (all stages)")):
        for (family, size), g in table.groupby(["family", "size"]):
            ax.scatter(g[cost], g[metric], label=f"{family} {size}", color=COLORS.get(family), alpha=0.8,
                       marker="o" if family == "cascade" else "s")
            # by column, not itertuples(): a metric name such as "vbench:temporal_flickering" is no attribute name
            for row, x, y in zip(g.itertuples(), g[cost], g[metric]):
                ax.annotate(_split(row), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        x, y = table[cost].to_numpy(float), table[metric].to_numpy(float)
        front = pareto_front(x, sem.score(y) if score is None else np.asarray(score, float))
        if len(front):
            ax.plot(x[front], y[front], "k--", lw=1, label="Pareto frontier")
        if cost == "flops":
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"{metric} ({sem.label()})")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{metric} vs cost (labels: stage-I/stage-II NFE)")
    return png(fig)


def heatmaps(table: pd.DataFrame, preset: str, metric: str | None) -> bytes:
    """Stage-I NFE x stage-II NFE grids of a cascade preset: the metric, FLOPs and wall time per video."""
    g = table[(table.preset == preset) & table.stage2_nfe.notna()]
    panels = ([(metric, metric)] if metric else []) + [("flops", "FLOPs/video"), ("total_s", "wall s/video")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    axes = np.atleast_1d(axes)
    for ax, (col, title) in zip(axes, panels):
        grid = g.pivot_table(index="stage1_nfe", columns="stage2_nfe", values=col)
        im = ax.imshow(grid.to_numpy(float), cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(len(grid.columns)), [str(int(c)) for c in grid.columns])
        ax.set_yticks(range(len(grid.index)), [str(int(i)) for i in grid.index])
        ax.set_xlabel("stage-II NFE")
        ax.set_ylabel("stage-I NFE")
        ax.set_title(title, fontsize=9)
        for (i, j), v in np.ndenumerate(grid.to_numpy(float)):
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", color="w", fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(preset)
    return png(fig)


def time_bars(done: pd.DataFrame, parts: list[tuple[str, str]]) -> bytes:
    """Stacked mean wall time per video by stage and component (``parts``: column, label), per configuration."""
    cols = [c for c, _ in parts]
    means = done.groupby("config", sort=False)[cols].mean().fillna(0.0)
    fig, ax = plt.subplots(figsize=(11, max(3.0, 0.28 * len(means) + 1)))
    left = np.zeros(len(means))
    for c, label in parts:
        ax.barh(means.index, means[c], left=left, label=label)
        left += means[c].to_numpy()
    ax.set_xlabel("mean wall seconds per video (a shared stage counted in full)")
    ax.invert_yaxis()
    ax.legend(fontsize=8, ncol=4)
    ax.tick_params(axis="y", labelsize=7)
    return png(fig)


def preview_latency(table: pd.DataFrame) -> bytes:
    """Time to the stage-I preview against time to the final video; single-stage times as reference lines."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    casc = table[table.family == "cascade"]
    ax.scatter(casc.preview_s, casc.total_s, color=COLORS["cascade"], label="cascade configurations")
    for row in casc.itertuples():
        ax.annotate(_split(row), (row.preview_s, row.total_s), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for row in table[table.family == "single-stage"].itertuples():
        ax.axhline(row.total_s, color=COLORS["single-stage"], lw=0.8, ls=":")
        ax.text(ax.get_xlim()[0] if len(casc) else 0, row.total_s, f" {row.config}", fontsize=7,
                color=COLORS["single-stage"], va="bottom")
    ax.set_xlabel("s to the stage-I preview (text + stage I)")
    ax.set_ylabel("s to the final video")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png(fig)


def params_scaling(table: pd.DataFrame, metric: str | None) -> bytes:
    """Quality and cost against transformer parameter count (stage I + stage II)."""
    panels = [("flops", "FLOPs/video"), ("total_s", "wall s/video")] + ([(metric, metric)] if metric else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (col, title) in zip(np.atleast_1d(axes), panels):
        for family, g in table.groupby("family"):
            ax.scatter(g.params, g[col], color=COLORS.get(family), label=family, alpha=0.7)
        ax.set_xscale("log")
        ax.set_xlabel("transformer parameters (stage I + stage II)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    return png(fig)


def vbench_dimensions(scores: dict[str, dict[str, float]]) -> bytes:
    """VBench's per-dimension scores, a bar per configuration in each dimension (dimensions without a value left out)."""
    dims = list(dict.fromkeys(d for per in scores.values() for d in per))
    configs = list(scores)
    width = 0.8 / max(1, len(configs))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(dims) * max(1, len(configs)) ** 0.5 + 2), 3.8))
    for k, config in enumerate(configs):
        xs = [i + (k - (len(configs) - 1) / 2) * width for i in range(len(dims))]
        ax.bar(xs, [scores[config].get(d, np.nan) for d in dims], width, label=config)
    ax.set_xticks(range(len(dims)), dims, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("VBench score (higher is better)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return png(fig)
