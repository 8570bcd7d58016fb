"""Reports read only the store: the report is computed as data (sections from a registry), then rendered to a
self-contained HTML page and Markdown, and written as JSON."""

from __future__ import annotations


def __getattr__(name: str):
    """``build_report``, ``Report``, ``register_section`` on first use (``import fvbench.report`` stays light)."""
    if name in ("build_report", "Report", "compute_report", "load_run"):
        from fvbench.report import build

        return getattr(build, name)
    if name in ("register_section", "REPORT_SECTIONS", "section_names"):
        from fvbench.report import sections

        return getattr(sections, name)
    raise AttributeError(f"module 'fvbench.report' has no attribute {name!r}")
