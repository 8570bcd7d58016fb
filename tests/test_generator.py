"""The generator end to end on tiny presets: NFE accounting, CFG batching, previews, determinism, loading."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fvbench.errors import FvbenchError, MissingWeightsError
from fvbench.generation.generator import Generator
from fvbench.generation.models.registry import build_component
from fvbench.generation.presets import get_preset


@pytest.mark.parametrize("nfe1,nfe2", [(1, 1), (3, 2), (5, 4)])
def test_executed_nfe_equals_configured_in_every_stage(tiny_cascade, nfe1, nfe2):
    preset = tiny_cascade.preset.with_overrides({"stage1": {"nfe": nfe1}, "stage2": {"nfe": nfe2}})
    gen = Generator(preset, tiny_cascade.components)
    result = gen.generate("a dog", seed=1)
    assert [s.nfe for s in result.stages] == [nfe1, nfe2]
    # both stages use CFG (> 1): every call carries batch 2
    assert [s.rows for s in result.stages] == [2 * nfe1, 2 * nfe2]


def test_cfg_doubles_the_evaluated_batch(tiny_cascade):
    batches = []
    tr = tiny_cascade.components.transformers["stage2"]
    handle = tr.register_forward_pre_hook(lambda m, args, kwargs: batches.append(kwargs["hidden_states"].shape[0]),
                                          with_kwargs=True)
    try:
        for cfg in (13.0, 1.0):
            preset = tiny_cascade.preset.with_overrides({"stage2": {"cfg": cfg, "nfe": 3}})
            out = Generator(preset, tiny_cascade.components).generate("a dog", seed=0)
            assert out.stages[1].rows == (6 if cfg > 1 else 3)
    finally:
        handle.remove()
    assert batches == [2, 2, 2, 1, 1, 1]


def test_stage_outputs_and_preview_arrive_in_order(tiny_cascade):
    seen = []
    result = tiny_cascade.generate("a red cat", 0, on_stage_end=lambda i, so, t: seen.append((i, so.name, t)))
    assert [s[:2] for s in seen] == [(0, "stage1"), (1, "stage2")]
    assert 0 < seen[0][2] < seen[1][2]
    s1, s2 = result.stages
    assert s1.video.shape == (9, 16, 16, 3) and s1.video.dtype == torch.uint8
    assert s2.video.shape == (9, 64, 64, 3)
    assert set(s2.seconds) == {"upsample", "vae_encode", "denoise", "vae_decode"}
    assert set(s1.seconds) == {"denoise", "vae_decode"}
    assert s1.peak_memory_bytes and s1.peak_memory_bytes > 0


def test_stage2_consumes_stage1_and_vanilla_cascade_does_not(tiny_cascade):
    text, _ = tiny_cascade.encode_text("a cat")
    s1 = tiny_cascade.run_stage(0, text, seed=0)
    other = tiny_cascade.run_stage(0, text, seed=5)
    a = tiny_cascade.run_stage(1, text, 0, previous=s1)
    b = tiny_cascade.run_stage(1, text, 0, previous=other)
    assert not torch.equal(a.video, b.video), "stage II must depend on the stage-I video"
    vanilla = tiny_cascade.preset.with_overrides({"stage2": {"init": "noise", "noise_step": 999}}).stage("stage2")
    c = tiny_cascade.run_stage(1, text, 0, previous=s1, stage=vanilla)
    d = tiny_cascade.run_stage(1, text, 0, previous=other, stage=vanilla)
    assert torch.equal(c.video, d.video), "the vanilla cascade starts from pure noise"
    assert "vae_encode" not in c.seconds


def test_prefix_reuse_is_bitwise_identical(tiny_cascade):
    """Stage I computed once and reused gives the same stage-II video as a fresh end-to-end run."""
    full = tiny_cascade.generate("a blue bird", 4)
    text, _ = tiny_cascade.encode_text("a blue bird")
    s1 = tiny_cascade.run_stage(0, text, 4)
    s2 = tiny_cascade.run_stage(1, text, 4, previous=s1)
    assert torch.equal(full.stages[0].video, s1.video)
    assert torch.equal(full.video, s2.video)


def _generate_json(tmp: Path, name: str) -> dict:
    out = tmp / f"{name}.mp4"
    code = ("import sys; from fvbench.cli import main; "
            f"sys.exit(main(['generate', '--preset', 'tiny-flashvideo', '--prompt', 'a red cat', '--seed', '3', "
            f"'--out', {str(out)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.with_suffix(".json").read_text())


def test_same_seed_is_bitwise_identical_across_processes(tmp_path):
    a = _generate_json(tmp_path, "a")
    b = _generate_json(tmp_path, "b")
    assert [s["video_sha256"] for s in a["stages"]] == [s["video_sha256"] for s in b["stages"]]
    # and the same as in this process
    from fvbench.commands.generate import video_sha256

    torch.set_num_threads(2)
    here = Generator.from_preset(get_preset("tiny-flashvideo")).generate("a red cat", 3)
    assert [video_sha256(s.video) for s in here.stages] == [s["video_sha256"] for s in a["stages"]]
    assert a["stages"][0]["nfe_executed"] == 4 and a["stages"][1]["nfe_executed"] == 2


def _save_tiny_folder(root: Path, preset_name: str, transformer_type: str, rotary: bool) -> None:
    """Tiny random components saved in the layout a real diffusers CogVideoX checkpoint has."""
    build_component("t5-tokenizer", {}, 0).save_pretrained(root / "tokenizer")
    build_component("t5-encoder", {"d_model": 32, "d_ff": 64, "d_kv": 16, "num_heads": 2, "num_layers": 1,
                                   "feed_forward_proj": "gated-gelu"}, 0).save_pretrained(root / "text_encoder")
    vae_cfg = get_preset("tiny-flashvideo").components["vae"].config
    build_component("cogvideox-vae", vae_cfg, 0).save_pretrained(root / "vae")
    build_component(transformer_type, {
        "num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 1, "in_channels": 4, "out_channels": 4,
        "text_embed_dim": 32, "time_embed_dim": 16, "max_text_seq_length": 226, "sample_height": 4, "sample_width": 4,
        "sample_frames": 9, "use_rotary_positional_embeddings": rotary}, 0).save_pretrained(root / "transformer")


@pytest.mark.parametrize("preset_name,rotary", [("cogvideox-5b", True), ("cogvideox-2b", False)])
def test_real_preset_folder_loads_through_the_same_loader(tmp_path, preset_name, rotary):
    _save_tiny_folder(tmp_path, preset_name, "cogvideox-transformer", rotary)
    preset = get_preset(preset_name).with_overrides({"stage1": {"height": 32, "width": 32, "nfe": 2}}, frames=9)
    gen = Generator.from_preset(preset, weights_dir=tmp_path)
    assert gen.components.transformers["transformer"].config.use_rotary_positional_embeddings is rotary
    out = gen.generate("a cat", 0)
    assert out.video.shape == (9, 32, 32, 3) and out.stages[0].nfe == 2
    again = Generator.from_preset(preset, weights_dir=tmp_path).generate("a cat", 0)
    assert torch.equal(out.video, again.video)


def test_missing_and_corrupt_weights_are_clear_errors(tmp_path):
    preset = get_preset("cogvideox-5b")
    with pytest.raises(FvbenchError, match="does not exist"):
        Generator.from_preset(preset, weights_dir=tmp_path / "nowhere")
    _save_tiny_folder(tmp_path, "cogvideox-5b", "cogvideox-transformer", True)
    weights = tmp_path / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.rename(tmp_path / "moved.safetensors")
    with pytest.raises(MissingWeightsError, match=r"transformer has no weights in .*transformer"):
        Generator.from_preset(preset, weights_dir=tmp_path)
    weights.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(FvbenchError, match=r"cannot load transformer .*corrupt"):
        Generator.from_preset(preset, weights_dir=tmp_path)


def test_flow_init_key_covers_what_z0_depends_on(tiny_cascade):
    """The worker shares one z0 among variants with equal flow-init keys: NFE/CFG/shift variants share it, a change
    of anything flow_init reads (resolution, noise step, init, upsample input) does not."""
    from dataclasses import replace

    stage = tiny_cascade.preset.stages[1]
    key = tiny_cascade.flow_init_key(1, stage)
    assert tiny_cascade.flow_init_key(1, replace(stage, nfe=stage.nfe + 3, cfg=stage.cfg + 1, shift=1.0)) == key
    for change in ({"upsample_input": "float"}, {"noise_step": 500}, {"init": "noise"},
                   {"height": stage.height * 2, "width": stage.width * 2}):
        assert tiny_cascade.flow_init_key(1, replace(stage, **change)) != key, change
