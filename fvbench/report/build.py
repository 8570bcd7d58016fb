"""Build the report of a run: load it once (:func:`load_run`), compute every registered section as data
(:func:`compute_report`), then write ``report.json`` (the data), ``index.html`` (self-contained) and ``report.md``
from that data alone (:mod:`fvbench.report.render_html`, :mod:`fvbench.report.render_md`)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fvbench.errors import FvbenchError
from fvbench.report.data import Figure, ReportData, RunData, Section
from fvbench.report.sections import get_section, section_names
from fvbench.runfiles import output_dir, safe_dir, safe_path, write_atomic


@dataclass(frozen=True)
class Report:
    """A written report: its data and the three files made from it."""

    data: ReportData
    html_path: Path
    md_path: Path
    json_path: Path


def _ranking_settings(info: dict, margin: float | None) -> tuple[str | None, float | None, str]:
    """(primary metric, margin, where the margin comes from): ``report --margin``, else what the run recorded, else
    the suite's YAML declarations."""
    from fvbench.suites import suite_meta

    plan = info.get("last_plan", {})
    try:
        meta = suite_meta(str(plan.get("suite", "")))
    except FvbenchError:
        meta = None
    primary = info.get("primary_metric") or plan.get("primary_metric") or (meta.primary_metric if meta else None)
    if margin is not None:
        return primary, float(margin), "report --margin"
    recorded = info.get("margin", plan.get("margin"))
    if recorded is not None:
        return primary, float(recorded), "recorded by the run"
    if meta is not None and meta.margin is not None:
        return primary, float(meta.margin), f"suite {meta.name}'s margin"
    return primary, None, "none given: pass report --margin, or declare margin: in the suite"


def load_run(run_dir: Path, *, videos_per_config: int = 2, margin: float | None = None) -> RunData:
    """Everything the sections read, loaded and analysed once: results, configuration table, info, the run's
    metrics in its own order with their declarations, and the answer."""
    from fvbench.metrics.semantics import semantics
    from fvbench.report.answer import compute_answer
    from fvbench.report.tables import config_table, metric_columns
    from fvbench.store import load_results, open_store

    run_dir = Path(run_dir)
    df = load_results(run_dir)
    store = open_store(run_dir, readonly=True)
    try:
        info = store.info()
    finally:
        store.close()
    metrics = [c.removeprefix("metric:") for c in metric_columns(df)]
    ordered = info.get("last_plan", {}).get("metrics") or []  # the run's order: the suite's own metrics first
    metrics.sort(key=lambda m: ordered.index(m) if m in ordered else len(ordered))
    sems = {m: semantics(m) for m in metrics}
    primary, margin, margin_source = _ranking_settings(info, margin)
    answer = compute_answer(df, [sems[m] for m in metrics], primary=primary, margin=margin,
                            margin_source=margin_source)
    return RunData(run_dir, df, config_table(df), info, tuple(metrics), sems, answer, videos_per_config)


def compute_report(run: RunData, sections: Sequence[str] | None = None) -> ReportData:
    """Run every registered section (or ``sections``) in order; a section returning None is left out. Figures a
    section leaves unnamed are named ``plot<i>.png`` in page order."""
    out: list[Section] = []
    n_plots = 0
    for name in section_names() if sections is None else sections:
        fn = get_section(name)
        try:
            s = fn(run)
        except FvbenchError:
            raise
        except Exception as e:
            raise FvbenchError(f"report section {name!r} failed: {type(e).__name__}: "
                               f"{(str(e).strip().splitlines() or [''])[0][:300]}") from e
        if s is None:
            continue
        if not isinstance(s, Section):
            raise FvbenchError(f"report section {name!r} returned {type(s).__name__}, not a Section (or None)")
        blocks = []
        for b in s.blocks:
            if isinstance(b, Figure) and b.file is None:
                b = dataclasses.replace(b, file=f"plot{n_plots}.png")
                n_plots += 1
            blocks.append(b)
        out.append(dataclasses.replace(s, blocks=tuple(blocks)))
    return ReportData(f"fvbench report: {run.run_dir.name}", str(run.run_dir), tuple(out))


def build_report(run_dir: Path, out_dir: Path | None = None, *, videos_per_config: int = 2,
                 margin: float | None = None) -> Report:
    """Write ``report.json``, ``index.html`` and ``report.md`` (and the figures' PNGs) for a run, the answer section
    first; ``margin`` overrides the suite's non-inferiority margin. Default folder: RUN_DIR/report."""
    from fvbench.report.render_html import render_html
    from fvbench.report.render_md import render_markdown

    run_dir = Path(run_dir)
    # every file goes through the guarded path: no symlink at the folder or at a file name is written through
    if out_dir is not None:
        out_dir = output_dir(Path(out_dir), "--out")
    elif not os.access(run_dir, os.W_OK):
        raise FvbenchError(f"run folder {run_dir} is read-only: write the report elsewhere with --out DIR")
    run = load_run(run_dir, videos_per_config=videos_per_config, margin=margin)
    if out_dir is None:
        out_dir = safe_dir(run_dir, "report")
    data = compute_report(run)
    images = {f.file: f.png for f in data.figures()}
    for name, png in images.items():
        write_atomic(safe_path(out_dir, name), png)
    paths = {name: safe_path(out_dir, name) for name in ("report.json", "index.html", "report.md")}
    write_atomic(paths["report.json"], json.dumps(data.to_json(), indent=1, allow_nan=False))
    write_atomic(paths["index.html"], render_html(data, run_dir, images))
    write_atomic(paths["report.md"], render_markdown(data))
    return Report(data, paths["index.html"], paths["report.md"], paths["report.json"])
