"""ShapesWorld's plug-in: its components, exact metrics, suite, command and the default sweep, registered through the
same seams a third-party package uses (its presets stay in ``baselines/shapesworld.yaml``).

Imported by :func:`fvbench.plugins.discover`; the core names none of this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from fvbench.commands import register_command
from fvbench.generation.models.registry import (DIFFUSERS_WEIGHTS, PIXEL_GEOMETRY, ComponentType, no_files,
                                                register_component_type)
from fvbench.metrics.registry import register_metric
from fvbench.spec import register_default_families
from fvbench.suites import register_suite_dir

ORIGIN = "fvbench.shapesworld"


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
    register_component_type(_ct, origin=ORIGIN)

# exact metrics (analytic ground truth of the world), imported when used
for _key, _cls in [("colour", "ColourAccuracy"), ("shape", "ShapeAccuracy"), ("direction", "DirectionAccuracy"),
                   ("all_three", "AllThreeAccuracy"), ("detail_ratio", "DetailRatio"),
                   ("temporal_rms_px", "TemporalRMS"), ("fidelity_psnr", "FidelityPSNR"),
                   ("consistency_psnr", "ConsistencyPSNR")]:
    register_metric(f"sw_{_key}", f"fvbench.shapesworld.metrics:{_cls}", origin=ORIGIN)

# --suite shapesworld: the 18 held-out combinations (suites/shapesworld.yaml links to this file)
register_suite_dir(Path(__file__).resolve().parent / "suites", origin=ORIGIN)

# fvbench shapesworld models|train
register_command("shapesworld", "fvbench.shapesworld.cli:shapesworld", origin=ORIGIN)

# `fvbench run` without --presets: the trained cascade and single-stage baselines of each --sizes size
register_default_families(("sw-flashvideo-{size}", "sw-dit-{size}", "sw-dit-p4-{size}"), origin=ORIGIN)

# its report section (shown when a run has ShapesWorld metrics)
from fvbench.shapesworld import report_section  # noqa: E402,F401
