"""``fvbench metrics`` (what exists, what runs here) and ``fvbench score`` (add metrics to a finished run)."""

from __future__ import annotations

from pathlib import Path

import click

from fvbench.errors import FvbenchError


@click.command()
def metrics() -> None:
    """List every metric: available here or exactly what is missing, direction, level, version."""
    from fvbench.metrics.registry import DEFAULT_METRICS, get_metric, list_metrics

    for name in list_metrics():
        m = get_metric(name)
        missing = m.missing()
        status = "available" if not missing else "unavailable: " + "; ".join(missing)
        direction = "higher is better" if m.higher_is_better else "lower is better"
        extra = ", needs --reference" if m.needs_reference else ""
        default = ", default in runs" if name in DEFAULT_METRICS else ""
        click.echo(f"{name:22s} {m.level}-level, {direction}, v{m.version}{extra}{default}: {m.description} [{status}]")


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--metrics", "names", required=True, help="Comma list of metric names.")
@click.option("--reference", help="Configuration label to compare against (for *_vs_ref metrics), e.g. cpu-dit-s_s1-50.")
def score(run_dir: Path, names: str, reference: str | None) -> None:
    """Add metrics to a finished run from its saved videos (the store gains rows; nothing is regenerated)."""
    from fvbench.metrics.registry import resolve, score_video
    from fvbench.runfiles import RunLock
    from fvbench.store import load_results, open_store
    from fvbench.video import read_mp4

    metric_list = resolve([n.strip() for n in names.split(",") if n.strip()])
    df = load_results(run_dir)
    df = df[(df.status == "done")]
    final = df.apply(lambda r: r["s2_video_path"] if isinstance(r.get("s2_video_path"), str) else r["s1_video_path"],
                     axis=1) if len(df) else []
    df = df.assign(final_path=final)
    if df.empty or df.final_path.isna().all():
        raise FvbenchError(f"{run_dir} has no saved final videos to score (was it run with --save-videos none?)")
    refs = {}
    if any(m.needs_reference for m in metric_list):
        if not reference:
            raise FvbenchError("metrics *_vs_ref need --reference CONFIG (a configuration label of this run)")
        ref_rows = df[df.config == reference]
        if ref_rows.empty:
            raise FvbenchError(f"no videos of configuration {reference!r} in {run_dir}; "
                               f"known: {', '.join(sorted(df.config.unique()))}")
        refs = {(r.prompt, r.sample): r.final_path for r in ref_rows.itertuples()}
    scored = 0
    with RunLock(run_dir):
        store = open_store(run_dir)
        try:
            for r in df.itertuples():
                if not isinstance(r.final_path, str):
                    continue
                video = read_mp4(Path(run_dir) / r.final_path)
                ref_path = refs.get((r.prompt, r.sample))
                ref = read_mp4(Path(run_dir) / ref_path) if ref_path else None
                store.put_metrics(r.unit_hash, score_video(metric_list, video, r.prompt, ref))
                scored += 1
        finally:
            store.close()
    click.echo(f"scored {scored} videos with {', '.join(m.name for m in metric_list)} (decoded from the saved mp4s)")
