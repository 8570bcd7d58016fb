"""Generator presets: frozen specs read from the YAML files under ``baselines/`` and the folders plug-ins register
(:func:`register_preset_dir`).

A preset names its components (type, folder, architecture config), the frame count, and the ordered list of
stages. A FlashVideo cascade has two stages; a single-stage DiT baseline has one whose init is noise.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from fvbench.dataio import from_dict, load_data
from fvbench.errors import FvbenchError, UnknownNameError
from fvbench.paths import data_dir, weights_root
from fvbench.plugins import Registry

# Solver and init names are those of the preset's pipeline (fvbench.generation.pipelines): CogVideoX's are
# dpm++2m, ddim, sat-dpm++2m, flow-euler and noise, upsample; a model family registers its own.
Solver = str
GridDtype = Literal["float64", "float32", "bfloat16", "float16", "model"]
PACKAGE_PREFIX = "package:"  # ``weights: package:<subpackage>/weights`` = a folder inside the installed fvbench package

# Ceilings that keep a typo (``nfe: 1000000000``) from planning petaFLOPs or allocating gigabytes; far above any
# published setting (1000 = a full DDPM schedule; 1080p and 4K fit; LTX-Video's 257 frames fit). Lifted on purpose
# by FVBENCH_ALLOW_LARGE=1 or `--allow-large` on `fvbench run` / `generate` / `flops`.
MAX_NFE = 1000
MAX_FRAMES = 1025
MAX_SIDE = 4096
ALLOW_LARGE_ENV = "FVBENCH_ALLOW_LARGE"


def allow_large() -> bool:
    """True when the user lifted the NFE/frame/resolution ceilings on purpose."""
    return os.environ.get(ALLOW_LARGE_ENV, "").strip() not in ("", "0")


def lift_ceilings() -> None:
    """`--allow-large`: lift the ceilings for this process and the workers it starts (through the environment)."""
    os.environ[ALLOW_LARGE_ENV] = "1"


def _ceiling(what: str, value: int, limit: int) -> None:
    if value > limit and not allow_large():
        raise ValueError(f"{what} {value} is over fvbench's limit of {limit}; to run it on purpose pass --allow-large "
                         f"or set {ALLOW_LARGE_ENV}=1")


@dataclass(frozen=True)
class ComponentSpec:
    """One model component: its registry type, folder under the preset's weights dir, and architecture config."""

    type: str
    path: str | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageConfig:
    """One stage of a cascade: which transformer runs at what resolution, with which solver, NFE and guidance.

    ``nfe`` counts transformer evaluations (one call; with CFG that call has batch 2). ``init`` is ``noise`` for a
    stage that starts from Gaussian noise, ``upsample`` for FlashVideo's stage II (previous stage's pixels ->
    bilinear antialiased upsample -> VAE encode -> degradation at ``noise_step``). A flow stage with
    ``init: noise`` is the vanilla cascade.

    Release-exact FlashVideo fields (defaults keep fvbench's own behaviour): ``solver: sat-dpm++2m`` is SAT's
    DPM-Solver++(2M) SDE on its ``nfe``-step timestep subset; ``prompt_prefix`` is put before the prompt for this
    stage's text encoding; ``time_grid_dtype`` is the dtype of the flow grid (``model``: the transformer's);
    ``upsample_input: float`` feeds the previous stage's unrounded pixels to the upsampler; ``decode_width_splits``
    decodes in that many width slices (the release's stage-II decode) instead of one pass.
    """

    name: str
    transformer: str
    solver: Solver
    nfe: int
    height: int
    width: int
    cfg: float = 6.0
    cfg_schedule: Literal["constant", "dynamic"] = "constant"
    init: str = "noise"
    noise_step: int = 675
    shift: float = 2.5
    latent_scale: float | None = None
    rope: Literal["grid", "crop"] = "grid"
    snr_shift_scale: float = 1.0
    prompt_prefix: str = ""
    time_grid_dtype: GridDtype = "float64"
    upsample_input: Literal["uint8", "float"] = "uint8"
    decode_width_splits: int = 1
    options: dict[str, Any] = field(default_factory=dict)  # pipeline-specific settings (a model family's own)
    # A cross-family cascade (``pipeline: composite``): the pipeline that runs this stage, and which of the preset's
    # components it sees under its own role names, e.g. ``{vae: fv_vae, text_encoder: fv_text}``
    pipeline: str = ""
    roles: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.nfe <= 0:
            raise ValueError(f"stage {self.name!r}: NFE must be positive, got {self.nfe}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"stage {self.name!r}: resolution must be positive, got {self.height}x{self.width}")
        _ceiling(f"stage {self.name!r}: NFE", self.nfe, MAX_NFE)
        _ceiling(f"stage {self.name!r}: height", self.height, MAX_SIDE)
        _ceiling(f"stage {self.name!r}: width", self.width, MAX_SIDE)
        if self.cfg < 1.0:
            raise ValueError(f"stage {self.name!r}: cfg must be >= 1 (1 disables guidance), got {self.cfg}")
        if not 0 <= self.noise_step < 1000:
            raise ValueError(f"stage {self.name!r}: noise_step must be in [0, 999], got {self.noise_step}")
        if self.shift <= 0:
            raise ValueError(f"stage {self.name!r}: shift must be positive, got {self.shift}")
        if self.solver == "flow-euler" and self.cfg_schedule == "dynamic":
            raise ValueError(f"stage {self.name!r}: the flow solver takes constant CFG only")
        if self.init == "upsample" and self.solver != "flow-euler":
            raise ValueError(f"stage {self.name!r}: init 'upsample' needs the flow-euler solver")
        if self.decode_width_splits < 1:
            raise ValueError(f"stage {self.name!r}: decode_width_splits must be >= 1, got {self.decode_width_splits}")
        if self.time_grid_dtype != "float64" and self.solver != "flow-euler":
            raise ValueError(f"stage {self.name!r}: time_grid_dtype applies to the flow-euler solver only")


@dataclass(frozen=True)
class Preset:
    """A generator: components plus an ordered list of stages, all frozen."""

    name: str
    description: str
    family: Literal["cascade", "single-stage"]
    size: str
    frames: int
    weights: str
    components: dict[str, ComponentSpec]
    stages: tuple[StageConfig, ...]
    max_text_length: int = 226
    uncond: Literal["zeros", "empty"] = "zeros"
    seed: int = 0
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    vae_tiling: bool = False
    # FlashVideo's release encodes 1 + 16, 16, 16 frames at a time (17/16/16 for 49): 16 here; 0 = one whole pass
    vae_encode_chunk: int = 0
    release: str = ""  # the released code this preset samples like (repository@commit), printed with the preset
    cost_only: str = ""  # non-empty: the preset measures cost only, and this says why (printed wherever it appears)
    prompt_scope: str = ""  # what prompts the model understands when that is not free text (printed by `fvbench run`)
    source: str = ""
    pipeline: str = "cogvideox"  # the registered pipeline that runs it (fvbench.generation.pipelines)
    fps: float = 8.0  # the model's native frame rate (seconds of video = frames / fps); a label, not an input

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("a preset needs at least one stage")
        _ceiling("frames", self.frames, MAX_FRAMES)
        if self.stages[0].init != "noise":
            raise ValueError("the first stage must start from noise")
        for role in ("tokenizer", "text_encoder", "vae"):
            if role not in self.components:
                raise ValueError(f"missing component {role!r}")
        self.latent_frames  # the VAE type's frame rule (CogVideoX: 4k+1 with an odd latent count) raises ValueError
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        for s in self.stages:
            if s.decode_width_splits > 1 and self.vae_tiling:
                raise ValueError(f"stage {s.name!r}: decode_width_splits (the release's slicing) and vae_tiling "
                                 f"exclude each other")
            if s.transformer not in self.components:
                raise ValueError(f"stage {s.name!r} names transformer {s.transformer!r}, not among the components")
            if s.pipeline and s.pipeline != self.pipeline:
                continue  # a composite's stage: checked against its own pipeline's view (generation/composite.py)
            factor = self.spatial_factor(s)
            if s.height % factor or s.width % factor:
                raise ValueError(
                    f"stage {s.name!r}: resolution {s.height}x{s.width} is not divisible by {factor} "
                    f"(VAE factor {self.vae_spatial_factor} x patch {self.patch_size(s)})"
                )
        if self.vae_encode_chunk < 0:
            raise ValueError(f"vae_encode_chunk must be >= 0, got {self.vae_encode_chunk}")
        if self.vae_encode_chunk and self.vae_tiling:
            raise ValueError("vae_encode_chunk (the release's frame slicing) and vae_tiling exclude each other")
        if self.family == "single-stage" and len(self.stages) != 1:
            raise ValueError("a single-stage preset has exactly one stage")
        from fvbench.generation.pipelines import validate_preset  # lazy: the pipelines registry discovers plug-ins

        validate_preset(self)

    def _vae_geometry(self):
        from fvbench.generation.models.registry import vae_geometry  # lazy: listing presets needs no torch

        return vae_geometry(self.components["vae"].type)

    @property
    def vae_spatial_factor(self) -> int:
        """Spatial downsampling of the VAE, a property of its type: 2 ** (down blocks - 1) for CogVideoX (8), 1 in
        pixel space."""
        return self._vae_geometry().spatial_factor(self.components["vae"].config)

    def patch_size(self, stage: StageConfig) -> int:
        """What the stage's latent height and width must be multiples of: the DiT patch size (2 by default), or a
        U-Net's total downsampling; a property of the transformer's component type."""
        from fvbench.generation.models.registry import component_type

        spec = self.components[stage.transformer]
        return int(component_type(spec.type).spatial_multiple(spec.config))

    def spatial_factor(self, stage: StageConfig) -> int:
        """What a stage's height and width must be divisible by: VAE factor x patch size (16 for CogVideoX)."""
        return self.vae_spatial_factor * self.patch_size(stage)

    @property
    def latent_frames(self) -> int:
        """Latent frame count, by the VAE type's rule (CogVideoX: (frames - 1) / 4 + 1; pixel space: frames)."""
        return self._vae_geometry().latent_frames(self.frames)

    @property
    def vae_encode_chunks(self) -> tuple[int, ...]:
        """Frames per VAE encode call: the first frame plus ``vae_encode_chunk``, then ``vae_encode_chunk`` at a time
        (the release's 17, 16, 16 for 49 frames); () for one whole pass."""
        k = self.vae_encode_chunk
        if not k:
            return ()
        chunks, left = [min(1 + k, self.frames)], self.frames - min(1 + k, self.frames)
        while left:
            chunks.append(min(k, left))
            left -= chunks[-1]
        return tuple(chunks)

    @property
    def builtin(self) -> bool:
        """True when the weights are built in code (random, seeded) rather than loaded from disk."""
        return self.weights == "builtin"

    @property
    def cpu_scale(self) -> bool:
        """True for the models fvbench carries itself (random built-in or trained and shipped in the package):
        small enough for a CPU, needing no weights of the user's."""
        return self.builtin or self.weights.startswith(PACKAGE_PREFIX)

    def weights_dir(self, override: str | Path | None = None) -> Path:
        """The folder holding this preset's component folders (override, absolute path, or under the weights root)."""
        if override is not None:
            return Path(override).expanduser()
        if self.weights.startswith(PACKAGE_PREFIX):  # weights shipped inside the fvbench package
            return Path(__file__).resolve().parents[1] / self.weights[len(PACKAGE_PREFIX):]
        p = Path(self.weights).expanduser()
        return p if p.is_absolute() else weights_root() / p

    def stage(self, name: str) -> StageConfig:
        for s in self.stages:
            if s.name == name:
                return s
        raise UnknownNameError(f"stage of preset {self.name!r}", name, [s.name for s in self.stages])

    def with_overrides(self, stages: dict[str, dict[str, Any]] | None = None, frames: int | None = None) -> "Preset":
        """A copy with stage fields replaced, e.g. ``{"stage2": {"nfe": 8}}``; re-validated, errors as FvbenchError."""
        stages = stages or {}
        unknown = sorted(set(stages) - {s.name for s in self.stages})
        if unknown:
            raise UnknownNameError(f"stage of preset {self.name!r}", unknown[0], [s.name for s in self.stages])
        try:
            new_stages = tuple(dataclasses.replace(s, **stages.get(s.name, {})) for s in self.stages)
            return dataclasses.replace(self, stages=new_stages, frames=frames if frames is not None else self.frames)
        except (ValueError, TypeError) as e:
            raise FvbenchError(f"preset {self.name!r}: {e}") from None


def _shared_component(path: Path, shared: dict[str, Any], ref: str) -> dict[str, Any]:
    """The component ``ref`` names: one of this file's, or ``file.yaml:name`` from a file beside it (a cross-family
    preset uses components the families' own files define)."""
    if ref in shared:
        return shared[ref]
    file, sep, name = ref.partition(":")
    if sep and file.endswith(".yaml"):
        other = path.parent / file
        if not other.is_file():
            raise FvbenchError(f"{path.name}: component {ref!r} names {file}, which is not beside it")
        theirs = (load_data(other) or {}).get("components") or {}
        if name in theirs:
            return theirs[name]
        raise UnknownNameError(f"shared component in {file}", name, list(theirs))
    raise UnknownNameError(f"shared component in {path.name}", ref, list(shared))


def _parse_file(path: Path) -> dict[str, Preset]:
    data = load_data(path)
    if not isinstance(data, dict) or set(data) - {"presets", "components"}:
        raise FvbenchError(f"{path}: a preset file has top-level keys 'presets' (and optionally 'components')")
    shared = data.get("components") or {}
    out: dict[str, Preset] = {}
    for name, raw in (data.get("presets") or {}).items():
        if not isinstance(raw, dict):
            raise FvbenchError(f"{path}: preset {name!r} must be a mapping")
        raw = dict(raw)
        comps = {}
        for role, c in (raw.get("components") or {}).items():
            if isinstance(c, str):  # a reference to a shared component definition, here or in "other.yaml:name"
                c = _shared_component(path, shared, c)
            elif isinstance(c, dict) and "from" in c:  # a shared definition with fields replaced (its folder)
                c = {**_shared_component(path, shared, c["from"]), **{k: v for k, v in c.items() if k != "from"}}
            comps[role] = from_dict(ComponentSpec, c, f"{path.name}:{name}.components.{role}")
        stages = [from_dict(StageConfig, st, f"{path.name}:{name}.stages[{i}]")
                  for i, st in enumerate(raw.get("stages") or [])]
        raw.setdefault("source", str(path))
        preset = from_dict(Preset, {**raw, "name": name, "components": comps, "stages": stages}, f"{path.name}:{name}")
        out[name] = preset
    return out


PRESET_DIRS: Registry[Path] = Registry("preset folder")


def register_preset_dir(folder: str | Path, *, origin: str = "") -> None:
    """Add the preset YAML files of ``folder`` (every ``*.yaml``) to those of ``baselines/``; plug-ins call this from
    their plugin module. Registering the same folder again changes nothing; a preset name defined twice is an error."""
    path = Path(folder).resolve()
    if str(path) not in PRESET_DIRS:
        PRESET_DIRS.register(str(path), path, origin=origin)


@lru_cache(maxsize=4)
def _all_presets(folders: tuple[str, ...]) -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    files: dict[Path, Path] = {}  # a file reached twice (a folder registered under two names) is read once
    for folder in folders:
        for f in sorted(Path(folder).glob("*.yaml")):
            files.setdefault(f.resolve(), f)
    for f in files.values():
        for name, p in _parse_file(f).items():
            if name in presets:
                raise FvbenchError(f"preset {name!r} is defined twice ({presets[name].source} and {f})")
            presets[name] = p
    return presets


def all_presets() -> dict[str, Preset]:
    """Every preset under ``baselines/`` and the registered preset folders, by name."""
    return dict(_all_presets((str(data_dir("baselines")), *PRESET_DIRS)))


def scope_notes(names: list[str]) -> list[str]:
    """What results of the known presets among ``names`` mean: "A, B understand only <scope>" for presets that declare
    a prompt scope, and "A is a cost-only proxy: <why>" for presets that measure cost only."""
    presets = all_presets()
    groups: dict[str, list[str]] = {}
    known = [n for n in dict.fromkeys(names) if n in presets]
    for n in known:
        if presets[n].prompt_scope:
            groups.setdefault(presets[n].prompt_scope, []).append(n)
    notes = [f"{', '.join(ns)} understand{'s' if len(ns) == 1 else ''} only {scope}" for scope, ns in groups.items()]
    return notes + [f"{n} is a COST-ONLY PROXY: {presets[n].cost_only}" for n in known if presets[n].cost_only]


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name lists the known ones."""
    presets = all_presets()
    if name not in presets:
        raise UnknownNameError("preset", name, list(presets))
    return presets[name]
