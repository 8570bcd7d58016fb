"""The registry of report sections: each is a function ``(RunData) -> Section | None`` (None: nothing to show for
this run), run in ``order`` (then name). The core's sections register here; a plug-in registers its own with
:func:`register_section` from its plugin module (:mod:`fvbench.plugins`), e.g.
``register_section("mine", "mypkg.report:section", order=25)``. Light to import: the targets load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from fvbench.plugins import Registry

if TYPE_CHECKING:
    from fvbench.report.data import RunData, Section

SectionFn = Callable[["RunData"], "Section | None"]
DEFAULT_ORDER = 500.0

REPORT_SECTIONS: Registry[SectionFn] = Registry("report section")
_ORDER: dict[str, float] = {}


def register_section(name: str, target: SectionFn | str, *, order: float = DEFAULT_ORDER, replace: bool = False,
                     origin: str = "") -> None:
    """Add a report section: ``target`` is the function or its ``"module:attr"``; ``order`` places it (the answer
    is 10, configs 30, plots 40, provenance 100)."""
    REPORT_SECTIONS.register(name, target, replace=replace, origin=origin)
    _ORDER[name] = float(order)


def section_names() -> list[str]:
    """Every registered section, in report order."""
    return sorted(REPORT_SECTIONS, key=lambda n: (_ORDER.get(n, DEFAULT_ORDER), n))


def get_section(name: str) -> SectionFn:
    return REPORT_SECTIONS.get_entry(name)


for _name, _order in (("summary", 0), ("answer", 10), ("configs", 30), ("plots", 40), ("stage_timing", 50),
                      ("videos", 60), ("vbench", 70), ("set_metrics", 80), ("missing", 90), ("provenance", 100)):
    register_section(_name, f"fvbench.report.core:{_name}", order=_order)
