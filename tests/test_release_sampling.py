"""The `flashvideo` preset samples as FoundationVision/FlashVideo@8de4ae2 does: SAT's 51-step timestep subset and
dynamic CFG, the bf16 stage-II grid, the 'medium motion,' prompt, the release's VAE slicing and its FLOPs; the noise
seam replays recorded draws, and presets that do not use any of this are unchanged."""

import math

import pytest
import torch

from fvbench.errors import FvbenchError
from fvbench.generation.denoiser import Denoiser, TextConditioning
from fvbench.generation.generator import Generator, stage_seed
from fvbench.generation.noise import ReplayNoise, SeededNoise
from fvbench.generation.presets import get_preset, scope_notes
from fvbench.generation.samplers.sat import sample_sat_dpm
from fvbench.generation.schedules import (
    dynamic_cfg_scale,
    flow_model_timestep,
    sat_sqrt_alphas_cumprod,
    sat_timesteps,
    shifted_time_grid,
    shifted_time_grid_in,
    zero_snr_sqrt_alphas_cumprod,
)
from fvbench.generation.vae_slices import width_slices
from fvbench.spec import canonical_hash, preset_identity


def test_sat_timesteps_are_the_releases_51_step_subset():
    ts = sat_timesteps(51)
    assert len(ts) == 51
    assert ts[:6] == [999, 979, 959, 940, 920, 901]
    assert ts[-3:] == [58, 39, 19]
    assert ts == [int(999 - k * 999 / 51) for k in range(51)]  # linspace(999, 0, 51, endpoint=False), truncated


def test_zero_snr_rescale_is_taken_over_the_subset():
    ts = tuple(sat_timesteps(51))
    a = sat_sqrt_alphas_cumprod(ts)
    assert a.dtype == torch.float32 and float(a[0]) == 0.0  # t=999: zero SNR
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    raw19 = float(torch.cumprod(1 - betas, 0)[19].sqrt())
    assert float(a[-1]) == pytest.approx(raw19, abs=1e-7)  # the subset's clean end (t=19) keeps its value
    full19 = float(zero_snr_sqrt_alphas_cumprod()[19])  # the full-schedule rescale moves it
    assert abs(float(a[-1]) - full19) > 1e-4


def test_dynamic_cfg_scales_are_the_releases():
    # measured in the release (tests/fixtures/flashvideo_release/trace.json, stage1_guidance)
    release = [8.28700278206394, 4.004147260286327, 2.4043397587320214, 5.0461744148145495, 6.275258204878912]
    ours = [dynamic_cfg_scale(8.0, t, 51) for t in sat_timesteps(51)[:5]]
    assert ours == release
    x = (51 - 999) / 51
    assert ours[0] == 1 + 8 * (1 - math.cos(math.pi * x**5)) / 2


def test_stage2_grid_in_bf16_is_what_the_release_model_sees():
    grid = shifted_time_grid_in(5, 2.5, torch.bfloat16)
    assert grid.dtype == torch.bfloat16
    assert flow_model_timestep(grid).float().tolist() == [1000, 904, 784, 624, 384, 0]
    f64 = (1000 * (1 - shifted_time_grid(5, 2.5))).tolist()  # fvbench's own float64 grid is unchanged
    assert f64[1] == pytest.approx(909.0909, abs=1e-4) and f64[2] == pytest.approx(789.4737, abs=1e-4)


def test_flashvideo_preset_follows_the_release():
    p = get_preset("flashvideo")
    s1, s2 = p.stages
    assert (s1.solver, s1.nfe, s1.cfg, s1.cfg_schedule) == ("sat-dpm++2m", 51, 8.0, "dynamic")
    assert (s2.nfe, s2.cfg, s2.prompt_prefix, s2.time_grid_dtype) == (5, 13.0, "medium motion,", "bfloat16")
    assert (s2.upsample_input, s2.decode_width_splits) == ("float", 2)
    assert p.vae_encode_chunks == (17, 16, 16) and not p.vae_tiling
    assert "8de4ae2" in p.release
    paper = p.with_overrides({"stage2": {"nfe": 4}})  # the paper's NFE stays one override away
    assert paper.stages[1].nfe == 4


class _Constant(torch.nn.Module):
    """A fake transformer returning a constant v and recording the timesteps it sees."""

    def __init__(self, value: float):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.value, self.timesteps = value, []

    def forward(self, hidden_states, encoder_hidden_states, timestep, image_rotary_emb=None, return_dict=False):
        self.timesteps.append(float(timestep[0]))
        return (torch.full_like(hidden_states, self.value),)


def test_sat_solver_draws_in_the_releases_order_and_takes_its_first_step():
    shape = (1, 3, 2, 2, 2)
    n = 6
    draws = [torch.randn(shape, generator=torch.Generator().manual_seed(i)) for i in range(1 + 1 + 2 * (n - 2))]
    model = _Constant(0.5)
    text = TextConditioning(torch.zeros(1, 4, 8), torch.zeros(1, 4, 8))
    steps, seen = [], []
    noise = ReplayNoise(draws)
    sample_sat_dpm(Denoiser(model, text, False), noise, shape, n, 1.0, "constant", steps,
                   lambda i, x: seen.append(x.clone()))
    assert noise.remaining == 0
    assert model.timesteps == [float(t) for t in sat_timesteps(n)] == [t for t, _ in steps]
    # step 0 at zero SNR: x0-prediction = -v, x1 = a1 * x0 + sqrt(1 - a1^2) * eps_1
    a1 = sat_sqrt_alphas_cumprod(tuple(sat_timesteps(n)))[1]
    torch.testing.assert_close(seen[0], a1 * -0.5 + (1 - a1**2) ** 0.5 * draws[1], rtol=0, atol=1e-6)
    with pytest.raises(FvbenchError, match="only"):
        sample_sat_dpm(Denoiser(model, text, False), ReplayNoise(draws[:-1]), shape, n, 1.0, "constant")
    with pytest.raises(FvbenchError, match="shape"):
        ReplayNoise([torch.zeros(2)]).randn((3,))


@pytest.fixture(scope="module")
def release_tiny():
    return Generator.from_preset(get_preset("tiny-flashvideo-release"))


def test_stage2_prompt_is_prefixed_and_encoded_once(release_tiny, monkeypatch):
    seen = []
    embed = release_tiny._embed
    monkeypatch.setattr(release_tiny, "_embed", lambda text: seen.append(text) or embed(text))
    text, _ = release_tiny.encode_text("a cat")
    assert seen == ["a cat", "medium motion,a cat"]
    s1 = release_tiny.run_stage(0, text, 1)
    assert s1.pixels is not None and s1.pixels.dtype == torch.float32  # float frames reach stage II
    used = []
    den_init = Denoiser.__init__
    monkeypatch.setattr(Denoiser, "__init__", lambda self, tf, t, *a, **k: used.append(t) or den_init(self, tf, t, *a, **k))
    release_tiny.run_stage(1, text, 1, s1)
    assert used[0] is text.prefixed["medium motion,"]
    with pytest.raises(FvbenchError, match="not encoded"):
        release_tiny.run_stage(1, TextConditioning(text.cond, text.uncond), 1, s1)


def test_default_noise_is_the_seeded_generator_and_replay_reproduces_it(tiny_cascade, release_tiny):
    seed = 5
    a = tiny_cascade.generate("a dog", seed)
    b = tiny_cascade.generate("a dog", seed, noise=[SeededNoise(stage_seed(seed, i)) for i in range(2)])
    for x, y in zip(a.stages, b.stages):
        assert torch.equal(x.latents, y.latents) and torch.equal(x.video, y.video)
    # record the release-style preset's draws, then replay them under another seed: the same video
    recorded = [[], []]

    class Recording(SeededNoise):
        def __init__(self, seed, sink):
            super().__init__(seed)
            self.sink = sink

        def randn(self, shape, dtype=torch.float32):
            self.sink.append(super().randn(shape, dtype))
            return self.sink[-1]

    r1 = release_tiny.generate("a dog", seed, noise=[Recording(stage_seed(seed, i), recorded[i]) for i in range(2)])
    assert len(recorded[0]) == 1 + 1 + 2 * (6 - 2)  # stage I: initial x, then the SDE's draws
    assert [tuple(d.shape)[2] for d in recorded[1][:2]] == [2, 1]  # stage II: one posterior draw per encode chunk
    replay = [ReplayNoise(r) for r in recorded]
    r2 = release_tiny.generate("a dog", seed + 1, noise=replay)
    assert all(n.remaining == 0 for n in replay)
    assert torch.equal(r1.stages[-1].latents, r2.stages[-1].latents)


def test_presets_not_using_the_release_fields_keep_their_identity():
    # hashes of these presets on main before the release fields existed (stored results are keyed by them)
    assert canonical_hash(preset_identity(get_preset("tiny-flashvideo"))) == \
        "fed7ef4fa2f65baf4e95bc9c2014675b0cda2357ccfa40a006063f0e6cd91b5a"
    assert canonical_hash(preset_identity(get_preset("cpu-flashvideo-s"))) == \
        "a2bb56f0b7f2ee3f65e9adb13d7ac513c2703bf777c6e86a1870a1910fcd23cd"
    assert canonical_hash(preset_identity(get_preset("cogvideox-5b"))) == \
        "da2aa5e5466c65f047545f2c89b05397685bd1e3835162018f8f0c788291c93e"


def test_release_width_slices():
    assert width_slices(240, 2) == [(0, 0, 120, 136), (104, 120, 240, 240)]  # 1920 px: 16-latent overlaps
    assert width_slices(8, 2) == [(0, 0, 4, 4), (4, 4, 8, 8)]  # too narrow for an overlap
    assert width_slices(240, 1) == [(0, 0, 240, 240)]


def test_flashvideo_flops_count_51_and_5_forwards_and_the_release_vae():
    from fvbench.compute.flops import config_key, _vae_flops, cfg_batch, preset_flops, transformer_forward_flops

    p = get_preset("flashvideo")
    f = preset_flops(p)
    s1, s2 = p.stages
    assert f["stages"]["stage1"]["denoise"] == 51 * transformer_forward_flops(p, s1, cfg_batch(s1)).flops
    assert f["stages"]["stage2"]["denoise"] == 5 * transformer_forward_flops(p, s2, cfg_batch(s2)).flops
    key = config_key(p.components["vae"].config)
    whole = _vae_flops(key, "decode", 49, 1072, 1920, False)[0]
    tiled = _vae_flops(key, "encode", 49, 1072, 1920, True)[0]
    assert f["stages"]["stage2"]["vae_decode"] == pytest.approx(whole * 272 / 240, rel=1e-9)  # two 136-column slices
    assert f["stages"]["stage2"]["vae_encode"] < 0.75 * tiled  # chunked frames, not diffusers' 1,290 TFLOP tiles
    assert f["stages"]["stage1"]["vae_decode"] == _vae_flops(key, "decode", 49, 256, 480, False)[0]


def test_compare_rows_say_which_setting_they_follow():
    from fvbench.compute.compare import compare

    rows = {r["configuration"]: r for r in compare("flashvideo-1080p")}
    settings = {r["setting"] for r in rows.values()}
    assert settings == {"paper", "release", "cost-only proxy"}
    release = [r for r in rows.values() if r["setting"] == "release"][0]
    paper = [r for r in rows.values() if r["setting"] == "paper" and r["preset"] == "flashvideo" and r["stage"] == "all"]
    assert release["nfe"] == [51, 5] and paper[0]["nfe"] == [50, 4]


def test_vanilla_cascade_is_labelled_cost_only(capsys):
    from fvbench.cli import main

    assert any("COST-ONLY PROXY" in n for n in scope_notes(["flashvideo-vanilla-cascade"]))
    assert main(["presets"]) in (0, None)
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("flashvideo-vanilla-cascade")][0]
    assert "COST-ONLY PROXY" in line


def test_flashvideo_dits_use_sat_final_norm_eps_and_loading_refuses_missing_weights(tmp_path):
    from fvbench.generation.models.registry import build_component, load_component

    p = get_preset("flashvideo")
    for role in ("stage1", "stage2"):
        spec = p.components[role]
        assert spec.type == "flashvideo-transformer" and spec.config["norm_out_eps"] == 1e-6
    tiny = get_preset("tiny-flashvideo").components
    cfg = dict(tiny["stage2"].config, norm_out_eps=1e-6)
    assert build_component("flashvideo-transformer", cfg, 0).norm_out.norm.eps == 1e-6
    assert build_component("flashvideo-transformer", tiny["stage2"].config, 0).norm_out.norm.eps == 1e-5  # unchanged
    # a plain CogVideoX folder loaded as a FlashVideo transformer lacks the extra embeddings: an error, not random init
    build_component("cogvideox-transformer", tiny["stage1"].config, 0).save_pretrained(tmp_path / "dit")
    with pytest.raises(FvbenchError, match="not in the folder"):
        load_component("flashvideo-transformer", tmp_path / "dit", torch.float32, "flashvideo", "stage1")
