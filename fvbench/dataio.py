"""Safe reading of the YAML/JSON files fvbench consumes (suites, presets, baselines).

Safe loaders only, strict UTF-8, a size cap, and caps on nesting depth and on the size of the tree once YAML
aliases are expanded (checked on the composed node graph, before anything is built or walked, so a
"billion laughs" file is refused in milliseconds); strict construction of frozen dataclasses in which an
unknown key is an error rather than something silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fvbench.errors import FvbenchError

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 200_000  # values once every YAML alias is expanded; fvbench's own files have a few thousand

T = TypeVar("T")


def _depth(obj: Any, limit: int, level: int = 0) -> int:
    if level > limit:
        return level
    if isinstance(obj, dict):
        return max([_depth(v, limit, level + 1) for v in obj.values()] + [level])
    if isinstance(obj, list):
        return max([_depth(v, limit, level + 1) for v in obj] + [level])
    return level


def _check_graph(root: yaml.Node | None, where: Path, max_nodes: int, max_depth: int) -> None:
    """Refuse a composed YAML graph whose alias-expanded tree is too big, too deep or recursive.

    Each node is visited once (sizes and depths are memoised by node identity), so the check costs what the file
    holds, not what its aliases would expand to. Expansion past ``max_nodes`` values is refused unless the file
    holds that many values itself (then its byte-size cap already bounds the work).
    """
    memo: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, depth below it)
    active: set[int] = set()

    def visit(node: yaml.Node, level: int) -> tuple[int, int]:
        key = id(node)
        if key in memo:
            size, depth = memo[key]
        elif key in active:
            raise FvbenchError(f"{where} has a recursive YAML alias (a node that contains itself)")
        else:
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            else:
                children = []
            active.add(key)
            size, depth = 1, 0
            for child in children:
                s, d = visit(child, level + 1)
                size, depth = size + s, max(depth, d + 1)
            active.discard(key)
            memo[key] = (size, depth)
        if level + depth > max_depth:
            raise FvbenchError(f"{where} is nested deeper than {max_depth} levels")
        return size, depth

    if root is None:
        return
    total = visit(root, 0)[0]
    if total > max(max_nodes, len(memo)):  # a file without aliases is bounded by its byte size alone
        raise FvbenchError(f"{where} expands to {total:,} values once its YAML aliases are resolved, over the limit "
                           f"of {max_nodes:,} (an alias bomb?); write the data out or use fewer aliases")


def _yaml_load(text: str, where: Path, max_nodes: int, max_depth: int) -> Any:
    """``yaml.safe_load`` with the graph checked between composing and constructing."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        _check_graph(node, where, max_nodes, max_depth)
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def load_data(path: str | Path, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
              max_nodes: int = MAX_NODES) -> Any:
    """Read a YAML or JSON file with a safe loader, refusing files that are too large, not UTF-8, too deeply
    nested, or whose YAML aliases expand past ``max_nodes`` values."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise FvbenchError(f"cannot read {p}: {e.strerror}") from None
    if size > max_bytes:
        raise FvbenchError(f"{p} is {size} bytes, over the {max_bytes}-byte limit for a config file")
    try:
        text = p.read_bytes().decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise FvbenchError(f"{p} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except OSError as e:
        raise FvbenchError(f"cannot read {p}: {e.strerror}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else _yaml_load(text, p, max_nodes, max_depth)
    except (yaml.YAMLError, json.JSONDecodeError, RecursionError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FvbenchError(f"{p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {first}") from None
    if _depth(data, max_depth) > max_depth:
        raise FvbenchError(f"{p} is nested deeper than {max_depth} levels")
    return data


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except FvbenchError as e:
                errors.append(str(e))
        raise FvbenchError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise FvbenchError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (tuple,):
        if not isinstance(value, (list, tuple)):
            raise FvbenchError(f"{where}: expected a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise FvbenchError(f"{where}: expected a mapping, got {type(value).__name__}")
        args = typing.get_args(tp)
        if len(args) != 2:
            return dict(value)
        return {_coerce(args[0], k, f"{where} key"): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FvbenchError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FvbenchError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise FvbenchError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise FvbenchError(f"{where}: expected true/false, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys, missing keys and wrong types are errors."""
    if not isinstance(data, dict):
        raise FvbenchError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise FvbenchError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise FvbenchError(f"{where}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise FvbenchError(f"{where}: {e}") from None
