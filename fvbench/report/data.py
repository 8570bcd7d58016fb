"""The report as data: what every section holds, before any HTML or Markdown exists.

A report is a :class:`ReportData`: a title and an ordered tuple of :class:`Section`. A section holds its numbers
(``values``: plain JSON-able data, what ``report.json`` gives scripts) and its layout as a few kinds of block
(:class:`Text`, :class:`Table`, :class:`Figure`, :class:`Videos`, :class:`Pre`), with every number already formatted
the one way both renderers print it. The renderers (:mod:`fvbench.report.render_html`,
:mod:`fvbench.report.render_md`) take only this data; a plug-in section uses the same blocks and needs no renderer.
Sections are computed from one :class:`RunData`, loaded once per report.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np
import pandas as pd

from fvbench.metrics.semantics import Semantics


@dataclass(frozen=True)
class Text:
    """Lines of text. ``style``: "p" (paragraphs), "small" (a caption), "warn" (a warning), "list" (bullets)."""

    lines: tuple[str, ...]
    style: str = "p"


@dataclass(frozen=True)
class Table:
    """A table of formatted cells. ``key`` leading columns are repeated in each part when a renderer splits a wide
    table; ``left`` names the text columns (left-aligned)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    key: int = 1
    left: tuple[str, ...] = ()
    title: str = ""
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    """A PNG figure: ``file`` is its name in the report folder (set by the build when a section leaves it None); the
    PNG bytes are kept out of the JSON."""

    title: str
    file: str | None = None
    png: bytes = field(default=b"", repr=False, compare=False, metadata={"json": False})


@dataclass(frozen=True)
class Video:
    """A saved video of the run (``path`` relative to the run folder) and what it shows."""

    label: str
    path: str
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Videos:
    """Videos of one prompt and sample, shown side by side."""

    caption: str
    videos: tuple[Video, ...]


@dataclass(frozen=True)
class Pre:
    """Preformatted text (provenance JSON)."""

    text: str


Block = Union[Text, Table, Figure, Videos, Pre]


@dataclass(frozen=True)
class Section:
    """One report section: a name (its registry name, and its key in ``report.json``), a heading, its numbers
    (JSON-able) and its blocks. ``level`` 1 is the
    page title; a :class:`Table`'s or :class:`Figure`'s title is a sub-heading."""

    name: str
    title: str
    values: Any = field(default_factory=dict)
    blocks: tuple[Block, ...] = ()
    level: int = 2


@dataclass(frozen=True)
class ReportData:
    """A whole report: its title, the run folder and the sections in order."""

    title: str
    run: str
    sections: tuple[Section, ...]

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-able data (what ``report.json`` holds): the title, the run, each section's values under
        its name (``answer``, ``configs``, ``provenance``, ...), and ``layout``: every section's heading and blocks in
        order, each block tagged with its kind (PNG bytes left out: a figure names its file)."""
        out: dict[str, Any] = {"title": self.title, "run": self.run}
        out.update({s.name: _plain(s.values) for s in self.sections})
        out["layout"] = [{k: v for k, v in _plain(s).items() if k != "values"} for s in self.sections]
        return json_ready(out)


def _plain(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        out = {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x) if f.metadata.get("json", True)}
        return {"kind": type(x).__name__.lower(), **out} if isinstance(x, (Text, Table, Figure, Videos, Pre)) else out
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def json_ready(x: Any) -> Any:
    """Report data as JSON: tuples as lists, NaN and missing as None, numpy scalars as Python numbers."""
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if x is pd.NA or x is pd.NaT:
        return None
    return x


def fmt(v: Any) -> str:
    """How the report prints a cell: 4 significant digits, an interval as [lo, hi], nothing for a missing value."""
    if isinstance(v, tuple):
        return "" if any(pd.isna(x) for x in v) else f"[{v[0]:.4g}, {v[1]:.4g}]"
    if isinstance(v, (float, np.floating)):
        return "" if pd.isna(v) else f"{v:.4g}"
    return "" if v is None or v is pd.NA else str(v)


def table(df: pd.DataFrame, *, key: int = 1, left: tuple[str, ...] = (), title: str = "", caption: str = "") -> Table:
    """A DataFrame as a :class:`Table` of formatted cells (column by column, no per-row Python formatting of
    numbers beyond the cells themselves)."""
    cols = [df[c].map(fmt).tolist() for c in df.columns]
    return Table(tuple(map(str, df.columns)), tuple(zip(*cols)) if cols else (), key=key, left=left, title=title,
                 caption=caption)


@dataclass(frozen=True, eq=False)
class RunData:
    """What every section reads, loaded once: the results frame, the per-configuration table, the store's info, the
    run's metrics in the run's order with their declarations, the answer, and where the report goes."""

    run_dir: Path
    df: pd.DataFrame
    table: pd.DataFrame
    info: Mapping[str, Any]
    metrics: tuple[str, ...]
    semantics: Mapping[str, Semantics]
    answer: Any  # fvbench.report.answer.Answer
    videos_per_config: int = 2

    @property
    def plan(self) -> Mapping[str, Any]:
        return self.info.get("last_plan", {}) or {}

    @property
    def done(self) -> pd.DataFrame:
        return self.df[self.df.status == "done"]
