"""Pipelines by name: which generator class runs a preset, with which solvers and stage inits, and its FLOP rule.

A preset says ``pipeline: <name>`` (default ``cogvideox``: CogVideoX, FlashVideo, pixel-space U-Nets). A model family
(``fvbench/families/*.py`` or a third-party plug-in, see :mod:`fvbench.plugins`) registers a :class:`PipelineInfo`
whose ``generator`` is a :class:`~fvbench.generation.generator.Generator` subclass: it overrides what its diffusers
pipeline does differently (text encoding, latent layout, scheduler, guidance, decoding) and keeps the rest: the stage
loop, stage-prefix sharing by key, timing and the store rows. Entries are ``"module:attr"`` strings, so registering
imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from fvbench.plugins import Registry, resolve

if TYPE_CHECKING:
    from fvbench.generation.presets import Preset


@dataclass(frozen=True)
class PipelineInfo:
    """One pipeline: its generator class, the stage solvers and inits it understands, and its FLOP rule.

    ``flops`` is ``"module:function"`` with the signature of :func:`fvbench.compute.flops.preset_flops` (what one
    video costs, per stage), or "" for the CogVideoX rule. ``validate`` (optional, ``"module:function"``) checks a
    preset beyond solver and init names and raises ValueError.
    """

    name: str
    generator: str
    solvers: tuple[str, ...]
    inits: tuple[str, ...] = ("noise",)
    flops: str = ""
    validate: str = ""
    description: str = ""


PIPELINES: Registry[PipelineInfo] = Registry("pipeline")


def register_pipeline(info: PipelineInfo, *, replace: bool = False, origin: str = "") -> PipelineInfo:
    """Make ``info`` available to presets as ``pipeline: <info.name>``."""
    PIPELINES.register(info.name, info, replace=replace, origin=origin)
    return info


register_pipeline(PipelineInfo(
    "cogvideox", "fvbench.generation.generator:Generator", ("dpm++2m", "ddim", "sat-dpm++2m", "flow-euler"),
    ("noise", "upsample"),
    description="CogVideoX-style DiTs (v-prediction stage I, FlashVideo's flow stage II) and pixel-space U-Nets"))


register_pipeline(PipelineInfo(
    "composite", "fvbench.generation.composite_run:CompositeGenerator", (), (),
    flops="fvbench.generation.composite_run:composite_flops", validate="fvbench.generation.composite:validate_composite",
    description="a cross-family cascade: each stage run by its own pipeline (stage 'pipeline'), on the components "
                "its 'roles' name"))


def pipeline_info(preset: "Preset") -> PipelineInfo:
    """The registered pipeline of a preset (an unknown name lists the known ones)."""
    return PIPELINES.get_entry(preset.pipeline)


def validate_preset(preset: "Preset") -> None:
    """Raise ValueError if a stage uses a solver or init its pipeline does not know, or the pipeline's own check fails.

    A composite preset's stages are checked against their own pipelines (see :mod:`fvbench.generation.composite`).
    """
    info = pipeline_info(preset)
    if info.name == "composite":
        resolve(info.validate)(preset)
        return
    for s in preset.stages:
        if s.pipeline and s.pipeline != info.name:
            continue  # a composite's stage run by another pipeline: that pipeline's view checks it
        if s.solver not in info.solvers:
            raise ValueError(f"stage {s.name!r}: solver {s.solver!r} is not one of pipeline {info.name!r}'s: "
                             f"{', '.join(info.solvers)}")
        if s.init not in info.inits:
            raise ValueError(f"stage {s.name!r}: init {s.init!r} is not one of pipeline {info.name!r}'s: "
                             f"{', '.join(info.inits)}")
    if info.validate:
        resolve(info.validate)(preset)


def own_stages(preset: "Preset", pipeline: str) -> tuple:
    """The stages a pipeline runs: all of them, or in a cross-family view only those not given to another pipeline
    (a pipeline's ``validate`` checks these; the others are their own pipeline's business)."""
    return tuple(s for s in preset.stages if not s.pipeline or s.pipeline == pipeline)


def generator_class(preset: "Preset") -> type:
    """The Generator subclass that runs ``preset``."""
    return resolve(pipeline_info(preset).generator)


def make_generator(preset: "Preset", components: Any, device: Any = "cpu"):
    """A generator for ``preset`` on loaded ``components`` (the class its pipeline names)."""
    return generator_class(preset)(preset, components, device)


def flops_rule(preset: "Preset") -> Callable[["Preset"], dict[str, Any]] | None:
    """The pipeline's own per-video FLOP function, or None for the CogVideoX rule."""
    info = pipeline_info(preset)
    return resolve(info.flops) if info.flops else None
