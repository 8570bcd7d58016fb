"""Wan family: fvbench's generation equals diffusers' WanPipeline (Wan 2.1, and Wan 2.2's expert split in the
configuration diffusers runs), the split schedule shares its high-noise prefix bitwise, real folders load (and a
missing file names itself), FLOPs of the real configurations on meta, and `fvbench run` end to end."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
import torch

from fvbench import load_results
from fvbench.cli import main
from fvbench.compute.flops import preset_flops
from fvbench.errors import FvbenchError
from fvbench.generation.generator import Generator, load_components, stage_seed
from fvbench.generation.noise import SeededNoise
from fvbench.generation.pipelines import make_generator
from fvbench.generation.presets import get_preset
from fvbench.runner import make_plan
from fvbench.spec import SweepOptions
from fvbench.worker import GroupWorker

PROMPT = "a red cat walking on the beach"
SEED = 3
ATOL = 1e-5
PROVENANCE = {"device": "cpu", "device_name": "test", "torch_threads": 2, "git": None, "versions": {}}


def _gen(preset, components, keep_pixels: bool = False) -> Generator:
    """The generator the preset's pipeline names (WanGenerator), on already loaded components."""
    gen = make_generator(preset, components)
    gen.keep_pixels = keep_pixels
    return gen


def _pipeline(gen: Generator, two_experts: bool):
    import copy

    from diffusers import WanPipeline

    c = gen.components
    kwargs = {"transformer_2": c.modules["transformer_2"], "boundary_ratio":
              gen.preset.stages[0].options["boundary_ratio"]} if two_experts else {}
    pipe = WanPipeline(tokenizer=c.tokenizer, text_encoder=c.text_encoder, vae=c.vae,
                       scheduler=copy.deepcopy(c.modules["scheduler"]), transformer=c.modules["transformer"], **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _noise(gen: Generator) -> torch.Tensor:
    return SeededNoise(stage_seed(SEED, 0)).randn(gen._shape(gen.preset.stages[0]))


def _diffusers_run(gen: Generator, steps: int, guidance: float, guidance_2: float | None = None,
                   two_experts: bool = False, record: list | None = None):
    """Latents and float frames (F, H, W, 3) in [0, 1] of WanPipeline from fvbench's starting noise."""
    pipe = _pipeline(gen, two_experts)
    s = gen.preset.stages[0]
    common = dict(prompt=PROMPT, negative_prompt="", height=s.height, width=s.width, num_frames=gen.preset.frames,
                  num_inference_steps=steps, guidance_scale=guidance, max_sequence_length=gen.preset.max_text_length)
    if guidance_2 is not None:
        common["guidance_scale_2"] = guidance_2

    def keep(p, i, t, kw):  # the latents after every step
        if record is not None:
            record.append(kw["latents"].clone())
        return {}

    latents = pipe(**common, latents=_noise(gen), output_type="latent", callback_on_step_end=keep).frames
    frames = pipe(**common, latents=_noise(gen), output_type="np").frames[0]
    return latents, torch.from_numpy(frames)


def test_wan21_equals_wan_pipeline():
    gen = Generator.from_preset(get_preset("tiny-wan"))
    gen.keep_pixels = True
    out = gen.generate(PROMPT, SEED).stages[0]
    s = gen.preset.stages[0]
    latents, frames = _diffusers_run(gen, s.nfe, s.cfg)
    assert out.latents.shape == latents.shape == (1, 16, 3, 4, 4)
    assert (out.latents - latents).abs().max() < ATOL
    assert out.pixels.shape == frames.shape == (9, 32, 32, 3)
    assert (out.pixels / 255.0 - frames).abs().max() < ATOL
    assert out.nfe == 4 and out.rows == 8  # cond and uncond as two calls per step, as WanPipeline does
    # the comparison can tell a wrong guidance apart
    other, _ = _diffusers_run(gen, s.nfe, 3.0)
    assert (out.latents - other).abs().max() > 1e-3


def _shared(k: int, m: int, grid: int):
    """tiny-wan22 in the configuration diffusers runs: one grid, the boundary's split of it."""
    return get_preset("tiny-wan22").with_overrides({
        "high_noise": {"nfe": k, "options": {"boundary_ratio": 0.875, "schedule": "shared", "grid_steps": grid}},
        "low_noise": {"nfe": m, "options": {"schedule": "shared"}}})


def test_wan22_expert_split_equals_wan_pipeline_with_two_transformers():
    from fvbench.families._wan import boundary_steps

    base = Generator.from_preset(get_preset("tiny-wan22"))
    sched = base.components.modules["scheduler"].__class__.from_config(base.components.modules["scheduler"].config)
    grid = 6
    sched.set_timesteps(grid)
    k = boundary_steps(sched, 0.875)
    assert 0 < k < grid
    gen = _gen(_shared(k, grid - k, grid), base.components, keep_pixels=True)
    res = gen.generate(PROMPT, SEED)
    hi, lo = res.stages
    steps: list[torch.Tensor] = []
    latents, frames = _diffusers_run(gen, grid, 4.0, 3.0, two_experts=True, record=steps)
    assert len(steps) == grid
    assert (hi.latents - steps[k - 1]).abs().max() < ATOL  # the high-noise prefix is diffusers' latents at the switch
    assert (lo.latents - latents).abs().max() < ATOL
    assert (lo.pixels / 255.0 - frames).abs().max() < ATOL
    assert [g for _, g in hi.steps] == [4.0] * k and [g for _, g in lo.steps] == [3.0] * (grid - k)
    assert min(t for t, _ in hi.steps) >= 875 > max(t for t, _ in lo.steps)
    # the high-noise stage is not decoded: no frames, no decode time
    assert hi.video.shape[0] == 0 and hi.seconds["vae_decode"] == 0.0
    # the experts are not interchangeable: swapping them changes the result beyond the tolerance
    swapped = dataclasses.replace(gen.preset, stages=tuple(dataclasses.replace(s, transformer=t) for s, t in
                                                           zip(gen.preset.stages, ("transformer_2", "transformer"))))
    other = _gen(swapped, base.components).generate(PROMPT, SEED).stages[-1].latents
    assert (other - latents).abs().max() > 1e-3
    # fvbench's split schedule at the same counts is its own variant, not diffusers' trajectory
    split_preset = get_preset("tiny-wan22").with_overrides({"high_noise": {"nfe": k}, "low_noise": {"nfe": grid - k}})
    split = _gen(split_preset, base.components).generate(PROMPT, SEED).stages[-1].latents
    assert (split - latents).abs().max() > 1e-3


def test_shared_schedule_refuses_a_step_count_its_grid_does_not_give():
    with pytest.raises(FvbenchError, match="steps left of diffusers' 6-step grid"):
        _shared(2, 3, 6)
    gen = Generator.from_preset(_shared(3, 3, 6))  # 6 steps at 0.875 give the high-noise expert 2, not 3
    with pytest.raises(FvbenchError, match="gives the high-noise expert 2 steps, not nfe 3"):
        gen.generate(PROMPT, SEED)


def test_split_schedule_grids_meet_at_the_boundary():
    gen = Generator.from_preset(get_preset("tiny-wan22").with_overrides({"high_noise": {"nfe": 3},
                                                                          "low_noise": {"nfe": 4}}))
    hi, lo = gen.generate(PROMPT, SEED).stages
    assert hi.state["sigma"] == pytest.approx(0.875)  # stage 1 stops at the boundary sigma...
    assert len(hi.steps) == 3 and hi.steps[0][0] == 999 and min(t for t, _ in hi.steps) > 875
    assert len(lo.steps) == 4 and int(lo.steps[0][0]) in (874, 875)  # ...and stage 2 starts there
    assert lo.state["sigma"] == 0.0  # ...and ends at 0
    # both grids are uniform in unshifted sigma (as diffusers' is), from 1 to u(0.875) = 0.7 and from 0.7 to 1/1000
    shift = lambda u: 3.0 * u / (1 + 2.0 * u)  # noqa: E731 (flow_shift 3)
    expect_hi = [shift(u) for u in (1.0, 0.9, 0.8)]
    expect_lo = [shift(0.7 - i * (0.7 - 0.001) / 4) for i in range(4)]
    assert [t for t, _ in hi.steps] == [int(s * 1000) for s in (expect_hi[0] - 1e-6, *expect_hi[1:])]
    assert [t for t, _ in lo.steps] == pytest.approx([s * 1000 for s in expect_lo], abs=1.0)


def test_split_prefix_is_computed_once_and_reused_bitwise(tmp_path):
    """--stage-nfe 1=1,2 --stage-nfe 2=2,3 on tiny-wan22: the high-noise stage once per stage-1 variant,
    each low-noise variant continuing that cached output; every video equals direct generation bitwise."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\n")
    plan = make_plan(str(prompts), SweepOptions(presets=("tiny-wan22",), stage_nfe=((1, (1, 2)), (2, (2, 3)))),
                     samples=1)
    assert len(plan.units) == 4
    videos: dict = {}

    def capture(video, unit, path):  # the final video of each unit, as the worker hands it to metrics
        videos[unit.unit_hash] = video.clone()
        return {}

    worker = GroupWorker(tmp_path / "run", PROVENANCE, ("test", "0" * 64), save_videos="none", metric_fn=capture)
    rows = [r.row for g in plan.groups for r in worker.process(g, set())]
    assert all(r["status"] == "done" for r in rows), [r.get("error") for r in rows]
    by_unit = {u.unit_hash: u for u in plan.units}
    assert Counter(r["s1_nfe"] for r in rows if not r["s1_shared"]) == {1: 1, 2: 1}  # once per stage-1 variant
    assert sum(r["s1_shared"] for r in rows) == 2
    comps = worker.components("tiny-wan22")
    for r in rows:
        direct = _gen(by_unit[r["unit_hash"]].config.preset, comps).generate(r["prompt"], r["seed"])
        assert torch.equal(direct.video, videos[r["unit_hash"]]), r["config"]
        assert r["s1_vae_decode_s"] == 0.0 and r["s2_vae_decode_s"] > 0
    # and directly: one stage-1 output feeds two stage-2 variants, is not changed by them, and gives what a fresh
    # stage 1 would have given them
    gen = Generator.from_preset(get_preset("tiny-wan22"))
    text, _ = gen.encode_text(PROMPT)
    first = gen.run_stage(0, text, SEED)
    before = first.latents.clone()
    for m in (2, 5):
        variant = _gen(gen.preset.with_overrides({"low_noise": {"nfe": m}}), gen.components)
        reused = variant.run_stage(1, text, SEED, first)
        fresh = variant.generate(PROMPT, SEED)
        assert torch.equal(fresh.stages[0].latents, first.latents)
        assert torch.equal(reused.latents, fresh.stages[1].latents) and torch.equal(reused.video, fresh.video)
    assert torch.equal(first.latents, before)


def test_shared_schedule_does_not_change_the_cached_scheduler():
    gen = Generator.from_preset(_shared(2, 4, 6))
    text, _ = gen.encode_text(PROMPT)
    first = gen.run_stage(0, text, SEED)
    a = gen.run_stage(1, text, SEED, first)
    b = gen.run_stage(1, text, SEED, first)  # a second reader of the same cached output gets the same result
    assert first.state["scheduler"].step_index == 2
    assert torch.equal(a.latents, b.latents)


def _save_folder(gen: Generator, root):
    c = gen.components.modules
    for role in ("transformer", "transformer_2", "vae", "text_encoder", "tokenizer", "scheduler"):
        if role in c:
            c[role].save_pretrained(root / role)


@pytest.mark.parametrize("name", ["wan2.1-t2v-1.3b", "wan2.2-t2v-a14b"])
def test_real_preset_loads_a_diffusers_layout_folder(tmp_path, name):
    """Tiny parts saved as the published folder lays them out, loaded through the REAL preset's loader (at a tiny
    size): the same result as the in-memory parts. A missing file names itself in one line."""
    built = Generator.from_preset(get_preset("tiny-wan22"))
    _save_folder(built, tmp_path)
    assert (tmp_path / "transformer_2" / "config.json").is_file()
    assert (tmp_path / "scheduler" / "scheduler_config.json").is_file()
    real = get_preset(name)
    small = {s.name: {"height": 32, "width": 32, "nfe": 2} for s in real.stages}
    if len(real.stages) == 2:  # diffusers' own split of a 6-step grid (2 + 4) instead of 40 steps
        small["high_noise"]["options"] = {**real.stages[0].options, "grid_steps": 6}
        small["low_noise"]["nfe"] = 4
    preset = real.with_overrides(small, frames=9)
    loaded = make_generator(preset, load_components(preset, tmp_path))
    loaded.keep_pixels = True
    assert type(loaded.components.modules["text_encoder"]).__name__ == "UMT5EncoderModel"
    assert loaded.components.transformers["transformer"].config.num_layers == 2  # the folder's, not the 14B's
    in_memory = _gen(preset, built.components, keep_pixels=True)
    a, b = in_memory.generate(PROMPT, SEED), loaded.generate(PROMPT, SEED)
    assert [s.nfe for s in b.stages] == [s.nfe for s in preset.stages]
    # loaded weights are bitwise the built ones; a loaded tensor's memory layout may change a GEMM's last bits
    assert (a.stages[-1].latents - b.stages[-1].latents).abs().max() < 1e-5
    assert (a.stages[-1].pixels - b.stages[-1].pixels).abs().max() / 255 < 1e-5
    ids = built.components.tokenizer([PROMPT]).input_ids
    assert loaded.components.tokenizer([PROMPT]).input_ids == ids
    missing = "transformer_2" if len(preset.stages) == 2 else "transformer"
    (tmp_path / missing / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FvbenchError) as e:
        load_components(preset, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and f"{missing} has no weights in {tmp_path / missing}" in msg, msg
    assert "diffusion_pytorch_model.safetensors" in msg


def test_missing_file_through_the_cli_is_one_line(tmp_path, capsys):
    built = Generator.from_preset(get_preset("tiny-wan"))
    _save_folder(built, tmp_path / "w")
    (tmp_path / "w" / "scheduler" / "scheduler_config.json").unlink()
    capsys.readouterr()  # what saving printed
    rc = main(["generate", "--preset", "tiny-wan", "--prompt", "a cat", "--weights", str(tmp_path / "w"),
               "--out", str(tmp_path / "v.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]  # (transformers prints loading bars before it)
    assert rc != 0 and len(errors) == 1 and errors[0].endswith("scheduler/scheduler_config.json"), err
    assert errors[0] == err[-1] and "scheduler is missing" in errors[0]


def _analytic_transformer(cfg: dict, tokens: int, text: int) -> float:
    """2 x multiply-adds of a Wan block stack: self-attention projections (4 d^2) and cross-attention q/o (2 d^2) per
    video token, cross-attention k/v (2 d^2) per text token, the FFN (2 d f) per video token; attention 4 N^2 d and
    4 N L d; plus the text embedder (text_dim -> d -> d) on the text tokens."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    f, n_layers, td = cfg["ffn_dim"], cfg["num_layers"], cfg["text_dim"]
    per_layer = 2 * tokens * (6 * d * d + 2 * d * f) + 2 * text * 2 * d * d + 4 * tokens ** 2 * d + 4 * tokens * text * d
    return n_layers * per_layer + 2 * text * (td * d + d * d)


@pytest.mark.parametrize("name, tokens, width", [("wan2.1-t2v-1.3b", 21 * 30 * 52, 1536),
                                                 ("wan2.1-t2v-14b", 21 * 45 * 80, 5120)])
def test_real_config_flops_on_meta_match_the_analytic_count(name, tokens, width):
    from fvbench.families._wan import _transformer_flops

    preset = get_preset(name)
    spec = preset.components["transformer"]
    s = preset.stages[0]
    fwd, attn = _transformer_flops(spec.type, __import__("json").dumps(spec.config, sort_keys=True),
                                   preset.latent_frames, s.height // 8, s.width // 8, 512)
    analytic = _analytic_transformer(spec.config, tokens, 512)
    assert spec.config["num_attention_heads"] * spec.config["attention_head_dim"] == width
    assert abs(fwd / analytic - 1) < 0.02, (fwd, analytic)
    assert attn == pytest.approx(spec.config["num_layers"] * (4 * tokens ** 2 * width + 4 * tokens * 512 * width),
                                 rel=1e-9)
    total = preset_flops(preset)
    st = total["stages"]["stage1"]
    assert st["denoise"] == 50 * 2 * fwd  # 50 steps, two calls (cond, uncond) each
    assert st["vae_decode"] > 0 and st["vae_encode"] == 0
    assert total["text_encode"] > 0
    assert total["total"] == total["text_encode"] + st["total"]


def test_expert_split_flops_count_each_expert_and_no_undecoded_preview():
    p = get_preset("wan2.2-t2v-a14b")
    f = preset_flops(p)
    hi, lo = f["stages"]["high_noise"], f["stages"]["low_noise"]
    assert hi["vae_decode"] == 0 and lo["vae_decode"] > 0
    assert hi["denoise"] * 27 == lo["denoise"] * 13  # same architecture and size, 13 and 27 steps
    single = preset_flops(get_preset("wan2.1-t2v-14b"))["stages"]["stage1"]
    assert hi["denoise"] + lo["denoise"] == single["denoise"] * 40 // 50
    assert lo["vae_decode"] == single["vae_decode"]
    decoded = p.with_overrides({"high_noise": {"options": {**p.stages[0].options, "decode": True}}})
    assert preset_flops(decoded)["stages"]["high_noise"]["vae_decode"] == lo["vae_decode"]


def test_text_encoder_flops_of_umt5_xxl():
    p = get_preset("wan2.1-t2v-1.3b")
    cfg = p.components["text_encoder"].config
    d, ff, inner, layers, n = cfg["d_model"], cfg["d_ff"], cfg["num_heads"] * cfg["d_kv"], cfg["num_layers"], 512
    analytic = layers * (2 * n * (4 * d * inner + 3 * d * ff) + 4 * n * n * inner)
    assert preset_flops(p)["text_encode"] == pytest.approx(2 * analytic, rel=0.01)  # prompt and negative prompt


def test_cli_run_end_to_end_on_tiny_presets(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["run", "--presets", "tiny-wan,tiny-wan22", "--suite", "suites/ci.yaml", "--limit", "1", "--samples",
               "1", "--stage-nfe", "1=1,2", "--stage-nfe", "2=2,3", "--out", str(out)])
    o = capsys.readouterr()
    assert rc == 0, o.err
    df = load_results(out)
    assert (df.status == "done").all()
    single, split = df[df.preset == "tiny-wan"], df[df.preset == "tiny-wan22"]
    assert len(single) == 2 and len(split) == 4
    assert split.s1_shared.sum() == 2  # the high-noise prefix computed once per stage-1 NFE
    assert (split.s2_nfe_executed == split.s2_nfe).all() and (split.s2_batch_rows == 2 * split.s2_nfe).all()
    assert (split.s1_vae_decode_s == 0).all() and split.s1_video_path.isna().all()
    for path in df.final_video_path.tolist():
        assert (out / path).is_file()
    assert (df.flops_total > 0).all()


def test_flops_command_prints_the_family_rule(capsys):
    assert main(["flops", "--preset", "wan2.2-t2v-a14b"]) == 0
    out = capsys.readouterr().out
    total = preset_flops(get_preset("wan2.2-t2v-a14b"))["total"]
    assert f"total: {total / 1e12:,.2f} TFLOP per video" in out
    assert "vae decode (not decoded)" in out and "14,288,491,584" in out  # the 14B expert's parameters
    lines = [line for line in out.splitlines() if line.startswith("low_noise 720x1280x81f")]
    assert len(lines) == 1 and " 54 " in lines[0]  # 27 steps x (cond + uncond)


def test_scheduler_component_reaches_the_stage_keys():
    """The scheduler is a component no stage names: its config must still change every stage's key."""
    base = get_preset("tiny-wan22")
    comps = dict(base.components)
    comps["scheduler"] = dataclasses.replace(comps["scheduler"], config={**comps["scheduler"].config, "flow_shift": 5.0})
    other = dataclasses.replace(base, components=comps)
    gen = Generator.from_preset(base)
    a = gen.stage_keys(PROMPT, SEED)
    b = _gen(other, gen.components).stage_keys(PROMPT, SEED)
    assert a[0].output != b[0].output and a[1].output != b[1].output
