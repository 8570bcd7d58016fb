"""Plug-in: HunyuanVideo (diffusers' HunyuanVideoPipeline) as pipeline ``hunyuan`` and its component types.

Light to import: it only registers; the generator, builders and FLOP rule live in :mod:`fvbench.families._hunyuan`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fvbench.families._checks import check_options
from fvbench.generation.models.registry import (DIFFUSERS_WEIGHTS, TRANSFORMERS_WEIGHTS, ComponentType, VaeGeometry,
                                                build_diffusers, build_tokenizer, build_transformers, load_diffusers,
                                                load_transformers, register_component_type)
from fvbench.generation.pipelines import PipelineInfo, register_pipeline

if TYPE_CHECKING:
    from fvbench.generation.presets import Preset

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


def _latent_frames(frames: int) -> int:
    if frames <= 0 or (frames - 1) % 4:
        raise ValueError(f"frames must be of the form 4k+1 (the HunyuanVideo VAE compresses time 4x after the first "
                         f"frame: 9, 17, ..., 129); got {frames}")
    return (frames - 1) // 4 + 1


def _load_tokenizer(path: Path, dtype: Any):
    from fvbench.families._hf_family import load_auto_tokenizer

    return load_auto_tokenizer(path, dtype)


HUNYUAN_GEOMETRY = VaeGeometry(lambda c: int(c.get("spatial_compression_ratio", 8)), _latent_frames)

for _ct in (
    ComponentType("hunyuan-transformer", build_diffusers("HunyuanVideoTransformer3DModel"),
                  load_diffusers("HunyuanVideoTransformer3DModel"), DIFFUSERS_WEIGHTS),
    ComponentType("hunyuan-vae", build_diffusers("AutoencoderKLHunyuanVideo"),
                  load_diffusers("AutoencoderKLHunyuanVideo"), DIFFUSERS_WEIGHTS,
                  vae=HUNYUAN_GEOMETRY),
    ComponentType("hunyuan-llama", build_transformers("LlamaModel", "LlamaConfig"),
                  load_transformers("LlamaModel"), TRANSFORMERS_WEIGHTS),
    ComponentType("hunyuan-clip-text", build_transformers("CLIPTextModel", "CLIPTextConfig"),
                  load_transformers("CLIPTextModel"), TRANSFORMERS_WEIGHTS),
    # in code: fvbench's builtin tokenizer (tiny and CPU-scale presets); from a folder: the class its config names
    ComponentType("hunyuan-tokenizer", build_tokenizer, _load_tokenizer, TOKENIZER_FILES, meta_ok=False,
                  config_file=None),
):
    register_component_type(_ct)

register_pipeline(PipelineInfo(
    "hunyuan", "fvbench.families._hunyuan:HunyuanGenerator", ("flow-match-euler",), ("noise",),
    flops="fvbench.families._hunyuan:preset_flops", validate=f"{__name__}:validate",
    description="HunyuanVideo as diffusers' HunyuanVideoPipeline runs it (Llama + CLIP text, embedded guidance)"))


OPTIONS: dict[str, type | tuple[type, ...]] = {
    "guidance_scale": (int, float),  # embedded guidance, given to the transformer (x 1000)
    "scheduler": dict,  # FlowMatchEulerDiscreteScheduler arguments (the folder's scheduler_config.json)
    "prompt_template": str,  # the Llama prompt template, '{}' where the prompt goes
    "crop_start": int,  # template tokens dropped from the Llama output
    "clip_max_length": int,  # CLIP's token count (the pipeline's 77)
    "hidden_layers_to_skip": int,  # Llama's hidden state used: hidden_states[-(skip + 1)] (the pipeline's 2)
}


def validate(preset: "Preset") -> None:
    """Options known and typed; a template with exactly one '{}'; one text setting for all stages."""
    for s in preset.stages:
        check_options(s, OPTIONS)
        for key in ("prompt_template", "crop_start"):
            if key not in s.options:
                raise ValueError(f"stage {s.name!r}: pipeline 'hunyuan' needs option {key!r}")
        if s.options["prompt_template"].count("{}") != 1:
            raise ValueError(f"stage {s.name!r}: prompt_template must hold one '{{}}' where the prompt goes")
        if s.options["crop_start"] < 0:
            raise ValueError(f"stage {s.name!r}: crop_start must be >= 0")
    for key in ("prompt_template", "crop_start", "clip_max_length", "hidden_layers_to_skip"):
        if len({repr(s.options.get(key)) for s in preset.stages}) > 1:
            raise ValueError(f"option {key!r} must be the same in every stage (the prompt is encoded once)")
