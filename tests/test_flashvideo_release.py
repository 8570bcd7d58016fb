"""Differential test: fvbench's ``flashvideo`` preset against FlashVideo's released code.

The fixtures (tests/fixtures/flashvideo_release, README there) were measured by running the release's own inference
(commit 8de4ae2) on tiny random-weight SAT checkpoints, recording every random draw. Here the checkpoints go through
``fvbench convert-flashvideo``, the real ``flashvideo`` preset's sampling settings run at the fixture's widths, the
recorded draws are replayed through the noise seam, and what the release computed is compared: model timesteps and
guidance scales (equal), the conditioning each stage's DiT sees, the latent entering every DiT call, stage II's z0,
final latents and decoded frames (max abs difference <= TOL in float32).

Needs only fvbench's own environment: no FlashVideo checkout, no SAT.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from unittest import mock

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from fvbench.cli import cli
from fvbench.generation.generator import Generator, load_components, to_pixels
from fvbench.generation.models.registry import build_component
from fvbench.generation.noise import ReplayNoise
from fvbench.generation.presets import get_preset
from fvbench.generation.vae_slices import decode_width_split

FIXTURE = Path(__file__).parent / "fixtures" / "flashvideo_release"
FIXTURE_PRESET = "flashvideo-release-fixture"
TOL = 1e-4  # max abs difference, float32, latents and frames in [0, 1]
TOL_DIT = 5e-6  # one DiT forward on the release's inputs, float32 (measured 7e-7 / 9.5e-7 with the release's eps)
WIDTH_KEYS = {"num_attention_heads", "num_layers", "text_embed_dim", "time_embed_dim", "max_text_seq_length",
              "sample_height", "sample_width", "block_out_channels", "layers_per_block"}


def load_trace() -> tuple[dict, dict[str, torch.Tensor]]:
    """trace.json (metadata, lists) and trace.safetensors (tensors) of the fixture."""
    return json.loads((FIXTURE / "trace.json").read_text()), load_file(FIXTURE / "trace.safetensors")


@pytest.fixture(scope="module")
def trace() -> tuple[dict, dict[str, torch.Tensor]]:
    return load_trace()


def _fixture_home(root: Path) -> Path:
    home = root / "home"
    (home / "baselines").mkdir(parents=True)
    (home / "baselines" / "fixture.yaml").write_text((FIXTURE / "preset.yaml").read_text())
    return home


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, object]:
    return convert_fixture(tmp_path_factory.mktemp("fv_release"))


def convert_fixture(root: Path) -> tuple[Path, object]:
    """The fixture checkpoints converted by the CLI, plus the fixture preset (component configs and resolutions)."""
    home = _fixture_home(root)
    out = root / "weights"
    ck = FIXTURE / "checkpoints"
    result = CliRunner().invoke(cli, [
        "convert-flashvideo", "--stage1", str(ck / "stage1.pt"), "--stage2", str(ck / "stage2.pt"),
        "--vae", str(ck / "3d-vae.pt"), "--out", str(out), "--like", FIXTURE_PRESET,
    ], env={"FVBENCH_HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert "LoRA layers merged" in result.output  # the release's stage-I LoRA went through the merge path
    with mock.patch.dict(os.environ, {"FVBENCH_HOME": str(home)}):
        fixture = get_preset(FIXTURE_PRESET)
    # text encoder folders so that load_components runs as for real weights; the embedding itself is replaced by
    # the release's recorded one in `run` (T5-XXL cannot run in the fixture)
    build_component("t5-tokenizer", {}, 0).save_pretrained(out / "tokenizer")
    build_component("t5-encoder", dict(fixture.components["text_encoder"].config), 0).save_pretrained(
        out / "text_encoder")
    return out, fixture


def release_preset(fixture):
    """The real ``flashvideo`` preset, every sampling setting kept, at the fixture's component widths and sizes.

    The fixture's stage1 / stage2 / vae configs (which the converter writes and the generator loads) must equal the
    real preset's except for the width keys.
    """
    real = get_preset("flashvideo")
    assert [s.name for s in real.stages] == [s.name for s in fixture.stages]
    for role in ("stage1", "stage2", "vae"):
        mine, theirs = fixture.components[role], real.components[role]
        assert mine.type == theirs.type, f"{role}: fixture {mine.type} vs flashvideo {theirs.type}"
        other = {k: v for k, v in mine.config.items() if k not in WIDTH_KEYS}
        assert other == {k: v for k, v in theirs.config.items() if k not in WIDTH_KEYS}, (
            f"{role}: the fixture preset's non-width settings differ from the flashvideo preset's; update "
            f"tests/fixtures/flashvideo_release/preset.yaml (and rerun the reference script if the release differs)")
    stages = tuple(dataclasses.replace(s, height=f.height, width=f.width) for s, f in zip(real.stages, fixture.stages))
    return dataclasses.replace(real, components=fixture.components, stages=stages, frames=fixture.frames,
                               max_text_length=fixture.max_text_length, dtype="float32")


@pytest.fixture(scope="module")
def run(weights, trace):
    return run_fvbench(*weights, *trace)


def run_fvbench(folder: Path, fixture, meta: dict, t: dict[str, torch.Tensor]) -> dict:
    """fvbench's generator on the converted fixture, replaying the release's noise; DiT calls recorded."""
    preset = release_preset(fixture)
    gen = Generator(preset, load_components(preset, folder), keep_pixels=True)

    embedded: list[str] = []
    table = meta["text_embeddings"]

    def recorded_embedding(text: str) -> torch.Tensor:
        embedded.append(text)
        if text not in table:
            raise AssertionError(f"fvbench encodes {text!r}; the release encoded only {sorted(table)}")
        return t[table[text]][None]
    gen._embed = recorded_embedding

    calls: dict[str, list[dict]] = {}
    for stage in preset.stages:
        def hook(_module, _args, kwargs, name=stage.name):
            calls.setdefault(name, []).append({
                "x": kwargs["hidden_states"].detach().float().clone(),
                "timestep": [float(v) for v in torch.as_tensor(kwargs["timestep"]).reshape(-1)],
                "text": kwargs["encoder_hidden_states"].detach().float().clone(),
            })
        gen.components.transformers[stage.transformer].register_forward_pre_hook(hook, with_kwargs=True)

    steps: dict[int, list[torch.Tensor]] = {}
    gen.on_step = lambda index, _step, latents: steps.setdefault(index, []).append(latents.detach().float().clone())

    n1 = meta["stage1_draws"]
    draws = [t[d["key"]] for d in meta["noise"]]
    noise = [ReplayNoise(draws[:n1], "release stage I noise"), ReplayNoise(draws[n1:], "release stage II noise")]
    result = gen.generate(meta["prompt"], meta["seed"], noise=noise)
    return {"result": result, "calls": calls, "steps": steps, "noise": noise, "embedded": embedded, "preset": preset, "gen": gen,
            "draws": draws[n1:]}


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shape {tuple(a.shape)} vs release {tuple(b.shape)}"
    return float((a.float() - b.float()).abs().max())


def test_every_recorded_draw_is_used(run, trace):
    meta, _ = trace
    assert [n.remaining for n in run["noise"]] == [0, 0]
    assert len(meta["noise"]) == 104


def test_prompts_per_stage_as_released(run, trace):
    meta, _ = trace
    assert meta["prompts_2"][0] == "medium motion," + meta["prompt"]
    assert set(run["embedded"]) == {meta["prompts_1"][0], meta["prompts_2"][0]}


def test_conditioning_seen_by_each_dit(run, trace):
    _, t = trace
    for name in ("stage1", "stage2"):
        c, uc = t[f"{name}/c_crossattn"][0], t[f"{name}/uc_crossattn"][0]
        for call in run["calls"][name]:
            rows = call["text"]
            assert rows.shape[0] == 2, f"{name}: CFG batch of 2 expected"
            assert any(torch.equal(r, c) for r in rows), f"{name}: the release's prompt embedding is not used"
            assert any(torch.equal(r, uc) for r in rows), f"{name}: the release's (zero) negative embedding is not used"


def _per_call(timesteps: list[list[float]]) -> list[float]:
    """One timestep per DiT call (the CFG rows share it; fvbench may pass it once for the batch)."""
    assert all(len(set(ts)) == 1 for ts in timesteps), "rows of one call see different timesteps"
    return [ts[0] for ts in timesteps]


@pytest.mark.parametrize("name", ["stage1", "stage2"])
def test_converted_dit_matches_release_forward(weights, trace, name):
    """The converted DiT, on the release's first call of the stage (same x, timestep, text), gives its output."""
    from fvbench.generation.generator import rotary_embedding
    from fvbench.generation.models.registry import load_component

    meta, t = trace
    folder, fixture = weights
    x, ts, ctx, out = (t[f"{name}/dit_call0_{k}"] for k in ("x", "timesteps", "context", "out"))
    model = load_component(fixture.components[name].type, folder / name, torch.float32, FIXTURE_PRESET, name)
    p = model.config.patch_size
    rotary = rotary_embedding(fixture.stage(name), model, (x.shape[1], x.shape[3] // p, x.shape[4] // p))
    extra = {}
    if name == "stage2":  # the release's degradation step and latent frame count embeddings
        extra["timestep_cond"] = torch.tensor([[675.0, float(x.shape[1])]] * x.shape[0])
    with torch.no_grad():
        y = model(hidden_states=x, encoder_hidden_states=ctx, timestep=ts, image_rotary_emb=rotary,
                  return_dict=False, **extra)[0]
    d = _max_diff(y, out)
    assert d <= TOL_DIT, f"{name} DiT output differs from the release's by {d:.3g} (|outputs| <= {out.abs().max():.2f})"


def test_stage1_timesteps_and_guidance_equal(run, trace):
    meta, _ = trace
    calls = run["calls"]["stage1"]
    assert _per_call([c["timestep"] for c in calls]) == _per_call(meta["stage1_model_timesteps"])
    steps = run["result"].stages[0].steps
    assert [float(s) for s, _ in steps] == [float(s["timestep"]) for s in meta["stage1_steps"]]
    assert [g for _, g in steps] == [g["scale"] for g in meta["stage1_guidance"]]


def test_stage2_timesteps_and_guidance_equal(run, trace):
    meta, _ = trace
    calls = run["calls"]["stage2"]
    assert _per_call([c["timestep"] for c in calls]) == _per_call(meta["stage2_model_timesteps"])
    assert [g for _, g in run["result"].stages[1].steps] == meta["stage2_guidance"]


def _assert_steps_match(run: dict, t: dict[str, torch.Tensor], index: int) -> None:
    """fvbench's latent after each sampler step, and the final latent, against the release's."""
    name = run["preset"].stages[index].name
    release = t[f"{name}/step_latents"]
    mine = run["steps"].get(index, [])
    assert len(mine) == release.shape[0], f"{len(mine)} {name} steps, the release made {release.shape[0]}"
    per_step = max(_max_diff(a, b) for a, b in zip(mine, release))
    final = _max_diff(run["result"].stages[index].latents, t[f"{name}/final_latent"])
    assert per_step <= TOL, f"{name} latents after a step differ by up to {per_step:.3g}"
    assert final <= TOL, f"{name} final latent differs by {final:.3g}"


def test_stage1_latents_match(run, trace):
    _assert_steps_match(run, trace[1], 0)  # 51 SAT steps; the last gives the x0 prediction


def test_stage1_frames_match(run, trace):
    _, t = trace
    d = _max_diff(run["result"].stages[0].pixels / 255, t["stage1/frames"] / 255)
    assert d <= TOL, f"stage-I decoded frames differ by {d:.3g} (in [0, 1])"


def test_stage2_z0_and_latents_match(run, trace):
    _, t = trace
    z0 = _max_diff(run["calls"]["stage2"][0]["x"][0:1], t["stage2/z0"])
    assert z0 <= TOL, f"stage-II z0 (upsample + encode + degradation) differs by {z0:.3g}"
    _assert_steps_match(run, t, 1)  # 5 Euler steps


def test_stage2_frames_match(run, trace):
    _, t = trace
    d = _max_diff(run["result"].stages[1].pixels / 255, t["stage2/frames"] / 255)
    assert d <= TOL, f"stage-II decoded frames differ by {d:.3g} (in [0, 1])"


@pytest.mark.parametrize("index", [0, 1])
def test_vae_decode_of_release_latent_matches(run, trace, index):
    """The VAE alone: fvbench decodes the release's final latent, with the stage's slicing, into its frames."""
    _, t = trace
    gen, stage = run["gen"], run["preset"].stages[index]
    name = stage.name
    z = (t[f"{name}/final_latent"].permute(0, 2, 1, 3, 4) / stage.latent_scale).to(gen._vae_dtype())
    with torch.no_grad():
        decoded = decode_width_split(gen.components.vae, z, stage.decode_width_splits, run["preset"].vae_spatial_factor)
    d = _max_diff(to_pixels(decoded) / 255, t[f"{name}/frames"] / 255)
    assert d <= TOL, f"{name}: decoding the release's latent differs from its frames by {d:.3g} (in [0, 1])"


def test_stage2_init_from_release_frames(run, trace):
    """Upsample + VAE encode + degradation alone: fvbench's z0 from the release's stage-I frames and draws."""
    _, t = trace
    gen = run["gen"]
    previous = dataclasses.replace(run["result"].stages[0], pixels=t["stage1/frames"])
    noise = ReplayNoise(run["draws"], "release stage II noise")
    init = gen.flow_init(1, 0, previous, noise=noise)
    assert noise.remaining == 0
    d = _max_diff(init.z0, t["stage2/z0"])
    assert d <= TOL, f"stage-II z0 from the release's own stage-I frames differs by {d:.3g}"
