"""A self-contained HTML page from report data (:class:`fvbench.report.data.ReportData`), nothing else.

Every piece of text from the run (prompts, preset names, errors) is HTML-escaped; the page loads nothing from the
network (no scripts, no external styles, images and GIFs as data: URIs). Wide tables scroll inside their own box;
videos are shown as GIFs at least :data:`MIN_VIDEO_PX` wide, small ones upscaled nearest-neighbour so their pixels
stay visible.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from fvbench.report.data import Figure, Pre, ReportData, Section, Table, Text, Videos

MIN_VIDEO_PX = 320  # shown width of a video, at least
MAX_VIDEO_PX = 640  # larger videos are downsampled to about this width (the GIF stays small)

CSS = """body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}
.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font-size:12px;margin:0.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}th{background:#f0f0f0}
td.l{text-align:left}img.plot{max-width:100%}
figure{display:inline-block;margin:4px;text-align:center;vertical-align:top}
img.video{image-rendering:pixelated;image-rendering:crisp-edges;min-width:320px}
figcaption{font-size:11px;max-width:640px;word-wrap:break-word}.warn{color:#a40}.small{font-size:11px;color:#555}"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def video_frames_for_display(frames: np.ndarray, min_px: int = MIN_VIDEO_PX, max_px: int = MAX_VIDEO_PX) -> np.ndarray:
    """(T, H, W, C) frames at a size worth looking at: narrower than ``min_px`` -> repeated by an integer factor
    (nearest neighbour, no blur); wider than ``max_px`` -> every k-th pixel."""
    width = frames.shape[2]
    if width < min_px:
        k = math.ceil(min_px / width)
        return frames.repeat(k, axis=1).repeat(k, axis=2)
    step = max(1, math.ceil(width / max_px))
    return frames[:, ::step, ::step]


def gif_uri(path: Path) -> tuple[str, int] | None:
    """A GIF data URI of an mp4 (GIF plays everywhere without codecs) and its width; None when unreadable."""
    import imageio.v2 as imageio

    from fvbench.video import read_mp4

    try:
        frames = read_mp4(path)
    except Exception:
        return None
    frames = video_frames_for_display(np.asarray(frames))
    buf = io.BytesIO()
    imageio.mimsave(buf, list(frames), format="GIF", duration=0.125, loop=0)
    return "data:image/gif;base64," + base64.b64encode(buf.getvalue()).decode(), int(frames.shape[2])


def _table(t: Table) -> str:
    head = f"<h3>{_e(t.title)}</h3>" if t.title else ""
    head += f"<p class='small'>{_e(t.caption)}</p>" if t.caption else ""
    th = "".join(f"<th>{_e(c)}</th>" for c in t.columns)
    left = [c in t.left for c in t.columns]
    body = "".join("<tr>" + "".join(f'<td class="{"l" if lf else ""}">{_e(v)}</td>' for v, lf in zip(row, left))
                   + "</tr>" for row in t.rows)
    return f"{head}<div class='scroll'><table><tr>{th}</tr>{body}</table></div>"


def _text(t: Text) -> str:
    if t.style == "list":
        return "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in t.lines) + "</ul>"
    cls = {"warn": " class='warn'", "small": " class='small'"}.get(t.style, "")
    return "".join(f"<p{cls}>{_e(line)}</p>" for line in t.lines)


def render_html(data: ReportData, run_dir: Path, images: Mapping[str, bytes]) -> str:
    """The page. ``images``: figure file name -> PNG bytes (embedded); videos are read from ``run_dir``."""

    def figure(f: Figure) -> str:
        png = images.get(f.file or "", f.png)
        uri = base64.b64encode(png).decode()
        return f'<h3>{_e(f.title)}</h3><img class="plot" alt="{_e(f.title)}" src="data:image/png;base64,{uri}">'

    def videos(v: Videos) -> str:
        cells = []
        for x in v.videos:
            got = gif_uri(Path(run_dir) / x.path)
            if got:
                uri, width = got
                cells.append(f'<figure><img class="video" width="{max(width, MIN_VIDEO_PX)}" alt="{_e(x.label)}" '
                             f'src="{uri}"><figcaption>{_e(x.label)}</figcaption></figure>')
        return f"<p>{_e(v.caption)}</p>" + "".join(cells)

    render: dict[type, Callable] = {Text: _text, Table: _table, Figure: figure, Videos: videos,
                                    Pre: lambda p: f"<pre>{_e(p.text)}</pre>"}

    def section(s: Section) -> str:
        return f"<h{s.level}>{_e(s.title)}</h{s.level}>" + "".join(render[type(b)](b) for b in s.blocks)

    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width, initial-scale=1'><meta http-equiv='Content-Security-Policy' "
            f"content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\"><title>{_e(data.title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(section(s) for s in data.sections)}</body></html>")
