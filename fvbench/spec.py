"""Units of work and sweep expansion.

A :class:`Unit` is one video: an effective generator configuration (a preset with its sweep overrides applied),
a prompt, a sample index and a seed. Its canonical hash (sha256 of sorted JSON of everything that defines the output)
is its identity in the store; it never depends on order, worker count or the run folder. Units that share a stage-I
configuration and seed are grouped so stage I is computed once for all their stage-II variants.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Sequence

from fvbench.errors import FvbenchError
from fvbench.generation.presets import Preset, get_preset
from fvbench.suites import Prompt, Suite

DEFAULT_STAGE1_NFE = (10, 20, 30, 50)
DEFAULT_STAGE2_NFE = (1, 2, 4, 8)
# What `fvbench run` sweeps without --presets: the trained ShapesWorld cascade and single-stage baselines of each
# --sizes size (a family without that size is left out); the random-weight CPU-scale families by --presets.
DEFAULT_FAMILIES = ("sw-flashvideo-{size}", "sw-dit-{size}", "sw-dit-p4-{size}")


def canonical_hash(obj: Any) -> str:
    """sha256 of the canonical JSON form of ``obj`` (sorted keys, no whitespace)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# Fields added after results were stored: left out of the identity while at their default, so that the hash of every
# configuration that does not use them (and the results stored under it) stays what it was.
_LATER_PRESET_FIELDS = {"vae_encode_chunk": 0}
_LATER_STAGE_FIELDS = {"prompt_prefix": "", "time_grid_dtype": "float64", "upsample_input": "uint8",
                       "decode_width_splits": 1}


def preset_identity(preset: Preset) -> dict[str, Any]:
    """Everything in a preset that can change its output (not its name, description, file location or labels)."""
    d = dataclasses.asdict(preset)
    for k in ("name", "description", "source", "family", "size", "prompt_scope", "release", "cost_only"):
        d.pop(k)
    for fields, targets in ((_LATER_PRESET_FIELDS, [d]), (_LATER_STAGE_FIELDS, d["stages"])):
        for target in targets:
            for k, default in fields.items():
                if target[k] == default:
                    del target[k]
    return d


def stage_prefix_identity(preset: Preset) -> dict[str, Any]:
    """What determines a preset's stage-I output: components it uses, text handling, frames and stage I itself."""
    s1 = preset.stages[0]
    used = {"tokenizer", "text_encoder", "vae", s1.transformer}
    d = preset_identity(preset)
    d["components"] = {k: v for k, v in d["components"].items() if k in used}
    d["stages"] = [d["stages"][0]]
    return d


@dataclass(frozen=True)
class ConfigPoint:
    """One generator configuration of a sweep: a base preset with stage overrides applied."""

    base: str
    preset: Preset

    @cached_property
    def config_hash(self) -> str:
        return canonical_hash(preset_identity(self.preset))

    @property
    def nfe(self) -> tuple[int, ...]:
        return tuple(s.nfe for s in self.preset.stages)

    @property
    def label(self) -> str:
        """Human-readable and file-name-safe: ``cpu-flashvideo-s_s1-30_s2-4``."""
        return self.base + "".join(f"_s{i + 1}-{n}" for i, n in enumerate(self.nfe))


def derive_seed(base_seed: int, prompt_id: str, sample: int) -> int:
    """Seed of (prompt, sample): from the prompt's stable id and the sample index, independent of --limit/order."""
    return int(canonical_hash([base_seed, prompt_id, sample])[:8], 16) & 0x7FFFFFFF


@dataclass(frozen=True)
class Unit:
    """One video to generate."""

    config: ConfigPoint
    prompt: Prompt
    sample: int
    seed: int

    @cached_property
    def unit_hash(self) -> str:
        return canonical_hash({"config": self.config.config_hash, "prompt": self.prompt.text,
                               "sample": self.sample, "seed": self.seed})

    @cached_property
    def prefix_key(self) -> str:
        """Units with equal keys produce the same stage-I output."""
        return canonical_hash({"stage1": stage_prefix_identity(self.config.preset), "prompt": self.prompt.text,
                               "seed": self.seed})


@dataclass(frozen=True)
class SweepOptions:
    """What to sweep: presets (or sizes of the default families) and NFE lists per stage."""

    presets: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ("s",)
    stage1_nfe: tuple[int, ...] = ()
    stage2_nfe: tuple[int, ...] = ()
    nfe_sweep: bool = False


def _check_nfe(values: Sequence[int], flag: str) -> None:
    for v in values:
        if v <= 0:
            raise FvbenchError(f"{flag}: NFE must be positive, got {v}")


def default_preset_names(sizes: Sequence[str]) -> tuple[str, ...]:
    """The presets of the default families at these sizes; a size no family has is an error naming the known ones."""
    from fvbench.generation.presets import all_presets

    known = all_presets()
    names = []
    for size in sizes:
        found = [f.format(size=size) for f in DEFAULT_FAMILIES if f.format(size=size) in known]
        if not found:
            have = sorted({p.size for n, p in known.items() if any(n == f.format(size=p.size) for f in DEFAULT_FAMILIES)})
            raise FvbenchError(f"--sizes: no default preset ({', '.join(DEFAULT_FAMILIES)}) has size {size!r}; "
                               f"known sizes: {', '.join(have)} (other presets by --presets; see `fvbench presets`)")
        names.extend(found)
    return tuple(names)


def config_points(opts: SweepOptions) -> list[ConfigPoint]:
    """Expand presets x NFE grid into configuration points (cascades: stage I x stage II; single-stage: stage I)."""
    _check_nfe(opts.stage1_nfe, "--stage1-nfe")
    _check_nfe(opts.stage2_nfe, "--stage2-nfe")
    names = list(opts.presets) or list(default_preset_names(opts.sizes))
    points: list[ConfigPoint] = []
    for name in dict.fromkeys(names):
        preset = get_preset(name)
        s1 = opts.stage1_nfe or (DEFAULT_STAGE1_NFE if opts.nfe_sweep else (preset.stages[0].nfe,))
        grids: list[tuple[int, ...]]
        if len(preset.stages) == 1:
            grids = [(n,) for n in s1]
        else:
            s2 = opts.stage2_nfe or (DEFAULT_STAGE2_NFE if opts.nfe_sweep else (preset.stages[1].nfe,))
            grids = list(itertools.product(s1, s2, *[(s.nfe,) for s in preset.stages[2:]]))
        for grid in grids:
            overrides = {s.name: {"nfe": n} for s, n in zip(preset.stages, grid)}
            points.append(ConfigPoint(name, preset.with_overrides(overrides)))
    return points


def expand_units(points: Iterable[ConfigPoint], suite: Suite, samples: int, base_seed: int = 0) -> list[Unit]:
    """Every (configuration, prompt, sample) unit, in a fixed order."""
    if samples <= 0:
        raise FvbenchError(f"--samples must be positive, got {samples}")
    units = []
    for point in points:
        for prompt in suite.prompts:
            for sample in range(samples):
                units.append(Unit(point, prompt, sample, derive_seed(base_seed, prompt.id, sample)))
    return units


@dataclass(frozen=True)
class UnitGroup:
    """Units of one base preset, prompt and sample: text is encoded once, each distinct stage I computed once."""

    base: str
    prompt: Prompt
    seed: int
    units: tuple[Unit, ...]


def group_units(units: Iterable[Unit]) -> list[UnitGroup]:
    """Group units for stage-prefix sharing; groups and units within them keep a deterministic order."""
    groups: dict[tuple[str, str, int], list[Unit]] = {}
    for u in units:
        groups.setdefault((u.config.base, u.prompt.text, u.seed), []).append(u)
    out = []
    for (base, _, seed), us in groups.items():
        us.sort(key=lambda u: (u.prefix_key, u.config.nfe))
        out.append(UnitGroup(base, us[0].prompt, seed, tuple(us)))
    return out
