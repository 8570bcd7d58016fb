"""Light helpers for the HunyuanVideo and Mochi plug-ins: loaders and builders that import their heavy code
(:mod:`fvbench.families._hf_family`) only when called, so registering a component type imports no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def lazy_load(kind: str, cls_name: str) -> Callable[[Path, Any], Any]:
    """``_hf_family.<kind>(cls_name)`` as a component loader (``load_diffusers_model``, ``load_transformers_model``)."""

    def load(path: Path, dtype: Any):
        from fvbench.families import _hf_family

        return getattr(_hf_family, kind)(cls_name)(path, dtype)

    return load


def lazy_build(model_cls: str, config_cls: str) -> Callable[[dict[str, Any]], Any]:
    """A builder of a ``transformers`` model from its config dict (vocabulary defaults to the builtin tokenizer's)."""

    def build(config: dict[str, Any]):
        from fvbench.families._hf_family import build_transformers_model

        return build_transformers_model(model_cls, config_cls)(config)

    return build
