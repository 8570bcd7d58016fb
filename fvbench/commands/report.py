"""``fvbench report`` (HTML + Markdown of a run) and ``fvbench check`` (the regression gate)."""

from __future__ import annotations

from pathlib import Path

import click

from fvbench.errors import FvbenchError
from fvbench.textsafe import printable


def _run_dir(run_dir: Path | None) -> Path:
    from fvbench.paths import default_runs_dir
    from fvbench.runfiles import latest_run

    return run_dir if run_dir is not None else latest_run(default_runs_dir())


@click.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default RUN_DIR/report).")
@click.option("--margin", type=click.FloatRange(min=0), help="Non-inferiority margin of the answer, in the ranking "
              "metric's score (e.g. 0.02 = 2 points of accuracy); default: the suite's margin, if it declares one.")
def report(run_dir: Path | None, out: Path | None, margin: float | None) -> None:
    """Write RUN_DIR's report (default: the latest run): index.html (self-contained), report.md and report.json, the
    answer section first."""
    from fvbench.report import build_report

    run = _run_dir(run_dir)
    rep = build_report(run, out, margin=margin)
    click.echo(f"report of {run}: {rep.html_path} (and {rep.md_path}, {rep.json_path})")


@click.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--baseline", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--update", is_flag=True, help="Rewrite the baseline from this run (on purpose).")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="JUnit XML path (default RUN_DIR/check.xml).")
def check(run_dir: Path | None, baseline: Path, update: bool, junit: Path | None) -> None:
    """Compare a run with a committed baseline. Exit 0: passed; 1: a regression; 2: bad input (unreadable run,
    baseline of the wrong shape)."""
    from fvbench.check import compare, load_baseline, write_baseline, write_junit
    from fvbench.runfiles import output_file
    from fvbench.store import load_results

    run = _run_dir(run_dir)
    # every output path is checked before any work, so a bad one cannot turn a passing check into a failure
    if update:
        baseline = output_file(baseline, "--baseline")
    else:
        junit = output_file(junit if junit is not None else run / "check.xml", "--junit")
    df = load_results(run)
    if df.empty or not (df.status == "done").any():
        raise FvbenchError(f"{run} has no finished videos to check")
    if df.attrs.get("bad_values"):
        raise FvbenchError(f"{run}: the store holds text where numbers belong ({df.attrs['bad_values'][0]}"
                           f"{' and more' if len(df.attrs['bad_values']) > 1 else ''}); a gate does not pass on "
                           f"edited results: rerun into a new --out folder")
    if update:
        write_baseline(df, baseline, note=f"written by fvbench check --update from {run.name}")
        click.echo(f"baseline rewritten: {baseline}")
        return
    results = compare(df, load_baseline(baseline))
    width = max(len(r.name) for r in results) if results else 10
    for r in results:
        click.echo(printable(f"{r.status.upper():9s} {r.name:{width}s}  {r.detail}"))
    write_junit(results, junit)
    regressed = [r for r in results if r.status == "regressed"]
    click.echo(f"{len(results) - len(regressed)} passed or skipped, {len(regressed)} regressed; JUnit XML: {junit}")
    if regressed:
        raise click.exceptions.Exit(1)
