"""LTX-Video family: fvbench's generation equals diffusers' LTX pipelines on tiny components (single stage and the
multiscale chain), loads from a diffusers-layout folder, counts the real configs' FLOPs, shares the low-resolution pass
bitwise across refine variants, and runs from the CLI."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, LTXConditionPipeline, LTXLatentUpsamplePipeline, LTXPipeline

from fvbench.errors import FvbenchError, MissingWeightsError
from fvbench.families._ltx import LtxGenerator, decode_flops, preset_flops, refine_schedule_steps
from fvbench.generation.generator import Generator, stage_seed
from fvbench.generation.pipelines import make_generator
from fvbench.generation.presets import get_preset

PROMPT = "a red cat running on the beach"
SEED = 11
ATOL = 1e-5


@pytest.fixture(scope="module")
def single():
    gen = Generator.from_preset(get_preset("tiny-ltx"))
    gen.keep_pixels = True
    return gen


@pytest.fixture(scope="module")
def multi():
    gen = Generator.from_preset(get_preset("tiny-ltx-multiscale"))
    gen.keep_pixels = True
    return gen


def _frames(pixels: torch.Tensor) -> torch.Tensor:
    """fvbench's unrounded video (F, H, W, 3) in [0, 255] -> diffusers' output_type='pt' layout (F, 3, H, W) in [0, 1]."""
    return (pixels / 255.0).permute(0, 3, 1, 2)


def _ltx_pipeline(gen: Generator, cls=LTXPipeline):
    c = gen.components
    sched = FlowMatchEulerDiscreteScheduler.from_config(c.modules["scheduler"].config)
    return cls(scheduler=sched, vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer,
               transformer=c.transformers["transformer"])


def _close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape, (what, a.shape, b.shape)
    diff = (a.float() - b.float()).abs().max().item()
    assert diff <= ATOL, f"{what}: max |diff| {diff:.3g} > {ATOL}"


def test_single_stage_equals_ltx_pipeline(single):
    preset = single.preset
    stage = preset.stages[0]
    out = single.generate(PROMPT, SEED).stages[0]
    pipe = _ltx_pipeline(single)
    kwargs = dict(prompt=PROMPT, height=stage.height, width=stage.width, num_frames=preset.frames,
                  num_inference_steps=stage.nfe, guidance_scale=stage.cfg,
                  guidance_rescale=stage.options["guidance_rescale"], max_sequence_length=preset.max_text_length,
                  decode_timestep=stage.options["decode_timestep"],
                  decode_noise_scale=stage.options["decode_noise_scale"])
    packed = pipe(**kwargs, generator=torch.Generator().manual_seed(stage_seed(SEED, 0)), output_type="latent").frames
    grid = single._grid(stage)
    latents = LTXPipeline._unpack_latents(packed, *grid)
    _close(out.latents, latents, "latents")
    assert out.latents.abs().max() > 0.1  # a real video's latents, not a degenerate zero
    video = pipe(**kwargs, generator=torch.Generator().manual_seed(stage_seed(SEED, 0)), output_type="pt").frames[0]
    _close(_frames(out.pixels), video, "frames")
    assert out.nfe == stage.nfe and out.rows == 2 * stage.nfe  # guidance batches (uncond, cond) in one call


def test_single_stage_differs_when_a_setting_differs(single):
    """The equivalence above is not vacuous: guidance rescale and the decode timestep both change the output."""
    base = single.generate(PROMPT, SEED).stages[0]
    for options in ({"guidance_rescale": 0.0}, {"decode_timestep": 0.5}):
        stage = dataclasses.replace(single.preset.stages[0], options={**single.preset.stages[0].options, **options})
        other = single.run_stage(0, single.encode_text(PROMPT)[0], SEED, stage=stage)
        assert not torch.equal(other.video, base.video), options


def _chain(gen: Generator, output_type: str):
    """The diffusers multiscale chain as the docs run it: low-res LTXConditionPipeline (latents), then
    LTXLatentUpsamplePipeline (latents), then the refine call with ``latents=`` and ``denoise_strength`` (and the
    distilled models' explicit ``timesteps=`` when the stages give them)."""
    preset = gen.preset
    s1, s2 = preset.stages
    o1, o2 = ({"guidance_rescale": 0.0, "adain_factor": 0.0, "tone_map_compression_ratio": 0.0, **s.options}
              for s in (s1, s2))
    pipe = _ltx_pipeline(gen, LTXConditionPipeline)
    common = dict(prompt=PROMPT, num_frames=preset.frames, max_sequence_length=preset.max_text_length)
    first = dict(height=s1.height, width=s1.width, guidance_scale=s1.cfg, guidance_rescale=o1["guidance_rescale"])
    if "timesteps" in o1:
        first["timesteps"] = o1["timesteps"]
    else:
        first["num_inference_steps"] = s1.nfe
    low = pipe(**common, **first, generator=torch.Generator().manual_seed(stage_seed(SEED, 0)),
               output_type="latent").frames
    preview = pipe(**common, **first, decode_timestep=o1["decode_timestep"],
                   decode_noise_scale=o1["decode_noise_scale"],
                   generator=torch.Generator().manual_seed(stage_seed(SEED, 0)), output_type="pt").frames[0]
    up_pipe = LTXLatentUpsamplePipeline(vae=gen.components.vae, latent_upsampler=gen.components.modules["latent_upsampler"])
    up = up_pipe(latents=low, adain_factor=o2["adain_factor"],
                 tone_map_compression_ratio=o2["tone_map_compression_ratio"], output_type="latent").frames
    second = dict(height=s2.height, width=s2.width, guidance_scale=s2.cfg, guidance_rescale=o2["guidance_rescale"])
    if "timesteps" in o2:
        second["timesteps"] = o2["timesteps"]
    else:
        second["num_inference_steps"] = refine_schedule_steps(s2.nfe, o2["denoise_strength"])
    final = pipe(**common, **second, latents=up, denoise_strength=o2["denoise_strength"],
                 decode_timestep=o2["decode_timestep"], decode_noise_scale=o2["decode_noise_scale"],
                 generator=torch.Generator().manual_seed(stage_seed(SEED, 1)), output_type=output_type).frames
    return low, preview, final


def _assert_equals_chain(gen: Generator, one, two) -> None:
    """Both stages' latents and frames (the stage-1 preview too) equal the diffusers chain's, within ATOL."""
    low, preview, final_latents = _chain(gen, "latent")
    _close(one.latents, low, "stage-1 latents")
    _close(_frames(one.pixels), preview, "stage-1 preview frames")
    _close(two.latents, final_latents, "refined latents")
    _, _, video = _chain(gen, "pt")
    _close(_frames(two.pixels), video[0], "final frames")


def test_multiscale_equals_the_diffusers_chain(multi):
    one, two = multi.generate(PROMPT, SEED).stages
    _assert_equals_chain(multi, one, two)
    s2 = multi.preset.stages[1]
    assert refine_schedule_steps(s2.nfe, s2.options["denoise_strength"]) == 5  # int(5 * 0.4) = 2 steps run
    assert two.nfe == s2.nfe and len(two.steps) == s2.nfe
    assert set(two.seconds) == {"upsample", "denoise", "vae_decode"}  # the upsampler is stage 2's cost


def test_distilled_multiscale_with_explicit_timesteps_equals_the_diffusers_chain(multi):
    """The 0.9.7-distilled example's settings (its timestep lists, no guidance, AdaIN 1.0, denoise_strength 0.999)
    on the tiny components."""
    real = get_preset("ltx-video-multiscale-distilled")
    stages = {s.name: {"cfg": s.cfg, "nfe": s.nfe, "options": s.options} for s in real.stages}
    preset = multi.preset.with_overrides(stages)
    gen = LtxGenerator(preset, multi.components, "cpu")
    gen.keep_pixels = True
    one, two = gen.generate(PROMPT, SEED).stages
    assert [t for t, _ in two.steps] == [909.0, 725.0, 421.0, 0.0]  # the last 4 of 5
    assert one.rows == 8 and two.rows == 4  # no guidance: one row per call
    _assert_equals_chain(gen, one, two)
    with pytest.raises(FvbenchError, match="fixed by the list"):
        preset.with_overrides({"stage2": {"nfe": 3}})


def test_refine_schedule_matches_diffusers_step_count():
    for strength in (0.4, 0.999, 0.25, 0.7):
        for nfe in range(1, 12):
            n = refine_schedule_steps(nfe, strength)
            assert min(int(n * strength), n) == nfe
            assert n == 1 or min(int((n - 1) * strength), n - 1) != nfe  # the smallest such N
    assert refine_schedule_steps(4, 0.4) == 10  # the docs' example: "4 inference steps out of 10"


def test_stage1_is_shared_bitwise_and_never_mutated(multi):
    """One stage-1 output feeds every stage-2 variant; each equals a whole generation of that variant, and stage 1's
    latents are untouched by the refine passes."""
    text, _ = multi.encode_text(PROMPT)
    first = multi.run_stage(0, text, SEED)
    kept = first.latents.clone()
    for nfe in (1, 3):
        preset = multi.preset.with_overrides({"stage2": {"nfe": nfe}})
        gen = LtxGenerator(preset, multi.components, "cpu")
        shared = gen.run_stage(1, text, SEED, first)
        direct = gen.generate(PROMPT, SEED)
        assert torch.equal(direct.stages[0].video, first.video)
        assert torch.equal(direct.video, shared.video) and torch.equal(direct.stages[1].latents, shared.latents)
        assert shared.nfe == nfe
    assert torch.equal(first.latents, kept)


def test_worker_sweep_shares_the_low_resolution_pass(tmp_path):
    from fvbench.runner import make_plan
    from fvbench.spec import SweepOptions
    from fvbench.worker import GroupWorker

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\n")
    plan = make_plan(str(prompts), SweepOptions(presets=("tiny-ltx-multiscale",), stage_nfe=((1, (2, 3)), (2, (1, 2)))),
                     samples=1)
    assert len(plan.units) == 4
    videos: dict = {}

    def capture(video, unit, path):
        videos[unit.unit_hash] = video.clone()
        return {}

    worker = GroupWorker(tmp_path / "run", {"device": "cpu", "device_name": "t", "torch_threads": 2, "git": None,
                                            "versions": {}}, ("t", "0" * 64), save_videos="none", metric_fn=capture)
    rows = [r.row for g in plan.groups for r in worker.process(g, set())]
    assert all(r["status"] == "done" for r in rows), [r.get("error") for r in rows]
    assert Counter(r["s1_nfe"] for r in rows if not r["s1_shared"]) == {2: 1, 3: 1}  # stage 1 once per variant
    assert sum(r["s1_shared"] for r in rows) == 2
    assert all(r["s2_upsample_s"] > 0 and r["s2_flops"] > r["s2_denoise_flops"] for r in rows)
    for unit in plan.units:
        direct = make_generator(unit.config.preset, worker.components("tiny-ltx-multiscale"), "cpu")
        assert torch.equal(direct.generate(unit.prompt.text, unit.seed).video, videos[unit.unit_hash])


def _save_folder(gen: Generator, root) -> None:
    """The tiny components laid out as a diffusers LTX folder (the multiscale one with latent_upsampler/ beside)."""
    for role, module in gen.components.modules.items():
        module.save_pretrained(root / role)


@pytest.mark.parametrize("real", ["ltx-video-multiscale", "ltx-video-2b"])
def test_real_preset_loads_from_a_diffusers_folder_and_names_a_missing_file(multi, tmp_path, real):
    """The real preset's loader on the tiny components saved in the diffusers layout gives what the same modules
    built in code give: latents bitwise, frames to float rounding (the VAE loaded by from_pretrained decodes with
    last-bit differences, up to one uint8 level)."""
    _save_folder(multi, tmp_path)
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    assert (tmp_path / "scheduler" / "scheduler_config.json").is_file()
    preset = get_preset(real)
    stages = {"stage1": {"height": 32, "width": 32, "nfe": 2}}
    if len(preset.stages) > 1:
        stages["stage2"] = {"height": 64, "width": 64, "nfe": 1}
    preset = dataclasses.replace(preset.with_overrides(stages, frames=9), weights=str(tmp_path))
    loaded = Generator.from_preset(preset)
    assert isinstance(loaded, LtxGenerator)
    assert loaded.components.transformers["transformer"].config.num_layers == 1  # the folder's config, not 48
    loaded.keep_pixels = True
    built = LtxGenerator(preset, multi.components, "cpu")
    built.keep_pixels = True
    a, b = loaded.generate(PROMPT, SEED), built.generate(PROMPT, SEED)
    for x, y in zip(a.stages, b.stages):
        assert torch.equal(x.latents, y.latents)
        _close(x.pixels / 255.0, y.pixels / 255.0, "frames")
    (tmp_path / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(MissingWeightsError, match="scheduler_config.json"):
        Generator.from_preset(preset)
    multi.components.modules["scheduler"].save_pretrained(tmp_path / "scheduler")
    (tmp_path / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(MissingWeightsError) as err:
        Generator.from_preset(preset)
    msg = str(err.value)
    assert "\n" not in msg and "transformer" in msg and "diffusion_pytorch_model.safetensors" in msg


def test_missing_upsampler_names_its_folder(multi, tmp_path):
    _save_folder(multi, tmp_path)
    (tmp_path / "latent_upsampler" / "diffusion_pytorch_model.safetensors").unlink()
    preset = dataclasses.replace(get_preset("ltx-video-multiscale"), weights=str(tmp_path))
    with pytest.raises(MissingWeightsError, match="latent_upsampler") as err:
        Generator.from_preset(preset)
    assert "\n" not in str(err.value)


def test_bad_presets_are_clear_errors():
    base = get_preset("tiny-ltx-multiscale")
    for stages, pattern in (({"stage2": {"height": 96}}, "doubles"),
                            ({"stage2": {"options": {"denoise_strength": 1.0}}}, "denoise_strength"),
                            ({"stage2": {"solver": "ltx"}}, "ltx-condition"),
                            ({"stage1": {"options": {"nosuch": 1}}}, "unknown option")):
        with pytest.raises(FvbenchError, match=pattern):
            base.with_overrides(stages)
    with pytest.raises(FvbenchError, match="8k\\+1"):
        base.with_overrides(frames=12)


def _analytic_forward(cfg: dict, tokens: int, text: int, batch: int) -> float:
    """2 x MACs of the linear layers plus attention's 4*L*L'*d, per LTX transformer block and its projections."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    ff = 4 * d
    per_block = (tokens * (4 * d * d + 2 * d * d + 2 * d * ff) + text * 2 * cfg["cross_attention_dim"] * d)  # MACs
    attention = 2 * tokens * tokens * d + 2 * tokens * text * d  # MACs: scores and values, self and cross
    caption = text * (cfg["caption_channels"] * d + d * d)
    io = tokens * 2 * cfg["in_channels"] * d  # proj_in and proj_out
    return 2.0 * batch * (cfg["num_layers"] * (per_block + attention) + caption + io)


def test_real_flops_on_meta_match_an_analytic_count():
    preset = get_preset("ltx-video-2b")
    flops = preset_flops(preset)
    stage = flops["stages"]["stage1"]
    grid = (21, 15, 22)  # 161 frames -> 21 latent frames; 480x704 / 32
    tokens = grid[0] * grid[1] * grid[2]
    per_call = stage["denoise"] / 50
    expected = _analytic_forward(preset.components["transformer"].config, tokens, 128, 2)
    assert abs(per_call / expected - 1) < 0.02, (per_call, expected)
    assert 0 < stage["denoise_attention"] < stage["denoise"]
    assert stage["vae_decode"] > 0 and stage["upsample"] == 0 and stage["vae_encode"] == 0
    t5 = 2 * 128 * 2 * 4.76e9  # ~4.76B multiply-adds per token of T5-XXL's encoder, prompt and negative prompt
    assert abs(flops["text_encode"] / t5 - 1) < 0.15
    assert flops["total"] == flops["text_encode"] + stage["total"]
    multi = preset_flops(get_preset("ltx-video-multiscale"))
    s2 = multi["stages"]["stage2"]
    assert s2["upsample"] > 0 and s2["denoise"] > 4 * multi["stages"]["stage1"]["denoise"] / 30  # 4x the tokens


@pytest.mark.parametrize("vae", ["ltx-video-2b", "ltx-video-multiscale", "tiny-ltx"])
def test_vae_decode_flops_extend_exactly_to_other_sizes(vae):
    from fvbench.compute.flops import config_key
    from fvbench.families._ltx import _decode_count

    key = config_key(get_preset(vae).components["vae"].config)
    for h, w in ((3, 5), (6, 7)):
        assert decode_flops(key, 3, h, w) == _decode_count(key, 3, h, w)


def test_cli_end_to_end_on_the_tiny_presets(tmp_path, capsys):
    from fvbench.cli import main
    from fvbench.store import load_results

    out = tmp_path / "run"
    assert main(["run", "--presets", "tiny-ltx,tiny-ltx-multiscale", "--suite", "suites/ci.yaml", "--limit", "1",
                 "--samples", "1", "--stage-nfe", "1=2,3", "--stage-nfe", "2=1,2", "--metrics", "none",
                 "--out", str(out)]) == 0
    df = load_results(out)
    assert len(df) == 6 and set(df["status"]) == {"done"}
    cascade = df[df["preset"] == "tiny-ltx-multiscale"]
    assert sorted(zip(cascade["s1_nfe"], cascade["s2_nfe"])) == [(2, 1), (2, 2), (3, 1), (3, 2)]
    assert cascade["s1_shared"].sum() == 2  # the low-resolution pass once per stage-1 NFE
    assert (cascade["s2_upsample_s"] > 0).all() and cascade["s1_video_path"].str.startswith("previews/").all()
    assert sorted(df[df["preset"] == "tiny-ltx"]["s1_nfe"]) == [2, 3]
    assert main(["flops", "--preset", "tiny-ltx-multiscale"]) == 0
    assert "upsample" in capsys.readouterr().out


def test_one_step_runs_where_diffusers_cannot(single):
    """LTXPipeline at num_inference_steps=1 divides 0 by 0 in the scheduler's terminal stretch and fails; fvbench
    takes the one step unstretched (the run's warm-up uses 1 NFE per stage)."""
    one = single.preset.with_overrides({"stage1": {"nfe": 1}})
    out = LtxGenerator(one, single.components, "cpu").generate(PROMPT, SEED).stages[0]
    assert out.nfe == 1 and out.steps[0][0] == 1000.0 and torch.isfinite(out.latents).all()
    with pytest.raises(IndexError):
        _ltx_pipeline(single)(prompt=PROMPT, height=64, width=64, num_frames=9, num_inference_steps=1,
                              max_sequence_length=16, output_type="latent")


def test_cross_family_size_keeps_the_upsampler_ratio():
    """At a common output size the multiscale cascade keeps its exact x2 between passes (the refine pass cannot take
    any other size), rounding the output to a multiple of 64; the single stage rounds to 32."""
    from fvbench.compute.compare import at_output_size

    multi = at_output_size(get_preset("ltx-video-multiscale"), 480, 720, 5.0)
    assert [(s.height, s.width) for s in multi.stages] == [(256, 352), (512, 704)]
    assert multi.frames == 129 and (multi.frames - 1) % 8 == 0  # 5 s at 25 fps, rounded up to 8k+1
    single = at_output_size(get_preset("ltx-video-2b"), 480, 720, 5.0)
    assert (single.stages[0].height, single.stages[0].width) == (480, 704)


def test_real_configs_are_diffusers_own():
    """The transcribed numbers carry no typo: the 2B transformer is LTXVideoTransformer3DModel's defaults (the
    conversion script's 2B config is too), the 13B differs exactly where the script's 0.9.7 config does, the upsampler is
    LTXLatentUpsamplerModel's defaults, and ltx-video-2b samples with LTXPipeline.__call__'s defaults."""
    from diffusers import LTXVideoTransformer3DModel
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    from _family_checks import assert_defaults

    two_b = get_preset("ltx-video-2b")
    assert_defaults(LTXVideoTransformer3DModel, two_b.components["transformer"].config)
    big = dict(get_preset("ltx-video-multiscale").components["transformer"].config)
    assert {k: v for k, v in big.items() if two_b.components["transformer"].config[k] != v} == {
        "attention_head_dim": 128, "cross_attention_dim": 4096, "num_layers": 48}
    assert_defaults(LTXLatentUpsamplerModel, get_preset("ltx-video-multiscale").components["latent_upsampler"].config)
    s = two_b.stages[0]
    assert_defaults(LTXPipeline.__call__, {"num_frames": two_b.frames, "num_inference_steps": s.nfe,
                                           "guidance_scale": s.cfg, "max_sequence_length": two_b.max_text_length,
                                           "frame_rate": two_b.fps})
