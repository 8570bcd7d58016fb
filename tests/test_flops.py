"""FLOP counting: the paper's reference numbers, an analytic formula, and a real counted generation."""

import dataclasses

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from fvbench.compute.flops import (
    preset_flops,
    stage_flops,
    text_encoder_flops,
    transformer_forward_flops,
    vae_flops,
)
from fvbench.generation.generator import Generator
from fvbench.generation.presets import get_preset

T = 1e12


def _stage(preset_name, height, width):
    p = get_preset(preset_name)
    p = p.with_overrides({p.stages[0].name: {"height": height, "width": width}})
    return p, p.stages[0]


@pytest.mark.parametrize("preset,height,width,tflop,attention", [
    ("cogvideox-2b", 480, 720, 120.00, 72.80),
    ("cogvideox-2b", 256, 480, 26.80, None),
    ("cogvideox-2b", 1072, 1920, 2805.96, 2527.89),
    ("cogvideox-5b", 480, 720, 332.20, None),
    ("cogvideox-5b", 256, 480, 83.10, None),
    ("cogvideox-5b", 1072, 1920, 6658.97, None),
])
def test_reference_transformer_flops_within_1_percent(preset, height, width, tflop, attention):
    p, s = _stage(preset, height, width)
    fwd = transformer_forward_flops(p, s, batch=1)
    assert fwd.flops / T == pytest.approx(tflop, rel=0.01)
    if attention is not None:
        assert fwd.attention_flops / T == pytest.approx(attention, rel=0.01)
    assert fwd.params == {"cogvideox-2b": 1_693_783_872, "cogvideox-5b": 5_570_283_072}[preset]
    assert transformer_forward_flops(p, s, batch=2).flops == 2 * fwd.flops


def test_reference_text_and_vae_flops():
    p = get_preset("flashvideo")
    assert text_encoder_flops(p).flops / T == pytest.approx(2.113, rel=0.01)
    untiled = dataclasses.replace(p, vae_tiling=False, vae_encode_chunk=0)  # diffusers' own whole-video pass
    assert vae_flops(untiled, "decode", 256, 480).flops / T == pytest.approx(112, rel=0.01)
    assert vae_flops(untiled, "decode", 480, 720).flops / T == pytest.approx(315, rel=0.01)
    assert vae_flops(untiled, "encode", 256, 480).flops / T == pytest.approx(53, rel=0.01)
    assert vae_flops(untiled, "encode", 1072, 1920).flops / T == pytest.approx(887, rel=0.01)
    tiled = get_preset("cogvideox-5b-1080p")  # the same VAE, tiled
    assert vae_flops(tiled, "encode", 1072, 1920).flops / T == pytest.approx(1290, rel=0.01)  # tiled


def test_vae_area_scaling_equals_a_direct_count():
    """The VAE is counted at a reference area and scaled (tiles summed); check against counting the whole call."""
    p = get_preset("tiny-flashvideo")
    for tiling in (False, True):
        preset = dataclasses.replace(p, vae_tiling=tiling)
        from fvbench.generation.models.registry import COMPONENT_TYPES

        with torch.device("meta"):
            vae = COMPONENT_TYPES["cogvideox-vae"].build(p.components["vae"].config)
        vae.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=48) if tiling else vae.disable_tiling()
        import fvbench.compute.flops as fl

        fl.meta_module.cache_clear()
        fl._vae_per_area.cache_clear()
        orig = fl.meta_module
        fl.meta_module = lambda *a: vae
        try:
            for op, shape in (("decode", (1, 4, 3, 12, 20)), ("encode", (1, 3, 9, 96, 160))):
                vae.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=48) if tiling else vae.disable_tiling()
                counter = FlopCounterMode(display=False)
                x = torch.empty(shape, device="meta")
                with counter:
                    vae.decode(x) if op == "decode" else vae.encode(x)
                predicted = vae_flops(preset, op, 96, 160).flops
                if tiling and op == "encode":
                    # an 8-pixel edge tile loses a little to padding at each downsampling: within 0.5%
                    assert predicted == pytest.approx(counter.get_total_flops(), rel=5e-3)
                else:
                    assert predicted == counter.get_total_flops(), (op, tiling)
        finally:
            fl.meta_module = orig
            fl.meta_module.cache_clear()
            fl._vae_per_area.cache_clear()


def test_transformer_flops_match_the_analytic_formula():
    """Linear layers 2 * (matmul params) * tokens, plus attention 4 * N^2 * D per layer."""
    p = get_preset("cpu-flashvideo-s")
    s = p.stages[1]
    fwd = transformer_forward_flops(p, s, batch=1)
    cfg = p.components[s.transformer].config
    d, layers = cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["num_layers"]
    n = fwd.tokens  # video + text tokens attend jointly
    lat_h, lat_w = s.height // 8, s.width // 8
    video = p.latent_frames * (lat_h // 2) * (lat_w // 2)
    text = p.max_text_length
    assert n == video + text
    time_dim, ff = cfg["time_embed_dim"], 4 * d
    per_layer = 2 * n * (4 * d * d + 2 * d * ff)  # q, k, v, out projections and the MLP
    per_layer += 2 * 2 * time_dim * 6 * d  # two adaLN modulations (one sample)
    attention = 4 * n * n * d * layers
    patch = 2 * video * (cfg["in_channels"] * 4) * d + 2 * text * cfg["text_embed_dim"] * d
    out = 2 * video * d * (4 * cfg["out_channels"]) + 2 * time_dim * 2 * d
    temb = 2 * (d * time_dim + time_dim * time_dim) * 3  # timestep, degradation-step and frame-count MLPs
    expected = layers * per_layer + attention + patch + out + temb
    assert fwd.attention_flops == attention
    assert fwd.flops == expected


def test_counted_generation_equals_preset_flops():
    """A real generation counted under FlopCounterMode (math SDPA so attention counts) = the per-component total."""
    p = get_preset("tiny-flashvideo")
    gen = Generator.from_preset(p)
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        gen.generate("a cat", 0)
    assert counter.get_total_flops() == preset_flops(p)["total"]


def test_stage_flops_multiply_by_executed_nfe_and_cfg():
    p = get_preset("tiny-flashvideo")
    a = stage_flops(p.with_overrides({"stage2": {"nfe": 3}}), 1)
    b = stage_flops(p.with_overrides({"stage2": {"nfe": 6}}), 1)
    c = stage_flops(p.with_overrides({"stage2": {"nfe": 3, "cfg": 1.0}}), 1)
    assert b["denoise"] == 2 * a["denoise"] and a["denoise"] == 2 * c["denoise"]
    assert a["vae_encode"] == b["vae_encode"] > 0 and a["vae_decode"] > 0
    assert stage_flops(p, 0)["vae_encode"] == 0
