"""ShapesWorld's plug-in: its components, registered through the same seam a third-party package uses.

Imported by :func:`fvbench.plugins.discover`; the core names none of this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from fvbench.generation.models.registry import (DIFFUSERS_WEIGHTS, PIXEL_GEOMETRY, ComponentType, no_files,
                                                register_component_type)


def _build(name: str) -> Callable[[dict[str, Any]], Any]:
    def build(config: dict[str, Any]):
        from fvbench.shapesworld import models

        return getattr(models, name)(**config)

    return build


def _load_unet(path: Path, dtype):
    from fvbench.shapesworld.models import ShapesWorldUNet

    return ShapesWorldUNet.from_pretrained(path, torch_dtype=dtype, local_files_only=True)


def _unet_multiple(config: dict[str, Any]) -> int:
    return int(config.get("patch", 1)) * 2 ** (len(config.get("channels", (32, 64, 128))) - 1)


# trained pixel-space U-Nets, label conditioning, identity VAE
for _ct in (
    ComponentType("shapesworld-unet", _build("ShapesWorldUNet"), _load_unet, DIFFUSERS_WEIGHTS,
                  spatial_multiple=_unet_multiple),
    ComponentType("identity-vae", _build("IdentityVAE"), no_files, (), weightless=True, vae=PIXEL_GEOMETRY),
    ComponentType("shapesworld-labels", _build("LabelEncoder"), no_files, (), weightless=True),
    ComponentType("shapesworld-label-tokenizer", _build("LabelTokenizer"), no_files, (), meta_ok=False,
                  weightless=True),
):
    register_component_type(_ct, origin="fvbench.shapesworld")
from fvbench.shapesworld import report_section  # noqa: E402,F401  (registers the "ShapesWorld targets" report section)
