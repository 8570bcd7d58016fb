"""ShapesWorld: the world, its exact metrics (100% on ground truth, wrong on wrong videos), the shipped weights
through the generator, and a training smoke run with resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fvbench.errors import FvbenchError
from fvbench.shapesworld import metrics as M
from fvbench.shapesworld import world as W


# -- the world ---------------------------------------------------------------------------------------------------
def test_render_is_seeded_and_shaped():
    a = W.Attributes("red", "square", "left")
    v1, v2, v3 = W.render(a, 1), W.render(a, 1), W.render(a, 2)
    assert v1.shape == (W.FRAMES, 64, 64, 3) and v1.dtype == np.uint8
    assert np.array_equal(v1, v2) and not np.array_equal(v1, v3)
    assert np.array_equal(W.render_many([a], [1])[0], v1)


def test_texture_vanishes_exactly_under_4x_pooling():
    a = W.Attributes("blue", "square", "right")
    high, low = W.render_pair(a, 0)
    assert len(np.unique(high.reshape(-1, 3), axis=0)) == 3  # background, light and dark cells
    assert np.array_equal(W.pool(W.checker()[None, :, :, None].repeat(3, -1).astype(np.float64)), np.zeros((1, 16, 16, 3)))
    # blocks fully inside the shape pool to the plain colour, exactly
    inside = W.pool(W.shape_mask("square", 32, 32)[None, :, :, None].astype(float)) == 1.0
    square = np.where(W.shape_mask("square", 32, 32)[..., None], np.array(W.COLOURS["blue"]) + W.checker()[..., None] * 40,
                      np.array(W.BACKGROUND))
    pooled = W.pool(square[None])
    assert np.array_equal(pooled[inside[..., 0]], np.tile(W.COLOURS["blue"], (int(inside.sum()), 1)).astype(float))
    assert low.shape == (W.FRAMES, 16, 16, 3)


def test_moves_three_pixels_per_frame_in_its_direction():
    for d, (dx, dy) in W.DIRECTIONS.items():
        video = W.render(W.Attributes("green", "circle", d), 5)
        mask = (video != np.array(W.BACKGROUND, dtype=np.uint8)).any(axis=-1)
        ys, xs = np.mgrid[0:64, 0:64]
        track = np.stack([(mask * xs).sum((1, 2)) / mask.sum((1, 2)), (mask * ys).sum((1, 2)) / mask.sum((1, 2))], 1)
        assert np.allclose(np.diff(track, axis=0), [[3 * dx, 3 * dy]] * (W.FRAMES - 1), atol=1e-9)
        # the 16x16 detector's track is within a tenth of a pixel (partial edge blocks keep a little texture)
        assert np.allclose(np.diff(M.read_video(video).centroids, axis=0), [[3 * dx, 3 * dy]] * (W.FRAMES - 1),
                           atol=0.1)


def test_held_out_combinations():
    held, train = W.held_out_attributes(), W.training_attributes()
    assert len(held) == 18 and len(train) == 54 and not set(held) & set(train)
    assert set(held) | set(train) == set(W.all_attributes())
    for field, values in (("colour", W.COLOURS), ("shape", W.SHAPES), ("direction", W.DIRECTIONS)):
        assert {getattr(a, field) for a in held} == set(values) == {getattr(a, field) for a in train}


def test_prompts_parse_and_bad_ones_fail():
    for a in W.all_attributes():
        assert W.parse_prompt(a.prompt) == a
    with pytest.raises(FvbenchError, match="no shape"):
        W.parse_prompt("a red cat moving left")


def test_suite_is_the_held_out_set():
    from fvbench.shapesworld.evaluate import suite_units

    units = suite_units()
    assert len(units) >= 144
    assert {u.attrs for u in units} == set(W.held_out_attributes())
    assert len({(u.attrs, u.seed) for u in units}) == len(units)


# -- metrics -----------------------------------------------------------------------------------------------------
def test_attributes_recovered_on_every_ground_truth_combination():
    for i, a in enumerate(W.all_attributes()):
        high, low = W.render_pair(a, i)
        for video in (high, low):
            assert M.attribute_scores(video, a.prompt) == {"colour": True, "shape": True, "direction": True,
                                                          "all_three": True}, (a, video.shape)


def test_attributes_wrong_when_the_video_is_wrong():
    video = W.render(W.Attributes("red", "circle", "up"), 3)
    assert M.attribute_scores(video, "a blue triangle moving down") == {
        "colour": False, "shape": False, "direction": False, "all_three": False}
    assert M.attribute_scores(video[::-1].copy(), "a red circle moving up")["direction"] is False
    blank = np.full_like(video, 120)
    assert M.read_video(blank).colour is None and not M.attribute_scores(blank, "a red circle moving up")["colour"]
    still = np.repeat(video[:1], W.FRAMES, axis=0)
    assert M.read_video(still).direction is None


def test_detail_fidelity_consistency_on_truth_bilinear_and_noise():
    from fvbench.shapesworld.evaluate import bilinear

    a = W.Attributes("yellow", "triangle", "right")
    high, low = W.render_pair(a, 7)
    up = bilinear(low)
    assert 0.97 < M.detail_ratio(high, a) < 1.03
    assert M.detail_ratio(up, a) < 0.05
    noisy = np.clip(high + np.random.default_rng(0).normal(0, 30, high.shape), 0, 255).astype(np.uint8)
    assert M.detail_ratio(noisy, a) > 1.5  # noise inflates detail: never read it alone
    assert M.fidelity_psnr(high, high) == float("inf")
    assert 20 < M.fidelity_psnr(up, high) < 35
    assert M.consistency_psnr(high, low) > 60  # only uint8 rounding separates them
    assert M.consistency_psnr(up, low) < M.consistency_psnr(high, low)
    assert M.temporal_rms_px(high) < 0.1 and M.temporal_rms_px(low) < 0.1
    jumpy = high.copy()
    jumpy[4] = np.roll(high[4], 6, axis=1)
    assert M.temporal_rms_px(jumpy) > 1.0


def test_metrics_through_the_registry():
    from fvbench.metrics.registry import get_metric, score_video

    a = W.Attributes("cyan", "square", "down")
    high, _ = W.render_pair(a, 0)
    names = ["sw_colour", "sw_shape", "sw_direction", "sw_all_three", "sw_detail_ratio", "sw_temporal_rms_px",
             "sw_consistency_psnr"]
    ms = [get_metric(n) for n in names]
    out = score_video(ms, high, a.prompt, reference=high)
    assert [out[n][0] for n in names[:4]] == [1.0] * 4
    assert abs(out["sw_detail_ratio"][0] - 1.0) < 0.03 and out["sw_consistency_psnr"][0] > 60
    wrong = score_video(ms[:4], high, "a red circle moving up")
    assert [wrong[n][0] for n in names[:4]] == [0.0] * 4
    assert score_video(ms[:1], high, "a cat")["sw_colour"][1].startswith("FvbenchError")


# -- models through the generator --------------------------------------------------------------------------------
SW_PRESETS = ["sw-flashvideo-s", "sw-flashvideo-m", "sw-vanilla-cascade-s", "sw-dit-s"]


def _shipped_presets():
    from fvbench.generation.presets import all_presets

    return sorted(n for n, p in all_presets().items() if n.startswith("sw-"))


def test_presets_and_shipped_weights_agree():
    from fvbench.generation.presets import get_preset
    from fvbench.shapesworld.train import get_spec, shipped_weights

    names = _shipped_presets()
    assert names, "no ShapesWorld presets"
    total = 0
    for name in names:
        p = get_preset(name)
        assert p.frames == W.FRAMES and p.latent_frames == W.FRAMES and p.vae_spatial_factor == 1
        for spec in p.components.values():
            if spec.type != "shapesworld-unet":
                continue
            folder = shipped_weights(spec.path)
            assert p.weights_dir() / spec.path == folder
            cfg = json.loads((folder / "config.json").read_text())
            assert {k: cfg[k] for k in spec.config} == spec.config, (name, spec.path)
            record = json.loads((folder / "training.json").read_text())
            # the shipped weights were trained by today's recipe (stopped runs say so: steps_done < steps)
            assert record["spec"] == dataclasses.asdict(get_spec(spec.path))
            assert record["finished"] == (record["steps_done"] == record["spec"]["steps"])
            assert 0 < record["steps_done"] <= record["spec"]["steps"] and record["curve"]["step"][-1] == record["steps_done"]
            assert record["curve"]["loss"][-1] < 0.5 * record["curve"]["loss"][0]
    for f in Path(shipped_weights("x")).parent.glob("*/diffusion_pytorch_model.safetensors"):
        total += f.stat().st_size
    assert 0 < total < 50 * 2**20


@pytest.fixture(scope="module")
def sw_cascade():
    from fvbench.generation.generator import Generator
    from fvbench.generation.presets import get_preset

    preset = get_preset("sw-flashvideo-s").with_overrides({"stage1": {"nfe": 3}, "stage2": {"nfe": 2}})
    return Generator.from_preset(preset)


def test_shipped_cascade_runs_through_the_generator(sw_cascade):
    r1 = sw_cascade.generate("a red square moving left", seed=3)
    r2 = sw_cascade.generate("a red square moving left", seed=3)
    assert [tuple(s.video.shape) for s in r1.stages] == [(8, 16, 16, 3), (8, 64, 64, 3)]
    assert [s.nfe for s in r1.stages] == [3, 2] and r1.stages[0].rows == 6 and r1.stages[1].rows == 2  # CFG 2, none
    assert torch.equal(r1.video, r2.video)
    assert r1.video.float().std() > 5  # not a blank frame
    counts = sw_cascade.components.parameter_counts()
    assert counts["text_encoder"] == 0 and counts["vae"] == 0 and counts["stage1"] > 10**6


def test_stage2_from_true_low_res_beats_nothing_sensible(sw_cascade):
    """Stage II on the true 16x16 input stays close to the truth (a trained model, not random weights)."""
    from fvbench.shapesworld.evaluate import EvalUnit, stage2_from_truth, upscale_quality

    units = [EvalUnit(W.Attributes("purple", "circle", "right"), 11)]
    q = upscale_quality(stage2_from_truth(sw_cascade, units, nfe=2), units)
    assert q["psnr"] > 18 and q["consistency_psnr"] > 20


@pytest.mark.parametrize("name", [n for n in SW_PRESETS if n != "sw-flashvideo-s"])
def test_every_preset_loads_and_runs_one_step(name):
    from fvbench.generation.generator import Generator
    from fvbench.generation.presets import get_preset

    if name not in _shipped_presets():
        pytest.skip(f"{name} is not shipped")
    preset = get_preset(name)
    preset = preset.with_overrides({s.name: {"nfe": 1} for s in preset.stages})
    video = Generator.from_preset(preset).generate("a green triangle moving up", seed=0).video
    assert tuple(video.shape) == (8, 64, 64, 3)


def test_identity_vae_frame_rule_and_missing_weights(tmp_path):
    from fvbench.errors import MissingWeightsError
    from fvbench.generation.generator import Generator
    from fvbench.generation.presets import get_preset

    p = get_preset("sw-flashvideo-s")
    assert p.with_overrides(frames=5).latent_frames == 5  # pixel space: any positive count
    with pytest.raises(FvbenchError, match="4k\\+1"):
        get_preset("tiny-dit").with_overrides(frames=8)
    with pytest.raises(FvbenchError, match="not divisible by 16"):  # the stage-II U-Net folds 4x4 and halves twice
        p.with_overrides({"stage2": {"height": 56, "width": 56}})
    with pytest.raises(MissingWeightsError, match="stage1"):
        Generator.from_preset(p, weights_dir=tmp_path)


# -- training ----------------------------------------------------------------------------------------------------
def test_training_smoke_resumes(tmp_path):
    from fvbench.shapesworld.train import CHECKPOINT, RECORD, TrainSpec, train

    spec = TrainSpec("smoke", "stage2", {"channels": [8, 16], "emb_dim": 16, "patch": 4, "stem_channels": 4,
                                         "prediction": "sample"}, steps=3, batch_size=2, warmup=1,
                     checkpoint_every=1, log_every=1)
    logs: list[str] = []
    train(spec, tmp_path, seed=1, max_steps=2, log=logs.append)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["step"] == 2 and json.loads((tmp_path / RECORD).read_text())["finished"] is False
    train(spec, tmp_path, seed=1, log=logs.append)
    assert any("resumed at step 2" in line for line in logs)
    record = json.loads((tmp_path / RECORD).read_text())
    assert record["finished"] and record["steps_done"] == 3 and record["curve"]["step"] == [1, 2, 3]
    assert record["seed"] == 1 and record["spec"]["network"]["channels"] == [8, 16]
    from fvbench.shapesworld.models import ShapesWorldUNet

    model = ShapesWorldUNet.from_pretrained(tmp_path)
    assert next(model.parameters()).dtype == torch.float32  # shipped float16, loaded as float32

    # the same three steps in one go give the same weights: data and resume are deterministic
    other = tmp_path / "again"
    train(dataclasses.replace(spec), other, seed=1, log=logs.append)
    a = torch.load(tmp_path / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(other / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_cli_train_rejects_unknown_model_and_lists_models():
    from click.testing import CliRunner

    from fvbench.cli import cli, main

    assert main(["shapesworld", "train", "no-such-model"]) == 2
    out = CliRunner().invoke(cli, ["shapesworld", "models"])
    assert out.exit_code == 0 and "stage1-s" in out.output and "stage2-s" in out.output


def test_stage1_is_plain_rectified_flow_euler_from_noise(sw_cascade):
    """flow-euler + init noise + shift 1.0 = x += (1/N) * v(x, 1000 (1 - k/N)) from Gaussian noise, with CFG."""
    from fvbench.generation.generator import stage_seed, to_uint8

    gen, seed, n = sw_cascade, 5, sw_cascade.preset.stages[0].nfe
    text, _ = gen.encode_text("a blue circle moving down")
    out = gen.run_stage(0, text, seed)
    x = torch.randn((1, 8, 3, 16, 16), generator=torch.Generator().manual_seed(stage_seed(seed, 0)))
    model = gen.components.transformers["stage1"]
    labels = torch.cat([torch.zeros_like(text.cond), text.cond])
    with torch.no_grad():
        for k in range(n):
            v_u, v_c = model(torch.cat([x, x]), labels, torch.full((2,), 1000.0 * (1 - k / n)))[0].chunk(2)
            x = x + (v_u + 2.0 * (v_c - v_u)) / n
    assert torch.allclose(out.latents, x, atol=1e-5)
    assert torch.equal(out.video, to_uint8(x.permute(0, 2, 1, 3, 4)))


def test_flops_of_a_shapesworld_generation_are_what_was_executed():
    """Counted on real tensors under FlopCounterMode = the meta-device accounting (the identity VAE costs nothing)."""
    from torch.utils.flop_counter import FlopCounterMode

    from fvbench.compute.flops import preset_flops
    from fvbench.generation.generator import Generator
    from fvbench.generation.presets import get_preset

    p = get_preset("sw-flashvideo-s").with_overrides({"stage1": {"nfe": 2}, "stage2": {"nfe": 1}})
    gen = Generator.from_preset(p)
    with FlopCounterMode(display=False) as counter:
        gen.generate("a red square moving left", 0)
    flops = preset_flops(p)
    assert flops["stages"]["stage1"]["vae_decode"] == flops["stages"]["stage2"]["vae_encode"] == 0
    assert counter.get_total_flops() == flops["total"] > 0
