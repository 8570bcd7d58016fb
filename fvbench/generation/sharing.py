"""What a stage's output depends on, as keys: the rule prefix sharing follows, for any number of stages.

Stage i's output is a function of stage i-1's output, the stage's own fields, the components it uses, the preset's
shared settings (frames, text handling, VAE chunking), whether it keeps float pixels for the next stage, the prompt and
the seed. Chaining those as hashes gives one key per stage: two variants with equal keys up to stage i produce the same
stage-i output bitwise, so a runner computes it once. No torch here: a plan computes keys without loading models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fvbench.generation.presets import Preset


@dataclass(frozen=True)
class StageKey:
    """Keys of one stage: ``output`` (its video and latents), ``init`` (a flow stage's z0; None for other stages)."""

    output: str
    init: str | None = None


def keeps_pixels(preset: Preset, index: int) -> bool:
    """Whether stage ``index`` keeps its unrounded float video: the next stage upsamples float frames."""
    following = preset.stages[index + 1:index + 2]
    return bool(following) and following[0].init == "upsample" and following[0].upsample_input == "float"


def output_keys(preset: Preset, prompt: str, seed: int) -> tuple[str, ...]:
    """One key per stage; key i covers everything stage i's output depends on, through the key of stage i-1."""
    from fvbench.spec import canonical_hash, preset_identity

    ident = preset_identity(preset)
    components = ident.pop("components")
    stages = ident.pop("stages")
    common = {"preset": ident, "prompt": prompt, "seed": seed,
              "text": {k: components.get(k) for k in ("tokenizer", "text_encoder")}, "vae": components.get("vae")}
    # components no stage names as its transformer and not above (a family's scheduler, extra encoders) reach every
    # stage; only added when there are any, so the keys of presets without them are unchanged
    used = {"tokenizer", "text_encoder", "vae", *(s.transformer for s in preset.stages)}
    others = {k: v for k, v in components.items() if k not in used}
    if others:
        common["other_components"] = others
    keys: list[str] = []
    previous: Any = canonical_hash(common)
    for i, (stage, fields) in enumerate(zip(preset.stages, stages)):
        previous = canonical_hash({"previous": previous, "index": i, "stage": fields,
                                   "transformer": components.get(stage.transformer),
                                   "keeps_pixels": keeps_pixels(preset, i)})
        keys.append(previous)
    return tuple(keys)


def init_key(previous_output: str | None, flow_init_key: tuple) -> str:
    """Key of a flow stage's z0: the previous stage's output key and what the generator's flow init reads."""
    from fvbench.spec import canonical_hash

    return canonical_hash({"previous": previous_output, "flow_init": list(flow_init_key)})
