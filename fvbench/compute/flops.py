"""Exact FLOP accounting, counted once per configuration on the meta device (no weights, seconds).

Each component (text encoder, a stage's transformer forward at its CFG batch, VAE encode/decode) is built on
``torch.device("meta")`` from its preset config and run under ``torch.utils.flop_counter.FlopCounterMode``; the cost
of a video is then what was executed: NFE x forward + VAE + text encoder (counting a whole pipeline gives the same
total, see environment.md). On meta, attention falls back to matmuls (``aten.bmm``), so it is counted; this module
never counts on real CPU tensors, where scaled_dot_product_attention would count as zero.

Convention: one multiply-add = 2 FLOPs (FlopCounterMode's). Not counted: norms, softmax, activations, RoPE,
interpolation (the stage-II upsample), which are small next to the matmuls and convolutions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from fvbench.errors import FvbenchError
from fvbench.generation.models.registry import COMPONENT_TYPES
from fvbench.generation.presets import Preset, StageConfig
from fvbench.generation.vae_slices import encode_chunk_moments, width_slices

_ATTENTION_OPS = ("bmm", "scaled_dot_product", "_efficient_attention", "_flash_attention")


@dataclass(frozen=True)
class ForwardFlops:
    """One forward of one component at given shapes."""

    component: str  # role name in the preset: "stage1", "vae", "text_encoder", ...
    params: int
    tokens: int | None  # transformer: video + text tokens per sample; None for the VAE
    batch: int
    flops: int  # total FLOPs of this forward (multiply-add = 2)
    attention_flops: int  # the part spent in attention score/value matmuls

    @property
    def attention_share(self) -> float:
        return self.attention_flops / self.flops if self.flops else 0.0


def count_flops(fn) -> tuple[int, int]:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn()
    per_op = counter.get_flop_counts().get("Global", {})
    attention = sum(v for k, v in per_op.items() if any(a in str(k) for a in _ATTENTION_OPS))
    return int(counter.get_total_flops()), int(attention)


def config_key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


@lru_cache(maxsize=64)
def meta_module(type_name: str, config_key: str) -> torch.nn.Module:
    with torch.device("meta"):
        module = COMPONENT_TYPES[type_name].build(json.loads(config_key))
    return module.eval()


@lru_cache(maxsize=512)
def _transformer_flops(type_name: str, config_key: str, frames: int, h: int, w: int, text_len: int,
                       batch: int) -> tuple[int, int, int, int]:
    model = meta_module(type_name, config_key)
    cfg = model.config
    meta = torch.device("meta")
    x = torch.empty(batch, frames, cfg.in_channels, h, w, device=meta)
    enc = torch.empty(batch, text_len, cfg.text_embed_dim, device=meta)
    t = torch.empty(batch, device=meta)
    p = cfg.patch_size
    video_tokens = frames * (h // p) * (w // p)
    kwargs: dict[str, Any] = {}
    if cfg.use_rotary_positional_embeddings:
        rope = torch.empty(video_tokens, cfg.attention_head_dim, device=meta)
        kwargs["image_rotary_emb"] = (rope, rope)
    if hasattr(model.time_embedding, "ref_step"):
        kwargs["timestep_cond"] = torch.empty(batch, 2, device=meta)
    flops, attn = count_flops(lambda: model(hidden_states=x, encoder_hidden_states=enc, timestep=t, return_dict=False,
                                       **kwargs))
    params = sum(q.numel() for q in model.parameters())
    return flops, attn, params, video_tokens + text_len


# The CogVideoX VAE is convolutional (no attention), so its FLOPs are exactly linear in spatial area at a fixed
# frame count. Counting it at full 1080p on meta takes about a minute (per-op dispatch over many tiles), so it is
# counted once at a small reference area and scaled; tiling (diffusers' overlapping tiles) is accounted for by summing
# the tile areas that diffusers' tiled_encode / tiled_decode loops visit. tests/test_flops.py checks this against a
# direct count.
_REF = 8  # reference side: 8x8 latent pixels (decode) or 8 * factor pixels (encode)


@lru_cache(maxsize=64)
def _vae_per_area(config_key: str, op: str, frames: int, chunks: tuple[int, ...] = ()) -> tuple[float, int]:
    vae = meta_module("cogvideox-vae", config_key)
    vae.disable_tiling()
    meta = torch.device("meta")
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if op == "encode":
        side = _REF * factor
        x = torch.empty(1, 3, frames, side, side, device=meta)
        if chunks:  # FlashVideo's release: frame chunks, cache carried (what Generator.flow_init runs)
            flops, _ = count_flops(lambda: encode_chunk_moments(vae, x, chunks))
        else:
            flops, _ = count_flops(lambda: vae.encode(x))
    else:
        side = _REF
        z = torch.empty(1, vae.config.latent_channels, (frames - 1) // 4 + 1, side, side, device=meta)
        flops, _ = count_flops(lambda: vae.decode(z))
    return flops / (side * side), sum(q.numel() for q in vae.parameters())


def _tiled_area(height: int, width: int, tile_h: int, tile_w: int, overlap_h: float, overlap_w: float) -> int:
    """Sum of tile areas over diffusers' CogVideoX tiling loops (tiles clipped at the borders)."""
    if height <= tile_h and width <= tile_w:
        return height * width
    step_h, step_w = int(tile_h * (1 - overlap_h)), int(tile_w * (1 - overlap_w))
    return sum(min(tile_h, height - i) * min(tile_w, width - j)
               for i in range(0, height, step_h) for j in range(0, width, step_w))


def _vae_flops(config_key: str, op: str, frames: int, height: int, width: int, tiling: bool,
               chunks: tuple[int, ...] = (), width_splits: int = 1) -> tuple[int, int]:
    per_area, params = _vae_per_area(config_key, op, frames, chunks if op == "encode" else ())
    vae = meta_module("cogvideox-vae", config_key)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if op == "encode":
        h, w, th, tw = height, width, vae.tile_sample_min_height, vae.tile_sample_min_width
    else:
        h, w, th, tw = height // factor, width // factor, vae.tile_latent_min_height, vae.tile_latent_min_width
    if tiling:
        area = _tiled_area(h, w, th, tw, vae.tile_overlap_factor_height, vae.tile_overlap_factor_width)
    elif op == "decode" and width_splits > 1:  # the release's width slices, overlaps decoded twice
        area = h * sum(hi - lo for lo, _, _, hi in width_slices(w, width_splits))
    else:
        area = h * w
    return int(round(per_area * area)), params


@lru_cache(maxsize=64)
def _text_flops(type_name: str, config_key: str, length: int) -> tuple[int, int]:
    model = meta_module(type_name, config_key)
    ids = torch.zeros(1, length, dtype=torch.long, device="meta")
    flops, _ = count_flops(lambda: model(ids))
    return flops, sum(q.numel() for q in model.parameters())


def transformer_forward_flops(preset: Preset, stage: StageConfig, batch: int = 1) -> ForwardFlops:
    """FLOPs of one transformer forward of ``stage`` at ``batch`` (a CFG step is one forward at batch 2)."""
    spec = preset.components[stage.transformer]
    f = preset.vae_spatial_factor
    flops, attn, params, tokens = _transformer_flops(spec.type, config_key(spec.config), preset.latent_frames,
                                                     stage.height // f, stage.width // f, preset.max_text_length, batch)
    return ForwardFlops(stage.transformer, params, tokens, batch, flops, attn)


def vae_flops(preset: Preset, op: str, height: int, width: int, width_splits: int = 1) -> ForwardFlops:
    """FLOPs of one VAE ``encode`` (pixels HxW) or ``decode`` (to pixels HxW) of a whole video of the preset, as the
    preset runs it: diffusers' tiles (``vae_tiling``), the release's frame chunks (``vae_encode_chunks``) or width
    slices (``width_splits``), or one pass."""
    spec = preset.components["vae"]
    if COMPONENT_TYPES[spec.type].weightless:  # no parameters (the pixel-space identity VAE): a rescale, no FLOPs
        return ForwardFlops("vae", 0, None, 1, 0, 0)
    if spec.type != "cogvideox-vae":
        raise FvbenchError(f"preset {preset.name!r}: no FLOP rule for VAE type {spec.type!r}")
    flops, params = _vae_flops(config_key(spec.config), op, preset.frames, height, width, preset.vae_tiling,
                               preset.vae_encode_chunks, width_splits)
    return ForwardFlops("vae", params, None, 1, flops, 0)


def text_encoder_flops(preset: Preset) -> ForwardFlops:
    """FLOPs of encoding one prompt (max_text_length tokens)."""
    spec = preset.components["text_encoder"]
    flops, params = _text_flops(spec.type, config_key(spec.config), preset.max_text_length)
    return ForwardFlops("text_encoder", params, preset.max_text_length, 1, flops, 0)


def cfg_batch(stage: StageConfig) -> int:
    """Samples per transformer call: 2 with classifier-free guidance (cfg > 1), else 1."""
    return 2 if stage.cfg > 1.0 else 1


def stage_flops(preset: Preset, stage_index: int) -> dict[str, int]:
    """FLOPs of one stage as executed for one video: denoise (NFE x forward at CFG batch), VAE encode, decode."""
    stage = preset.stages[stage_index]
    fwd = transformer_forward_flops(preset, stage, cfg_batch(stage))
    out = {"denoise": stage.nfe * fwd.flops, "denoise_attention": stage.nfe * fwd.attention_flops,
           "vae_encode": 0, "upsample": 0}
    if stage.init == "upsample":
        out["vae_encode"] = vae_flops(preset, "encode", stage.height, stage.width).flops
    out["vae_decode"] = vae_flops(preset, "decode", stage.height, stage.width, stage.decode_width_splits).flops
    out["total"] = out["denoise"] + out["vae_encode"] + out["upsample"] + out["vae_decode"]
    return out


def preset_flops(preset: Preset) -> dict[str, Any]:
    """FLOPs of one video through the preset: text encoding (x2 when the unconditional prompt is encoded), each stage, total.

    A model family's pipeline may bring its own rule (:func:`fvbench.generation.pipelines.flops_rule`), returning
    the same shape: ``{"text_encode", "stages": {name: {"denoise", "denoise_attention", "vae_encode", "upsample",
    "vae_decode", "total"}}, "total"}``.
    """
    from fvbench.generation.pipelines import flops_rule

    rule = flops_rule(preset)
    if rule is not None:
        return rule(preset)
    text = text_encoder_flops(preset).flops * (2 if preset.uncond == "empty" else 1)
    stages = {s.name: stage_flops(preset, i) for i, s in enumerate(preset.stages)
              if s.pipeline in ("", preset.pipeline)}  # a cross-family view: the other stages are counted by theirs
    return {"text_encode": text, "stages": stages, "total": text + sum(s["total"] for s in stages.values())}
