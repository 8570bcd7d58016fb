"""Checks of stage options that plug-in modules run when a preset is built: light (no torch), imported by them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fvbench.generation.presets import StageConfig


def check_options(stage: StageConfig, known: dict[str, type | tuple[type, ...]]) -> None:
    """Raise ValueError for a stage option the pipeline does not know, or of the wrong type."""
    for key, value in stage.options.items():
        if key not in known:
            raise ValueError(f"stage {stage.name!r}: unknown option {key!r} (known: {', '.join(sorted(known))})")
        if not isinstance(value, known[key]) or isinstance(value, bool) and known[key] in (int, float, (int, float)):
            raise ValueError(f"stage {stage.name!r}: option {key!r} has the wrong type ({type(value).__name__})")
