"""The results store of a run folder: SQLite (WAL), one unit row per video plus one row per stage, committed as each
video finishes.

Schema 2 keeps stages as rows (``stages``: unit_hash, stage 1..n), so a preset of any depth stores; the unit row
records its final video once (``final_video_path/sha256/bytes``, ``n_stages``). Metrics live in a long table (unit,
metric, value, error, version, source) so metrics can be added to a finished run; set-level metrics (FVD, FID) in
``set_metrics``. Every writing transaction is ``BEGIN IMMEDIATE`` with a busy timeout, so several writer processes on
one host lose no rows; every query is parameterised. A schema-1 store (wide ``s1_``/``s2_`` columns) is read as it is
by readers (an in-memory migrated copy; the file is never touched) and migrated in place by writers after a backup
copy (:mod:`fvbench.store_migrate`). A store of an unknown schema is refused before anything is touched. Readers
open the store read-only, so an archived, read-only run folder can still be reported and exported. The store file
and its journals are never opened through a symlink.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import urllib.parse
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from fvbench.errors import FvbenchError, FvbenchWarning

SCHEMA_VERSION = 2
STORE_NAME = "results.sqlite"

# One row per (unit, stage); in load_results they become s{stage}_<column>.
STAGE_COLUMNS: dict[str, str] = {
    "name": "TEXT", "nfe": "INTEGER", "nfe_executed": "INTEGER", "batch_rows": "INTEGER", "cfg": "REAL",
    "height": "INTEGER", "width": "INTEGER", "solver": "TEXT",
    "upsample_s": "REAL", "vae_encode_s": "REAL", "denoise_s": "REAL", "vae_decode_s": "REAL", "seconds": "REAL",
    "shared": "INTEGER", "init_shared": "INTEGER", "flops": "INTEGER", "denoise_flops": "INTEGER", "params": "INTEGER",
    "peak_mem_bytes": "INTEGER", "video_sha256": "TEXT", "video_path": "TEXT", "video_bytes": "INTEGER",
}
UNIT_COLUMNS: dict[str, str] = {
    "unit_hash": "TEXT PRIMARY KEY", "config_hash": "TEXT", "config": "TEXT", "preset": "TEXT", "family": "TEXT",
    "size": "TEXT", "frames": "INTEGER", "suite": "TEXT", "suite_sha256": "TEXT", "prompt_id": "TEXT",
    "prompt": "TEXT", "dimensions": "TEXT", "sample": "INTEGER", "seed": "INTEGER",
    "status": "TEXT", "error": "TEXT", "attempts": "INTEGER",
    "text_encode_s": "REAL", "preview_s": "REAL", "total_s": "REAL", "wall_s": "REAL",
    "text_flops": "INTEGER", "flops_total": "INTEGER", "params_total": "INTEGER", "peak_mem_kind": "TEXT",
    "vbench_name": "INTEGER",
    "device": "TEXT", "device_name": "TEXT", "threads": "INTEGER", "git": "TEXT", "versions": "TEXT",
    "finished_at": "REAL",
    # The final video, recorded once by the worker (the last stage's output).
    "n_stages": "INTEGER", "final_video_path": "TEXT", "final_video_sha256": "TEXT", "final_video_bytes": "INTEGER",
}
METRIC_SOURCES = ("frames", "mp4")  # what a video metric read: the generated frames, or the saved (encoded) mp4
SET_METRIC_COLUMNS = ("metric", "config", "reference", "value", "error", "version", "videos", "reference_videos",
                      "details")
_WIDE_STAGE_KEY = re.compile(r"^s([1-9][0-9]*)_(.+)$")

CREATE_TABLES = (
    "CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT)",
    f"CREATE TABLE units ({', '.join(f'{k} {v}' for k, v in UNIT_COLUMNS.items())})",
    f"CREATE TABLE stages (unit_hash TEXT NOT NULL, stage INTEGER NOT NULL, "
    f"{', '.join(f'{k} {v}' for k, v in STAGE_COLUMNS.items())}, PRIMARY KEY (unit_hash, stage))",
    "CREATE TABLE metrics (unit_hash TEXT NOT NULL, metric TEXT NOT NULL, value REAL, error TEXT, version TEXT, "
    "source TEXT, PRIMARY KEY (unit_hash, metric))",
    "CREATE TABLE set_metrics (metric TEXT NOT NULL, config TEXT NOT NULL, reference TEXT, value REAL, error TEXT, "
    "version TEXT, videos INTEGER, reference_videos INTEGER, details TEXT, PRIMARY KEY (metric, config))",
)


def metric_source(version: str | None) -> str | None:
    """The input a metric read, from its version suffix (``1+mp4`` -> ``mp4``); None when the version does not say."""
    if isinstance(version, str) and "+" in version:
        tail = version.rsplit("+", 1)[1]
        return tail if tail in METRIC_SOURCES else None
    return None


@dataclass(frozen=True)
class SetMetric:
    """One set-level metric value of a configuration against a reference configuration."""

    metric: str
    config: str
    reference: str | None
    value: float | None
    error: str | None
    version: str | None
    videos: int | None = None
    reference_videos: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The flat form schema 1 stored under ``set:{metric}:{config}`` (value, error, reference, videos, ...)."""
        return {"value": self.value, "error": self.error, "reference": self.reference, "videos": self.videos,
                "reference_videos": self.reference_videos, "version": self.version, **self.details}


def split_wide_row(row: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A unit row with ``s{i}_<column>`` keys (any i) -> (unit row, stage dicts in order, each with ``stage``)."""
    unit: dict[str, Any] = {}
    stages: dict[int, dict[str, Any]] = {}
    for k, v in row.items():
        m = _WIDE_STAGE_KEY.match(k) if k not in UNIT_COLUMNS else None
        if m:
            stages.setdefault(int(m.group(1)), {})[m.group(2)] = v
        else:
            unit[k] = v
    return unit, [{"stage": i, **stages[i]} for i in sorted(stages)]


class Store:
    """One run's SQLite store. Open with :func:`open_store`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, schema: int = SCHEMA_VERSION):
        self.path, self.conn = path, conn
        self.schema = schema  # the file's schema (a schema-1 file opened read-only is read through a migrated copy)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A writing transaction opened with BEGIN IMMEDIATE (takes the write lock up front)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def done_hashes(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT unit_hash FROM units WHERE status = 'done'")}

    def video_rows(self) -> list[dict[str, Any]]:
        """Every unit's identity, status and saved videos (what a rerun checks on disk before generating):
        ``videos`` is a list of (stage, path, bytes), also given as ``s{stage}_video_path`` / ``_bytes`` keys."""
        cols = ["unit_hash", "status", "config", "prompt_id", "sample", "seed"]
        rows = {r[0]: {**dict(zip(cols, r)), "videos": []}
                for r in self.conn.execute(f"SELECT {', '.join(cols)} FROM units")}
        for h, stage, path, size in self.conn.execute(
                "SELECT unit_hash, stage, video_path, video_bytes FROM stages WHERE video_path IS NOT NULL "
                "ORDER BY unit_hash, stage"):
            if h in rows:
                rows[h]["videos"].append((stage, path, size))
                rows[h][f"s{stage}_video_path"], rows[h][f"s{stage}_video_bytes"] = path, size
        return list(rows.values())

    def attempts(self, unit_hash: str) -> int:
        row = self.conn.execute("SELECT attempts FROM units WHERE unit_hash = ?", (unit_hash,)).fetchone()
        return int(row[0] or 0) if row else 0

    def put_unit(self, row: Mapping[str, Any], metrics: Mapping[str, tuple] | None = None,
                 stages: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Insert or replace a unit's row, its stage rows and its metrics in one transaction.

        ``stages`` are dicts of :data:`STAGE_COLUMNS` (stage i is the i-th, or its ``stage`` key); the worker's wide
        ``s{i}_<column>`` keys in ``row`` are accepted too and split into stage rows. Metric tuples are
        ``(value, error, version[, source])``; without a source it is read from the version suffix. An unknown column
        raises :class:`FvbenchError` before anything is written.
        """
        unit, wide = split_wide_row(row)
        rows = wide if stages is None else [{"stage": s.get("stage", i + 1), **s} for i, s in enumerate(stages)]
        if stages is not None and wide:
            raise FvbenchError("a unit row has both s{i}_ keys and explicit stages; give one of them")
        unknown = set(unit) - set(UNIT_COLUMNS)
        unknown |= {f"stage {s['stage']}: {k}" for s in rows for k in s if k != "stage" and k not in STAGE_COLUMNS}
        if unknown or "unit_hash" not in unit:
            raise FvbenchError(f"unknown store columns: {sorted(unknown)}" if unknown
                               else "a unit row needs a unit_hash")
        if not all(isinstance(s["stage"], int) and s["stage"] >= 1 for s in rows):
            raise FvbenchError(f"stage numbers must be integers from 1: {[s['stage'] for s in rows]}")
        if rows and unit.get("n_stages") is None:
            unit["n_stages"] = max(s["stage"] for s in rows)
        cols = list(unit)
        sql = f"INSERT OR REPLACE INTO units ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        h = unit["unit_hash"]
        with self.write() as c:
            c.execute(sql, [unit[k] for k in cols])
            c.execute("DELETE FROM stages WHERE unit_hash = ?", (h,))
            for s in rows:
                sc = [k for k in s if k != "stage"]
                c.execute(f"INSERT INTO stages (unit_hash, stage{''.join(', ' + k for k in sc)}) "
                          f"VALUES (?, ?{', ?' * len(sc)})", [h, s["stage"], *(s[k] for k in sc)])
            _put_metrics(c, h, metrics or {})

    def put_metrics(self, unit_hash: str, metrics: Mapping[str, tuple]) -> None:
        """Insert or replace metric values ``name -> (value, error, version[, source])`` of one unit."""
        with self.write() as c:
            _put_metrics(c, unit_hash, metrics)

    def put_set_metric(self, rec: SetMetric) -> None:
        with self.write() as c:
            c.execute(f"INSERT OR REPLACE INTO set_metrics ({', '.join(SET_METRIC_COLUMNS)}) "
                      f"VALUES ({', '.join('?' for _ in SET_METRIC_COLUMNS)})",
                      (rec.metric, rec.config, rec.reference, rec.value, rec.error, rec.version, rec.videos,
                       rec.reference_videos, json.dumps(rec.details, sort_keys=True, default=str)))

    def set_metrics(self) -> list[SetMetric]:
        out = []
        for r in self.conn.execute(f"SELECT {', '.join(SET_METRIC_COLUMNS)} FROM set_metrics ORDER BY metric, config"):
            d = dict(zip(SET_METRIC_COLUMNS, r))
            d["details"] = json.loads(d["details"]) if d["details"] else {}
            out.append(SetMetric(**d))
        return out

    def set_metric(self, metric: str, config: str) -> dict[str, Any]:
        """One set-level value in its flat form (see :meth:`SetMetric.as_dict`); KeyError when not stored."""
        for rec in self.set_metrics():
            if (rec.metric, rec.config) == (metric, config):
                return rec.as_dict()
        raise KeyError(f"{metric} of {config}")

    def set_info(self, key: str, value: Any) -> None:
        with self.write() as c:
            c.execute("INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def info(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM info")}

    def close(self) -> None:
        self.conn.close()


def _put_metrics(c: sqlite3.Connection, unit_hash: str, metrics: Mapping[str, tuple]) -> None:
    for name, rec in metrics.items():
        value, error, version, *rest = rec
        source = rest[0] if rest else metric_source(version)
        c.execute("INSERT OR REPLACE INTO metrics (unit_hash, metric, value, error, version, source) "
                  "VALUES (?, ?, ?, ?, ?, ?)", (unit_hash, name, value, error, version, source))


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        # mode=ro writes nothing; a WAL store in a read-only folder also needs immutable=1 (no -shm can be created),
        # which is only right when no -wal file holds uncheckpointed rows.
        uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=60.0, isolation_level=None)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            wal = path.with_name(path.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise FvbenchError(f"{path} cannot be read read-only: its write-ahead log {wal.name} holds rows that "
                                   f"need a writable folder; copy the run folder somewhere writable") from None
            conn = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=60.0, isolation_level=None)
    else:
        conn = sqlite3.connect(str(path), timeout=60.0, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 60000")
    return conn


def _refuse_links(path: Path) -> None:
    """The store and the journals SQLite creates beside it must not be symlinks (writes would land elsewhere)."""
    for p in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        if p.is_symlink():
            raise FvbenchError(f"refusing to open the store through a symlink: {p}; remove it")
        if p.exists() and not p.is_file():
            raise FvbenchError(f"{p} is not a regular file")


def schema_of(conn: sqlite3.Connection) -> int | None:
    """The schema version a store declares (None when it declares none or has no units table)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema" not in tables or "units" not in tables:
        return None
    row = conn.execute("SELECT version FROM schema").fetchone()
    return row[0] if row else None


def open_store(run_dir: Path, create: bool = False, readonly: bool = False, migrate: bool | None = None) -> Store:
    """Open (or, with ``create``, create) the store of a run folder; a store of an unknown schema is refused untouched.

    ``readonly`` opens it for reading only (reports, exports, checks), which works in a read-only folder; a schema-1
    store is then read through an in-memory migrated copy and the file is not changed. A writing open migrates a
    schema-1 store in place after a backup copy (``migrate=False`` refuses instead).
    """
    from fvbench import store_migrate

    path = Path(run_dir) / STORE_NAME
    _refuse_links(path)
    exists = path.exists()
    if not exists and not create:
        raise FvbenchError(f"{run_dir} has no {STORE_NAME}: not an fvbench run folder")
    if not readonly and exists and not os.access(path, os.W_OK):
        raise FvbenchError(f"{path} is read-only: this command writes to the store; copy the run folder somewhere "
                           f"writable (reading commands such as report and export work on it as it is)")
    try:
        conn = _connect(path, readonly and exists)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = schema_of(conn) if tables else None
    except sqlite3.DatabaseError as e:
        raise FvbenchError(f"{path} is not a readable SQLite store: {e}") from None
    if exists and tables:
        if version == 1 and readonly:
            return Store(path, store_migrate.migrated_copy(conn), schema=1)
        if version == 1 and migrate is not False:
            conn.close()
            store_migrate.migrate_store(Path(run_dir))
            return open_store(run_dir, create, readonly, migrate=False)
        if version != SCHEMA_VERSION:
            conn.close()
            raise FvbenchError(f"{path} holds a store of another schema (version {version}, this fvbench writes "
                               f"{SCHEMA_VERSION}); use a new --out folder. Nothing was changed.")
        return Store(path, conn)
    if not create:
        conn.close()
        raise FvbenchError(f"{path} is empty: not an fvbench store")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE schema (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema (version) VALUES (?)", (SCHEMA_VERSION,))
    for sql in CREATE_TABLES:
        conn.execute(sql)
    conn.execute("COMMIT")
    return Store(path, conn)


def _video_entries(row: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(path, bytes) of a row's saved videos: its ``videos`` list, or its ``s{i}_video_path`` keys (any depth)."""
    if isinstance(row.get("videos"), list):
        return [(p, b) for _, p, b in row["videos"]]
    stages = sorted(int(m.group(1)) for k in row if (m := _WIDE_STAGE_KEY.match(k)) and m.group(2) == "video_path")
    return [(row.get(f"s{i}_video_path"), row.get(f"s{i}_video_bytes")) for i in stages]


def video_problems(run_dir: Path, rows) -> dict[str, str]:
    """``unit_hash -> what is wrong`` for finished rows whose saved videos are gone or changed on disk.

    Cheap (one ``lstat`` per file): a video must exist as a regular file, non-empty, and of the size stored when it
    was written (stores written before sizes were recorded are checked for existence only). ``rows`` are mappings
    with ``unit_hash``, ``status`` and either ``videos`` [(stage, path, bytes)] or ``s*_video_path`` / ``_bytes``.
    """
    out: dict[str, str] = {}
    for row in rows:
        if row.get("status") != "done":
            continue
        for rel, size in _video_entries(row):
            if not isinstance(rel, str) or not rel:
                continue
            try:
                st = os.lstat(Path(run_dir) / rel)
            except OSError:
                out[row["unit_hash"]] = f"{rel} is missing"
                break
            if not stat.S_ISREG(st.st_mode):
                out[row["unit_hash"]] = f"{rel} is not a regular file"
            elif st.st_size == 0 or (isinstance(size, (int, float)) and size == size and st.st_size != int(size)):
                out[row["unit_hash"]] = f"{rel} changed on disk ({st.st_size} bytes, {size} when written)"
            if row["unit_hash"] in out:
                break
    return out


def _frame(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = (), types: Mapping[str, str] | None = None):
    """A query's rows as a DataFrame built column by column (cursor.fetchall, no pandas SQL layer): a column whose
    SQL type (``types``) is INTEGER or REAL becomes a float array in one numpy call (int64 when complete and whole),
    other columns are left to pandas; a numeric column holding text falls back to object (see :func:`_numeric`)."""
    import pandas as pd

    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    cols = list(zip(*rows)) if rows else [()] * len(names)
    data = {}
    for name, col in zip(names, cols):
        kind = (types or {}).get(name, "")
        if kind.startswith(("INTEGER", "REAL")):
            try:
                arr = np.array(col, dtype=float)
            except (TypeError, ValueError):  # text in a numeric column: _numeric reports it
                data[name] = np.array(col, dtype=object)
                continue
            if kind.startswith("INTEGER") and len(arr) and not np.isnan(arr).any():
                arr = arr.astype(np.int64)
            data[name] = arr
        else:
            data[name] = np.array(col, dtype=object)
    return pd.DataFrame(data, columns=names)


def _stage_frames(conn: sqlite3.Connection):
    return _frame(conn, f"SELECT unit_hash, stage, {', '.join(STAGE_COLUMNS)} FROM stages",
                  types={"stage": "INTEGER", **STAGE_COLUMNS})


def _wide_sql(n_stages: int) -> str:
    """Units with stage i's row joined as ``s{i}_<column>`` for i in 1..n_stages (primary-key lookups)."""
    cols = ", ".join(f"s{i}.{k} AS s{i}_{k}" for i in range(1, n_stages + 1) for k in STAGE_COLUMNS)
    joins = " ".join(f"LEFT JOIN stages AS s{i} ON s{i}.unit_hash = u.unit_hash AND s{i}.stage = {i}"
                     for i in range(1, n_stages + 1))
    return f"SELECT u.*, {cols} FROM units AS u {joins} ORDER BY u.preset, u.config, u.prompt_id, u.sample"


def _metric_matrix(index, rows: list[tuple]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The long (unit_hash, metric, value) rows as ``metric:<name>`` arrays aligned with ``index`` (numpy scatter over
    integer codes; no pandas pivot), and "column (row)" for each value that is text and read as missing."""
    import pandas as pd

    if not rows:
        return {}, []
    hashes, names, raw = zip(*rows)
    try:
        values = np.array(raw, dtype=float)  # None -> nan; fails only on text
        lost = np.zeros(len(raw), dtype=bool)
    except (TypeError, ValueError):
        ser = pd.Series(raw, dtype=object)
        values = pd.to_numeric(ser, errors="coerce").to_numpy(dtype=float)
        lost = np.isnan(values) & ser.notna().to_numpy()
    bad = [f"value (metric {names[j]} of {str(hashes[j])[:12]})" for j in np.flatnonzero(lost)]
    m_codes, m_names = pd.factorize(pd.Index(names, dtype=object), sort=True)
    u_codes = index.get_indexer(pd.Index(hashes, dtype=object))
    keep = u_codes >= 0
    mat = np.full((len(index), len(m_names)), np.nan)
    mat[u_codes[keep], m_codes[keep]] = values[keep]
    return {f"metric:{name}": mat[:, j] for j, name in enumerate(m_names)}, bad


def load_results(run_dir: str | Path, include_failed: bool = True):
    """A run's rows as a pandas DataFrame, one per video: the unit columns (with ``final_*``), ``s{i}_<column>`` for
    each stage i (at least stages 1 and 2, NaN where a preset has no such stage) and the metrics pivoted into
    ``metric:<name>`` columns (a numpy scatter, no pandas pivot). A 100k-video store takes about 4 s here, most of
    it SQLite handing every cell over as a Python object (benchmarks/bench_store_load.py)."""
    import pandas as pd

    store = open_store(Path(run_dir), readonly=True)
    try:
        n_stages = max(2, store.conn.execute("SELECT max(stage) FROM stages").fetchone()[0] or 0)
        types = {**UNIT_COLUMNS, **{f"s{i}_{k}": t for i in range(1, n_stages + 1) for k, t in STAGE_COLUMNS.items()}}
        units = _frame(store.conn, _wide_sql(n_stages), types=types)
        m_rows = store.conn.execute("SELECT unit_hash, metric, value FROM metrics").fetchall()
    finally:
        store.close()
    numeric = [c for c, t in UNIT_COLUMNS.items() if t in ("INTEGER", "REAL")]
    numeric += [f"s{i}_{k}" for i in range(1, n_stages + 1) for k, t in STAGE_COLUMNS.items()
                if t in ("INTEGER", "REAL")]
    bad = _numeric(units, numeric, units.config.astype(str) + " / " + units.prompt_id.astype(str))
    wide, bad_m = _metric_matrix(pd.Index(units.unit_hash, dtype=object), m_rows)
    bad += bad_m
    if bad:
        warnings.warn(f"{store.path}: text in numeric column(s), read as missing (was the store edited by hand?): "
                      f"{'; '.join(bad[:5])}{f' and {len(bad) - 5} more' if len(bad) > 5 else ''}",
                      FvbenchWarning, stacklevel=2)
    if wide:
        units = pd.concat([units, pd.DataFrame(wide, index=units.index)], axis=1)
    if not include_failed:
        units = units[units.status == "done"]
    units = units.reset_index(drop=True)
    units.attrs["bad_values"] = bad  # `fvbench check` refuses such a store; the report lists them
    return units


def load_stages(run_dir: str | Path):
    """A run's stage rows, long: unit_hash, stage (1-based) and the :data:`STAGE_COLUMNS`."""
    store = open_store(Path(run_dir), readonly=True)
    try:
        stages = _stage_frames(store.conn)
    finally:
        store.close()
    _numeric(stages, [c for c, t in STAGE_COLUMNS.items() if t in ("INTEGER", "REAL")],
             stages.unit_hash.astype(str))
    return stages.sort_values(["unit_hash", "stage"]).reset_index(drop=True)


def load_metrics(run_dir: str | Path):
    """A run's metric rows, long: unit_hash, metric, value, error, version, source ("frames", "mp4" or None)."""
    store = open_store(Path(run_dir), readonly=True)
    try:
        return _frame(store.conn, "SELECT unit_hash, metric, value, error, version, source FROM metrics",
                      types={"value": "REAL"})
    finally:
        store.close()


def load_set_metrics(run_dir: str | Path):
    """A run's set-level metric rows (one per metric and configuration), details as dicts."""
    import pandas as pd

    store = open_store(Path(run_dir), readonly=True)
    try:
        recs = store.set_metrics()
    finally:
        store.close()
    return pd.DataFrame([r.__dict__ for r in recs], columns=list(SET_METRIC_COLUMNS))


def _numeric(df, columns: list[str], row_names) -> list[str]:
    """Make ``columns`` numeric in place: a column with no value at all (stage II of a single-stage-only run) or with
    text in it (SQLite keeps text in an INTEGER/REAL column) would otherwise load as object dtype and break
    arithmetic downstream. Returns "column (row)" for each value that was not a number and is now missing."""
    import pandas as pd

    bad = []
    for c in columns:
        if c not in df:
            continue
        values = pd.to_numeric(df[c], errors="coerce")
        lost = values.isna() & df[c].notna()
        if lost.any():
            bad += [f"{c} ({name})" for name in row_names[lost]]
        df[c] = values.astype(float) if values.dtype == object else values
    return bad


def load_metric_errors(run_dir: str | Path):
    """Metric rows that failed (value NULL), with their error text."""
    store = open_store(Path(run_dir), readonly=True)
    try:
        return _frame(store.conn, "SELECT * FROM metrics WHERE error IS NOT NULL", types={"value": "REAL"})
    finally:
        store.close()
