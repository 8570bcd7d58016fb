"""Mochi (pipeline 'mochi'): equal to diffusers' MochiPipeline on tiny components, loads from a diffusers-layout
folder, names a missing file, counts the real 10B configuration's FLOPs, runs from the CLI."""


import numpy as np
import pytest
import torch

from _family_checks import assert_defaults, assert_loads_the_same, assert_missing_file_named

from fvbench.cli import main
from fvbench.errors import FvbenchError
from fvbench.generation.generator import Generator, stage_seed
from fvbench.generation.noise import SeededNoise
from fvbench.generation.presets import get_preset

PROMPT = "a blue bird"  # 4 of the 8 text tokens: the mask hides padding


def _preset(**stage_fields):
    p = get_preset("tiny-mochi")
    return p.with_overrides({"stage1": stage_fields}) if stage_fields else p


def _pipeline(gen):
    from diffusers import FlowMatchEulerDiscreteScheduler, MochiPipeline

    m = gen.components.modules
    return MochiPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**gen.preset.stages[0].options["scheduler"]),
                         vae=m["vae"], text_encoder=m["text_encoder"], tokenizer=m["tokenizer"],
                         transformer=m["transformer"])


def _pipe_call(gen, latents, output_type):
    stage = gen.preset.stages[0]
    return _pipeline(gen)(
        prompt=PROMPT, negative_prompt="", num_inference_steps=stage.nfe, guidance_scale=stage.cfg,
        height=stage.height, width=stage.width, num_frames=gen.preset.frames,
        max_sequence_length=gen.preset.max_text_length, latents=latents.clone(), output_type=output_type,
        return_dict=False)[0]


@pytest.mark.parametrize("fields", [{}, {"cfg": 1.0, "nfe": 5}], ids=["cfg", "no-cfg"])
def test_tiny_equals_diffusers_mochi_pipeline(fields):
    """Same seed, same components: fvbench's latents and decoded frames equal MochiPipeline's at 1e-5."""
    gen = Generator.from_preset(_preset(**fields))
    gen.keep_pixels = True
    seed = 4
    stage = gen.preset.stages[0]
    out = gen.generate(PROMPT, seed).stages[0]
    noise = SeededNoise(stage_seed(seed, 0)).randn(gen._shape(stage))  # what fvbench drew
    theirs = _pipe_call(gen, noise, "latent")
    assert out.latents.shape == theirs.shape == (1, 12, 3, 4, 4)
    torch.testing.assert_close(out.latents, theirs, atol=1e-5, rtol=1e-5)
    frames = _pipe_call(gen, noise, "pt")  # (1, F, 3, H, W) in [0, 1]
    assert frames.shape[1] == gen.preset.frames == out.video.shape[0]
    ours = (out.pixels / 255.0).permute(0, 3, 1, 2).unsqueeze(0)
    torch.testing.assert_close(ours, frames.float(), atol=1e-5, rtol=1e-5)
    assert out.nfe == stage.nfe and out.rows == stage.nfe * (2 if stage.cfg > 1 else 1)


def test_schedule_equals_the_pipelines_and_one_step_is_defined():
    from diffusers.pipelines.mochi.pipeline_mochi import linear_quadratic_schedule

    from fvbench.families._mochi import linear_quadratic_sigmas

    for steps in (2, 5, 28, 64):
        np.testing.assert_allclose(linear_quadratic_sigmas(steps), linear_quadratic_schedule(steps, 0.025),
                                   rtol=0, atol=1e-15)
    np.testing.assert_allclose(linear_quadratic_sigmas(10, 0.1, 3), linear_quadratic_schedule(10, 0.1, 3), atol=1e-15)
    assert linear_quadratic_sigmas(1).tolist() == [1.0]  # the pipeline divides by zero here; fvbench's warm-up runs it
    Generator.from_preset(_preset(nfe=1)).generate(PROMPT, 0)


def test_mask_and_statistics_matter():
    """The equivalence compares things that move: the text mask and the latent statistics change the output."""
    gen = Generator.from_preset(_preset())
    text, _ = gen.encode_text(PROMPT)
    assert 1 <= int(text.cond_mask.sum()) < gen.preset.max_text_length and int(text.uncond_mask.sum()) == 1
    base = gen.run_stage(0, text, 2)
    text.cond_mask = torch.ones_like(text.cond_mask)
    assert not torch.allclose(base.latents, gen.run_stage(0, text, 2).latents, atol=1e-4)
    z = torch.randn(1, 12, 3, 4, 4)
    assert not torch.allclose(gen._to_vae(z), z)


@pytest.fixture
def folder(tmp_path):
    """The tiny components saved as diffusers saves a Mochi pipeline (model_index.json, one folder each)."""
    gen = Generator.from_preset(_preset())
    _pipeline(gen).save_pretrained(tmp_path / "mochi-1-preview")
    return gen, tmp_path / "mochi-1-preview"


def test_loader_round_trip_through_a_diffusers_folder(folder):
    gen, path = folder
    assert {"transformer", "vae", "text_encoder", "tokenizer", "scheduler"} <= {p.name for p in path.iterdir()}
    assert_loads_the_same(gen, _preset(), path, PROMPT)


@pytest.mark.parametrize("role,file", [("transformer", "diffusion_pytorch_model.safetensors"),
                                       ("vae", "config.json"), ("text_encoder", "model.safetensors")])
def test_missing_file_is_a_one_line_error_naming_it(folder, role, file):
    assert_missing_file_named(_preset(), folder[1], role, file)


def test_bad_frame_count_and_options_are_refused():
    with pytest.raises(FvbenchError, match="6k\\+1"):
        _preset().with_overrides(frames=9)
    with pytest.raises(FvbenchError, match="unknown option 'threshold'"):
        _preset(options={"threshold": 0.1})
    with pytest.raises(FvbenchError, match="linear_steps"):
        _preset(options={"linear_steps": 4})


def test_meta_count_equals_a_count_of_the_real_processor():
    """On meta the valid text tokens cannot be looked up, so the count runs a stand-in processor over all text
    tokens: its FLOPs equal diffusers' own processor's on real tensors with every token valid (math SDPA, which the
    counter sees), and bound them from above with padding."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from fvbench.compute.flops import count_flops
    from fvbench.families._mochi import transformer_flops

    p = _preset()
    stage = p.stages[0]
    model = Generator.from_preset(p).components.transformers["transformer"]
    x = torch.randn(2, 12, 3, 4, 4)
    enc = torch.randn(2, p.max_text_length, 32)

    def real(valid: int) -> int:
        mask = torch.zeros(2, p.max_text_length, dtype=torch.bool)
        mask[:, :valid] = True
        with sdpa_kernel(SDPBackend.MATH):
            return count_flops(lambda: model(hidden_states=x, encoder_hidden_states=enc, timestep=torch.tensor([9.0, 9.0]),
                                        encoder_attention_mask=mask, return_dict=False))[0]

    counted = transformer_flops(p, stage, 2)[0]
    assert counted == real(p.max_text_length)
    assert real(3) < counted


def test_real_preset_follows_diffusers():
    """The 10B preset's published configs equal diffusers' class defaults, and its sampling is __call__'s defaults
    (steps, guidance, text length) with Genmo's 163 frames; the schedule threshold is the pipeline's."""
    from diffusers import AutoencoderKLMochi, MochiPipeline, MochiTransformer3DModel

    p = get_preset("mochi-1-preview")
    assert_defaults(MochiTransformer3DModel, p.components["transformer"].config)
    assert_defaults(AutoencoderKLMochi, p.components["vae"].config)
    s = p.stages[0]
    assert_defaults(MochiPipeline.__call__, {"num_inference_steps": s.nfe, "guidance_scale": s.cfg,
                                             "max_sequence_length": p.max_text_length})
    assert (s.height, s.width, p.frames, p.latent_frames) == (480, 848, 163, 28)
    assert s.options == {"scheduler": {"invert_sigmas": True}, "threshold_noise": 0.025}


def test_real_10b_flops_match_an_analytic_count():
    """The published 10B configuration at 480x848x163 on meta, against 2 x weights x tokens per linear layer (video
    stream x video tokens, text stream x text tokens) plus attention 4 N^2 d per layer; T5-XXL likewise."""
    from fvbench.compute.flops import meta_module, preset_flops
    from fvbench.families._hf_family import vae_decode_flops
    from fvbench.families._mochi import transformer_flops

    p = get_preset("mochi-1-preview")
    f = preset_flops(p)
    rows = {r["component"]: r for r in f.pop("rows")}
    c = p.components["transformer"].config
    d = c["num_attention_heads"] * c["attention_head_dim"]
    video, text = 28 * (480 // 16) * (848 // 16), 256
    model = meta_module("mochi-transformer", __import__("json").dumps(c, sort_keys=True))
    linear = 0
    for name, mod in model.transformer_blocks.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".norm" not in f".{name}":  # adaLN modulation sees one token
            ctx = any(k in name for k in ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "ff_context"))
            linear += 2 * mod.weight.numel() * (text if ctx else video)
    analytic = 2 * (linear + c["num_layers"] * 4 * (video + text) ** 2 * d)  # CFG: batch 2
    fwd = rows["transformer (transformer)"]
    assert fwd["batch"] == 2 and fwd["tokens"] == video + text and 9.8e9 < fwd["params"] < 10.2e9
    assert abs(fwd["flops_per_forward"] / analytic - 1) < 0.01
    assert f["stages"]["stage1"]["denoise"] == 64 * fwd["flops_per_forward"]
    t = p.components["text_encoder"].config
    per_layer = 2 * text * (4 * t["d_model"] * t["num_heads"] * t["d_kv"] + 3 * t["d_model"] * t["d_ff"]) \
        + 4 * text ** 2 * t["num_heads"] * t["d_kv"]
    assert abs(rows["text_encoder (T5)"]["flops_per_forward"] / (t["num_layers"] * per_layer) - 1) < 0.01
    assert rows["text_encoder (T5)"]["forwards"] == 2  # the empty prompt too
    # the decoder is convolutional: no attention, FLOPs exactly linear in area at a fixed frame count
    total, attn, _ = vae_decode_flops(p, 480, 848)
    small, small_attn, _ = vae_decode_flops(p, 96, 160)
    assert attn == small_attn == 0 and total * (96 * 160) == small * (480 * 848)
    assert f["total"] == f["text_encode"] + f["stages"]["stage1"]["total"]
    # batch 2 costs twice batch 1 but for the RoPE angles, computed once per call (positions x frequencies)
    rope = 2 * video * 3 * c["num_attention_heads"] * c["attention_head_dim"] // 2
    assert transformer_flops(p, p.stages[0], 1)[0] * 2 - rope == fwd["flops_per_forward"]


def test_cli_end_to_end_on_both_tiny_presets(tmp_path, capsys):
    from fvbench import load_results

    out = tmp_path / "run"
    rc = main(["run", "--presets", "tiny-hunyuan,tiny-mochi", "--suite", "suites/ci.yaml", "--limit", "1",
               "--samples", "1", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    df = load_results(out)
    assert sorted(df.preset) == ["tiny-hunyuan", "tiny-mochi"] and (df.status == "done").all()
    mochi = df[df.preset == "tiny-mochi"].iloc[0]
    assert int(mochi.s1_nfe_executed) == 4 and int(mochi.s1_batch_rows) == 8 and float(mochi.flops_total) > 0
    assert (out / mochi.final_video_path).is_file()
