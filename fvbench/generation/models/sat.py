"""Converting FlashVideo's released SAT checkpoints into the diffusers-format folders fvbench loads.

Inputs: ``stage1.pt`` (CogVideoX-5B shape with LoRA), ``stage2.pt`` (CogVideoX-2B block shape plus FlashVideo's
degradation-step and frame-count embeddings), ``3d-vae.pt`` (the CogVideoX VAE). Transformer weights live under
``['module']`` with the prefix ``model.diffusion_model.``. Output: ``OUT/stage1``, ``OUT/stage2``, ``OUT/vae``.

Key families, SAT -> diffusers (per layer i; p = weight|bias):
  transformer.layers.i.input_layernorm.p            -> transformer_blocks.i.norm1.norm.p
  transformer.layers.i.post_attention_layernorm.p   -> transformer_blocks.i.norm2.norm.p
  transformer.layers.i.attention.query_key_value.p  -> transformer_blocks.i.attn1.to_{q,k,v}.p (split in 3 along rows)
  transformer.layers.i.attention.dense.p            -> transformer_blocks.i.attn1.to_out.0.p
  transformer.layers.i.mlp.dense_h_to_4h.p          -> transformer_blocks.i.ff.net.0.proj.p
  transformer.layers.i.mlp.dense_4h_to_h.p          -> transformer_blocks.i.ff.net.2.p
  mixins.adaln_layer.adaLN_modulations.i.1.p        -> 12 row chunks c: norm1.linear = c0..2 + c6..8, norm2.linear = c3..5 + c9..11
  mixins.adaln_layer.{query,key}_layernorm_list.i.p -> transformer_blocks.i.attn1.norm_{q,k}.p
  transformer.final_layernorm.p -> norm_final.p;  time_embed.{0,2}.p -> time_embedding.linear_{1,2}.p
  ref_step_time_embedding.{0,2}.p -> time_embedding.ref_step.linear_{1,2}.p   (FlashVideo stage II)
  time_size_embedding.{0,2}.p     -> time_embedding.frame_count.linear_{1,2}.p (FlashVideo stage II)
  mixins.patch_embed.{proj,text_proj}.p -> patch_embed.{proj,text_proj}.p
  mixins.final_layer.{norm_final,linear,adaLN_modulation.1}.p -> norm_out.norm.p, proj_out.p, norm_out.linear.p
  dropped: mixins.pos_embed.* (RoPE tables, recomputed from the grid), transformer.word_embeddings.* (unused)
VAE: down.k.block.j -> down_blocks.k.resnets.j, up.k -> up_blocks.(n-1-k), mid.block_{1,2} -> mid_block.resnets.{0,1},
  downsample/upsample -> downsamplers.0/upsamplers.0, nin_shortcut -> conv_shortcut; loss.* dropped.
LoRA (SAT lora2, on query_key_value, dense and the adaLN modulation linears): a layer X holds X.original.{weight,bias}
  and X.matrix_A.k (r x in), X.matrix_B.k (out/partitions x r); merged W = W0 + cat_k(B_k @ A_k) * lora_alpha / r,
  with SAT's default lora_alpha = 1.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from fvbench.errors import FvbenchError, MissingWeightsError

PREFIX = "model.diffusion_model."
TRUST_HINT = ("it is a full pickle, and unpickling runs code the file's author chose; pass --trust-checkpoint "
              "(trust_pickle=True) only for a file from a source you trust")

# (SAT name, diffusers name); {i} = layer index, {p} = parameter name.
_RULES = [
    ("transformer.layers.{i}.input_layernorm.{p}", "transformer_blocks.{i}.norm1.norm.{p}"),
    ("transformer.layers.{i}.post_attention_layernorm.{p}", "transformer_blocks.{i}.norm2.norm.{p}"),
    ("transformer.layers.{i}.attention.dense.{p}", "transformer_blocks.{i}.attn1.to_out.0.{p}"),
    ("transformer.layers.{i}.mlp.dense_h_to_4h.{p}", "transformer_blocks.{i}.ff.net.0.proj.{p}"),
    ("transformer.layers.{i}.mlp.dense_4h_to_h.{p}", "transformer_blocks.{i}.ff.net.2.{p}"),
    ("mixins.adaln_layer.query_layernorm_list.{i}.{p}", "transformer_blocks.{i}.attn1.norm_q.{p}"),
    ("mixins.adaln_layer.key_layernorm_list.{i}.{p}", "transformer_blocks.{i}.attn1.norm_k.{p}"),
    ("transformer.final_layernorm.{p}", "norm_final.{p}"),
    ("time_embed.0.{p}", "time_embedding.linear_1.{p}"),
    ("time_embed.2.{p}", "time_embedding.linear_2.{p}"),
    ("ref_step_time_embedding.0.{p}", "time_embedding.ref_step.linear_1.{p}"),
    ("ref_step_time_embedding.2.{p}", "time_embedding.ref_step.linear_2.{p}"),
    ("time_size_embedding.0.{p}", "time_embedding.frame_count.linear_1.{p}"),
    ("time_size_embedding.2.{p}", "time_embedding.frame_count.linear_2.{p}"),
    ("mixins.patch_embed.proj.{p}", "patch_embed.proj.{p}"),
    ("mixins.patch_embed.text_proj.{p}", "patch_embed.text_proj.{p}"),
    ("mixins.final_layer.norm_final.{p}", "norm_out.norm.{p}"),
    ("mixins.final_layer.linear.{p}", "proj_out.{p}"),
    ("mixins.final_layer.adaLN_modulation.1.{p}", "norm_out.linear.{p}"),
]


def _regex(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>\w+)"))


_FORWARD = [(_regex(sat), diff) for sat, diff in _RULES]
_BACKWARD = [(_regex(diff), sat) for sat, diff in _RULES]


def _rename(key: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
    for regex, target in rules:
        if m := regex.fullmatch(key):
            return target.format(**m.groupdict())
    return None


_QKV = re.compile(r"transformer\.layers\.(\d+)\.attention\.query_key_value\.(\w+)")
_ADALN = re.compile(r"mixins\.adaln_layer\.adaLN_modulations\.(\d+)\.1\.(\w+)")
_DROP = re.compile(r"(mixins\.pos_embed\..*|transformer\.word_embeddings\..*|.*embed_tokens.*)")


def load_sat_checkpoint(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A SAT checkpoint's tensors (under 'module', 'state_dict' or 'model'), loaded with weights_only unless trusted."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        if not trust_pickle:
            first = (str(e).strip().splitlines() or ["unsupported global"])[0][:200]
            raise FvbenchError(f"{path} cannot be loaded with weights_only=True ({first}): {TRUST_HINT}") from None
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e2:  # noqa: BLE001 - any failure here is a corrupt file for the user
            raise FvbenchError(f"{path} is not a readable checkpoint: {type(e2).__name__}: {e2}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise FvbenchError(f"{path} is not a readable checkpoint (corrupt or truncated): {(str(e).splitlines() or [''])[0][:200]}") from None
    for key in ("module", "state_dict", "model"):
        if isinstance(data, dict) and key in data and isinstance(data[key], dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise FvbenchError(f"{path} does not hold a state dict of tensors")
    return data


def merge_lora(state: dict[str, torch.Tensor], lora_alpha: float = 1.0) -> dict[str, torch.Tensor]:
    """Fold SAT LoRA layers (X.original.*, X.matrix_A.k, X.matrix_B.k) into plain X.weight / X.bias."""
    out = {k: v for k, v in state.items() if ".original." not in k and ".matrix_A." not in k and ".matrix_B." not in k}
    for key in state:
        if not key.endswith(".original.weight"):
            continue
        base = key[: -len(".original.weight")]
        a = [state[f"{base}.matrix_A.{k}"] for k in range(_count(state, f"{base}.matrix_A."))]
        b = [state[f"{base}.matrix_B.{k}"] for k in range(_count(state, f"{base}.matrix_B."))]
        if not a or len(a) != len(b):
            raise FvbenchError(f"LoRA layer {base}: {len(a)} A and {len(b)} B matrices")
        weight = state[key]
        scaling = lora_alpha / a[0].shape[0]
        delta = torch.cat([bk.float() @ ak.float() for ak, bk in zip(a, b)], dim=0) * scaling
        if delta.shape != weight.shape:
            raise FvbenchError(f"LoRA layer {base}: update {tuple(delta.shape)} does not fit weight {tuple(weight.shape)}")
        out[f"{base}.weight"] = (weight.float() + delta).to(weight.dtype)
        if f"{base}.original.bias" in state:
            out[f"{base}.bias"] = state[f"{base}.original.bias"]
    return out


def _count(state: dict[str, Any], prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def sat_transformer_to_diffusers(state: dict[str, torch.Tensor], lora_alpha: float = 1.0) -> dict[str, torch.Tensor]:
    """Map a SAT CogVideoX / FlashVideo transformer state dict to diffusers names (LoRA merged first)."""
    state = merge_lora({k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}, lora_alpha)
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state.items():
        if _DROP.fullmatch(key):
            continue
        if m := _QKV.fullmatch(key):
            for name, part in zip(("to_q", "to_k", "to_v"), value.chunk(3, dim=0)):
                out[f"transformer_blocks.{m[1]}.attn1.{name}.{m[2]}"] = part.clone()
            continue
        if m := _ADALN.fullmatch(key):
            c = value.chunk(12, dim=0)
            out[f"transformer_blocks.{m[1]}.norm1.linear.{m[2]}"] = torch.cat(c[0:3] + c[6:9])
            out[f"transformer_blocks.{m[1]}.norm2.linear.{m[2]}"] = torch.cat(c[3:6] + c[9:12])
            continue
        target = _rename(key, _FORWARD)
        if target is None:
            unmapped.append(key)
        else:
            out[target] = value
    if unmapped:
        raise FvbenchError(f"{len(unmapped)} SAT transformer key(s) have no diffusers counterpart, e.g. {unmapped[:3]}")
    return out


def diffusers_transformer_to_sat(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse mapping (diffusers -> SAT names, with the prefix), used to write SAT-format test checkpoints."""
    out: dict[str, torch.Tensor] = {}
    layers = {int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")}
    for i in layers:
        for p in ("weight", "bias"):
            qkv = [state.get(f"transformer_blocks.{i}.attn1.{n}.{p}") for n in ("to_q", "to_k", "to_v")]
            if all(t is not None for t in qkv):
                out[f"transformer.layers.{i}.attention.query_key_value.{p}"] = torch.cat(qkv)
            n1, n2 = state.get(f"transformer_blocks.{i}.norm1.linear.{p}"), state.get(f"transformer_blocks.{i}.norm2.linear.{p}")
            if n1 is not None and n2 is not None:
                a, b = n1.chunk(6, dim=0), n2.chunk(6, dim=0)
                out[f"mixins.adaln_layer.adaLN_modulations.{i}.1.{p}"] = torch.cat(a[0:3] + b[0:3] + a[3:6] + b[3:6])
    for key, value in state.items():
        if re.search(r"attn1\.to_[qkv]\.|norm[12]\.linear\.", key):
            continue
        target = _rename(key, _BACKWARD)
        if target is None:
            raise KeyError(f"no SAT name for {key}")
        out[target] = value.clone()
    return {PREFIX + k: v for k, v in out.items()}


def sat_vae_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a SAT CogVideoX VAE state dict to diffusers AutoencoderKLCogVideoX names."""
    n_up = _count(state, "decoder.up.")
    out = {}
    for key, value in state.items():
        if key.startswith("loss"):
            continue
        k = key.replace("mid.block_1", "mid_block.resnets.0").replace("mid.block_2", "mid_block.resnets.1")
        k = re.sub(r"(^|\.)block\.", r"\1resnets.", k)
        k = re.sub(r"(^|\.)down\.", r"\1down_blocks.", k).replace("downsample", "downsamplers.0")
        k = k.replace("upsample", "upsamplers.0").replace("nin_shortcut", "conv_shortcut")
        if m := re.match(r"decoder\.up\.(\d+)\.(.*)", k):
            k = f"decoder.up_blocks.{n_up - 1 - int(m[1])}.{m[2]}"
        out[k] = value
    return out


def diffusers_vae_to_sat(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse VAE mapping, used to write SAT-format test checkpoints."""
    n_up = len({k.split(".")[2] for k in state if k.startswith("decoder.up_blocks.")})
    out = {}
    for key, value in state.items():
        k = key.replace("mid_block.resnets.0", "mid.block_1").replace("mid_block.resnets.1", "mid.block_2")
        k = k.replace("resnets.", "block.").replace("down_blocks.", "down.").replace("downsamplers.0", "downsample")
        k = k.replace("upsamplers.0", "upsample").replace("conv_shortcut", "nin_shortcut")
        if m := re.match(r"decoder\.up_blocks\.(\d+)\.(.*)", k):
            k = f"decoder.up.{n_up - 1 - int(m[1])}.{m[2]}"
        out[k] = value.clone()
    return out


def _load_into(type_name: str, config: dict[str, Any], state: dict[str, torch.Tensor], what: str) -> torch.nn.Module:
    from fvbench.generation.models.registry import COMPONENT_TYPES

    with torch.device("meta"):
        module = COMPONENT_TYPES[type_name].build(config)
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise FvbenchError(f"{what}: {len(missing)} missing key(s) (e.g. {missing[:3]}) and {len(unexpected)} "
                           f"unexpected (e.g. {unexpected[:3]}): wrong architecture config or not a FlashVideo checkpoint")
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise FvbenchError(f"{what}: {(str(e).splitlines() or [''])[0][:300]}") from None
    return module


def convert_flashvideo(stage1: Path | None, stage2: Path | None, vae: Path | None, out: Path,
                       configs: dict[str, dict[str, Any]], trust_pickle: bool = False,
                       lora_alpha: float = 1.0) -> list[Path]:
    """Convert whichever of the three checkpoints are given; returns the folders written."""
    written = []
    jobs = [("stage1", stage1, "cogvideox-transformer"), ("stage2", stage2, "flashvideo-transformer"),
            ("vae", vae, "cogvideox-vae")]
    for role, path, type_name in jobs:
        if path is None:
            continue
        sd = load_sat_checkpoint(path, trust_pickle)
        mapped = sat_vae_to_diffusers(sd) if role == "vae" else sat_transformer_to_diffusers(sd, lora_alpha)
        module = _load_into(type_name, configs[role], mapped, f"{path} ({role})")
        target = Path(out) / role
        module.save_pretrained(target, safe_serialization=True)
        written.append(target)
    return written
