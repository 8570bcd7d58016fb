"""Prompt suites: VBench's prompts (read from the installed package's data file), YAML suites under ``suites/`` and
those plug-ins register (:func:`register_suite`, :func:`register_suite_dir`), and the user's own prompt files (.txt
one prompt a line, or .yaml with ids and metadata).

A suite is data; its sha256 is recorded with every run so results say exactly which prompts they came from.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fvbench.dataio import MAX_BYTES, from_dict, load_data
from fvbench.errors import FvbenchError, UnknownNameError
from fvbench.paths import data_dir
from fvbench.plugins import Registry

VBENCH_DIMENSIONS = (
    "subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness", "dynamic_degree",
    "aesthetic_quality", "imaging_quality", "object_class", "multiple_objects", "human_action", "color",
    "spatial_relationship", "scene", "temporal_style", "appearance_style", "overall_consistency",
)
VBENCH_INSTALL_HINT = "pip install --no-deps vbench==0.1.5  (scripts/setup.sh does this; only its prompt file is used)"


@dataclass(frozen=True)
class Prompt:
    """One prompt of a suite: a stable id, the exact text, and metadata (e.g. VBench dimensions)."""

    id: str
    text: str
    dimensions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suite:
    """An ordered list of prompts with its provenance."""

    name: str
    prompts: tuple[Prompt, ...]
    sha256: str
    source: str
    samples_per_prompt: int = 1
    description: str = ""
    metrics: tuple[str, ...] = ()  # metrics `fvbench run` adds to its defaults for this suite

    def limited(self, limit: int | None) -> "Suite":
        """The first ``limit`` prompts in suite order (the whole suite when None)."""
        if limit is None or limit >= len(self.prompts):
            return self
        if limit <= 0:
            raise FvbenchError(f"--limit must be positive, got {limit}")
        return dataclasses.replace(self, prompts=self.prompts[:limit])


@dataclass(frozen=True)
class SuiteFile:
    """Schema of a YAML suite under suites/."""

    name: str
    description: str = ""
    source: str = "inline"
    file: str | None = None
    samples_per_prompt: int = 1
    metrics: tuple[str, ...] = ()
    primary_metric: str | None = None  # the metric the report ranks by (when it may rank: fvbench.metrics.semantics)
    margin: float | None = None  # non-inferiority margin of the report's answer, in the primary metric's score
    prompts: tuple[Any, ...] = ()

    def __post_init__(self):
        if self.margin is not None and not 0 <= self.margin < float("inf"):
            raise ValueError(f"margin must be a finite number >= 0 (in the primary metric's score), got {self.margin}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vbench_info_path() -> Path:
    """Path of VBench_full_info.json inside the installed vbench distribution (without importing vbench)."""
    try:
        dist = importlib.metadata.distribution("vbench")
    except importlib.metadata.PackageNotFoundError:
        raise FvbenchError(f"suite 'vbench' needs VBench's prompt data: {VBENCH_INSTALL_HINT}") from None
    path = Path(str(dist.locate_file("vbench/VBench_full_info.json")))
    if not path.is_file():
        raise FvbenchError(f"the installed vbench has no {path.name} at {path}: {VBENCH_INSTALL_HINT}")
    return path


def _vbench(dimension: str | None, meta: SuiteFile) -> Suite:
    path = vbench_info_path()
    raw = path.read_bytes()
    entries = json.loads(raw)
    # 946 entries, 944 unique texts: a text listed twice is one prompt (VBench names videos by prompt text), with the
    # union of its dimensions and the id of its first entry.
    merged: dict[str, Prompt] = {}
    for i, e in enumerate(entries):
        text, dims = e["prompt_en"], tuple(e.get("dimension", ()))
        if text in merged:
            old = merged[text]
            merged[text] = Prompt(old.id, text, old.dimensions + tuple(d for d in dims if d not in old.dimensions))
        else:
            merged[text] = Prompt(f"vbench-{i:04d}", text, dims)
    prompts = [p for p in merged.values() if dimension is None or dimension in p.dimensions]
    name = "vbench" if dimension is None else f"vbench:{dimension}"
    return Suite(name, tuple(prompts), _sha256(raw), f"{path} (vbench {importlib.metadata.version('vbench')})",
                 meta.samples_per_prompt, meta.description, tuple(meta.metrics))


def _check_text(text: Any, where: str) -> str:
    if not isinstance(text, str):
        raise FvbenchError(f"{where}: a prompt must be text, got {type(text).__name__}")
    if not text.strip():
        raise FvbenchError(f"{where}: empty prompt")
    return text


def _unique_texts(prompts: tuple[Prompt, ...], where: str) -> tuple[Prompt, ...]:
    """Refuse two prompts with the same text: videos are named by text and sample (VBench's ``{prompt}-{i}.mp4``,
    which VBench needs), so the second would replace the first one's video while both rows point at it."""
    first: dict[str, str] = {}
    for p in prompts:
        if p.text in first:
            raise FvbenchError(f"{where}: prompts {first[p.text]!r} and {p.id!r} have the same text {p.text[:60]!r}; "
                               f"videos are named by prompt text, so keep one (for more videos of it use --samples)")
        first[p.text] = p.id
    return prompts


def _prompts_from_yaml(items: Any, where: str) -> tuple[Prompt, ...]:
    if not isinstance(items, (list, tuple)):
        raise FvbenchError(f"{where}: 'prompts' must be a list")
    out, seen = [], set()
    for i, item in enumerate(items):
        if isinstance(item, str):
            p = Prompt(f"p{i:04d}", _check_text(item, f"{where}[{i}]"))
        elif isinstance(item, dict):
            unknown = sorted(set(item) - {"id", "text", "dimensions"})
            if unknown:
                raise FvbenchError(f"{where}[{i}]: unknown key(s) {unknown}; allowed: ['dimensions', 'id', 'text']")
            if "text" not in item:
                raise FvbenchError(f"{where}[{i}]: missing 'text'")
            dims = item.get("dimensions", ())
            if not isinstance(dims, (list, tuple)) or not all(isinstance(d, str) for d in dims):
                raise FvbenchError(f"{where}[{i}]: 'dimensions' must be a list of names")
            pid = item.get("id", f"p{i:04d}")
            if not isinstance(pid, (str, int)):
                raise FvbenchError(f"{where}[{i}]: 'id' must be text or a number")
            p = Prompt(str(pid), _check_text(item["text"], f"{where}[{i}]"), tuple(dims))
        else:
            raise FvbenchError(f"{where}[{i}]: expected a prompt string or a mapping with 'text'")
        if p.id in seen:
            raise FvbenchError(f"{where}: duplicate prompt id {p.id!r}")
        seen.add(p.id)
        out.append(p)
    if not out:
        raise FvbenchError(f"{where}: no prompts")
    return _unique_texts(tuple(out), where)


def load_prompt_file(path: Path) -> Suite:
    """A user's prompt file: .txt (one prompt a line, blank lines skipped) or .yaml/.json (``prompts:`` list)."""
    if not path.is_file():
        raise FvbenchError(f"prompt file {path} does not exist")
    raw = path.read_bytes()
    if len(raw) > MAX_BYTES:
        raise FvbenchError(f"prompt file {path} is over {MAX_BYTES} bytes")
    if path.suffix == ".txt":
        try:
            lines = raw.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise FvbenchError(f"prompt file {path} is not UTF-8 text") from None
        texts = [line for line in lines if line.strip()]
        if not texts:
            raise FvbenchError(f"prompt file {path} has no prompts")
        prompts = _unique_texts(tuple(Prompt(f"p{i:04d}", t) for i, t in enumerate(texts)), f"prompt file {path}")
        return Suite(path.stem, prompts, _sha256(raw), str(path))
    if path.suffix in (".yaml", ".yml", ".json"):
        data = load_data(path)
        if isinstance(data, list):
            data = {"prompts": data}
        if isinstance(data, dict):
            data = {"name": path.stem, **data}
        sf = from_dict(SuiteFile, data, str(path))
        return Suite(sf.name, _prompts_from_yaml(sf.prompts, f"{path}: prompts"), _sha256(raw), str(path),
                     sf.samples_per_prompt, sf.description, tuple(sf.metrics))
    raise FvbenchError(f"prompt file {path}: expected .txt, .yaml or .json")


SUITES: Registry[Path] = Registry("suite")


def register_suite(name: str, path: str | Path, *, replace: bool = False, origin: str = "") -> None:
    """Make the YAML suite file ``path`` available as ``--suite <name>`` (plug-ins call this from their plugin
    module; the file is read only when the suite is used)."""
    SUITES.register(name, Path(path).resolve(), replace=replace, origin=origin)


def register_suite_dir(folder: str | Path, *, origin: str = "") -> None:
    """Register every ``*.yaml`` in ``folder`` as a suite named by its file stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FvbenchError(f"suite folder {folder} (registered by {origin or 'fvbench'}) does not exist")
    for path in sorted(folder.glob("*.yaml")):
        register_suite(path.stem, path, origin=origin)


def _suite_files() -> dict[str, Path]:
    """Every suite file by name: the project's ``suites/`` folder (read at each call, so $FVBENCH_HOME applies),
    then the registered ones. A name in both is an error unless both are the same file (``suites/x.yaml`` may be a
    link to a plug-in's own file, which keeps the old path working)."""
    files = {p.stem: p for p in sorted(data_dir("suites").glob("*.yaml"))}
    for name in SUITES:
        path = SUITES.get_entry(name)
        if name in files and files[name].resolve() != path:
            raise FvbenchError(f"suite {name!r} is defined twice: {files[name]} and {path} (registered by "
                               f"{SUITES.origin(name) or 'fvbench'})")
        files.setdefault(name, path)
    return files


def list_suites() -> list[str]:
    """Names accepted by --suite (prompt file paths are accepted too)."""
    names = list(_suite_files())
    if "vbench" in names:
        names += [f"vbench:{d}" for d in VBENCH_DIMENSIONS]
    return names


def suite_meta(name: str) -> SuiteFile | None:
    """The declarations of a registered suite's YAML (primary metric, margin, ...) without loading its prompts;
    None for a prompt file or an unknown name."""
    path = _suite_files().get(name.partition(":")[0])
    return None if path is None else from_dict(SuiteFile, load_data(path), str(path))


def load_suite(name: str) -> Suite:
    """A suite by registry name (``vbench``, ``vbench:<dimension>``, a YAML under suites/) or by prompt-file path."""
    base, _, dimension = name.partition(":")
    files = _suite_files()
    if base in files:
        path = files[base]
        meta = from_dict(SuiteFile, load_data(path), str(path))
        if meta.source == "vbench-package":
            if dimension and dimension not in VBENCH_DIMENSIONS:
                raise UnknownNameError("VBench dimension", dimension, list(VBENCH_DIMENSIONS))
            return _vbench(dimension or None, meta)
        if dimension:
            raise FvbenchError(f"suite {base!r} has no dimensions; use --suite {base}")
        raw = path.read_bytes()
        return Suite(meta.name, _prompts_from_yaml(meta.prompts, f"{path}: prompts"), _sha256(raw), str(path),
                     meta.samples_per_prompt, meta.description, tuple(meta.metrics))
    path = Path(name)
    if path.suffix in (".txt", ".yaml", ".yml", ".json") or path.exists():
        return load_prompt_file(path)
    raise UnknownNameError("suite", name, list_suites())
