"""``fvbench metrics`` (what exists, what runs here, what it costs) and ``fvbench score`` (add metrics to a finished
run from its saved videos, without regenerating)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fvbench.errors import FvbenchError


@click.command()
@click.option("--vbench", "show_vbench", is_flag=True, help="Also list VBench's 16 dimensions and the weight files "
              "each is missing under $VBENCH_CACHE_DIR.")
@click.option("--time", "time_shape", metavar="FxHxW",
              help="Measure each available metric's wall time per video on a random clip of this size, e.g. 49x480x720.")
@click.option("--runs", default=3, show_default=True, help="Timed runs per metric (median reported), with --time.")
def metrics(show_vbench: bool, time_shape: str | None, runs: int) -> None:
    """List every metric: available here or exactly what is missing, direction, level, version."""
    from fvbench.metrics.registry import DEFAULT_METRICS, get_metric, list_metrics
    from fvbench.metrics.semantics import semantics

    for name in list_metrics():
        try:
            m = get_metric(name)
        except FvbenchError as e:  # a plug-in's metric that does not import: listed as such, the others still are
            click.echo(f"{name:22s} [unavailable: {e}]")
            continue
        missing = m.missing()
        status = "available" if not missing else "unavailable: " + "; ".join(missing)
        direction = semantics(name).label()
        extra = ", needs --reference" if m.needs_reference else ""
        default = ", default in runs" if name in DEFAULT_METRICS else ""
        click.echo(f"{name:22s} {m.level}-level, {direction}, v{m.version}{extra}{default}: {m.description}; "
                   f"needs {m.requires} [{status}]")
    click.echo("vbench:<dimension>     video- and set-level, out of process: fvbench score RUN --vbench-python PATH "
               "(an environment with VBench 0.1.5, built by scripts/setup_vbench_env.sh, and its weights in "
               "$VBENCH_CACHE_DIR); list with --vbench")
    if show_vbench:
        _list_vbench()
    if time_shape:
        _time_metrics(time_shape, runs)


def _list_vbench() -> None:
    from fvbench.metrics.vbench import DIMENSIONS, QUALITY, cache_dir, missing_weights

    click.echo(f"VBench dimensions (weights under {cache_dir()}, names as vbench 0.1.5 loads them with local=True):")
    for d in DIMENSIONS:
        absent = missing_weights([d])
        status = "weights present" if not absent else "missing " + "; ".join(absent)
        click.echo(f"  {d:24s} {'quality' if d in QUALITY else 'semantic'}, higher is better [{status}]")


def _time_metrics(text: str, runs: int) -> None:
    import torch

    from fvbench.metrics.cost import parse_shape, time_metric
    from fvbench.metrics.registry import get_metric, list_metrics

    shape = parse_shape(text)
    click.echo(f"wall seconds per video on a random {shape[0]}x{shape[1]}x{shape[2]} clip, CPU, "
               f"{torch.get_num_threads()} threads, median of {runs} runs after one warm-up:")
    for name in list_metrics():
        try:
            m = get_metric(name)
        except FvbenchError:
            m = None
        if m is None or m.missing():
            click.echo(f"  {name:22s} skipped (unavailable here)")
            continue
        try:
            cost = time_metric(m, shape, runs=runs)
        except Exception as e:  # one metric's failure does not hide the others' costs
            click.echo(f"  {name:22s} failed: {type(e).__name__}: {e}")
            continue
        what = "per video (feature extraction)" if m.level == "set" else "per video"
        click.echo(f"  {name:22s} {cost.seconds:8.3f} s {what}")


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


class _Printer:
    """Prints what ``score_run`` reports as it goes (VBench runs one configuration at a time, minutes each)."""

    def lost(self, lost: dict[str, str]) -> None:
        click.echo(f"{len(lost)} video(s) missing or changed on disk are not scored (rerun the run's command to "
                   f"generate them again): " + "; ".join(list(lost.values())[:5]), err=True)

    def vbench_dimensions(self, dimensions: tuple[str, ...]) -> None:
        click.echo(f"VBench dimensions of this run's prompts: {', '.join(dimensions)}")

    def vbench_scored(self, score: Any) -> None:
        """Every dimension's score (with how many videos it covers), then Quality, Semantic and Total."""
        result, config = score.result, score.config
        if score.skipped:
            click.echo(f"{config}: {score.skipped} video(s) whose prompt VBench's naming cannot represent are not "
                       f"scored")
        device = result.extra.get("device") or "?"
        click.echo(f"{config}: VBench ({score.videos} videos, standard protocol, {device}), per dimension "
                   f"(videos scored):")
        for d, v in result.per_dimension.items():
            shown = f"{v:.4f}" if v == v else "no value (none of the staged videos belongs to it)"
            click.echo(f"  {d:24s} {shown} ({len(result.per_video.get(d, {}))})")
        click.echo("  " + ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} n/a (not all its dimensions scored)"
                                    for k, v in result.totals.items()))

    def videos_scored(self, videos: int, metrics: tuple[str, ...]) -> None:
        click.echo(f"scored {videos} videos with {', '.join(metrics)} (decoded from the saved mp4s)")

    def set_metric(self, rec: Any) -> None:
        shown = f"{rec.value:.4g}" if rec.value is not None else f"failed ({rec.error})"
        click.echo(f"{rec.config}: {rec.metric} = {shown} against {rec.reference} ({rec.videos} vs "
                   f"{rec.reference_videos} videos, v{rec.version})")


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--metrics", "names", help="Comma list of metric names (fvbench metrics lists them).")
@click.option("--reference", help="Configuration label to compare against (for *_vs_ref, fvd, fid), e.g. cpu-dit-s_s1-50.")
@click.option("--vbench-python", help="Interpreter of an environment with VBench and its weights: run VBench on the videos.")
@click.option("--vbench-dimensions", help="Comma list of VBench dimensions (default: those the run's prompts belong "
              "to, as VBench_full_info.json lists them).")
@click.option("--vbench-timeout", type=float, help="Seconds before a VBench evaluation is abandoned (default: none).")
@click.option("--config", "configs", multiple=True, help="Only these configurations (VBench).")
@click.option("--device", default="auto", show_default=True,
              help="Device VBench runs on: auto = cuda when the VBench environment's torch sees a GPU, else cpu.")
def score(run_dir: Path, names: str | None, reference: str | None, vbench_python: str | None,
          vbench_dimensions: str | None, vbench_timeout: float | None, configs: tuple[str, ...], device: str) -> None:
    """Add metrics to a finished run from its saved videos (the store gains rows; nothing is regenerated)."""
    from fvbench.scoring import score_run

    score_run(run_dir, metrics=_names(names), reference=reference, vbench_python=vbench_python,
              vbench_dimensions=_names(vbench_dimensions) or None, configs=configs, device=device,
              timeout=vbench_timeout, progress=_Printer())
