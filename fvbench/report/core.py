"""The core report sections (registered in :mod:`fvbench.report.sections`): each turns the run's :class:`RunData`
into a :class:`Section` of numbers and blocks, with no HTML or Markdown. Column-wise pandas over the results; the
only Python loops run over configurations, figures or the few listed rows, never over every video."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from fvbench.report.data import Figure, Pre, RunData, Section, Text, Video, Videos, fmt, table
from fvbench.report.tables import stage_name, stage_numbers, time_parts


def _random_weight_presets(presets) -> list[str]:
    """The run's presets whose weights are built in code (random, seeded), as their definitions say; presets this
    machine does not know are left out rather than guessed from their names."""
    from fvbench.generation.presets import all_presets

    known = all_presets()
    return [p for p in dict.fromkeys(presets) if p in known and known[p].builtin]


def summary(run: RunData) -> Section:
    """The page title, what the run is, and notes on what its numbers mean."""
    from fvbench.generation.presets import scope_notes

    df, plan = run.df, run.plan
    failed = int((df.status != "done").sum())
    first = df.iloc[0] if len(df) else None
    device = {k: (None if first is None else first[k]) for k in ("device", "device_name", "threads")}
    text = (f"suite {plan.get('suite', '?')} ({plan.get('suite_prompts', '?')} of {plan.get('suite_total', '?')} "
            f"prompts, {plan.get('samples', '?')} sample(s) each); {len(df)} videos in the store, {failed} failed; "
            f"device {device['device'] or '?'} ({device['device_name'] or '?'}, {device['threads'] or '?'} threads)")
    notes = []
    random = _random_weight_presets(df.preset)
    if random:
        notes.append(f"{', '.join(random)} {'has' if len(random) == 1 else 'have'} random weights (built in code): "
                     "quality metrics of these presets describe random networks; costs, timings and FLOPs are real "
                     "measurements.")
    notes += scope_notes(list(df.preset))
    values = {"suite": plan.get("suite"), "suite_prompts": plan.get("suite_prompts"),
              "suite_total": plan.get("suite_total"), "samples": plan.get("samples"), "videos": len(df),
              "failed": failed, **device, "random_weight_presets": random, "notes": notes}
    blocks = [Text((text,))] + ([Text(tuple(notes), "warn")] if notes else [])
    return Section("summary", f"fvbench report: {run.run_dir.name}", values, tuple(blocks), level=1)


def answer(run: RunData) -> Section:
    """How to split capacity and NFEs under a budget (:mod:`fvbench.report.answer`), first."""
    from fvbench.report.answer import blocks as answer_blocks

    parts = answer_blocks(run.answer)
    (title, lines, _), rest = parts[0], parts[1:]
    blocks: list = [Text(tuple(lines))]
    for heading, lines, df in rest:
        if df is not None and len(df):
            blocks.append(table(df, key=2 if "cascade" in df.columns else 1, title=heading, caption=" ".join(lines),
                                left=("config", "family", "metric", "cascade", "baseline")))
        else:
            blocks.append(Text(tuple(lines)))
    return Section("answer", title, run.answer.to_json(), tuple(blocks))


def configs(run: RunData) -> Section:
    """Per configuration: identity and costs, then each metric's mean with its 95% interval over prompts."""
    t = run.table
    if t.empty:
        note = (f"no finished videos: all {len(run.df)} in the store failed (see Missing and failed below)"
                if len(run.df) else "no videos in the store yet")
        return Section("configs", "Configurations", [], (Text((note,), "warn"),))
    nfe = [c for c in t.columns if c.startswith("stage") and c.endswith("_nfe")]
    ident = t[[c for c in ("config", "preset", "family", "size", *nfe, "n", "prompts", "params") if c in t]].copy()
    ident["TFLOP/video"] = t.flops / 1e12
    ident["s/video"] = t.total_s
    ident["s to preview"] = t.preview_s
    ident = ident.rename(columns={c: f"NFE {stage_name(int(c[5:-4])).removeprefix('stage ')}" for c in nfe})
    caption = ("Per configuration: means over videos; s/video = wall seconds of all stages as if stage I were not "
               "shared; n = videos; params = transformer parameters of all stages.")
    blocks: list = [table(ident, left=("config", "preset", "family", "size"), caption=caption)]
    metrics = [m for m in run.metrics if m in t]
    if metrics:
        cols = {"config": t.config}
        for m in metrics:  # "mean [lo, hi]" in one cell: a metric's interval stays beside its mean when split
            cols[m] = (t[m].map(fmt) + " " + t[f"{m} ci95"].map(fmt)).str.strip()
        blocks.append(table(pd.DataFrame(cols), title="Metrics per configuration",
                            caption="mean over prompts of each prompt's mean [95% bootstrap interval over prompts]; "
                                    + "; ".join(f"{m}: {run.semantics[m].label()}" for m in metrics)))
    return Section("configs", "Configurations", t.to_dict("records"), tuple(blocks))


def plots(run: RunData) -> Section | None:
    """Pareto fronts of every ranking metric, NFE-split heatmaps, preview latency, quality and cost by size."""
    from fvbench.report import plots as p
    from fvbench.report.answer import mean_scores, unit_matrix

    t = run.table
    if t.empty:
        return None
    ranked = run.answer.metric
    figures = []
    for m in run.metrics:
        sem = run.semantics[m]
        if sem.ranks and m in t:  # a descriptive or still-rewarding metric draws no frontier
            score = mean_scores(unit_matrix(run.df, f"metric:{m}"), sem).reindex(t.config).to_numpy(float)
            figures.append(Figure(f"Pareto: {m} against FLOPs and wall time", png=p.pareto(t, m, sem, score)))
    cascades = t[t.family == "cascade"]
    for preset, g in cascades.groupby("preset", sort=False):
        if g.stage2_nfe.nunique() > 1 or g.stage1_nfe.nunique() > 1:
            figures.append(Figure(f"NFE split heatmaps: {preset}", png=p.heatmaps(t, preset, ranked)))
    if len(cascades):
        figures.append(Figure("Preview latency against time to the final video", png=p.preview_latency(t)))
    figures.append(Figure("Quality and cost against parameter count", png=p.params_scaling(t, ranked)))
    return Section("plots", "Plots", {"figures": [f.title for f in figures], "ranked_metric": ranked},
                   tuple(figures))


def stage_timing(run: RunData) -> Section | None:
    """Mean wall seconds per video of every stage's parts, per configuration (any number of stages)."""
    from fvbench.report import plots as p

    done = run.done
    if done.empty:
        return None
    parts = time_parts(done)
    means = done.groupby("config", sort=False)[[c for c, _ in parts]].mean()
    shown = means.rename(columns=dict(parts)).reset_index()
    caption = ("mean wall seconds per video; a shared stage is counted in full in every configuration that uses it; "
               "empty = the configuration has no such part")
    values = {"parts": dict(parts), "seconds": means.to_dict("index")}
    figure = Figure("Time per stage and component", png=p.time_bars(done, parts))
    return Section("stage_timing", "Time per stage", values, (table(shown, caption=caption), figure))


def _final_and_previews(row: pd.Series) -> list[tuple[str, str]]:
    """(label, path) of a row's intermediate stage videos (previews) and its final video."""
    n = int(row.get("n_stages") or 0) if pd.notna(row.get("n_stages")) else 0
    n = n or max((i for i in stage_numbers(row.index, "video_path") if isinstance(row.get(f"s{i}_video_path"), str)),
                 default=0)
    out = [(f"{row.config}: {stage_name(i)} preview", row.get(f"s{i}_video_path")) for i in range(1, n)]
    final = row.get("final_video_path")
    out.append((f"{row.config}: final", final if isinstance(final, str) else row.get(f"s{n}_video_path")))
    return [(label, path) for label, path in out if isinstance(path, str) and path]


def videos(run: RunData) -> Section:
    """For a few prompts: the middle cascade configuration and the largest single-stage one of each family and size,
    every intermediate stage's preview beside the final video."""
    done = run.done
    picks = []
    for (family, _), g in done.groupby(["family", "size"], sort=False):
        configs = list(dict.fromkeys(g.config))
        picks.append(configs[len(configs) // 2] if family == "cascade" else configs[-1])
    shown = done[done.config.isin(picks)]
    groups = []
    for prompt_id in list(dict.fromkeys(shown.prompt_id))[:run.videos_per_config]:
        rows = shown[shown.prompt_id == prompt_id]
        vids = tuple(Video(label, path, *_size(row, label)) for _, row in rows.iterrows()
                     for label, path in _final_and_previews(row) if (run.run_dir / path).is_file())
        if vids:
            groups.append(Videos(f"prompt {rows.prompt.iloc[0]} (sample {int(rows['sample'].iloc[0])})", vids))
    if not groups:
        groups_or_note: tuple = (Text(("no saved videos to show (run with --save-videos, or all failed)",), "small"),)
    else:
        groups_or_note = tuple(groups)
    return Section("videos", "Videos", {"videos": [{"caption": g.caption, "videos": [v.__dict__ for v in g.videos]}
                                                   for g in groups]}, groups_or_note)


def _size(row: pd.Series, label: str) -> tuple[int | None, int | None]:
    """The stored (width, height) of the stage a video label names (final = the last stage)."""
    n = int(row.get("n_stages")) if pd.notna(row.get("n_stages")) else 1
    i = n
    for k in range(1, n):
        if label.endswith(f"{stage_name(k)} preview"):
            i = k
    w, h = row.get(f"s{i}_width"), row.get(f"s{i}_height")
    return (int(w) if pd.notna(w) else None, int(h) if pd.notna(h) else None)


def vbench(run: RunData) -> Section | None:
    """VBench's totals per configuration, then each configuration's dimensions with their normalised weights."""
    from fvbench.metrics.vbench import DIMENSIONS, QUALITY, normalized
    from fvbench.report import plots as p

    vb = {k.removeprefix("vbench:"): v for k, v in run.info.items() if k.startswith("vbench:")}
    if not vb:
        return None
    totals = pd.DataFrame([{"config": c, **{k: v.get("totals", {}).get(k) for k in ("total", "quality", "semantic")},
                            "dimensions": sum(x is not None for x in v.get("dimensions", {}).values()),
                            "videos": v.get("videos"), "device": v.get("device") or ""} for c, v in sorted(vb.items())])
    note = ("VBench standard protocol, scored out of process (fvbench score --vbench-python); Total = "
            "(4 Quality + Semantic) / 5 with the official normalisation; n/a where not all dimensions were scored; "
            "dimensions = dimensions with a value")
    blocks: list = [Text((note,), "small"), table(totals, left=("config", "device"))]
    scores: dict[str, dict[str, float]] = {}
    for config, v in sorted(vb.items()):
        dims = v.get("dimensions", {})
        counts = v.get("scored_per_dimension", {})
        order = sorted(dims, key=lambda d: DIMENSIONS.index(d) if d in DIMENSIONS else 99)
        rows = pd.DataFrame([{"dimension": d, "group": "quality" if d in QUALITY else "semantic",
                              "score": dims[d] if dims[d] is not None else float("nan"),
                              "normalised": normalized(d, dims[d]) if dims[d] is not None else float("nan"),
                              "videos scored": counts.get(d, 0),
                              "note": "" if dims[d] is not None else "no value: none of its videos in this run"}
                             for d in order])
        scores[config] = {d: x for d, x in dims.items() if x is not None}
        caption = (f"{config}: VBench {v.get('vbench') or '?'}, {v.get('videos')} videos staged; score = VBench's "
                   "aggregate per dimension (per-video values stored as vbench:<dimension>, on the same scale); "
                   "normalised = (score - min) / (max - min) x weight, as in the Total")
        blocks.append(table(rows, title=config, caption=caption, left=("dimension", "group", "note")))
    if sum(map(len, scores.values())) > 1:
        blocks.append(Figure("VBench: per-dimension scores by configuration", "plot-vbench.png",
                             p.vbench_dimensions(scores)))
    return Section("vbench", "VBench", {"vbench": vb}, tuple(blocks))


def set_metrics(run: RunData) -> Section | None:
    """Set-level metrics (FVD, FID): one value per metric and configuration against a reference set."""
    from fvbench.store import load_set_metrics

    sets = load_set_metrics(run.run_dir)
    if not len(sets):
        return None
    shown = sets[["metric", "config", "value", "reference", "videos"]].assign(error=sets.error.fillna(""))
    return Section("set_metrics", "Set-level metrics", {"set_metrics": shown.to_dict("records")},
                   (table(shown, key=2, left=("metric", "config", "reference", "error")),))


def unavailable_metrics(info) -> tuple[list[tuple[str, str]], str]:
    """(metric, why) of the metrics that could not be computed, and where that judgement comes from: the run's
    ``metrics_at_run`` (what the machine that ran the sweep could compute) when it recorded it; for older runs, the
    registered metrics as judged on the machine writing the report."""
    recorded = info.get("metrics_at_run")
    if isinstance(recorded, dict) and recorded:
        out = []
        for name, d in sorted(recorded.items()):
            d = d if isinstance(d, dict) else {}
            missing = [str(x) for x in (d.get("missing") or [])]
            if not d.get("available", not missing):
                out.append((name, "; ".join(missing) or "not available"))
        return out, "as recorded by the machine that ran the sweep"
    from fvbench.metrics.registry import get_metric, list_metrics

    out = [(n, "; ".join(miss)) for n in list_metrics() if (miss := get_metric(n).missing())]
    return out, ("this run did not record which metrics its machine could compute (an older run): judged on the "
                 "machine writing this report")


def _video_rows(df: pd.DataFrame) -> list[dict]:
    """The finished rows as :func:`fvbench.store.video_problems` takes them (unit_hash, status, videos [(stage, path,
    bytes)]), built from the stage columns at once rather than through a per-row dict of every column."""
    done = df[df.status == "done"]
    stages = stage_numbers(done.columns, "video_path")
    cols = [(i, done[f"s{i}_video_path"].to_numpy(object),
             done[f"s{i}_video_bytes"].to_numpy(float) if f"s{i}_video_bytes" in done else np.full(len(done), np.nan))
            for i in stages]
    return [{"unit_hash": h, "status": "done", "videos": [(i, p[k], b[k]) for i, p, b in cols if isinstance(p[k], str)]}
            for k, h in enumerate(done.unit_hash.to_numpy(object))]


def missing(run: RunData) -> Section:
    """Metrics unavailable (as the run recorded it), metric and video failures, text in numeric columns, videos
    missing on disk."""
    from fvbench.store import load_metric_errors, video_problems

    df = run.df
    failed = df[df.status != "done"]
    unavailable, source = unavailable_metrics(run.info)
    errors = load_metric_errors(run.run_dir)
    items = [f"metric {n} unavailable: {why}" for n, why in unavailable]
    items += [f"metric {r.metric} failed on {r.unit_hash[:12]}: {r.error}" for r in errors.head(20).itertuples()]
    items += [f"video failed: {r.config} / {r.prompt_id} sample {r.sample}: {r.error}"
              for r in failed.head(50).itertuples()]
    items += [f"text in a numeric store column, read as missing: {b}" for b in df.attrs.get("bad_values", [])[:20]]
    lost = video_problems(run.run_dir, _video_rows(df))
    items += [f"video missing on disk: {r.config} / {r.prompt_id} sample {r.sample}: {lost[r.unit_hash]} (a rerun of "
              f"the same command generates it again)" for r in df[df.unit_hash.isin(lost)].head(50).itertuples()]
    if not items:
        items = ["nothing: every video and metric in this run succeeded"]
    values = {"unavailable": dict(unavailable), "availability": source, "metric_errors": len(errors),
              "failed_videos": len(failed), "videos_missing_on_disk": len(lost),
              "bad_values": list(df.attrs.get("bad_values", []))}
    return Section("missing", "Missing and failed", values,
                   (Text((f"metric availability: {source}",), "small"), Text(tuple(items), "list")))


def provenance(run: RunData) -> Section:
    """Where the run came from: git, versions, device, suite hash, the command, and when the report was written."""
    df, plan = run.df, run.plan
    prov = plan.get("provenance", {})
    first = df.iloc[0] if len(df) else None
    versions = prov.get("versions")
    if not versions and first is not None and isinstance(first.versions, str) and first.versions:
        versions = json.loads(first.versions)
    values = {"run": str(run.run_dir), "git": prov.get("git") or (first.git if first is not None else None),
              "versions": versions or {}, "device": prov.get("device_name"), "suite_sha256": plan.get("suite_sha256"),
              "command": plan.get("command"), "report_written": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    return Section("provenance", "Provenance", values, (Pre(json.dumps(values, indent=2, default=str)),))


__all__ = ["summary", "answer", "configs", "plots", "stage_timing", "videos", "vbench", "set_metrics",
           "missing", "provenance", "unavailable_metrics"]
