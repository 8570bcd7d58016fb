"""Cross-family cascades: each stage of one preset run by its own pipeline, e.g. one family's stage I and
FlashVideo's stage II (which takes pixels, so any stage I composes with it).

A composite preset (``pipeline: composite``) lists every component under its own role name; each stage names its
``pipeline`` and, in ``roles``, which components it sees under the role names that pipeline expects (``vae``,
``text_encoder``, ``tokenizer``, ...); ``options: {view: {max_text_length: 226, uncond: zeros}}`` sets the
preset-level fields that stage's pipeline reads (the frame count is one for all stages). For each stage the generator builds that pipeline's view of the preset (same
stages, components renamed) and delegates to that pipeline's generator, with the stage's own index, so seeds, prefix
sharing keys and stored rows are what a one-family preset of that stage would give.

This module is light (presets validate through it); the generator and the FLOP rule are in ``composite_run``.
"""

from __future__ import annotations

import dataclasses

from fvbench.generation.presets import Preset


def stage_view(preset: Preset, index: int) -> Preset:
    """The preset as stage ``index``'s pipeline sees it: that pipeline, the components renamed by the stage's roles.

    The other stages stay (indices, seeds and the previous stage keep their meaning); the view validates every stage
    against the pipeline of the stage it belongs to.
    """
    stage = preset.stages[index]
    comps = dict(preset.components)
    for role, name in stage.roles.items():
        comps[role] = preset.components[name]
    view = dict(stage.options.get("view") or {})  # preset-level settings of this stage's pipeline (text length...)
    fixed = {"name", "components", "stages", "pipeline", "frames", "weights"}
    unknown = sorted(set(view) - ({f.name for f in dataclasses.fields(Preset)} - fixed))
    if unknown:
        raise ValueError(f"stage {stage.name!r}: options.view sets {', '.join(unknown)}, which a stage cannot set "
                         f"(only its pipeline's preset-level settings: max_text_length, uncond, vae_encode_chunk, ...)")
    stages = tuple(dataclasses.replace(s, options={k: v for k, v in s.options.items() if k != "view"})
                   if "view" in s.options else s for s in preset.stages)
    return dataclasses.replace(preset, pipeline=stage.pipeline, components=comps, stages=stages, **view)


def validate_composite(preset: Preset) -> None:
    """Every stage names a registered pipeline (not composite) and components that exist; each stage's view is valid
    for its pipeline (solver, init, its VAE's frame and resolution rules)."""
    from fvbench.generation.pipelines import PIPELINES

    for i, s in enumerate(preset.stages):
        if not s.pipeline or s.pipeline == "composite":
            raise ValueError(f"stage {s.name!r}: a composite preset's stage names its pipeline (one of "
                             f"{', '.join(n for n in PIPELINES if n != 'composite')})")
        missing = sorted(v for v in s.roles.values() if v not in preset.components)
        if missing:
            raise ValueError(f"stage {s.name!r}: roles name components the preset does not have: {', '.join(missing)}")
        info = PIPELINES.get_entry(s.pipeline)
        if s.solver not in info.solvers or s.init not in info.inits:
            raise ValueError(f"stage {s.name!r}: pipeline {s.pipeline!r} runs solvers {', '.join(info.solvers)} and "
                             f"inits {', '.join(info.inits)}, not {s.solver!r} / {s.init!r}")
    for i in range(len(preset.stages)):
        view = stage_view(preset, i)
        view.latent_frames  # the stage's own VAE frame rule
        f = view.spatial_factor(view.stages[i])
        if view.stages[i].height % f or view.stages[i].width % f:
            raise ValueError(f"stage {view.stages[i].name!r}: resolution not divisible by {f} (its own VAE x patch)")


def text_key(preset: Preset, index: int) -> tuple:
    s = preset.stages[index]
    return (s.pipeline, tuple(sorted(s.roles.items())))
