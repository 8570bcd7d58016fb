"""Component classes by name: how a preset's ``type:`` becomes a module, built in code or loaded from a folder.

Every heavy thing is reached through this table. Loading is local-only (``local_files_only=True``); a missing or
corrupt file is a one-line :class:`~fvbench.errors.MissingWeightsError` / :class:`~fvbench.errors.FvbenchError`
that names the file and the preset, never a hub download.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from fvbench.errors import FvbenchError, MissingWeightsError, UnknownNameError


@dataclass(frozen=True)
class ComponentType:
    """How to build (random init, from a config dict) and load (from a local folder) one kind of component."""

    name: str
    build: Callable[[dict[str, Any]], Any]
    load: Callable[[Path, torch.dtype], Any]
    weight_files: tuple[str, ...]  # any one of these must exist in the folder
    meta_ok: bool = True  # can be built on the meta device for FLOP counting


def _diffusers_class(name: str):
    import diffusers

    return getattr(diffusers, name)


def _build_diffusers(cls_name: str) -> Callable[[dict[str, Any]], Any]:
    def build(config: dict[str, Any]):
        if cls_name == "FlashVideoTransformer3DModel":
            from fvbench.generation.models.flashvideo import FlashVideoTransformer3DModel as cls
        else:
            cls = _diffusers_class(cls_name)
        return cls(**config)

    return build


def _load_diffusers(cls_name: str) -> Callable[[Path, torch.dtype], Any]:
    def load(path: Path, dtype: torch.dtype):
        if cls_name == "FlashVideoTransformer3DModel":
            from fvbench.generation.models.flashvideo import FlashVideoTransformer3DModel as cls
        else:
            cls = _diffusers_class(cls_name)
        return cls.from_pretrained(path, torch_dtype=dtype, local_files_only=True)

    return load


def _build_t5(config: dict[str, Any]):
    from transformers import T5Config, T5EncoderModel

    from fvbench.generation.models.tokenizer import builtin_tokenizer

    cfg = dict(config)
    cfg.setdefault("vocab_size", len(builtin_tokenizer()))
    return T5EncoderModel(T5Config(**cfg))


def _load_t5(path: Path, dtype: torch.dtype):
    from transformers import T5EncoderModel

    return T5EncoderModel.from_pretrained(path, dtype=dtype, local_files_only=True)


def _build_tokenizer(config: dict[str, Any]):
    from fvbench.generation.models.tokenizer import builtin_tokenizer

    if config:
        raise FvbenchError(f"the builtin tokenizer takes no config, got {sorted(config)}")
    return builtin_tokenizer()


def _load_tokenizer(path: Path, dtype: torch.dtype):
    from transformers import T5Tokenizer

    return T5Tokenizer.from_pretrained(path, local_files_only=True)


_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
                      "diffusion_pytorch_model.bin")
_TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")

COMPONENT_TYPES: dict[str, ComponentType] = {
    "cogvideox-transformer": ComponentType("cogvideox-transformer", _build_diffusers("CogVideoXTransformer3DModel"),
                                           _load_diffusers("CogVideoXTransformer3DModel"), _DIFFUSERS_WEIGHTS),
    "flashvideo-transformer": ComponentType("flashvideo-transformer",
                                            _build_diffusers("FlashVideoTransformer3DModel"),
                                            _load_diffusers("FlashVideoTransformer3DModel"), _DIFFUSERS_WEIGHTS),
    "cogvideox-vae": ComponentType("cogvideox-vae", _build_diffusers("AutoencoderKLCogVideoX"),
                                   _load_diffusers("AutoencoderKLCogVideoX"), _DIFFUSERS_WEIGHTS),
    "t5-encoder": ComponentType("t5-encoder", _build_t5, _load_t5, _TRANSFORMERS_WEIGHTS),
    "t5-tokenizer": ComponentType("t5-tokenizer", _build_tokenizer, _load_tokenizer,
                                  ("spiece.model", "tokenizer.json"), meta_ok=False),
}


def component_type(name: str) -> ComponentType:
    """Look up a component type by name, listing the known ones if it is unknown."""
    try:
        return COMPONENT_TYPES[name]
    except KeyError:
        raise UnknownNameError("component type", name, list(COMPONENT_TYPES)) from None


def init_seed(base_seed: int, type_name: str, config: dict[str, Any]) -> int:
    """Seed for building a component in code: identical architectures get identical weights in every preset."""
    blob = json.dumps({"type": type_name, "config": config}, sort_keys=True).encode()
    return (base_seed * 1_000_003 + int(hashlib.sha256(blob).hexdigest()[:12], 16)) % (2**63)


def build_component(type_name: str, config: dict[str, Any], seed: int) -> Any:
    """Build a component with random weights from ``config``, deterministically from ``seed`` (CPU, float32)."""
    ct = component_type(type_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(seed, type_name, config))
        module = ct.build(config)
    return module.eval() if isinstance(module, torch.nn.Module) else module


def load_component(type_name: str, folder: Path, dtype: torch.dtype, preset: str, role: str) -> Any:
    """Load a component from a local folder, checking first that the files are there."""
    ct = component_type(type_name)
    if not folder.is_dir():
        raise MissingWeightsError(f"preset {preset!r}: {role} ({type_name}) expected in folder {folder}, which does not exist")
    if ct.name != "t5-tokenizer" and not (folder / "config.json").is_file():
        raise MissingWeightsError(f"preset {preset!r}: {role} is missing {folder / 'config.json'}")
    if not any((folder / f).is_file() for f in ct.weight_files):
        raise MissingWeightsError(
            f"preset {preset!r}: {role} has no weights in {folder} (expected one of: {', '.join(ct.weight_files)})"
        )
    try:
        module = ct.load(folder, dtype)
    except (OSError, ValueError, RuntimeError, KeyError, EnvironmentError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise FvbenchError(f"preset {preset!r}: cannot load {role} from {folder} (corrupt or incompatible): {first}") from None
    return module.eval() if isinstance(module, torch.nn.Module) else module
