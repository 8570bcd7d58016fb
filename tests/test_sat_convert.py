"""The FlashVideo SAT converter on synthesized SAT-format checkpoints with the released key layout."""


import pytest
import torch

from fvbench.cli import main
from fvbench.errors import FvbenchError, MissingWeightsError
from fvbench.generation.generator import Generator
from fvbench.generation.models.registry import build_component, load_component
from fvbench.generation.models.sat import (
    PREFIX,
    diffusers_transformer_to_sat,
    diffusers_vae_to_sat,
    load_sat_checkpoint,
    merge_lora,
    sat_transformer_to_diffusers,
)
from fvbench.generation.presets import get_preset

TINY = get_preset("tiny-flashvideo")
CFG = {"stage1": TINY.components["stage1"].config, "stage2": TINY.components["stage2"].config,
       "vae": TINY.components["vae"].config}

# The SAT names of one layer and the model-level tensors, written out by hand from the released layout.
EXPECTED_SAT_KEYS = {PREFIX + k for k in [
    "transformer.layers.0.input_layernorm.weight", "transformer.layers.0.input_layernorm.bias",
    "transformer.layers.0.post_attention_layernorm.weight", "transformer.layers.0.post_attention_layernorm.bias",
    "transformer.layers.0.attention.query_key_value.weight", "transformer.layers.0.attention.query_key_value.bias",
    "transformer.layers.0.attention.dense.weight", "transformer.layers.0.attention.dense.bias",
    "transformer.layers.0.mlp.dense_h_to_4h.weight", "transformer.layers.0.mlp.dense_h_to_4h.bias",
    "transformer.layers.0.mlp.dense_4h_to_h.weight", "transformer.layers.0.mlp.dense_4h_to_h.bias",
    "mixins.adaln_layer.adaLN_modulations.0.1.weight", "mixins.adaln_layer.adaLN_modulations.0.1.bias",
    "mixins.adaln_layer.query_layernorm_list.0.weight", "mixins.adaln_layer.query_layernorm_list.0.bias",
    "mixins.adaln_layer.key_layernorm_list.0.weight", "mixins.adaln_layer.key_layernorm_list.0.bias",
    "transformer.final_layernorm.weight", "transformer.final_layernorm.bias",
    "time_embed.0.weight", "time_embed.0.bias", "time_embed.2.weight", "time_embed.2.bias",
    "ref_step_time_embedding.0.weight", "ref_step_time_embedding.0.bias",
    "ref_step_time_embedding.2.weight", "ref_step_time_embedding.2.bias",
    "time_size_embedding.0.weight", "time_size_embedding.0.bias", "time_size_embedding.2.weight", "time_size_embedding.2.bias",
    "mixins.patch_embed.proj.weight", "mixins.patch_embed.proj.bias",
    "mixins.patch_embed.text_proj.weight", "mixins.patch_embed.text_proj.bias",
    "mixins.final_layer.norm_final.weight", "mixins.final_layer.norm_final.bias",
    "mixins.final_layer.linear.weight", "mixins.final_layer.linear.bias",
    "mixins.final_layer.adaLN_modulation.1.weight", "mixins.final_layer.adaLN_modulation.1.bias",
]}


def _with_lora(sat: dict, names: list[str], r: int = 4, seed: int = 0) -> tuple[dict, dict]:
    """Split chosen linears into SAT LoRA form (original + A/B with partition 3 for qkv) and return the merged truth."""
    g = torch.Generator().manual_seed(seed)
    out, merged = dict(sat), dict(sat)
    for name in names:
        w, b = out.pop(f"{name}.weight"), out.pop(f"{name}.bias")
        parts = 3 if name.endswith("query_key_value") else 1
        a = [torch.randn(r, w.shape[1], generator=g) for _ in range(parts)]
        bm = [torch.randn(w.shape[0] // parts, r, generator=g) for _ in range(parts)]
        out[f"{name}.original.weight"], out[f"{name}.original.bias"] = w, b
        for k in range(parts):
            out[f"{name}.matrix_A.{k}"], out[f"{name}.matrix_B.{k}"] = a[k], bm[k]
        merged[f"{name}.weight"] = w + torch.cat([bm[k] @ a[k] for k in range(parts)]) * (2.0 / r)
    return out, merged


def test_sat_key_layout_and_round_trip():
    model = build_component("flashvideo-transformer", CFG["stage2"], 1)
    sat = diffusers_transformer_to_sat(model.state_dict())
    assert set(sat) == EXPECTED_SAT_KEYS
    back = sat_transformer_to_diffusers(sat)
    ref = model.state_dict()
    assert set(back) == set(ref) and all(torch.equal(back[k], ref[k]) for k in ref)


def test_lora_merge_is_w_plus_scaled_b_a():
    w = torch.zeros(6, 4)
    state = {"x.original.weight": w, "x.original.bias": torch.ones(6),
             "x.matrix_A.0": torch.ones(2, 4), "x.matrix_B.0": torch.full((2, 2), 1.0),
             "x.matrix_A.1": torch.ones(2, 4), "x.matrix_B.1": torch.full((2, 2), 2.0),
             "x.matrix_A.2": torch.ones(2, 4), "x.matrix_B.2": torch.full((2, 2), 3.0)}
    merged = merge_lora(state, lora_alpha=1.0)  # scaling 1 / r = 0.5; B @ A = 2 * value per entry
    assert set(merged) == {"x.weight", "x.bias"}
    assert merged["x.weight"][:, 0].tolist() == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]


def _write_checkpoints(tmp_path, lora=True):
    s1 = build_component("cogvideox-transformer", CFG["stage1"], 3)
    s2 = build_component("flashvideo-transformer", CFG["stage2"], 4)
    vae = build_component("cogvideox-vae", CFG["vae"], 5)
    sat1 = diffusers_transformer_to_sat(s1.state_dict())
    lora_names = [PREFIX + "transformer.layers.0.attention.query_key_value", PREFIX + "transformer.layers.0.attention.dense",
                  PREFIX + "mixins.adaln_layer.adaLN_modulations.0.1"]
    sat1, merged1 = _with_lora(sat1, lora_names) if lora else (sat1, sat1)
    pos = {PREFIX + "mixins.pos_embed.freqs_sin": torch.zeros(3), PREFIX + "mixins.pos_embed.freqs_cos": torch.zeros(3)}
    torch.save({"module": {**sat1, **pos}}, tmp_path / "stage1.pt")
    torch.save({"module": diffusers_transformer_to_sat(s2.state_dict())}, tmp_path / "stage2.pt")
    vae_sat = {**diffusers_vae_to_sat(vae.state_dict()), "loss.logvar": torch.zeros(())}
    torch.save({"state_dict": vae_sat}, tmp_path / "3d-vae.pt")
    return s1, s2, vae, sat_transformer_to_diffusers(merged1)


def test_converter_cli_writes_folders_that_load_and_match(tmp_path, capsys):
    s1, s2, vae, s1_expected = _write_checkpoints(tmp_path)
    out = tmp_path / "flashvideo"
    assert main(["convert-flashvideo", "--stage1", str(tmp_path / "stage1.pt"), "--stage2", str(tmp_path / "stage2.pt"),
                 "--vae", str(tmp_path / "3d-vae.pt"), "--out", str(out), "--like", "tiny-flashvideo",
                 "--lora-alpha", "2"]) == 0
    assert "copy text_encoder/ and tokenizer/" in capsys.readouterr().out
    got1 = load_component("cogvideox-transformer", out / "stage1", torch.float32, "t", "stage1").state_dict()
    got2 = load_component("flashvideo-transformer", out / "stage2", torch.float32, "t", "stage2").state_dict()
    got_vae = load_component("cogvideox-vae", out / "vae", torch.float32, "t", "vae").state_dict()
    assert all(torch.allclose(got1[k], s1_expected[k]) for k in got1)  # LoRA merged with alpha / r
    assert not torch.equal(got1["transformer_blocks.0.attn1.to_q.weight"], s1.state_dict()["transformer_blocks.0.attn1.to_q.weight"])
    assert all(torch.equal(got2[k], v) for k, v in s2.state_dict().items())
    assert all(torch.equal(got_vae[k], v) for k, v in vae.state_dict().items())
    # the converted folders, completed with a text encoder and tokenizer, run as the flashvideo preset
    build_component("t5-tokenizer", {}, 0).save_pretrained(out / "tokenizer")
    build_component("t5-encoder", TINY.components["text_encoder"].config, 0).save_pretrained(out / "text_encoder")
    preset = get_preset("flashvideo").with_overrides(
        {"stage1": {"height": 16, "width": 16, "nfe": 2}, "stage2": {"height": 64, "width": 64, "nfe": 2}}, frames=9)
    preset = type(preset)(**{**preset.__dict__, "max_text_length": 8, "vae_tiling": False})
    result = Generator.from_preset(preset, weights_dir=out).generate("a red cat", 0)
    assert result.video.shape == (9, 64, 64, 3) and [s.nfe for s in result.stages] == [2, 2]


class Evil:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_untrusted_pickles_are_refused_unless_trusted(tmp_path):
    path = tmp_path / "stage2.pt"
    model = build_component("flashvideo-transformer", CFG["stage2"], 4)
    torch.save({"module": diffusers_transformer_to_sat(model.state_dict()), "args": Evil()}, path)
    with pytest.raises(FvbenchError, match="--trust-checkpoint"):
        load_sat_checkpoint(path)
    state = load_sat_checkpoint(path, trust_pickle=True)
    assert PREFIX + "time_embed.0.weight" in state


def test_missing_corrupt_and_wrong_checkpoints(tmp_path, capsys):
    with pytest.raises(MissingWeightsError, match="does not exist"):
        load_sat_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FvbenchError, match="not a readable checkpoint"):
        load_sat_checkpoint(bad)
    _write_checkpoints(tmp_path, lora=False)
    # stage2's checkpoint given as stage1: key sets do not match the stage-1 architecture
    rc = main(["convert-flashvideo", "--stage1", str(tmp_path / "stage2.pt"), "--out", str(tmp_path / "o"),
               "--like", "tiny-flashvideo"])
    assert rc == 2 and "unexpected" in capsys.readouterr().err
