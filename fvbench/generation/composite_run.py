"""The cross-family cascade's generator and FLOP rule (see :mod:`fvbench.generation.composite`)."""

from __future__ import annotations

from typing import Any

from fvbench.generation.composite import stage_view, text_key
from fvbench.generation.generator import Components, Generator, StageOutput
from fvbench.generation.presets import Preset


def _view_components(preset: Preset, components: Components, index: int) -> Components:
    mods = dict(components.modules)
    for role, name in preset.stages[index].roles.items():
        mods[role] = components.modules[name]
    return Components(mods["tokenizer"], mods["text_encoder"], mods["vae"], components.transformers, mods)


class CompositeGenerator(Generator):
    """Runs each stage with its own pipeline's generator; text is encoded once per (pipeline, text components)."""

    def __init__(self, preset: Preset, components: Components, device: Any = "cpu", keep_pixels: bool = False):
        super().__init__(preset, components, device, keep_pixels)
        from fvbench.generation.pipelines import make_generator

        self.views = [make_generator(stage_view(preset, i), _view_components(preset, components, i), device)
                      for i in range(len(preset.stages))]
        for v in self.views:
            v.keep_pixels = keep_pixels

    def encode_text(self, prompt: str) -> tuple[dict, float]:
        texts: dict[tuple, Any] = {}
        seconds = 0.0
        for i, view in enumerate(self.views):
            key = text_key(self.preset, i)
            if key not in texts:
                texts[key], s = view.encode_text(prompt)
                seconds += s
        return texts, seconds

    def flow_init_key(self, index: int, stage=None) -> tuple:
        return self.views[index].flow_init_key(index, stage)

    def flow_init(self, index: int, seed: int, previous: StageOutput | None = None, stage=None, noise=None):
        return self.views[index].flow_init(index, seed, previous, stage, noise)

    def run_stage(self, index: int, text: dict, seed: int, previous: StageOutput | None = None, stage=None,
                  init=None, noise=None) -> StageOutput:
        view = self.views[index]
        view.on_step = self.on_step
        return view.run_stage(index, text[text_key(self.preset, index)], seed, previous, stage, init, noise)


def composite_flops(preset: Preset) -> dict[str, Any]:
    """Each stage costs what its pipeline counts for it; text encoding once per distinct (pipeline, text roles)."""
    from fvbench.compute.flops import preset_flops

    stages, text, seen = {}, 0, set()
    for i, s in enumerate(preset.stages):
        f = preset_flops(stage_view(preset, i))
        stages[s.name] = f["stages"][s.name]
        key = text_key(preset, i)
        if key not in seen:
            seen.add(key)
            text += f["text_encode"]
    return {"text_encode": text, "stages": stages, "total": text + sum(s["total"] for s in stages.values())}
