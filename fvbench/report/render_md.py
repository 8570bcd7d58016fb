"""Markdown from report data (:class:`fvbench.report.data.ReportData`), nothing else.

Every piece of text is escaped as literal Markdown (:func:`fvbench.textsafe.markdown_text`: no links, images,
headings or raw HTML from the data); the only images are the report's own figures. Tables fit a laptop screen: a
table wider than :data:`MAX_WIDTH` characters is split into parts that repeat its key columns, and a cell too long
for even that is abbreviated with "…".
"""

from __future__ import annotations

import re

from fvbench.report.data import Figure, Pre, ReportData, Section, Table, Text, Videos
from fvbench.textsafe import markdown_text, printable

MAX_WIDTH = 120  # characters per Markdown table line


def _fit(text: str, width: int) -> str:
    """``text`` escaped, abbreviated with "…" until it takes at most ``width`` characters."""
    out, n = markdown_text(text), len(text)
    while len(out) > width and n > 1:
        n = max(1, min(n - 1, n - (len(out) - width)))
        out = markdown_text(text[:n - 1] + "…")
    return out


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table_lines(t: Table, max_width: int = MAX_WIDTH) -> list[list[str]]:
    """The table as one or more Markdown tables (lists of lines), none wider than ``max_width``: columns after the
    ``key`` ones are grouped greedily, each group repeating the key columns."""
    cols = [[h, *(row[j] for row in t.rows)] for j, h in enumerate(t.columns)]
    key = min(t.key, len(cols))
    key_cap = max(8, (max_width * 3 // 5 - 1) // max(1, key) - 3)  # key columns take at most ~60% of a line
    cells = [[_fit(c, key_cap if j < key else max_width - 4) for c in col] for j, col in enumerate(cols)]
    width = [max(map(len, col)) + 3 for col in cells]
    key_w = 1 + sum(width[:key])
    groups: list[list[int]] = []
    current: list[int] = []
    used = key_w
    for j in range(key, len(cells)):
        if key_w + width[j] > max_width:  # one column too wide even alone: abbreviate its cells
            cells[j] = [_fit(c, max_width - key_w - 3) for c in cols[j]]
            width[j] = max(map(len, cells[j])) + 3
        if current and used + width[j] > max_width:
            groups.append(current)
            current, used = [], key_w
        current.append(j)
        used += width[j]
    if current or not groups:
        groups.append(current)
    out = []
    for group in groups:
        idx = list(range(key)) + group
        lines = [_line([cells[j][0] for j in idx]), "|" + "---|" * len(idx)]
        lines += [_line([cells[j][r] for j in idx]) for r in range(1, len(cells[0]))]
        out.append(lines)
    return out


def _table(t: Table) -> str:
    parts = table_lines(t)
    head = f"### {markdown_text(t.title)}\n" if t.title else ""
    head += f"{markdown_text(t.caption)}\n\n" if t.caption else ""
    body = "\n\n".join("\n".join(p) for p in parts)
    if len(parts) > 1:
        head += f"(in {len(parts)} parts, each repeating the first {t.key} column(s), to fit the screen)\n\n"
    return head + body + "\n"


def _text(t: Text) -> str:
    if t.style == "list":
        return "\n".join(f"- {markdown_text(line)}" for line in t.lines) + "\n"
    if t.style == "warn":
        return "".join(f"> {markdown_text(line)}\n" for line in t.lines)
    return "".join(f"{markdown_text(line)}\n\n" for line in t.lines)


def _pre(p: Pre) -> str:
    text = printable(p.text, keep_newlines=True)
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", text)), default=0))  # longer than any run inside
    return f"{fence}\n{text}\n{fence}\n"


def _videos(v: Videos) -> str:
    return (f"{markdown_text(v.caption)}\n\n"
            + "\n".join(f"- {markdown_text(x.label)}: {markdown_text(x.path)}" for x in v.videos) + "\n")


def _figure(f: Figure) -> str:
    title = markdown_text(f.title)
    return f"### {title}\n![{title}]({f.file})\n"


RENDER = {Text: _text, Table: _table, Figure: _figure, Videos: _videos, Pre: _pre}


def section_markdown(s: Section) -> str:
    return "\n".join([f"{'#' * s.level} {markdown_text(s.title)}\n"] + [RENDER[type(b)](b) for b in s.blocks])


def render_markdown(data: ReportData) -> str:
    """The whole report as Markdown, sections in order."""
    return "\n".join(section_markdown(s) for s in data.sections)
