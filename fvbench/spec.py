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
from fvbench.plugins import Registry
from fvbench.suites import Prompt, Suite

DEFAULT_STAGE1_NFE = (10, 20, 30, 50)
DEFAULT_STAGE2_NFE = (1, 2, 4, 8)
# What `fvbench run` sweeps without --presets: preset name patterns with ``{size}`` (one preset per --sizes size; a
# family without that size is left out), registered by a plug-in (fvbench's own: its trained cascade and single-stage
# baselines); other presets by --presets.
DEFAULT_SWEEP: Registry[tuple[str, ...]] = Registry("default sweep")


def register_default_families(patterns: Sequence[str], *, replace: bool = False, origin: str = "") -> None:
    """Make ``patterns`` (e.g. ``"my-cascade-{size}"``) what `fvbench run` sweeps without --presets. There is one
    default: a second plug-in registering its own is an error unless it says ``replace=True``."""
    if not patterns or not all(isinstance(p, str) and "{size}" in p for p in patterns):
        raise FvbenchError(f"default families must be preset name patterns with '{{size}}', got {list(patterns)!r}")
    DEFAULT_SWEEP.register("families", tuple(patterns), replace=replace, origin=origin)


def default_families() -> tuple[str, ...]:
    """The registered default preset patterns (empty when no plug-in registered any)."""
    return DEFAULT_SWEEP.get("families", ())


def canonical_hash(obj: Any) -> str:
    """sha256 of the canonical JSON form of ``obj`` (sorted keys, no whitespace)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# Fields added after results were stored: left out of the identity while at their default, so that the hash of every
# configuration that does not use them (and the results stored under it) stays what it was.
_LATER_PRESET_FIELDS = {"vae_encode_chunk": 0, "pipeline": "cogvideox"}
_LATER_STAGE_FIELDS = {"prompt_prefix": "", "time_grid_dtype": "float64", "upsample_input": "uint8",
                       "decode_width_splits": 1, "options": {}, "pipeline": "", "roles": {}}


def preset_identity(preset: Preset) -> dict[str, Any]:
    """Everything in a preset that can change its output (not its name, description, file location or labels)."""
    d = dataclasses.asdict(preset)
    for k in ("name", "description", "source", "family", "size", "prompt_scope", "release", "cost_only", "fps"):
        d.pop(k)
    for fields, targets in ((_LATER_PRESET_FIELDS, [d]), (_LATER_STAGE_FIELDS, d["stages"])):
        for target in targets:
            for k, default in fields.items():
                if target[k] == default:
                    del target[k]
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
    def prefix_keys(self) -> tuple[str, ...]:
        """Per stage, the key of its output (:func:`fvbench.generation.sharing.output_keys`): units with equal keys up
        to stage i produce the same stage-i output."""
        from fvbench.generation.sharing import output_keys

        return output_keys(self.config.preset, self.prompt.text, self.seed)

    @property
    def prefix_key(self) -> str:
        """Units with equal keys produce the same stage-I output."""
        return self.prefix_keys[0]


@dataclass(frozen=True)
class SweepOptions:
    """What to sweep: presets (or sizes of the default families) and NFE lists per stage."""

    presets: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ("s",)
    stage1_nfe: tuple[int, ...] = ()
    stage2_nfe: tuple[int, ...] = ()
    nfe_sweep: bool = False
    stage_nfe: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (stage number from 1, NFEs): any stage, any depth


def _check_nfe(values: Sequence[int], flag: str) -> None:
    for v in values:
        if v <= 0:
            raise FvbenchError(f"{flag}: NFE must be positive, got {v}")


def default_preset_names(sizes: Sequence[str]) -> tuple[str, ...]:
    """The presets of the default families at these sizes; a size no family has is an error naming the known ones."""
    from fvbench.generation.presets import all_presets

    known = all_presets()
    families = default_families()
    if not families:
        raise FvbenchError("no default presets are registered (a plug-in registers them); name presets with --presets "
                           "(see `fvbench presets`)")
    names = []
    for size in sizes:
        found = [f.format(size=size) for f in families if f.format(size=size) in known]
        if not found:
            have = sorted({p.size for n, p in known.items() if any(n == f.format(size=p.size) for f in families)})
            raise FvbenchError(f"--sizes: no default preset ({', '.join(families)}) has size {size!r}; "
                               f"known sizes: {', '.join(have)} (other presets by --presets; see `fvbench presets`)")
        names.extend(found)
    return tuple(names)


def config_points(opts: SweepOptions) -> list[ConfigPoint]:
    """Expand presets x per-stage NFE lists into configuration points (the product over every stage of the preset)."""
    _check_nfe(opts.stage1_nfe, "--stage1-nfe")
    _check_nfe(opts.stage2_nfe, "--stage2-nfe")
    chosen = dict(opts.stage_nfe)
    for number, values in chosen.items():
        if number < 1:
            raise FvbenchError(f"--stage-nfe: stage numbers start at 1, got {number}")
        _check_nfe(values, f"--stage-nfe {number}")
    names = list(opts.presets) or list(default_preset_names(opts.sizes))
    points: list[ConfigPoint] = []
    for name in dict.fromkeys(names):
        preset = get_preset(name)
        defaults = (opts.stage1_nfe or (DEFAULT_STAGE1_NFE if opts.nfe_sweep else ()),
                    opts.stage2_nfe or (DEFAULT_STAGE2_NFE if opts.nfe_sweep else ()))
        per_stage = [tuple(chosen.get(i + 1) or (defaults[i] if i < 2 else ()) or (s.nfe,))
                     for i, s in enumerate(preset.stages)]
        grids: list[tuple[int, ...]] = list(itertools.product(*per_stage))
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
        us.sort(key=lambda u: (u.prefix_keys, u.config.nfe))  # equal prefixes adjacent, at every depth
        out.append(UnitGroup(base, us[0].prompt, seed, tuple(us)))
    return out
