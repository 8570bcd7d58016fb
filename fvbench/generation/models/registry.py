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
from typing import TYPE_CHECKING, Any, Callable

from fvbench.errors import FvbenchError, MissingWeightsError, UnknownNameError
from fvbench.plugins import Registry

if TYPE_CHECKING:
    import torch


def _cogvideox_latent_frames(frames: int) -> int:
    if frames <= 0 or (frames - 1) % 4 or ((frames - 1) // 4) % 2:
        raise ValueError(
            f"frames must be of the form 4k+1 with an odd number of latent frames (9, 17, 25, ..., 49): the "
            f"CogVideoX VAE decodes an even latent count to a different frame count; got {frames}"
        )
    return (frames - 1) // 4 + 1


def _uncompressed_frames(frames: int) -> int:
    if frames <= 0:
        raise ValueError(f"frames must be positive, got {frames}")
    return frames


@dataclass(frozen=True)
class VaeGeometry:
    """How a VAE type maps pixels to latents: spatial factor (from its config) and frames -> latent frames.

    ``latent_frames`` raises ValueError for a frame count the VAE cannot encode and decode back to itself.
    """

    spatial_factor: Callable[[dict[str, Any]], int]
    latent_frames: Callable[[int], int]


# CogVideoX: 2 ** (number of down blocks - 1) spatially (8 for the real VAE), 4x temporally with the first frame apart.
COGVIDEOX_GEOMETRY = VaeGeometry(lambda c: 2 ** (len(c.get("block_out_channels", (128, 256, 256, 512))) - 1),
                                 _cogvideox_latent_frames)
PIXEL_GEOMETRY = VaeGeometry(lambda c: 1, _uncompressed_frames)  # pixel space: no compression at all


def _patch_multiple(config: dict[str, Any]) -> int:
    return int(config.get("patch_size", 2))


@dataclass(frozen=True)
class ComponentType:
    """How to build (random init, from a config dict) and load (from a local folder) one kind of component.

    ``weightless`` components (a rule-based tokenizer, a pixel-space identity VAE) have nothing to load and are
    always built from their config, also when the rest of the preset comes from a weights folder. ``vae`` is the
    geometry of a VAE type; ``spatial_multiple`` says what a denoiser's input height and width (in latent pixels)
    must be multiples of (its patch size for a DiT, its total downsampling for a U-Net).
    """

    name: str
    build: Callable[[dict[str, Any]], Any]
    load: Callable[[Path, torch.dtype], Any]
    weight_files: tuple[str, ...]  # any one of these must exist in the folder
    meta_ok: bool = True  # can be built on the meta device for FLOP counting
    weightless: bool = False
    vae: VaeGeometry | None = None
    spatial_multiple: Callable[[dict[str, Any]], int] = _patch_multiple
    config_file: str | None = "config.json"  # must be in the folder (None: a tokenizer's files are its config)


def _model_class(library: str, cls_name: str):
    if cls_name == "FlashVideoTransformer3DModel":  # fvbench's own stage-II DiT
        from fvbench.generation.models.flashvideo import FlashVideoTransformer3DModel

        return FlashVideoTransformer3DModel
    import importlib

    return getattr(importlib.import_module(library), cls_name)


def build_diffusers(cls_name: str) -> Callable[[dict[str, Any]], Any]:
    """A builder (random init from a config dict) for a diffusers class, or fvbench's FlashVideo DiT."""
    def build(config: dict[str, Any]):
        return _model_class("diffusers", cls_name)(**config)

    return build


def _checked_loader(library: str, cls_name: str, dtype_arg: str) -> Callable[[Path, "torch.dtype"], Any]:
    """A local-only ``from_pretrained`` loader that refuses a folder missing some of the class's weights (diffusers and
    transformers would initialise them at random, with only a warning)."""
    def load(path: Path, dtype: "torch.dtype"):
        cls = _model_class(library, cls_name)
        model, info = cls.from_pretrained(path, local_files_only=True, output_loading_info=True, **{dtype_arg: dtype})
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            hint = " (re-run fvbench convert-flashvideo)" if cls_name.startswith("FlashVideo") else ""
            raise ValueError(f"{len(missing)} weights of {cls_name} are not in the folder (e.g. {', '.join(missing[:3])}); "
                             f"a folder of another architecture?{hint}")
        return model

    return load


def load_diffusers(cls_name: str) -> Callable[[Path, "torch.dtype"], Any]:
    """A checked local loader for a diffusers model class (transformers, VAEs)."""
    return _checked_loader("diffusers", cls_name, "torch_dtype")


def build_transformers(model_cls: str, config_cls: str) -> Callable[[dict[str, Any]], Any]:
    """Build a transformers text encoder from a config dict (vocabulary defaulting to the builtin tokenizer's)."""
    def build(config: dict[str, Any]):
        import transformers

        from fvbench.generation.models.tokenizer import builtin_tokenizer

        cfg = dict(config)
        cfg.setdefault("vocab_size", len(builtin_tokenizer()))
        return getattr(transformers, model_cls)(getattr(transformers, config_cls)(**cfg))

    return build


def load_transformers(model_cls: str, checked: bool = True) -> Callable[[Path, "torch.dtype"], Any]:
    """A local loader for a transformers model class (T5, UMT5, Llama, CLIP text); ``checked`` refuses missing weights
    (T5 and UMT5 are loaded unchecked, as they always were: their checkpoints tie embeddings transformers may list)."""
    if checked:
        return _checked_loader("transformers", model_cls, "dtype")

    def load(path: Path, dtype: "torch.dtype"):
        return _model_class("transformers", model_cls).from_pretrained(path, dtype=dtype, local_files_only=True)

    return load


def build_tokenizer(config: dict[str, Any]):
    from fvbench.generation.models.tokenizer import builtin_tokenizer

    if config:
        raise FvbenchError(f"the builtin tokenizer takes no config, got {sorted(config)}")
    return builtin_tokenizer()


def _load_tokenizer(path: Path, dtype: torch.dtype):
    from transformers import T5Tokenizer

    return T5Tokenizer.from_pretrained(path, local_files_only=True)


def no_files(path: Path, dtype: torch.dtype):
    raise FvbenchError(f"this component has no weights to load (from {path})")


DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
                      "diffusion_pytorch_model.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")

COMPONENT_TYPES: Registry[ComponentType] = Registry("component type")


def register_component_type(ct: ComponentType, *, replace: bool = False, origin: str = "") -> ComponentType:
    """Make ``ct`` available to presets as ``type: <ct.name>`` (plug-ins call this from their plugin module)."""
    COMPONENT_TYPES.register(ct.name, ct, replace=replace, origin=origin)
    return ct


for _ct in (
    ComponentType("cogvideox-transformer", build_diffusers("CogVideoXTransformer3DModel"),
                  load_diffusers("CogVideoXTransformer3DModel"), DIFFUSERS_WEIGHTS),
    ComponentType("flashvideo-transformer", build_diffusers("FlashVideoTransformer3DModel"),
                  load_diffusers("FlashVideoTransformer3DModel"), DIFFUSERS_WEIGHTS),
    ComponentType("cogvideox-vae", build_diffusers("AutoencoderKLCogVideoX"), load_diffusers("AutoencoderKLCogVideoX"),
                  DIFFUSERS_WEIGHTS, vae=COGVIDEOX_GEOMETRY),
    ComponentType("t5-encoder", build_transformers("T5EncoderModel", "T5Config"), load_transformers("T5EncoderModel", checked=False),
                  TRANSFORMERS_WEIGHTS),
    ComponentType("t5-tokenizer", build_tokenizer, _load_tokenizer, ("spiece.model", "tokenizer.json"), meta_ok=False,
                  config_file=None),
):
    register_component_type(_ct)


def vae_geometry(type_name: str) -> VaeGeometry:
    """The geometry of a VAE component type (an unknown or non-VAE type is an error listing the VAE types)."""
    ct = COMPONENT_TYPES.get(type_name)
    if ct is None or ct.vae is None:
        raise UnknownNameError("VAE component type", type_name, [k for k, v in COMPONENT_TYPES.items() if v.vae])
    return ct.vae


def component_type(name: str) -> ComponentType:
    """Look up a component type by name, listing the known ones if it is unknown."""
    return COMPONENT_TYPES.get_entry(name)


def init_seed(base_seed: int, type_name: str, config: dict[str, Any]) -> int:
    """Seed for building a component in code: identical architectures get identical weights in every preset."""
    blob = json.dumps({"type": type_name, "config": config}, sort_keys=True).encode()
    return (base_seed * 1_000_003 + int(hashlib.sha256(blob).hexdigest()[:12], 16)) % (2**63)


def build_component(type_name: str, config: dict[str, Any], seed: int) -> Any:
    """Build a component with random weights from ``config``, deterministically from ``seed`` (CPU, float32)."""
    import torch

    ct = component_type(type_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(seed, type_name, config))
        module = ct.build(config)
    return module.eval() if isinstance(module, torch.nn.Module) else module


def load_component(type_name: str, folder: Path, dtype: torch.dtype, preset: str, role: str) -> Any:
    """Load a component from a local folder, checking first that the files are there."""
    import torch

    ct = component_type(type_name)
    if not folder.is_dir():
        raise MissingWeightsError(f"preset {preset!r}: {role} ({type_name}) expected in folder {folder}, which does not exist")
    if ct.config_file and not (folder / ct.config_file).is_file():
        raise MissingWeightsError(f"preset {preset!r}: {role} is missing {folder / ct.config_file}")
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
