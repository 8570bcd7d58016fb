"""HunyuanVideo (pipeline 'hunyuan'): equal to diffusers' HunyuanVideoPipeline on tiny components, loads from a
diffusers-layout folder, names a missing file, counts the real 13B configuration's FLOPs, runs from the CLI."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from _family_checks import assert_defaults, assert_loads_the_same, assert_missing_file_named

from fvbench.cli import main
from fvbench.errors import FvbenchError
from fvbench.generation.generator import Generator, stage_seed
from fvbench.generation.noise import SeededNoise
from fvbench.generation.presets import get_preset

PROMPT = "a red cat running on the beach"


def _preset(**stage_fields):
    p = get_preset("tiny-hunyuan")
    return p.with_overrides({"stage1": stage_fields}) if stage_fields else p


def _pipeline(gen):
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline

    m = gen.components.modules
    stage = gen.preset.stages[0]
    return HunyuanVideoPipeline(text_encoder=m["text_encoder"], tokenizer=m["tokenizer"], transformer=m["transformer"],
                                vae=m["vae"], scheduler=FlowMatchEulerDiscreteScheduler(**stage.options["scheduler"]),
                                text_encoder_2=m["text_encoder_2"], tokenizer_2=m["tokenizer_2"])


def _pipe_call(gen, latents, output_type):
    stage = gen.preset.stages[0]
    o = stage.options
    extra = {"true_cfg_scale": stage.cfg, "negative_prompt": ""} if stage.cfg > 1 else {}
    return _pipeline(gen)(
        prompt=PROMPT, prompt_template={"template": o["prompt_template"], "crop_start": o["crop_start"]},
        num_inference_steps=stage.nfe, guidance_scale=o["guidance_scale"], height=stage.height, width=stage.width,
        num_frames=gen.preset.frames, max_sequence_length=gen.preset.max_text_length, latents=latents.clone(),
        output_type=output_type, return_dict=False, **extra)[0]


@pytest.mark.parametrize("fields", [{}, {"cfg": 3.0, "nfe": 4}], ids=["embedded-guidance", "true-cfg"])
def test_tiny_equals_diffusers_hunyuan_pipeline(fields):
    """Same seed, same components: fvbench's latents and decoded frames equal HunyuanVideoPipeline's at 1e-5."""
    gen = Generator.from_preset(_preset(**fields))
    gen.keep_pixels = True
    seed = 5
    out = gen.generate(PROMPT, seed).stages[0]
    noise = SeededNoise(stage_seed(seed, 0)).randn(gen._shape(gen.preset.stages[0]))  # what fvbench drew
    theirs = _pipe_call(gen, noise, "latent")
    assert out.latents.shape == theirs.shape == (1, 4, 3, 4, 4)
    torch.testing.assert_close(out.latents, theirs, atol=1e-5, rtol=1e-5)
    frames = _pipe_call(gen, noise, "pt")  # (1, F, 3, H, W) in [0, 1]
    ours = (out.pixels / 255.0).permute(0, 3, 1, 2).unsqueeze(0)
    torch.testing.assert_close(ours, frames.float(), atol=1e-5, rtol=1e-5)
    expected_calls = gen.preset.stages[0].nfe * (2 if gen.preset.stages[0].cfg > 1 else 1)
    assert out.nfe == gen.preset.stages[0].nfe and out.rows == expected_calls
    assert [g for _, g in out.steps] == [gen.preset.stages[0].cfg] * out.nfe


def test_guidance_and_template_matter():
    """The equivalence above compares things that move: embedded guidance and the template change the video."""
    base = Generator.from_preset(_preset()).generate(PROMPT, 1).stages[0].latents
    other_g = Generator.from_preset(_preset(options={**_preset().stages[0].options, "guidance_scale": 1.0}))
    assert not torch.allclose(base, other_g.generate(PROMPT, 1).stages[0].latents, atol=1e-4)
    other_t = Generator.from_preset(_preset(options={**_preset().stages[0].options, "crop_start": 0}))
    assert not torch.allclose(base, other_t.generate(PROMPT, 1).stages[0].latents, atol=1e-4)


@pytest.fixture
def folder(tmp_path):
    """The tiny components saved as diffusers saves a HunyuanVideo pipeline (model_index.json, one folder each)."""
    gen = Generator.from_preset(_preset())
    _pipeline(gen).save_pretrained(tmp_path / "HunyuanVideo")
    return gen, tmp_path / "HunyuanVideo"


def test_loader_round_trip_through_a_diffusers_folder(folder):
    gen, path = folder
    assert {"transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler"} <= {
        p.name for p in path.iterdir()}
    loaded = assert_loads_the_same(gen, _preset(), path, PROMPT)
    assert type(loaded.components.modules["text_encoder"]).__name__ == "LlamaModel"
    assert type(loaded.components.modules["text_encoder_2"]).__name__ == "CLIPTextModel"


@pytest.mark.parametrize("role,file", [("transformer", "diffusion_pytorch_model.safetensors"),
                                       ("text_encoder_2", "model.safetensors"), ("vae", "config.json"),
                                       ("tokenizer_2", "tokenizer.json")])
def test_missing_file_is_a_one_line_error_naming_it(folder, role, file):
    assert_missing_file_named(_preset(), folder[1], role, file)


def test_truncated_weights_are_refused(folder, tmp_path):
    """A transformer folder holding another (smaller) architecture's weights is an error, not random init."""
    _, path = folder
    from diffusers import HunyuanVideoTransformer3DModel

    cfg = dict(_preset().components["transformer"].config, num_single_layers=0)
    shutil.rmtree(path / "transformer")
    HunyuanVideoTransformer3DModel(**cfg).save_pretrained(path / "transformer")
    (path / "transformer" / "config.json").write_text(json.dumps(
        {**json.loads((path / "transformer" / "config.json").read_text()), "num_single_layers": 1}))
    with pytest.raises(FvbenchError, match="not in the folder"):
        Generator.from_preset(dataclasses.replace(_preset(), weights=str(path)))


def test_bad_frame_count_and_options_are_refused():
    with pytest.raises(FvbenchError, match="4k\\+1"):
        _preset().with_overrides(frames=10)
    with pytest.raises(FvbenchError, match="unknown option 'flow_shfit'"):
        _preset(options={**_preset().stages[0].options, "flow_shfit": 5.0})


def test_real_preset_follows_diffusers():
    """The 13B preset's architecture and sampling settings are diffusers' own (the converter's HYVideo-T/2-cfgdistill
    config is the transformer's default; the VAE is built with no arguments; __call__'s defaults)."""
    from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

    p = get_preset("hunyuanvideo")
    assert_defaults(HunyuanVideoTransformer3DModel, p.components["transformer"].config)
    assert_defaults(AutoencoderKLHunyuanVideo, p.components["vae"].config)
    s = p.stages[0]
    assert (s.options["prompt_template"], s.options["crop_start"]) == (DEFAULT_PROMPT_TEMPLATE["template"],
                                                                       DEFAULT_PROMPT_TEMPLATE["crop_start"])
    assert_defaults(HunyuanVideoPipeline.__call__, {"height": s.height, "width": s.width, "num_frames": p.frames,
                                                    "num_inference_steps": s.nfe, "true_cfg_scale": s.cfg,
                                                    "guidance_scale": s.options["guidance_scale"],
                                                    "max_sequence_length": p.max_text_length})
    assert s.options["scheduler"] == {"shift": 7.0}


def test_real_13b_flops_match_an_analytic_count():
    """The published 13B configuration at 720x1280x129 on meta, against closed forms (linear layers 2 x weights x
    tokens, attention 4 N^2 d per layer), and the Llama encoder likewise; the VAE's attention exactly, its
    convolutions linear in area."""
    from fvbench.compute.flops import preset_flops
    from fvbench.families._hf_family import vae_decode_flops

    p = get_preset("hunyuanvideo")
    f = preset_flops(p)
    rows = {r["component"]: r for r in f.pop("rows")}
    c = p.components["transformer"].config
    d = c["num_attention_heads"] * c["attention_head_dim"]
    video = 33 * (720 // 16) * (1280 // 16)
    n = video + 256
    layers = c["num_layers"] + c["num_single_layers"]
    # double-stream: q,k,v,out (4 d^2) + MLP (8 d^2) per stream; single-stream: linear1 (7 d^2) + linear2 (5 d^2)
    analytic = layers * (2 * 12 * d * d * n + 4 * n * n * d)
    fwd = rows["transformer (transformer)"]
    assert fwd["tokens"] == n and 12.5e9 < fwd["params"] < 13.1e9
    assert abs(fwd["flops_per_forward"] / analytic - 1) < 0.02
    assert abs(fwd["attention_share"] * fwd["flops_per_forward"] / (layers * 4 * n * n * d) - 1) < 1e-6
    assert f["stages"]["stage1"]["denoise"] == 50 * fwd["flops_per_forward"]  # embedded guidance: one call a step
    t = p.components["text_encoder"].config
    llama_tokens = 256 + 95
    h, kv = t["hidden_size"], t["num_key_value_heads"] * t["head_dim"]
    per_layer = 2 * llama_tokens * (2 * h * h + 2 * h * kv + 3 * h * t["intermediate_size"]) + 4 * llama_tokens ** 2 * h
    assert abs(rows["text_encoder (Llama)"]["flops_per_forward"] / (t["num_hidden_layers"] * per_layer) - 1) < 0.01
    # VAE: the mid-block attention runs per temporal tile of diffusers' frame-wise decode (tiles of 5 latent
    # frames every 3, the last shorter), 4 N^2 C each; the rest is convolution, linear in area
    total, attn, _ = vae_decode_flops(p, 720, 1280)
    tiles = [min(5, 33 - i) for i in range(0, 33, 3)]
    assert attn == sum(4 * (t_ * 90 * 160) ** 2 * 512 for t_ in tiles)
    small_total, small_attn, _ = vae_decode_flops(p, 144, 256)
    assert (total - attn) == (small_total - small_attn) * (720 * 1280) // (144 * 256)
    assert f["stages"]["stage1"]["vae_decode"] == total
    assert f["total"] == f["text_encode"] + f["stages"]["stage1"]["total"]


def test_flops_cli_prints_every_component(capsys):
    assert main(["flops", "--preset", "tiny-hunyuan"]) == 0
    out = capsys.readouterr().out
    for part in ("text_encoder (Llama)", "text_encoder_2 (CLIP)", "transformer (transformer)", "vae decode",
                 "TFLOP per video"):
        assert part in out


def test_cli_end_to_end_on_the_tiny_preset(tmp_path, capsys):
    from fvbench import load_results

    out = tmp_path / "run"
    rc = main(["run", "--presets", "tiny-hunyuan", "--suite", "suites/ci.yaml", "--limit", "1", "--samples", "1",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    df = load_results(out)
    assert len(df) == 1 and (df.status == "done").all()
    assert int(df.s1_nfe_executed.iloc[0]) == 3 and float(df.flops_total.iloc[0]) > 0
    assert np.isfinite(df.s1_seconds.iloc[0]) and (out / df.final_video_path.iloc[0]).is_file()
