"""Build the report of a run: a self-contained HTML page (plots and videos embedded) and a Markdown twin.

Every piece of text from the run (prompts, preset names, errors) is HTML-escaped in the page and escaped as
literal text in the Markdown (no links, images, headings or raw HTML from the data); the page loads nothing from
the network (no scripts, no external styles, images and GIFs as data: URIs).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fvbench.errors import FvbenchError
from fvbench.metrics.registry import get_metric, list_metrics
from fvbench.metrics.semantics import semantics
from fvbench.generation.presets import scope_notes
from fvbench.report import plots
from fvbench.report import shapesworld as sw_report
from fvbench.report.answer import Answer, blocks, compute_answer, json_ready, mean_scores, unit_matrix
from fvbench.report.tables import config_table, metric_columns
from fvbench.runfiles import output_dir, safe_dir, safe_path, write_atomic
from fvbench.suites import suite_meta
from fvbench.store import load_metric_errors, load_results, load_set_metrics, open_store, video_problems
from fvbench.textsafe import markdown_text, printable

CSS = """body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f0f0f0}td.l{text-align:left}img.plot{max-width:100%}figure{display:inline-block;margin:4px;text-align:center}
figcaption{font-size:11px;max-width:260px;word-wrap:break-word}.warn{color:#a40}.small{font-size:11px;color:#555}"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _img(png: bytes, alt: str) -> str:
    return f'<img class="plot" alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _gif(path: Path, max_side: int = 192) -> str | None:
    """A small GIF data URI of an mp4 (GIF plays everywhere without codecs)."""
    import imageio.v2 as imageio

    from fvbench.video import read_mp4

    try:
        frames = read_mp4(path)
    except Exception:
        return None
    step = max(1, int(np.ceil(max(frames.shape[1:3]) / max_side)))
    frames = frames[:, ::step, ::step]
    buf = io.BytesIO()
    imageio.mimsave(buf, list(frames), format="GIF", duration=0.125, loop=0)
    return "data:image/gif;base64," + base64.b64encode(buf.getvalue()).decode()


def _fmt(v) -> str:
    if isinstance(v, tuple):
        return "" if any(pd.isna(x) for x in v) else f"[{v[0]:.4g}, {v[1]:.4g}]"
    if isinstance(v, (float, np.floating)):
        return "" if pd.isna(v) else f"{v:.4g}"
    return "" if v is None else str(v)


def _html_table(df: pd.DataFrame, left: tuple[str, ...] = ("config", "preset", "family", "size")) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f'<td class="{"l" if c in left else ""}">{_e(_fmt(v))}</td>'
                                    for c, v in zip(df.columns, row)) + "</tr>" for row in df.itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>"


def _md_table(df: pd.DataFrame) -> str:
    esc = markdown_text
    lines = ["| " + " | ".join(esc(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(esc(_fmt(v)) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _unavailable() -> list[tuple[str, str]]:
    out = []
    for name in list_metrics():
        missing = get_metric(name).missing()
        if missing:
            out.append((name, "; ".join(missing)))
    return out


def _vbench_section(vb: dict[str, dict]) -> tuple[str, str, bytes | None]:
    """VBench's totals per configuration, then a table per configuration with every dimension's score, the videos it
    covers and its normalised weight in the Total; a bar chart of the dimensions when there are several."""
    from fvbench.metrics.vbench import DIMENSIONS, QUALITY, normalized

    rows = [{"config": c, **{k: v.get("totals", {}).get(k) for k in ("total", "quality", "semantic")},
             "dimensions": sum(x is not None for x in v.get("dimensions", {}).values()), "videos": v.get("videos"),
             "device": v.get("device") or ""} for c, v in sorted(vb.items())]
    note = ("VBench standard protocol, scored out of process (fvbench score --vbench-python); Total = "
            "(4 Quality + Semantic) / 5 with the official normalisation; n/a where not all dimensions were scored; "
            "dimensions = dimensions with a value")
    html_out = f"<h2>VBench</h2><p class='small'>{_e(note)}</p>{_html_table(pd.DataFrame(rows))}"
    md_out = f"## VBench\n{note}\n\n{_md_table(pd.DataFrame(rows))}\n"
    scores: dict[str, dict[str, float]] = {}
    for config, v in sorted(vb.items()):
        dims = v.get("dimensions", {})
        counts = v.get("scored_per_dimension", {})
        table = pd.DataFrame([{"dimension": d, "group": "quality" if d in QUALITY else "semantic",
                               "score": dims[d] if dims[d] is not None else float("nan"),
                               "normalised": normalized(d, dims[d]) if dims[d] is not None else float("nan"),
                               "videos scored": counts.get(d, 0),
                               "note": "" if dims[d] is not None else "no value: none of its videos in this run"}
                              for d in sorted(dims, key=lambda d: DIMENSIONS.index(d) if d in DIMENSIONS else 99)])
        scores[config] = {d: x for d, x in dims.items() if x is not None}
        caption = (f"{config}: VBench {v.get('vbench') or '?'}, {v.get('videos')} videos staged; score = VBench's "
                   "aggregate per dimension (per-video values stored as vbench:<dimension>, on the same scale); "
                   "normalised = (score - min) / (max - min) x weight, as in the Total")
        html_out += (f"<h3>{_e(config)}</h3><p class='small'>{_e(caption)}</p>"
                     + _html_table(table, left=("dimension", "group", "note")))
        md_out += f"### {config}\n{caption}\n\n{_md_table(table)}\n"
    png = plots.vbench_dimensions(scores) if sum(map(len, scores.values())) > 1 else None
    return html_out, md_out, png


def _ranking_settings(info: dict, margin: float | None) -> tuple[str | None, float | None, str]:
    """(primary metric, margin, where the margin comes from): ``report --margin``, else what the run recorded, else
    the suite's YAML declarations."""
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


def _answer_parts(answer: Answer) -> tuple[str, str]:
    """The answer section in HTML and in Markdown, from the same blocks."""
    html_out, md_out = [], []
    for i, (heading, lines, table) in enumerate(blocks(answer)):
        level = 2 if i == 0 else 3
        html_out.append(f"<h{level}>{_e(heading)}</h{level}>" + "".join(f"<p>{_e(line)}</p>" for line in lines))
        md_out.append(f"{'#' * level} {markdown_text(heading)}\n" + "".join(f"{markdown_text(line)}\n\n" for line in lines))
        if table is not None and len(table):
            html_out.append(f"<div style='overflow-x:auto'>{_html_table(table, left=('config', 'family', 'metric', 'cascade', 'baseline'))}</div>")
            md_out.append(_md_table(table) + "\n")
    return "".join(html_out), "\n".join(md_out)


def build_report(run_dir: Path, out_dir: Path | None = None, videos_per_config: int = 2,
                 margin: float | None = None) -> Path:
    """Write ``index.html``, ``report.md`` and ``report.json`` for a run; returns the HTML path. The answer section
    (:mod:`fvbench.report.answer`) comes first in all three; ``margin`` overrides the suite's non-inferiority margin."""
    run_dir = Path(run_dir)
    df = load_results(run_dir)
    # every file goes through the guarded path: no symlink at the folder or at a file name is written through
    if out_dir is not None:
        out_dir = output_dir(Path(out_dir), "--out")
    elif not os.access(run_dir, os.W_OK):
        raise FvbenchError(f"run folder {run_dir} is read-only: write the report elsewhere with --out DIR")
    else:
        out_dir = safe_dir(run_dir, "report")
    store = open_store(run_dir, readonly=True)
    try:
        info = store.info()
    finally:
        store.close()
    metric_errors = load_metric_errors(run_dir)
    table = config_table(df)
    metrics = [c.removeprefix("metric:") for c in metric_columns(df)]
    ordered = info.get("last_plan", {}).get("metrics") or []  # the run's order: the suite's own metrics first
    metrics.sort(key=lambda m: ordered.index(m) if m in ordered else len(ordered))
    sems = {m: semantics(m) for m in metrics}
    primary, margin, margin_source = _ranking_settings(info, margin)
    answer = compute_answer(df, [sems[m] for m in metrics], primary=primary, margin=margin,
                            margin_source=margin_source)
    ranked = answer.metric  # the metric heatmaps and scaling plots show (None: costs only)
    failed = df[df.status != "done"]
    html_parts: list[str] = []
    md: list[str] = []
    plan = info.get("last_plan", {})
    prov = plan.get("provenance", {})
    title = f"fvbench report: {run_dir.name}"
    html_parts.append(f"<h1>{_e(title)}</h1>")
    md.append(f"# {markdown_text(title)}\n")
    first = df.iloc[0] if len(df) else None
    summary = (f"suite {plan.get('suite', '?')} ({plan.get('suite_prompts', '?')} of {plan.get('suite_total', '?')} "
               f"prompts, {plan.get('samples', '?')} sample(s) each); {len(df)} videos in the store, "
               f"{len(failed)} failed; device {first.device if first is not None else '?'} "
               f"({first.device_name if first is not None else '?'}, {first.threads if first is not None else '?'} threads)")
    html_parts.append(f"<p>{_e(summary)}</p>")
    md.append(markdown_text(summary) + "\n")
    if len(df) and (df.preset.str.startswith(("cpu-", "tiny-"))).all():
        note = ("CPU-scale presets have random weights: quality metrics here describe random networks; costs, "
                "timings and FLOPs are real measurements.")
        html_parts.append(f'<p class="warn">{_e(note)}</p>')
        md.append(f"> {markdown_text(note)}\n")
    for note in scope_notes(list(df.preset)):
        html_parts.append(f'<p class="warn">{_e(note)}</p>')
        md.append(f"> {markdown_text(note)}\n")

    # Answer first: how to split capacity and NFEs under a budget, with paired statistics.
    answer_html, answer_md = _answer_parts(answer)
    html_parts.append(answer_html)
    md.append(answer_md)

    if len(table) and sw_report.applies(table):
        lines = sw_report.findings(table)
        note = ("ShapesWorld targets (issue 8), from this run's means; accuracy = all three attributes right (exact "
                "detectors), detail = energy above the 16x16 limit relative to the real world (ideal 1.0).")
        html_parts.append(f"<h2>ShapesWorld targets</h2><p class='small'>{_e(note)}</p><ul>" +
                          "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>")
        md.append(f"## ShapesWorld targets\n{markdown_text(note)}\n\n" + "\n".join(f"- {markdown_text(line)}" for line in lines) + "\n")

    if len(table):
        shown = table.copy()
        shown["flops"] = shown.flops / 1e12
        shown = shown.rename(columns={"flops": "TFLOP/video", "total_s": "s/video", "preview_s": "s to preview"})
        caption = ("Per configuration: means over videos; metrics as mean [95% bootstrap interval over prompts]; "
                   "s/video = wall seconds of all stages as if stage I were not shared; n = videos.")
        html_parts.append(f"<h2>Configurations</h2><p class='small'>{_e(caption)}</p>{_html_table(shown)}")
        md.append(f"## Configurations\n{markdown_text(caption)}\n\n{_md_table(shown)}\n")
    else:
        note = (f"no finished videos: all {len(df)} in the store failed (see Missing and failed below)" if len(df)
                else "no videos in the store yet")
        html_parts.append(f"<h2>Configurations</h2><p class='warn'>{_e(note)}</p>")
        md.append(f"## Configurations\n{markdown_text(note)}\n")

    figures: list[tuple[str, bytes]] = []
    if len(table):
        for m in metrics:
            if sems[m].ranks:  # a descriptive or still-rewarding metric draws no frontier
                score = mean_scores(unit_matrix(df, f"metric:{m}"), sems[m]).reindex(table.config).to_numpy(float)
                figures.append((f"Pareto: {m} against FLOPs and wall time", plots.pareto(table, m, sems[m], score)))
        for preset in table[table.family == "cascade"].preset.unique():
            if table[(table.preset == preset)].stage2_nfe.nunique() > 1 or table[table.preset == preset].stage1_nfe.nunique() > 1:
                figures.append((f"NFE split heatmaps: {preset}", plots.heatmaps(table, preset, ranked)))
        if sw_report.applies(table) and (table.family == "cascade").any():
            figures.append(("ShapesWorld: quality against stage-II NFE", sw_report.stage2_curves(table)))
        figures.append(("Time per stage and component", plots.time_bars(df)))
        if (table.family == "cascade").any():
            figures.append(("Preview latency against time to the final video", plots.preview_latency(table)))
        figures.append(("Quality and cost against parameter count", plots.params_scaling(table, ranked)))
    html_parts.append("<h2>Plots</h2>")
    md.append("## Plots\n")
    for i, (name, png) in enumerate(figures):
        write_atomic(safe_path(out_dir, f"plot{i}.png"), png)
        html_parts.append(f"<h3>{_e(name)}</h3>{_img(png, name)}")
        md.append(f"### {markdown_text(name)}\n![{markdown_text(name)}](plot{i}.png)\n")

    # Videos: for a few prompts, the stage-I preview, the cascade output and the single-stage output side by side.
    html_parts.append("<h2>Videos</h2>")
    done = df[df.status == "done"]
    picks = []
    for (family, size), g in done.groupby(["family", "size"]):
        configs = list(dict.fromkeys(g.config))
        picks.append(configs[len(configs) // 2] if family == "cascade" else configs[-1])
    for prompt_id in list(dict.fromkeys(done.prompt_id))[:videos_per_config]:
        rows = done[(done.prompt_id == prompt_id) & done.config.isin(picks)]
        if rows.empty:
            continue
        cells = []
        for r in rows.itertuples():
            for label, path in ((f"{r.config}: stage-I preview", r.s1_video_path if r.family == "cascade" else None),
                                (f"{r.config}: final", r.s2_video_path if r.family == "cascade" else r.s1_video_path)):
                if isinstance(path, str) and (run_dir / path).is_file():
                    uri = _gif(run_dir / path)
                    if uri:
                        cells.append(f'<figure><img alt="{_e(label)}" src="{uri}"><figcaption>{_e(label)}</figcaption></figure>')
        html_parts.append(f"<p><b>prompt</b> {_e(rows.prompt.iloc[0])} <span class='small'>(sample {int(rows['sample'].iloc[0])})</span></p>"
                          + "".join(cells))

    vb = {k.removeprefix("vbench:"): v for k, v in info.items() if k.startswith("vbench:")}
    if vb:
        vb_html, vb_md, vb_png = _vbench_section(vb)
        html_parts.append(vb_html)
        md.append(vb_md)
        if vb_png is not None:
            name = "VBench: per-dimension scores by configuration"
            write_atomic(safe_path(out_dir, "plot-vbench.png"), vb_png)
            html_parts.append(f"<h3>{_e(name)}</h3>{_img(vb_png, name)}")
            md.append(f"### {name}\n![{name}](plot-vbench.png)\n")

    sets = load_set_metrics(run_dir)
    if len(sets):
        table_sets = sets[["metric", "config", "value", "reference", "videos"]].assign(error=sets.error.fillna(""))
        html_parts.append(f"<h2>Set-level metrics</h2>{_html_table(table_sets, left=('metric', 'config', 'reference', 'error'))}")
        md.append(f"## Set-level metrics\n{_md_table(table_sets)}\n")

    # What is missing.
    html_parts.append("<h2>Missing and failed</h2>")
    md.append("## Missing and failed\n")
    unavailable = _unavailable()
    items = [f"metric {n} unavailable: {why}" for n, why in unavailable]
    items += [f"metric {r.metric} failed on {r.unit_hash[:12]}: {r.error}" for r in metric_errors.head(20).itertuples()]
    items += [f"video failed: {r.config} / {r.prompt_id} sample {r.sample}: {r.error}" for r in failed.head(50).itertuples()]
    items += [f"text in a numeric store column, read as missing: {b}" for b in df.attrs.get("bad_values", [])[:20]]
    lost = video_problems(run_dir, df.to_dict("records"))
    items += [f"video missing on disk: {r.config} / {r.prompt_id} sample {r.sample}: {lost[r.unit_hash]} (a rerun of "
              f"the same command generates it again)" for r in df[df.unit_hash.isin(lost)].head(50).itertuples()]
    if not items:
        items = ["nothing: every video and metric in this run succeeded"]
    html_parts.append("<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>")
    md.append("\n".join(f"- {markdown_text(i)}" for i in items) + "\n")

    provenance = {"run": str(run_dir), "git": prov.get("git") or (first.git if first is not None else None),
                  "versions": prov.get("versions") or (json.loads(first.versions) if first is not None and first.versions else {}),
                  "device": prov.get("device_name"), "suite_sha256": plan.get("suite_sha256"),
                  "command": plan.get("command"), "report_written": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    html_parts.append(f"<h2>Provenance</h2><pre>{_e(json.dumps(provenance, indent=2, default=str))}</pre>")
    prov_text = printable(json.dumps(provenance, indent=2, default=str), keep_newlines=True)
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", prov_text)), default=0))  # longer than any run inside
    md.append(f"## Provenance\n{fence}\n{prov_text}\n{fence}\n")

    page = (f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='Content-Security-Policy' "
            f"content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\"><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(html_parts)}</body></html>")
    data = {"answer": answer.to_json(), "summary": summary, "configs": table.to_dict("records"),
            "provenance": provenance}
    report_json = json.dumps(json_ready(data), indent=1, allow_nan=False)
    for name, text in (("report.json", report_json), ("index.html", page), ("report.md", "\n".join(md))):
        write_atomic(safe_path(out_dir, name), text)
    return out_dir / "index.html"
