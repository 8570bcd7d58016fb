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
and its journals are never opened through a symlink. A writer that closes the store after writing leaves the frame of
:func:`load_results` beside it as an Arrow file, used by readers only while the store is unchanged (see
:data:`LOAD_CACHE_NAME`); readers never write.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sqlite3
import stat
import sys
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
        self.written = False  # a writing transaction committed: close() refreshes load_results' column file

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
            self.written = True

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
        """Close the store; after writes, first refresh load_results' column file (:func:`write_load_cache`), unless
        an exception is on its way out (an interrupted or failed command ends without the wait; the old file, no
        longer current, is ignored by readers)."""
        try:
            if self.written and sys.exc_info()[0] is None:
                self.written = False
                try:
                    write_load_cache(self)
                except Exception:  # noqa: BLE001 - an optional speed-up: without the file, readers read the store
                    pass
        finally:
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
        if not readonly and not _has_change_tracking(conn):  # a store written before the tracking existed
            conn.execute("BEGIN IMMEDIATE")
            for sql in CHANGE_TRACKING:
                conn.execute(sql)
            conn.execute("COMMIT")
        return Store(path, conn)
    if not create:
        conn.close()
        raise FvbenchError(f"{path} is empty: not an fvbench store")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE schema (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema (version) VALUES (?)", (SCHEMA_VERSION,))
    for sql in (*CREATE_TABLES, *CHANGE_TRACKING):
        conn.execute(sql)
    conn.execute("COMMIT")
    return Store(path, conn)


def _video_stages(keys) -> list[int]:
    """The stage numbers i that have an ``s{i}_video_path`` key among ``keys``, in order."""
    return sorted(int(m.group(1)) for k in keys if (m := _WIDE_STAGE_KEY.match(k)) and m.group(2) == "video_path")


def _video_rows(rows) -> Iterator[tuple[Any, Any, list[tuple[Any, Any]]]]:
    """(unit_hash, status, [(path, bytes) of its saved videos]) of each row: a mapping with a ``videos`` list or
    ``s{i}_video_path`` / ``_bytes`` keys (any depth), or each row of a DataFrame such as load_results gives (read
    column by column, not as a dict per row)."""
    if hasattr(rows, "columns"):
        stages = _video_stages(rows.columns)
        none = [None] * len(rows)
        videos = [(rows[f"s{i}_video_path"].tolist(),
                   rows[f"s{i}_video_bytes"].tolist() if f"s{i}_video_bytes" in rows else none) for i in stages]
        for j, (h, status) in enumerate(zip(rows["unit_hash"].tolist(), rows["status"].tolist())):
            yield h, status, [(paths[j], sizes[j]) for paths, sizes in videos]
        return
    keys, stages = None, []
    for row in rows:
        if isinstance(row.get("videos"), list):
            yield row.get("unit_hash"), row.get("status"), [(p, b) for _, p, b in row["videos"]]
            continue
        if row.keys() != keys:  # rows of one frame share their keys: parse them once
            keys, stages = row.keys(), _video_stages(row)
        yield (row.get("unit_hash"), row.get("status"),
               [(row.get(f"s{i}_video_path"), row.get(f"s{i}_video_bytes")) for i in stages])


def video_problems(run_dir: Path, rows) -> dict[str, str]:
    """``unit_hash -> what is wrong`` for finished rows whose saved videos are gone or changed on disk.

    Cheap (one ``lstat`` per file): a video must exist as a regular file, non-empty, and of the size stored when it
    was written (stores written before sizes were recorded are checked for existence only). ``rows`` are mappings
    with ``unit_hash``, ``status`` and either ``videos`` [(stage, path, bytes)] or ``s*_video_path`` / ``_bytes``,
    or a DataFrame as :func:`load_results` gives (faster than its ``to_dict("records")``).
    """
    out: dict[str, str] = {}
    base = Path(run_dir)
    for h, status, videos in _video_rows(rows):
        if status != "done":
            continue
        for rel, size in videos:
            if not isinstance(rel, str) or not rel:
                continue
            try:
                st = os.lstat(base / rel)
            except OSError:
                out[h] = f"{rel} is missing"
                break
            if not stat.S_ISREG(st.st_mode):
                out[h] = f"{rel} is not a regular file"
            elif st.st_size == 0 or (isinstance(size, (int, float)) and size == size and st.st_size != int(size)):
                out[h] = f"{rel} changed on disk ({st.st_size} bytes, {size} when written)"
            if h in out:
                break
    return out


def _column(values: Sequence[Any], kind: str) -> np.ndarray:
    """One column of fetched values as an array: INTEGER or REAL (``kind``, the SQL type) becomes float in one numpy
    call (int64 when complete and whole), anything else object; a numeric column holding text falls back to object
    (see :func:`_numeric`)."""
    if kind.startswith(("INTEGER", "REAL")):
        try:
            arr = np.array(values, dtype=float)
        except (TypeError, ValueError):  # text in a numeric column: _numeric reports it
            return np.array(values, dtype=object)
        if kind.startswith("INTEGER") and len(arr) and not np.isnan(arr).any():
            arr = arr.astype(np.int64)
        return arr
    return np.array(values, dtype=object)


def _frame(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = (), types: Mapping[str, str] | None = None):
    """A query's rows as a DataFrame built column by column (cursor.fetchall, no pandas SQL layer), each column
    converted by :func:`_column` after its SQL type in ``types``; text columns are left to pandas."""
    import pandas as pd

    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    cols = list(zip(*rows)) if rows else [()] * len(names)
    data = {name: _column(col, (types or {}).get(name, "")) for name, col in zip(names, cols)}
    return pd.DataFrame(data, columns=names)


def _stage_frames(conn: sqlite3.Connection):
    return _frame(conn, f"SELECT unit_hash, stage, {', '.join(STAGE_COLUMNS)} FROM stages",
                  types={"stage": "INTEGER", **STAGE_COLUMNS})


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
    return _scatter(len(index), u_codes, m_codes, list(m_names), values), bad


def _scatter(n_units: int, u_codes: np.ndarray, m_codes: np.ndarray, m_names: list[str],
             values: np.ndarray) -> dict[str, np.ndarray]:
    """Long metric values as ``metric:<name>`` columns: ``values[j]`` goes to row ``u_codes[j]`` (-1: no such unit,
    dropped) of metric ``m_names[m_codes[j]]``; NaN where a unit has no value."""
    keep = u_codes >= 0
    mat = np.full((n_units, len(m_names)), np.nan)
    mat[u_codes[keep], m_codes[keep]] = values[keep]
    return {f"metric:{name}": mat[:, j] for j, name in enumerate(m_names)}


def _units_wide(conn: sqlite3.Connection, n_stages: int):
    """The units ordered by (preset, config, prompt_id, sample), each with its stage rows as ``s{i}_<column>`` columns
    (i in 1..n_stages): cell for cell and dtype for dtype the frame of a query joining stage i's row to each unit
    (``LEFT JOIN stages ON unit_hash AND stage = i``, ordered in SQL; tests/test_store.py compares both), without
    the join: units, the sort order (rowids only) and stages are read by plain queries, the wide stage columns are
    filled by numpy over (unit row, stage) codes, and each is converted by :func:`_column` as if it had come from the
    join (NULL where a unit has no such stage)."""
    import pandas as pd

    cur = conn.execute("SELECT * FROM units ORDER BY rowid")
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    n = len(rows)
    order = np.fromiter((r for (r,) in conn.execute(
        "SELECT rowid FROM units ORDER BY preset, config, prompt_id, sample")), dtype=np.int64, count=n)
    perm = np.searchsorted(np.sort(order), order)  # row of each ordered unit in rowid order
    data = {c: _column(col, UNIT_COLUMNS.get(c, ""))[perm]
            for c, col in zip(names, zip(*rows) if rows else [()] * len(names))}
    del rows
    cur = conn.execute(f"SELECT unit_hash, stage, {', '.join(STAGE_COLUMNS)} FROM stages")
    st_rows = cur.fetchall()
    st_cols = list(zip(*st_rows)) if st_rows else [()] * (2 + len(STAGE_COLUMNS))
    del st_rows
    hashes = pd.Index(data.get("unit_hash", np.zeros(0, dtype=object)), dtype=object)
    if hashes.is_unique:
        pos = hashes.get_indexer(pd.Index(st_cols[0], dtype=object))
    else:  # several NULL unit_hash (a TEXT PRIMARY KEY allows it); NULL joins nothing
        first = {h: i for i, h in enumerate(hashes) if h is not None}
        pos = np.array([first.get(h, -1) for h in st_cols[0]], dtype=np.int64)
    # only an integer stage joins (``stage = i`` in SQL); a stage stored as text or a fraction joins nothing
    stage_no = np.array([s if type(s) is int else -1 for s in st_cols[1]], dtype=np.int64)
    columns = {k: _column(col, kind) for (k, kind), col in zip(STAGE_COLUMNS.items(), st_cols[2:])}
    del st_cols
    for i in range(1, n_stages + 1):
        sel = np.flatnonzero((pos >= 0) & (stage_no == i))
        idx = np.full(n, -1, dtype=np.int64)
        idx[pos[sel]] = sel
        has = idx >= 0
        for k, kind in STAGE_COLUMNS.items():
            values = columns[k]
            if values.dtype != object:
                wide = np.full(n, np.nan)
                wide[has] = values[idx[has]]
                if kind == "INTEGER" and n and not np.isnan(wide).any():
                    wide = wide.astype(np.int64)
            else:
                wide = np.full(n, None, dtype=object)
                wide[has] = values[idx[has]]
                wide = _column(wide, kind)
            data[f"s{i}_{k}"] = wide
    return pd.DataFrame(data, columns=list(data))


def _load_frame(conn: sqlite3.Connection) -> tuple[Any, list[str], str | None]:
    """Every unit row with its stages and metrics (what :func:`load_results` returns with ``include_failed``), the
    values that were text in a numeric column (read as missing), and the store's change key (None: no tracking), all
    read in one snapshot."""
    import pandas as pd

    conn.execute("BEGIN")  # one snapshot for every query below
    try:
        key = _change_key(conn)
        n_stages = max(2, conn.execute("SELECT max(stage) FROM stages").fetchone()[0] or 0)
        units = _units_wide(conn, n_stages)
        m_rows = conn.execute("SELECT unit_hash, metric, value FROM metrics").fetchall()
    finally:
        conn.execute("COMMIT")
    numeric = [c for c, t in UNIT_COLUMNS.items() if t in ("INTEGER", "REAL")]
    numeric += [f"s{i}_{k}" for i in range(1, n_stages + 1) for k, t in STAGE_COLUMNS.items()
                if t in ("INTEGER", "REAL")]
    bad = _numeric(units, numeric, lambda: units.config.astype(str) + " / " + units.prompt_id.astype(str))
    wide, bad_m = _metric_matrix(pd.Index(units.unit_hash, dtype=object), m_rows)
    bad += bad_m
    if wide:
        units = pd.concat([units, pd.DataFrame(wide, index=units.index)], axis=1)
    return units.reset_index(drop=True), bad, key


def load_results(run_dir: str | Path, include_failed: bool = True):
    """A run's rows as a pandas DataFrame, one per video: the unit columns (with ``final_*``), ``s{i}_<column>`` for
    each stage i (at least stages 1 and 2, NaN where a preset has no such stage) and the metrics pivoted into
    ``metric:<name>`` columns (a numpy scatter, no pandas pivot).

    When the store has not changed since a writing command closed it, the frame comes from the column file that
    command left beside it (:data:`LOAD_CACHE_NAME`, see :func:`write_load_cache`); otherwise from the store, by
    plain queries (no join, no sort of the wide rows). Both give the same frame. A 100k-video store (946 prompts x 5
    samples x 21 configurations) on a 2-core machine shared with other jobs (load average 3-5): 0.11 s from the
    column file, 4.06 s from the store alone, against 3.65 s for a9c3d54's loader in the same alternating rounds
    (benchmarks/bench_store_load.py, which also times the report)."""
    store = open_store(Path(run_dir), readonly=True)
    try:
        cached = _read_load_cache(store)
        units, bad = cached if cached is not None else _load_frame(store.conn)[:2]
    finally:
        store.close()
    if bad:
        warnings.warn(f"{store.path}: text in numeric column(s), read as missing (was the store edited by hand?): "
                      f"{'; '.join(bad[:5])}{f' and {len(bad) - 5} more' if len(bad) > 5 else ''}",
                      FvbenchWarning, stacklevel=2)
    if not include_failed:
        units = units[units.status == "done"].reset_index(drop=True)
    units.attrs["bad_values"] = bad  # `fvbench check` refuses such a store; the report lists them
    return units


# The column file of load_results (an Arrow IPC file beside the store). Only a writing command writes it, when it
# closes the store it wrote to (Store.close); readers never write in a run folder. It is used only when its key
# equals the store's current key, read in the same snapshot: a random token that triggers on units, stages and
# metrics replace on every inserted, updated or deleted row (whoever writes, fvbench or a hand edit through SQLite),
# the store's schema cookie (any schema change, such as a dropped trigger, changes it), and the code and library
# versions that wrote and checked the file. A file whose key differs, or that cannot be read, is ignored.
LOAD_CACHE_NAME = "results.columns.arrow"
_TRACKED_TABLES = ("units", "stages", "metrics")
_TRIGGERS = tuple(f"{t}_{op.lower()}_changes_token" for t in _TRACKED_TABLES for op in ("INSERT", "UPDATE", "DELETE"))
CHANGE_TRACKING = (
    "CREATE TABLE IF NOT EXISTS change_token (token BLOB NOT NULL)",
    "INSERT INTO change_token (token) SELECT randomblob(16) WHERE NOT EXISTS (SELECT 1 FROM change_token)",
    *(f"CREATE TRIGGER IF NOT EXISTS {t}_{op.lower()}_changes_token AFTER {op} ON {t} "
      f"BEGIN UPDATE change_token SET token = randomblob(16); END"
      for t in _TRACKED_TABLES for op in ("INSERT", "UPDATE", "DELETE")),
)


def _has_change_tracking(conn: sqlite3.Connection) -> bool:
    """Whether the store has its change token (one row) and every trigger that replaces it."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}
    return ("change_token" in names and names.issuperset(_TRIGGERS)
            and conn.execute("SELECT count(*) FROM change_token").fetchone()[0] == 1)


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    """What the frame depends on besides the store: this module's source and the pandas/pyarrow versions."""
    import pandas as pd
    import pyarrow as pa

    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return f"{code}/pandas {pd.__version__}/pyarrow {pa.__version__}"


def _change_key(conn: sqlite3.Connection) -> str | None:
    """The store's current content key (see above), or None when it has no change tracking (schema 1, or a store
    written before it existed, until a writer opens it)."""
    if not _has_change_tracking(conn):
        return None
    token = conn.execute("SELECT token FROM change_token").fetchone()[0]
    if not isinstance(token, bytes):
        return None
    return f"{token.hex()}/schema {conn.execute('PRAGMA schema_version').fetchone()[0]}/{_code_version()}"


def _read_load_cache(store: Store) -> tuple[Any, list[str]] | None:
    """The frame and bad values of the column file beside ``store`` when its key is the store's current one."""
    if store.schema != SCHEMA_VERSION:
        return None
    path = store.path.with_name(LOAD_CACHE_NAME)
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):  # not through a symlink, not a folder
            return None
    except OSError:
        return None
    import pyarrow as pa

    store.conn.execute("BEGIN")
    try:
        key = _change_key(store.conn)
    finally:
        store.conn.execute("COMMIT")
    try:
        with pa.OSFile(str(path)) as source:  # read into memory (a mapped file changed under us would crash)
            reader = pa.ipc.open_file(source)
            meta = reader.schema.metadata or {}
            if key is None or meta.get(b"fvbench.key") != key.encode():
                return None
            frame = reader.read_all().to_pandas()
        return frame, json.loads(meta[b"fvbench.bad_values"])
    except (OSError, pa.ArrowException, KeyError, ValueError):
        return None


def write_load_cache(store: Store) -> Path | None:
    """Write the column file of :func:`load_results` beside a store opened for writing (its writer calls this when it
    closes the store): the frame and its key, read in one snapshot; the file is read back and must equal the frame
    (values, dtypes, order), or nothing is written. Returns its path, or None for a store without change tracking."""
    import pandas as pd
    import pyarrow as pa

    from fvbench.runfiles import atomic_output

    frame, bad, key = _load_frame(store.conn)
    if key is None:
        return None
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"fvbench.key": key.encode(),
                                           b"fvbench.bad_values": json.dumps(bad).encode()})
    path = store.path.with_name(LOAD_CACHE_NAME)
    with atomic_output(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        with pa.OSFile(str(tmp)) as source:
            back = pa.ipc.open_file(source).read_all().to_pandas()
        pd.testing.assert_frame_equal(back, frame, check_exact=True)
    return path


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
    arithmetic downstream. Returns "column (row)" for each value that was not a number and is now missing;
    ``row_names`` names the rows (a Series, or a function giving it when needed)."""
    import pandas as pd

    bad = []
    for c in columns:
        if c not in df or df[c].dtype.kind in "fiu":  # already numeric: nothing to coerce
            continue
        values = pd.to_numeric(df[c], errors="coerce")
        lost = values.isna() & df[c].notna()
        if lost.any():
            names = row_names() if callable(row_names) else row_names
            bad += [f"{c} ({name})" for name in names[lost]]
        df[c] = values.astype(float) if values.dtype == object else values
    return bad


def load_metric_errors(run_dir: str | Path):
    """Metric rows that failed (value NULL), with their error text."""
    store = open_store(Path(run_dir), readonly=True)
    try:
        return _frame(store.conn, "SELECT * FROM metrics WHERE error IS NOT NULL", types={"value": "REAL"})
    finally:
        store.close()
