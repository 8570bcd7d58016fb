"""The FlashVideo SAT converter on SAT-format checkpoints synthesized here with the released key layout.

The expected SAT names below are written out by hand from FlashVideo's and SAT's module code (dit_video_concat.py,
dit_res_adapter.py, sat/model/finetune/lora2.py, vae_modules/cp_enc_dec.py), not produced by the code under test.
"""

import dataclasses
import os

import pytest
import torch
from diffusers.models.embeddings import get_3d_rotary_pos_embed

from fvbench.cli import main
from fvbench.errors import FvbenchError, MissingWeightsError
from fvbench.generation.generator import Generator
from fvbench.generation.models.registry import build_component, load_component
from fvbench.generation.models.sat import (
    PREFIX,
    convert_flashvideo,
    diffusers_transformer_to_sat,
    diffusers_vae_to_sat,
    load_sat_checkpoint,
    merge_lora,
    sat_transformer_to_diffusers,
    sat_vae_to_diffusers,
)
from fvbench.generation.presets import get_preset

TINY = get_preset("tiny-flashvideo")
TINY_CFG = {"stage1": TINY.components["stage1"].config, "stage2": TINY.components["stage2"].config,
            "vae": TINY.components["vae"].config}
# Two layers (layer indices matter) and a VAE whose channel count changes (SAT nin_shortcut <-> conv_shortcut).
CFG2 = {"stage1": {**TINY_CFG["stage1"], "num_layers": 2}, "stage2": {**TINY_CFG["stage2"], "num_layers": 2},
        "vae": {**TINY_CFG["vae"], "block_out_channels": [8, 16, 16, 16]}}
TYPES = {"stage1": "cogvideox-transformer", "stage2": "flashvideo-transformer", "vae": "cogvideox-vae"}

_LAYER = ["transformer.layers.{i}.input_layernorm.{p}", "transformer.layers.{i}.post_attention_layernorm.{p}",
          "transformer.layers.{i}.attention.query_key_value.{p}", "transformer.layers.{i}.attention.dense.{p}",
          "transformer.layers.{i}.mlp.dense_h_to_4h.{p}", "transformer.layers.{i}.mlp.dense_4h_to_h.{p}",
          "mixins.adaln_layer.adaLN_modulations.{i}.1.{p}", "mixins.adaln_layer.query_layernorm_list.{i}.{p}",
          "mixins.adaln_layer.key_layernorm_list.{i}.{p}"]
_MODEL = ["transformer.final_layernorm.{p}", "time_embed.0.{p}", "time_embed.2.{p}", "mixins.patch_embed.proj.{p}",
          "mixins.patch_embed.text_proj.{p}", "mixins.final_layer.norm_final.{p}", "mixins.final_layer.linear.{p}",
          "mixins.final_layer.adaLN_modulation.1.{p}"]
_STAGE2 = ["ref_step_time_embedding.0.{p}", "ref_step_time_embedding.2.{p}", "time_size_embedding.0.{p}",
           "time_size_embedding.2.{p}"]


def sat_keys(layers: int, stage2: bool) -> set[str]:
    """FlashVideo's SAT DiT state-dict names (LoRA merged), incl. SAT's unused learned position table."""
    names = [t.format(i=i, p=p) for t in _LAYER for i in range(layers) for p in ("weight", "bias")]
    names += [t.format(p=p) for t in _MODEL + (_STAGE2 if stage2 else []) for p in ("weight", "bias")]
    return {PREFIX + k for k in names + ["transformer.position_embeddings.weight"]}


# Names of SAT's ContextParallelEncoder3D / Decoder3D for the CFG2 VAE (4 levels, 1 res block, channels 8 -> 16).
SAT_VAE_SAMPLE = {
    "encoder.conv_in.conv.weight", "encoder.down.0.block.0.norm1.weight", "encoder.down.0.block.0.conv1.conv.weight",
    "encoder.down.0.downsample.conv.weight", "encoder.down.1.block.0.nin_shortcut.weight",
    "encoder.mid.block_1.conv1.conv.weight", "encoder.mid.block_2.norm2.bias", "encoder.norm_out.weight",
    "encoder.conv_out.conv.weight", "decoder.conv_in.conv.weight", "decoder.mid.block_1.norm1.norm_layer.weight",
    "decoder.mid.block_2.norm1.conv_y.conv.weight", "decoder.up.3.block.0.norm1.conv_b.conv.bias",
    "decoder.up.3.upsample.conv.weight", "decoder.up.1.upsample.conv.weight", "decoder.up.0.block.1.conv2.conv.weight",
    "decoder.up.0.block.0.nin_shortcut.weight", "decoder.norm_out.norm_layer.weight", "decoder.conv_out.conv.weight",
}


def lora_split(sat: dict, bases: list[str], r: int = 4, alpha: float = 2.0, seed: int = 0) -> tuple[dict, dict]:
    """Put SAT LoRA layers in place of the named linears; also return the merged truth W + cat_k(B_k A_k) alpha / r."""
    g = torch.Generator().manual_seed(seed)
    lora, truth = dict(sat), dict(sat)
    for base in bases:
        w, b = lora.pop(f"{base}.weight"), lora.pop(f"{base}.bias")
        parts = 3 if base.endswith("query_key_value") else 1  # SAT: attention.stride for qkv, 1 otherwise
        a = [torch.randn(r, w.shape[1], generator=g) for _ in range(parts)]
        bm = [torch.randn(w.shape[0] // parts, r, generator=g) for _ in range(parts)]
        lora[f"{base}.original.weight"], lora[f"{base}.original.bias"] = w, b
        for k in range(parts):
            lora[f"{base}.matrix_A.{k}"], lora[f"{base}.matrix_B.{k}"] = a[k], bm[k]
        truth[f"{base}.weight"] = w + torch.cat([bm[k] @ a[k] * (alpha / r) for k in range(parts)])
    return lora, truth


def lora_bases(layers: int) -> list[str]:
    """FlashVideo's ResLoraMixin targets: every layer's qkv and dense, and every adaLN modulation linear."""
    return [PREFIX + t.format(i=i) for i in range(layers) for t in (
        "transformer.layers.{i}.attention.query_key_value", "transformer.layers.{i}.attention.dense",
        "mixins.adaln_layer.adaLN_modulations.{i}.1")]


def write_checkpoints(folder, cfg: dict, alpha: float = 2.0, seed: int = 0) -> dict:
    """Tiny FlashVideo checkpoints in SAT format; returns the diffusers modules that the conversion must give."""
    folder.mkdir(parents=True, exist_ok=True)
    s1 = build_component(TYPES["stage1"], cfg["stage1"], seed)
    s2 = build_component(TYPES["stage2"], cfg["stage2"], seed + 1)
    vae = build_component(TYPES["vae"], cfg["vae"], seed + 2)
    sat1, truth1 = lora_split(diffusers_transformer_to_sat(s1.state_dict()), lora_bases(cfg["stage1"]["num_layers"]),
                              alpha=alpha)
    s1.load_state_dict(sat_transformer_to_diffusers(truth1).state)  # the model FlashVideo runs after merging
    rope_tables = {PREFIX + "mixins.pos_embed.freqs_sin": torch.zeros(4, 16),
                   PREFIX + "mixins.pos_embed.freqs_cos": torch.ones(4, 16)}
    torch.save({"module": {**sat1, **rope_tables}}, folder / "stage1.pt")
    torch.save({"module": diffusers_transformer_to_sat(s2.state_dict())}, folder / "stage2.pt")
    sat_vae = {**diffusers_vae_to_sat(vae.state_dict()), "loss.logvar": torch.zeros(()),
               "loss.discriminator.main.0.weight": torch.ones(2, 3)}
    torch.save({"state_dict": sat_vae}, folder / "3d-vae.pt")
    return {"stage1": s1, "stage2": s2, "vae": vae}


def transformer_output(model, stage2: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 4, 4, 4, generator=g)  # (batch, latent frames, channels, h, w)
    text = torch.randn(2, 8, 32, generator=g)
    rope = get_3d_rotary_pos_embed(16, ((0, 0), (2, 2)), (2, 2), 3)
    kw = {"timestep_cond": torch.tensor([[675.0, 3.0], [675.0, 3.0]])} if stage2 else {}
    with torch.no_grad():
        return model(hidden_states=x, encoder_hidden_states=text, timestep=torch.tensor([999, 10]),
                     image_rotary_emb=rope, return_dict=False, **kw)[0]


def vae_output(vae) -> torch.Tensor:
    x = torch.rand(1, 3, 9, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean
        return torch.cat([z.flatten(), vae.decode(z).sample.flatten()])


def same_state(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------------------------- layout


def test_synthesized_checkpoints_have_flashvideos_sat_layout():
    s2 = build_component(TYPES["stage2"], CFG2["stage2"], 0)
    assert set(diffusers_transformer_to_sat(s2.state_dict())) == sat_keys(2, stage2=True)
    s1 = build_component(TYPES["stage1"], CFG2["stage1"], 0)
    sat1, _ = lora_split(diffusers_transformer_to_sat(s1.state_dict()), lora_bases(2))
    assert set(sat1) - sat_keys(2, stage2=False) == {PREFIX + k for k in [
        *(f"transformer.layers.{i}.attention.query_key_value.{x}" for i in (0, 1) for x in (
            "original.weight", "original.bias", "matrix_A.0", "matrix_A.1", "matrix_A.2",
            "matrix_B.0", "matrix_B.1", "matrix_B.2")),
        *(f"{m}.{x}" for i in (0, 1) for m in (f"transformer.layers.{i}.attention.dense",
                                                 f"mixins.adaln_layer.adaLN_modulations.{i}.1")
          for x in ("original.weight", "original.bias", "matrix_A.0", "matrix_B.0"))]}
    vae_keys = set(diffusers_vae_to_sat(build_component(TYPES["vae"], CFG2["vae"], 0).state_dict()))
    assert SAT_VAE_SAMPLE <= vae_keys
    assert "decoder.up.0.upsample.conv.weight" not in vae_keys  # SAT's up.0 is the full-resolution level
    assert all(k.startswith(("encoder.", "decoder.")) for k in vae_keys)


def test_adaln_chunks_and_qkv_split_follow_sat_semantics():
    # SAT's AdaLNMixin: adaLN_modulation(emb).chunk(12) = shift/scale/gate msa, shift/scale/gate mlp, then the
    # same six for the text tokens. diffusers' CogVideoXLayerNormZero: linear(emb).chunk(6) = shift, scale, gate,
    # enc_shift, enc_scale, enc_gate; norm1 modulates attention, norm2 the MLP.
    d = 32
    chunks = torch.arange(12.0).repeat_interleave(d)
    qkv = torch.cat([torch.full((d, d), v) for v in (1.0, 2.0, 3.0)])  # q rows, then k rows, then v rows
    got = sat_transformer_to_diffusers({
        "mixins.adaln_layer.adaLN_modulations.0.1.bias": chunks,
        "transformer.layers.0.attention.query_key_value.weight": qkv}).state
    assert got["transformer_blocks.0.norm1.linear.bias"].view(6, d)[:, 0].tolist() == [0, 1, 2, 6, 7, 8]
    assert got["transformer_blocks.0.norm2.linear.bias"].view(6, d)[:, 0].tolist() == [3, 4, 5, 9, 10, 11]
    assert [got[f"transformer_blocks.0.attn1.to_{n}.weight"].unique().item() for n in "qkv"] == [1.0, 2.0, 3.0]


# ----------------------------------------------------------------------------------------------------------- LoRA


def test_lora_merge_is_w_plus_scaled_b_a_by_hand():
    # One qkv-style layer: 3 partitions of 2 rows, rank r = 2, in = 4; W0 = 0, every A = 1.
    # B_k = k+1 everywhere -> (B_k @ A_k)[row, col] = 2 * (k+1); alpha 1 -> scale 1/2 -> rows 1, 1, 2, 2, 3, 3.
    state = {"x.original.weight": torch.zeros(6, 4), "x.original.bias": torch.arange(6.0)}
    for k in range(3):
        state[f"x.matrix_A.{k}"] = torch.ones(2, 4)
        state[f"x.matrix_B.{k}"] = torch.full((2, 2), k + 1.0)
    merged, n = merge_lora(state, lora_alpha=1.0)
    assert n == 1 and set(merged) == {"x.weight", "x.bias"}
    assert merged["x.weight"].tolist() == [[v] * 4 for v in (1.0, 1.0, 2.0, 2.0, 3.0, 3.0)]
    assert torch.equal(merged["x.bias"], torch.arange(6.0))
    # alpha 4 -> scale 2; a non-zero W0 adds; bf16 weights are merged in float32 and come back in bf16
    state1 = {"y.original.weight": torch.full((2, 3), 0.5, dtype=torch.bfloat16),
              "y.original.bias": torch.zeros(2, dtype=torch.bfloat16),
              "y.matrix_A.0": torch.tensor([[1.0, 0.0, 2.0]], dtype=torch.bfloat16),
              "y.matrix_B.0": torch.tensor([[1.0], [-1.0]], dtype=torch.bfloat16)}
    merged1, _ = merge_lora(state1, lora_alpha=4.0)
    assert merged1["y.weight"].dtype == torch.bfloat16
    assert merged1["y.weight"].tolist() == [[4.5, 0.5, 8.5], [-3.5, 0.5, -7.5]]


@pytest.mark.parametrize("bad, match", [
    ({"x.matrix_A.0": torch.ones(2, 4), "x.matrix_B.0": torch.ones(6, 2)}, "no x.original.weight"),
    ({"x.original.weight": torch.ones(6, 4), "x.matrix_A.0": torch.ones(2, 4)}, "do not pair up"),
    ({"x.original.weight": torch.ones(6, 4), "x.matrix_A.0": torch.ones(2, 4), "x.matrix_B.0": torch.ones(5, 2)},
     "does not fit"),
    ({"x.original.weight": torch.ones(6, 4), "x.matrix_A.0": torch.ones(2, 3), "x.matrix_B.0": torch.ones(6, 2)},
     "do not fit weight"),
])
def test_malformed_lora_is_refused(bad, match):
    with pytest.raises(FvbenchError, match=match):
        merge_lora(bad)


# ------------------------------------------------------------------------------------------------------ round trip


def test_round_trip_is_bitwise_with_identical_outputs(tmp_path):
    truth = write_checkpoints(tmp_path, CFG2, alpha=2.0)
    parts = convert_flashvideo(tmp_path / "stage1.pt", tmp_path / "stage2.pt", tmp_path / "3d-vae.pt", tmp_path / "out",
                               configs=CFG2, lora_alpha=2.0)
    assert [p.role for p in parts] == ["stage1", "stage2", "vae"]
    assert parts[0].lora_layers == 6 and parts[1].lora_layers == 0  # 2 layers x (qkv, dense, adaLN)
    assert set(parts[0].dropped) == {"mixins.pos_embed.freqs_cos", "mixins.pos_embed.freqs_sin",
                                     "transformer.position_embeddings.weight"}
    assert parts[2].dropped == ("loss.discriminator.main.0.weight", "loss.logvar")
    for role in ("stage1", "stage2", "vae"):
        got = load_component(TYPES[role], tmp_path / "out" / role, torch.float32, "test", role)
        assert (tmp_path / "out" / role / "diffusion_pytorch_model.safetensors").is_file()
        assert same_state(got.state_dict(), truth[role].state_dict()), role
        if role == "vae":
            assert torch.equal(vae_output(got), vae_output(truth[role]))
        else:
            out = transformer_output(got, role == "stage2")
            assert out.shape == (2, 3, 4, 4, 4) and torch.equal(out, transformer_output(truth[role], role == "stage2"))
    # the LoRA really changed stage I: the weights differ from the un-merged originals
    raw = load_sat_checkpoint(tmp_path / "stage1.pt")
    qkv0 = raw[PREFIX + "transformer.layers.0.attention.query_key_value.original.weight"]
    assert not torch.equal(truth["stage1"].transformer_blocks[0].attn1.to_q.weight, qkv0[:32])


def test_other_engine_parts_are_ignored_and_stray_keys_refused():
    model = build_component(TYPES["stage2"], CFG2["stage2"], 0)
    sat = diffusers_transformer_to_sat(model.state_dict())
    mapped = sat_transformer_to_diffusers({**sat, "first_stage_model.encoder.conv_in.conv.weight": torch.ones(1),
                                           "conditioner.embedders.0.transformer.shared.weight": torch.ones(1)})
    assert mapped.ignored == 2 and same_state(mapped.state, model.state_dict())
    with pytest.raises(FvbenchError, match=r"no diffusers counterpart.*mixins\.pos_embed\.pos_embedding"):
        sat_transformer_to_diffusers({**sat, PREFIX + "mixins.pos_embed.pos_embedding": torch.ones(1, 4, 32)})
    with pytest.raises(FvbenchError, match="neither encoder., decoder. nor loss."):
        sat_vae_to_diffusers({"quant_conv.weight": torch.ones(1)})


# ------------------------------------------------------------------------------------------ CLI and the preset


def test_cli_converts_and_the_flashvideo_preset_generates(tmp_path, capsys):
    truth = write_checkpoints(tmp_path, TINY_CFG, alpha=1.0, seed=5)
    out = tmp_path / "flashvideo"
    rc = main(["convert-flashvideo", "--stage1", str(tmp_path / "stage1.pt"), "--stage2", str(tmp_path / "stage2.pt"),
               "--vae", str(tmp_path / "3d-vae.pt"), "--out", str(out), "--like", "tiny-flashvideo"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "stage1: " in printed and "3 LoRA layers merged" in printed
    assert "copy text_encoder/ and tokenizer/" in printed
    for role in ("stage1", "stage2", "vae"):
        got = load_component(TYPES[role], out / role, torch.float32, "flashvideo", role)
        assert same_state(got.state_dict(), truth[role].state_dict()), role
    # completed as the user is told to (text_encoder/ and tokenizer/ from elsewhere), the real preset runs it
    build_component("t5-tokenizer", {}, 0).save_pretrained(out / "tokenizer")
    build_component("t5-encoder", TINY.components["text_encoder"].config, 0).save_pretrained(out / "text_encoder")
    preset = get_preset("flashvideo").with_overrides(
        {"stage1": {"height": 16, "width": 16, "nfe": 2}, "stage2": {"height": 64, "width": 64, "nfe": 2}}, frames=9)
    # tiny-flashvideo's stage I is a plain CogVideoX transformer (the real preset's, a FlashVideo one with its final norm)
    preset = dataclasses.replace(preset, max_text_length=8,
                                 components={**preset.components, "stage1": TINY.components["stage1"]})
    gen = Generator.from_preset(preset, weights_dir=out)
    result = gen.generate("a red cat", 0)
    assert result.video.shape == (9, 64, 64, 3) and [s.nfe for s in result.stages] == [2, 2]
    assert result.video.float().std() > 0


# --------------------------------------------------------------------------------------------------- trust


RAN = []


def _side_effect() -> str:
    RAN.append(True)
    return "code from the pickle ran"


class RunsCode:
    def __reduce__(self):
        return (_side_effect, ())


def test_full_pickles_need_the_trust_flag(tmp_path, capsys):
    import argparse

    model = build_component(TYPES["stage2"], TINY_CFG["stage2"], 4)
    path = tmp_path / "stage2.pt"
    torch.save({"module": diffusers_transformer_to_sat(model.state_dict()), "hook": RunsCode()}, path)
    RAN.clear()
    with pytest.raises(FvbenchError, match=r"run any code.*--trust-checkpoint") as e:
        load_sat_checkpoint(path)
    assert "_side_effect" in str(e.value) and "\n" not in str(e.value) and not RAN
    rc = main(["convert-flashvideo", "--stage2", str(path), "--out", str(tmp_path / "o"), "--like", "tiny-flashvideo"])
    assert rc == 2 and "--trust-checkpoint" in capsys.readouterr().err and not RAN
    assert not (tmp_path / "o" / "stage2").exists()
    rc = main(["convert-flashvideo", "--stage2", str(path), "--out", str(tmp_path / "o"), "--like", "tiny-flashvideo",
               "--trust-checkpoint"])
    assert rc == 0 and RAN  # the flag really unpickled it in full
    got = load_component(TYPES["stage2"], tmp_path / "o" / "stage2", torch.float32, "t", "stage2")
    assert same_state(got.state_dict(), model.state_dict())
    # SAT/deepspeed files commonly carry an argparse.Namespace of training args: refused too, and named
    torch.save({"module": {"a": torch.ones(1)}, "args": argparse.Namespace(lr=1e-4)}, tmp_path / "ns.pt")
    with pytest.raises(FvbenchError, match="argparse.Namespace"):
        load_sat_checkpoint(tmp_path / "ns.pt")
    assert set(load_sat_checkpoint(tmp_path / "ns.pt", trust_pickle=True)) == {"a"}


# --------------------------------------------------------------------------------------------------- bad input


def test_missing_and_corrupt_files(tmp_path, capsys):
    with pytest.raises(MissingWeightsError, match="nope.pt does not exist"):
        load_sat_checkpoint(tmp_path / "nope.pt")
    rc = main(["convert-flashvideo", "--vae", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "nope.pt does not exist" in capsys.readouterr().err
    good = tmp_path / "good.pt"
    torch.save({"module": {"a": torch.ones(1000)}}, good)
    blobs = {"zipjunk.pt": b"PK\x03\x04 not really a zip", "random.pt": b"hello, not a checkpoint",
             "truncated.pt": good.read_bytes()[:300], "empty.pt": b""}
    for name, blob in blobs.items():
        (tmp_path / name).write_bytes(blob)
        for trust in (False, True):
            with pytest.raises(FvbenchError, match="not a readable checkpoint") as e:
                load_sat_checkpoint(tmp_path / name, trust_pickle=trust)
            assert "\n" not in str(e.value) and name in str(e.value)
    torch.save({"module": {"a": [1, 2]}}, tmp_path / "notensors.pt")
    with pytest.raises(FvbenchError, match="not tensors"):
        load_sat_checkpoint(tmp_path / "notensors.pt")


def test_wrong_checkpoint_or_architecture_lists_keys(tmp_path, capsys):
    write_checkpoints(tmp_path, TINY_CFG)
    # stage II's checkpoint given as stage I: its extra embeddings have no place in a CogVideoX transformer
    rc = main(["convert-flashvideo", "--stage1", str(tmp_path / "stage2.pt"), "--out", str(tmp_path / "o"),
               "--like", "tiny-flashvideo"])
    err = capsys.readouterr().err
    assert rc == 2 and "8 key(s) unexpected" in err and "time_embedding.frame_count" in err and err.count("\n") == 1
    # a tensor missing from the checkpoint is named
    sd = load_sat_checkpoint(tmp_path / "stage2.pt")
    del sd[PREFIX + "time_size_embedding.2.bias"]
    torch.save({"module": sd}, tmp_path / "short.pt")
    with pytest.raises(FvbenchError, match=r"1 key\(s\) missing.*time_embedding\.frame_count\.linear_2\.bias"):
        convert_flashvideo(None, tmp_path / "short.pt", None, tmp_path / "o", configs=TINY_CFG)
    # the right keys with another architecture (4 heads x 8 instead of 2 x 16): shapes are named
    other = {**TINY_CFG, "stage2": {**TINY_CFG["stage2"], "num_attention_heads": 4, "attention_head_dim": 8}}
    with pytest.raises(FvbenchError, match=r"another shape.*norm_q\.weight \(16,\) vs \(8,\)"):
        convert_flashvideo(None, tmp_path / "stage2.pt", None, tmp_path / "o", configs=other)
    assert not (tmp_path / "o" / "stage2").exists() and not list((tmp_path / "o").glob(".*partial"))


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    write_checkpoints(tmp_path, TINY_CFG)
    out = tmp_path / "o"
    convert_flashvideo(None, None, tmp_path / "3d-vae.pt", out, configs=TINY_CFG)
    with pytest.raises(FvbenchError, match="already exists.*--overwrite"):
        convert_flashvideo(None, None, tmp_path / "3d-vae.pt", out, configs=TINY_CFG)
    (out / "vae" / "marker").write_text("old")
    convert_flashvideo(None, None, tmp_path / "3d-vae.pt", out, configs=TINY_CFG, overwrite=True)
    assert not (out / "vae" / "marker").exists() and (out / "vae" / "config.json").is_file()
    mask = os.umask(0o022)
    os.umask(mask)
    assert (out / "vae").stat().st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700
    with pytest.raises(FvbenchError, match="nothing to convert"):
        convert_flashvideo(None, None, None, out)
