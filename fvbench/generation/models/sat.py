"""FlashVideo's released SAT (SwissArmyTransformer) checkpoints -> the diffusers-format folders fvbench loads.

FlashVideo (github FoundationVision/FlashVideo) ships three pickles:

- ``stage1.pt``: a CogVideoX-5B-shape DiT with SAT LoRA layers (r=128) still separate; FlashVideo merges them at load
  (``dist_inf_text_file.init_model``). -> ``OUT/stage1``, diffusers ``CogVideoXTransformer3DModel``.
- ``stage2.pt``: a CogVideoX-2B-block DiT with 3D RoPE and two extra time-embedding MLPs. -> ``OUT/stage2``,
  :class:`~fvbench.generation.models.flashvideo.FlashVideoTransformer3DModel`.
- ``3d-vae.pt``: the CogVideoX VAE. -> ``OUT/vae``, diffusers ``AutoencoderKLCogVideoX``.

Transformer tensors sit in ``ckpt['module']`` under ``model.diffusion_model.``; the VAE's in ``ckpt['state_dict']``.

Transformer key families, SAT -> diffusers (``i`` = layer, ``p`` = weight|bias):

====================================================  =====================================================
SAT                                                   diffusers
====================================================  =====================================================
transformer.layers.i.input_layernorm.p                transformer_blocks.i.norm1.norm.p
transformer.layers.i.post_attention_layernorm.p       transformer_blocks.i.norm2.norm.p
transformer.layers.i.attention.query_key_value.p      transformer_blocks.i.attn1.to_{q,k,v}.p (row thirds)
transformer.layers.i.attention.dense.p                transformer_blocks.i.attn1.to_out.0.p
transformer.layers.i.mlp.dense_h_to_4h.p              transformer_blocks.i.ff.net.0.proj.p
transformer.layers.i.mlp.dense_4h_to_h.p              transformer_blocks.i.ff.net.2.p
mixins.adaln_layer.adaLN_modulations.i.1.p            12 row chunks c0..c11 -> norm1.linear.p = c0-2 + c6-8,
                                                      norm2.linear.p = c3-5 + c9-11 (SAT's chunk order is
                                                      shift/scale/gate msa, mlp, then the text ones)
mixins.adaln_layer.query_layernorm_list.i.p           transformer_blocks.i.attn1.norm_q.p
mixins.adaln_layer.key_layernorm_list.i.p             transformer_blocks.i.attn1.norm_k.p
transformer.final_layernorm.p                         norm_final.p
time_embed.{0,2}.p                                    time_embedding.linear_{1,2}.p
ref_step_time_embedding.{0,2}.p       (stage II)      time_embedding.ref_step.linear_{1,2}.p
time_size_embedding.{0,2}.p           (stage II)      time_embedding.frame_count.linear_{1,2}.p
mixins.patch_embed.{proj,text_proj}.p                 patch_embed.{proj,text_proj}.p
mixins.final_layer.norm_final.p                       norm_out.norm.p
mixins.final_layer.linear.p                           proj_out.p
mixins.final_layer.adaLN_modulation.1.p               norm_out.linear.p
====================================================  =====================================================

Dropped: ``mixins.pos_embed.freqs_{sin,cos}`` (RoPE tables; fvbench recomputes RoPE from the latent grid, as
FlashVideo does), ``transformer.position_embeddings.weight`` (SAT's learned position table, unused by the RoPE
DiT) and ``transformer.word_embeddings.*``. Keys of the other SAT engine parts (``first_stage_model.``,
``conditioner.``) are ignored. Anything else that has no diffusers counterpart is an error.

LoRA (SAT ``sat/model/finetune/lora2.py``, applied by FlashVideo's ``ResLoraMixin`` to every layer's
``attention.query_key_value`` (3 partitions), ``attention.dense`` and ``adaLN_modulations.i.1`` (1 partition)):
a LoRA layer ``X`` holds ``X.original.{weight,bias}``, ``X.matrix_A.k`` (r x in) and ``X.matrix_B.k``
(out/partitions x r). Merged, as SAT's ``merge_linear_lora`` does::

    W = W0 + concat_rows_k(B_k @ A_k) * (lora_alpha / r)     (in float32, then cast to the bias dtype)

with SAT's default ``lora_alpha = 1`` (FlashVideo's config sets only ``r: 128``, so the scale is 1/128).

VAE (as diffusers' ``scripts/convert_cogvideox_to_diffusers.py``): ``{encoder,decoder}.mid.block_{1,2}`` ->
``mid_block.resnets.{0,1}``, ``down.k.block.j`` -> ``down_blocks.k.resnets.j``, ``decoder.up.k`` ->
``decoder.up_blocks.(n-1-k)`` (SAT counts up blocks from the lowest resolution), ``downsample``/``upsample`` ->
``downsamplers.0``/``upsamplers.0``, ``nin_shortcut`` -> ``conv_shortcut``; ``loss.*`` is dropped.

Loading is ``torch.load(weights_only=True)``; a pickle that needs arbitrary globals is unpickled only with
``trust_pickle=True`` (CLI ``--trust-checkpoint``), because unpickling can run any code its author chose.

Checked while writing this (not in the test suite, which must not depend on SAT's code): state dicts of FlashVideo's
own SAT modules (stage I with LoRA, stage II with both embeddings, 2 layers at the released widths; the VAE at its
released config), converted here, give diffusers outputs equal to SAT's to float32 rounding (relative L2 about 1e-7),
and the LoRA merge is bitwise SAT's in float32 and bfloat16. One difference stays: diffusers ties ``norm_out``'s
LayerNorm eps to ``norm_eps`` (1e-5) where SAT's final layer uses 1e-6 (relative L2 6e-5, below bfloat16
resolution); diffusers' own CogVideoX conversion has the same.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import re
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from fvbench.errors import FvbenchError, MissingWeightsError

PREFIX = "model.diffusion_model."
# Parts of SAT's SATVideoDiffusionEngine that are not the DiT; present if a whole engine was saved.
OTHER_ENGINE_PARTS = ("first_stage_model.", "conditioner.")
TRUST_HINT = ("unpickling it can run any code its author put in it; if you trust the file's source, rerun with "
              "--trust-checkpoint (library: trust_pickle=True)")
ROLES = ("stage1", "stage2", "vae")
COMPONENT_TYPE = {"stage1": "cogvideox-transformer", "stage2": "flashvideo-transformer", "vae": "cogvideox-vae"}
# types a preset may give each role (stage I as a FlashVideo transformer without the extra embeddings: its final norm)
ALLOWED_TYPES = {"stage1": ("cogvideox-transformer", "flashvideo-transformer"), "stage2": ("flashvideo-transformer",),
                 "vae": ("cogvideox-vae",)}
SAT_MAX_SEQUENCE_LENGTH = 64  # FlashVideo's transformer_args.max_sequence_length: rows of the unused position table

# (SAT name, diffusers name); {i} = layer index, {p} = parameter name. One-to-one renames only.
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
    return re.compile(re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)"))


_FORWARD = [(_regex(sat), diff) for sat, diff in _RULES]
_BACKWARD = [(_regex(diff), sat) for sat, diff in _RULES]
_QKV = re.compile(r"transformer\.layers\.(\d+)\.attention\.query_key_value\.(weight|bias)")
_ADALN = re.compile(r"mixins\.adaln_layer\.adaLN_modulations\.(\d+)\.1\.(weight|bias)")
_DROP = re.compile(r"mixins\.pos_embed\.freqs_(sin|cos)|transformer\.position_embeddings\.weight"
                   r"|transformer\.word_embeddings\.weight")
_LORA = re.compile(r"(?P<base>.+)\.(?:original\.(?P<p>weight|bias)|matrix_(?P<m>[AB])\.(?P<k>\d+))")


def _rename(key: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
    for regex, target in rules:
        if m := regex.fullmatch(key):
            return target.format(**m.groupdict())
    return None


def _reason(e: BaseException, limit: int = 200) -> str:
    """One line of an exception: torch's weights_only detail line if there is one, else the first line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    detail = [ln.split("WeightsUnpickler error:", 1)[1].strip() for ln in lines if "WeightsUnpickler error:" in ln]
    return f"{type(e).__name__}: {(detail or lines or ['no detail'])[0]}"[:limit]


# ----------------------------------------------------------------------------------------------------------- loading


def load_sat_checkpoint(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a SAT checkpoint (under ``module``, ``state_dict`` or ``model``).

    Loads with ``weights_only=True`` (memory-mapped for zip checkpoints, so an 11 GB file is not read into RAM at
    once). A file that needs other globals is unpickled in full only with ``trust_pickle=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"checkpoint {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise FvbenchError(f"{path} is not a readable checkpoint: the file is empty")
    is_zip = zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():  # the refusal below says what matters; torch's protocol notice is noise
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as e:
        needs = _unsafe_globals(path, is_zip)
        if needs is None:  # the pickle stream itself does not parse: a damaged file
            raise FvbenchError(f"{path} is not a readable checkpoint (corrupt or truncated): {_reason(e)}") from None
        if not trust_pickle:
            what = (f"it needs {', '.join(needs[:4])}" if needs else
                    "it uses pickle features weights_only loading does not read" + ("" if is_zip else
                                                                                   ", as legacy non-zip torch.save files "
                                                                                   "written with pickle protocol 4+ do"))
            raise FvbenchError(f"{path} is a full pickle that weights_only loading refuses ({what}); "
                               f"{TRUST_HINT}") from None
        data = _load_trusted(path, is_zip)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, KeyError, EOFError... for damaged files
        raise FvbenchError(f"{path} is not a readable checkpoint (corrupt or truncated): {_reason(e)}") from None
    return _state_dict_of(data, path)


def _unsafe_globals(path: Path, is_zip: bool) -> list[str] | None:
    """The globals a checkpoint's pickle references that weights_only loading does not allow, read from the pickle
    opcodes without running them; None when the pickle stream does not parse (a damaged file).

    Works on both formats (a zip's ``*/data.pkl``; a legacy file's leading pickles: magic number, protocol, system
    info, then the object), so the verdict never depends on the wording of torch's error message.
    """
    try:
        if is_zip:
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith("data.pkl")]
                if not names:
                    return None
                found = _pickle_globals(io.BytesIO(z.read(names[0])), 1)
        else:
            with open(path, "rb") as f:
                found = _pickle_globals(f, 4)
    except Exception:  # noqa: BLE001 - zipfile, pickletools and reads fail in many ways on damaged bytes
        return None
    allowed = set(_weights_only_allowed())
    return [g for g in dict.fromkeys(found) if g not in allowed]


def _pickle_globals(stream: Any, max_pickles: int) -> list[str]:
    """``module.name`` of every GLOBAL / STACK_GLOBAL in up to ``max_pickles`` consecutive pickles (opcodes only)."""
    import pickletools

    found: list[str] = []
    for _ in range(max_pickles):
        if not stream.read(1):
            break  # end of file between pickles (a plain pickle holds one)
        stream.seek(-1, io.SEEK_CUR)
        strings: list[str] = []  # string values pushed so far, for STACK_GLOBAL's module and name
        memo: dict[int, str | None] = {}
        last: str | None = None  # the string the previous opcode pushed, if it pushed one
        for op, arg, _ in pickletools.genops(stream):
            pushed = None
            if op.name == "GLOBAL":
                found.append(str(arg).replace(" ", ".").replace("__builtin__.", "builtins.", 1))
            elif op.name == "STACK_GLOBAL":
                found.append(".".join(strings[-2:]) if len(strings) >= 2 else "(unnamed global)")
            elif op.name.endswith("UNICODE") and isinstance(arg, str):
                pushed = arg
            elif op.name in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):  # stores the top of the stack, pushes nothing
                memo[len(memo) if op.name == "MEMOIZE" else int(arg)] = last
                continue
            elif op.name in ("BINGET", "LONG_BINGET", "GET"):
                pushed = memo.get(int(arg))
            if pushed is not None:
                strings.append(pushed)
            last = pushed
    return found


def _weights_only_allowed() -> list[str]:
    """Globals torch's weights_only unpickler accepts (its built-in list plus ones the user registered)."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        names = list(_get_allowed_globals())
    except (ImportError, AttributeError):  # a private helper: without it every global is listed, none wrongly hidden
        names = []
    for g in torch.serialization.get_safe_globals():
        obj = g[0] if isinstance(g, tuple) else g
        names.append(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)}")
    return names


def _load_trusted(path: Path, is_zip: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=is_zip)
    except ModuleNotFoundError as e:
        raise FvbenchError(f"{path} needs the Python module {e.name!r} to be unpickled; install it or save the "
                           f"checkpoint's tensors alone (torch.save({{'module': sd}}))") from None
    except Exception as e:  # noqa: BLE001 - arbitrary pickles fail in arbitrary ways
        raise FvbenchError(f"{path} is not a readable checkpoint: {_reason(e)}") from None


def _state_dict_of(data: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("module", "state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not data:
        raise FvbenchError(f"{path} does not hold a state dict (looked under 'module', 'state_dict', 'model')")
    bad = [k for k, v in data.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise FvbenchError(f"{path}: {len(bad)} state-dict entries are not tensors, e.g. {bad[:3]}")
    return data


# -------------------------------------------------------------------------------------------------------------- LoRA


def merge_lora(state: dict[str, torch.Tensor], lora_alpha: float = 1.0,
               merged_dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], int]:
    """Fold SAT LoRA layers into plain linears: W = W0 + concat_k(B_k @ A_k) * lora_alpha / r.

    Returns the new state dict (LoRA keys replaced by ``X.weight`` / ``X.bias``) and the number of layers merged.
    Computed in float32 and cast to the bias dtype, as SAT's ``merge_linear_lora`` does in a model holding the
    checkpoint's dtype (the release runs bf16); ``merged_dtype`` keeps the merged weight and its bias in that dtype
    instead (float32: what SAT computes when the model runs in float32, as the differential test's reference does).
    """
    groups: dict[str, dict[str, Any]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _LORA.fullmatch(key)
        if m is None:
            out[key] = value
            continue
        g = groups.setdefault(m["base"], {"A": {}, "B": {}})
        if m["p"]:
            g[m["p"]] = value
        else:
            g[m["m"]][int(m["k"])] = value
    for base, g in groups.items():
        if "weight" not in g:
            raise FvbenchError(f"LoRA layer {base}: has A/B matrices but no {base}.original.weight")
        if f"{base}.weight" in out or f"{base}.bias" in out:
            raise FvbenchError(f"LoRA layer {base}: holds both a plain weight and an original.weight")
        a = [g["A"].get(k) for k in range(len(g["A"]))]
        b = [g["B"].get(k) for k in range(len(g["B"]))]
        if not a or len(a) != len(b) or any(t is None for t in a + b):
            raise FvbenchError(f"LoRA layer {base}: matrix_A indices {sorted(g['A'])} and matrix_B indices "
                               f"{sorted(g['B'])} do not pair up")
        w0 = g["weight"]
        r = a[0].shape[0]
        if any(t.ndim != 2 for t in a + b) or any(ak.shape != (r, w0.shape[1]) or bk.shape[1] != r
                                                  for ak, bk in zip(a, b)):
            raise FvbenchError(f"LoRA layer {base}: A {[tuple(t.shape) for t in a]} / B {[tuple(t.shape) for t in b]} "
                               f"do not fit weight {tuple(w0.shape)} with one rank")
        scaling = lora_alpha / r
        delta = torch.cat([bk.float() @ ak.float() * scaling for ak, bk in zip(a, b)], dim=0)
        if delta.shape != w0.shape:
            raise FvbenchError(f"LoRA layer {base}: update {tuple(delta.shape)} does not fit weight {tuple(w0.shape)}")
        dtype = merged_dtype or (g["bias"].dtype if "bias" in g else w0.dtype)
        out[f"{base}.weight"] = (w0.float() + delta).to(dtype)
        if "bias" in g:
            out[f"{base}.bias"] = g["bias"].to(dtype)
    return out, len(groups)


# ------------------------------------------------------------------------------------------------------- transformer


@dataclasses.dataclass(frozen=True)
class MappedState:
    """A SAT state dict mapped to diffusers names, with what happened on the way (for the user and for tests)."""

    state: dict[str, torch.Tensor]
    sat_keys: int  # tensors read from the checkpoint
    lora_layers: int  # LoRA layers merged
    dropped: tuple[str, ...]  # SAT keys deliberately not carried over
    ignored: int  # keys of other SAT engine parts (first_stage_model., conditioner.)


def sat_transformer_to_diffusers(state: dict[str, torch.Tensor], lora_alpha: float = 1.0,
                                 lora_dtype: torch.dtype | None = None) -> MappedState:
    """Map a SAT CogVideoX / FlashVideo DiT state dict to diffusers names (LoRA merged first).

    Keys under ``model.diffusion_model.`` are the DiT; a checkpoint without that prefix is taken as the DiT alone.
    A key with no diffusers counterpart is an error listing a few of them.
    """
    prefixed = any(k.startswith(PREFIX) for k in state)
    own, ignored, stray = {}, 0, []
    for key, value in state.items():
        if key.startswith(PREFIX):
            own[key[len(PREFIX):]] = value
        elif prefixed and key.startswith(OTHER_ENGINE_PARTS):
            ignored += 1
        elif prefixed:
            stray.append(key)
        else:
            own[key] = value
    merged, n_lora = merge_lora(own, lora_alpha, lora_dtype)
    out: dict[str, torch.Tensor] = {}
    dropped = []
    for key, value in merged.items():
        if _DROP.fullmatch(key):
            dropped.append(key)
        elif m := _QKV.fullmatch(key):
            if value.shape[0] % 3:
                raise FvbenchError(f"SAT {key}: {value.shape[0]} rows do not split into q, k, v")
            for name, part in zip(("to_q", "to_k", "to_v"), value.chunk(3, dim=0)):
                out[f"transformer_blocks.{m[1]}.attn1.{name}.{m[2]}"] = part.clone()  # own storage for safetensors
        elif m := _ADALN.fullmatch(key):
            if value.shape[0] % 12:
                raise FvbenchError(f"SAT {key}: {value.shape[0]} rows do not split into 12 modulation chunks")
            c = value.chunk(12, dim=0)
            out[f"transformer_blocks.{m[1]}.norm1.linear.{m[2]}"] = torch.cat(c[0:3] + c[6:9])
            out[f"transformer_blocks.{m[1]}.norm2.linear.{m[2]}"] = torch.cat(c[3:6] + c[9:12])
        elif (target := _rename(key, _FORWARD)) is not None:
            out[target] = value
        else:
            stray.append(PREFIX + key if prefixed else key)
    if stray:
        raise FvbenchError(f"{len(stray)} SAT transformer key(s) have no diffusers counterpart, "
                           f"e.g. {sorted(stray)[:4]}")
    return MappedState(out, len(state), n_lora, tuple(sorted(dropped)), ignored)


def diffusers_transformer_to_sat(state: dict[str, torch.Tensor],
                                 max_sequence_length: int = SAT_MAX_SEQUENCE_LENGTH) -> dict[str, torch.Tensor]:
    """The inverse mapping (diffusers -> SAT names, prefixed), giving the key layout FlashVideo's SAT DiT saves.

    SAT also saves its unused learned position table ``transformer.position_embeddings.weight``
    (``max_sequence_length`` x hidden); it is written as zeros. LoRA is not re-split (the weights are merged).
    """
    out: dict[str, torch.Tensor] = {}
    layers = sorted({int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")})
    for i in layers:
        for p in ("weight", "bias"):
            qkv = [state.get(f"transformer_blocks.{i}.attn1.{n}.{p}") for n in ("to_q", "to_k", "to_v")]
            if all(t is not None for t in qkv):
                out[f"transformer.layers.{i}.attention.query_key_value.{p}"] = torch.cat(qkv)
            n1 = state.get(f"transformer_blocks.{i}.norm1.linear.{p}")
            n2 = state.get(f"transformer_blocks.{i}.norm2.linear.{p}")
            if n1 is not None and n2 is not None:
                a, b = n1.chunk(6, dim=0), n2.chunk(6, dim=0)
                out[f"mixins.adaln_layer.adaLN_modulations.{i}.1.{p}"] = torch.cat(a[0:3] + b[0:3] + a[3:6] + b[3:6])
    for key, value in state.items():
        if re.fullmatch(r"transformer_blocks\.\d+\.(attn1\.to_[qkv]|norm[12]\.linear)\.(weight|bias)", key):
            continue
        target = _rename(key, _BACKWARD)
        if target is None:
            raise FvbenchError(f"diffusers key {key} has no SAT counterpart")
        out[target] = value.clone()
    hidden = state["norm_final.weight"].shape[0]
    out["transformer.position_embeddings.weight"] = torch.zeros(max_sequence_length, hidden,
                                                                dtype=state["norm_final.weight"].dtype)
    return {PREFIX + k: v for k, v in out.items()}


# --------------------------------------------------------------------------------------------------------------- VAE


def sat_vae_to_diffusers(state: dict[str, torch.Tensor]) -> MappedState:
    """Map a SAT CogVideoX VAE state dict (``encoder.*``, ``decoder.*``, ``loss.*``) to AutoencoderKLCogVideoX names."""
    n_up = len({k.split(".")[2] for k in state if k.startswith("decoder.up.")})
    out, dropped, stray = {}, [], []
    for key, value in state.items():
        if key.startswith("loss."):
            dropped.append(key)
            continue
        if not key.startswith(("encoder.", "decoder.")):
            stray.append(key)
            continue
        k = re.sub(r"\.mid\.block_([12])\.", lambda m: f".mid_block.resnets.{int(m[1]) - 1}.", key)
        k = re.sub(r"\.block\.(\d+)\.", r".resnets.\1.", k)
        k = re.sub(r"^encoder\.down\.(\d+)\.", r"encoder.down_blocks.\1.", k)
        k = k.replace(".downsample.", ".downsamplers.0.").replace(".upsample.", ".upsamplers.0.")
        k = k.replace(".nin_shortcut.", ".conv_shortcut.")
        if m := re.match(r"decoder\.up\.(\d+)\.(.*)", k):
            k = f"decoder.up_blocks.{n_up - 1 - int(m[1])}.{m[2]}"
        out[k] = value
    if stray:
        raise FvbenchError(f"{len(stray)} SAT VAE key(s) are neither encoder., decoder. nor loss., "
                           f"e.g. {sorted(stray)[:4]}")
    return MappedState(out, len(state), 0, tuple(sorted(dropped)), 0)


def diffusers_vae_to_sat(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse VAE mapping, giving the key layout of SAT's ``3d-vae.pt`` (without its ``loss.*`` tensors)."""
    n_up = len({k.split(".")[2] for k in state if k.startswith("decoder.up_blocks.")})
    out = {}
    for key, value in state.items():
        k = re.sub(r"\.mid_block\.resnets\.([01])\.", lambda m: f".mid.block_{int(m[1]) + 1}.", key)
        k = re.sub(r"\.resnets\.(\d+)\.", r".block.\1.", k)
        k = re.sub(r"^encoder\.down_blocks\.(\d+)\.", r"encoder.down.\1.", k)
        k = k.replace(".downsamplers.0.", ".downsample.").replace(".upsamplers.0.", ".upsample.")
        k = k.replace(".conv_shortcut.", ".nin_shortcut.")
        if m := re.match(r"decoder\.up_blocks\.(\d+)\.(.*)", k):
            k = f"decoder.up.{n_up - 1 - int(m[1])}.{m[2]}"
        out[k] = value.clone()
    return out


# ------------------------------------------------------------------------------------------------------- conversion


@dataclasses.dataclass(frozen=True)
class ConvertedPart:
    """One converted checkpoint: where it went and what the mapping did."""

    role: str  # stage1 | stage2 | vae
    source: Path
    folder: Path
    sat_keys: int
    diffusers_keys: int
    parameters: int
    lora_layers: int
    dropped: tuple[str, ...]
    ignored: int
    dtype: str


def _flashvideo_specs(like: str):
    from fvbench.generation.presets import get_preset

    preset = get_preset(like)
    roles = {s.name: s.transformer for s in preset.stages}
    if set(roles) != {"stage1", "stage2"} or "vae" not in preset.components:
        raise FvbenchError(f"preset {like!r} is not a two-stage cascade with stages stage1, stage2 and a vae component")
    configs = {name: preset.components[roles[name]] for name in ("stage1", "stage2")}
    configs["vae"] = preset.components["vae"]
    for role, spec in configs.items():
        if spec.type not in ALLOWED_TYPES[role]:
            raise FvbenchError(f"preset {like!r}: {role} is a {spec.type!r}, the converter writes "
                               f"{' or '.join(map(repr, ALLOWED_TYPES[role]))}")
    return configs


def to_module(role: str, config: dict[str, Any], state: dict[str, torch.Tensor], what: str,
              type_name: str | None = None) -> torch.nn.Module:
    """Build ``role``'s module (of ``type_name``, default the role's usual type) on the meta device and assign
    ``state`` to it; key or shape mismatches are errors."""
    from fvbench.generation.models.registry import component_type

    with torch.device("meta"):
        module = component_type(type_name or COMPONENT_TYPE[role]).build(config)
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        found = [f"{len(names)} key(s) {kind} (e.g. {', '.join(names[:3])})"
                 for kind, names in (("missing", missing), ("unexpected", unexpected)) if names]
        raise FvbenchError(f"{what}: after mapping, {' and '.join(found)}: not a FlashVideo {role} checkpoint, "
                           f"or the architecture config does not match it")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
             for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise FvbenchError(f"{what}: {len(wrong)} tensor(s) have another shape than the config's architecture "
                           f"(checkpoint vs config), e.g. {wrong[:3]}")
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval()


def convert_flashvideo(stage1: str | Path | None, stage2: str | Path | None, vae: str | Path | None,
                       out: str | Path, trust_pickle: bool = False, *, configs: dict[str, dict[str, Any]] | None = None,
                       like: str = "flashvideo", lora_alpha: float = 1.0, lora_dtype: torch.dtype | None = None,
                       overwrite: bool = False,
                       log: Callable[[str], None] | None = None) -> list[ConvertedPart]:
    """Convert whichever of FlashVideo's three SAT checkpoints are given into ``out/{stage1,stage2,vae}``.

    ``configs`` (role -> constructor kwargs) describes the architectures; by default the components of preset
    ``like``. Every input is checked to exist, and every output folder to be free (or ``overwrite``), before the
    first (slow) conversion. Each folder is written under a temporary name and renamed when complete.
    """
    sources = {role: Path(p) for role, p in zip(ROLES, (stage1, stage2, vae)) if p is not None}
    if not sources:
        raise FvbenchError("nothing to convert: give at least one of stage1, stage2, vae")
    for role, path in sources.items():
        if not path.is_file():
            raise MissingWeightsError(f"{role} checkpoint {path} does not exist")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FvbenchError(f"output {out} exists and is not a folder")
    for role in sources:
        if (out / role).exists() and not overwrite:
            raise FvbenchError(f"{out / role} already exists; remove it or pass --overwrite (library: overwrite=True)")
    types: dict[str, str] = {}
    if configs is None:
        specs = _flashvideo_specs(like)
        configs = {role: dict(spec.config) for role, spec in specs.items()}
        types = {role: spec.type for role, spec in specs.items()}
    created = [d for d in (out, *out.parents) if not d.exists()]  # removed again (if still empty) on failure
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _convert_into(out, sources, configs, types, trust_pickle, lora_alpha, lora_dtype, log)
    except BaseException:
        for d in created:  # deepest first; rmdir refuses a folder that holds anything (a part already converted)
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _convert_into(out: Path, sources: dict[str, Path], configs: dict[str, dict[str, Any]], types: dict[str, str],
                  trust_pickle: bool, lora_alpha: float, lora_dtype: torch.dtype | None,
                  log: Callable[[str], None] | None) -> list[ConvertedPart]:
    """The conversions of :func:`convert_flashvideo`, into an existing folder ``out``."""
    done = []
    for role, path in sources.items():
        state = load_sat_checkpoint(path, trust_pickle)
        mapped = (sat_vae_to_diffusers(state) if role == "vae"
                  else sat_transformer_to_diffusers(state, lora_alpha, lora_dtype))
        del state
        module = to_module(role, configs[role], mapped.state, f"{path} ({role})", types.get(role))
        dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in mapped.state.values()})
        target = out / role
        tmp = Path(tempfile.mkdtemp(prefix=f".{role}.", suffix=".partial", dir=out))
        try:
            tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; the final folder gets the usual mode
            module.save_pretrained(tmp, safe_serialization=True)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        part = ConvertedPart(role, path, target, mapped.sat_keys, len(mapped.state),
                             sum(t.numel() for t in mapped.state.values()), mapped.lora_layers, mapped.dropped,
                             mapped.ignored, "/".join(dtypes))
        done.append(part)
        del module, mapped
        if log:
            log(describe(part))
    return done


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def describe(part: ConvertedPart) -> str:
    """One line for the user: what was read, merged, dropped and written."""
    bits = [f"{part.role}: {part.sat_keys} SAT tensors -> {part.diffusers_keys} diffusers tensors "
            f"({part.parameters:,} parameters, {part.dtype}) in {part.folder}"]
    if part.lora_layers:
        bits.append(f"{part.lora_layers} LoRA layers merged")
    if part.dropped:
        bits.append(f"{len(part.dropped)} dropped ({', '.join(sorted({_family(k) for k in part.dropped}))})")
    if part.ignored:
        bits.append(f"{part.ignored} keys of other SAT engine parts ignored")
    return "; ".join(bits)


def _family(key: str) -> str:
    key = key.removeprefix(PREFIX)
    return "loss.*" if key.startswith("loss.") else key
