"""The results store of a run folder: SQLite (WAL), one row per video, committed as each video finishes.

Every writing transaction is ``BEGIN IMMEDIATE`` with a busy timeout, so several writer processes on one host lose
no rows; every query is parameterised. Metrics live in a long table (unit, metric, value, error, version) so metrics
can be added to a finished run. A store written by another schema version is refused before anything is touched;
columns added within a version (``s*_video_bytes``) are added to an older store of that version when it is opened for
writing. Readers open the store read-only, so an archived, read-only run folder can still be reported and exported.
The store file and its journals are never opened through a symlink.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import urllib.parse
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from fvbench.errors import FvbenchError, FvbenchWarning

SCHEMA_VERSION = 1
STORE_NAME = "results.sqlite"

# Per-stage columns, prefixed s1_ / s2_ (NULL where a preset has no such stage).
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
    **{f"s{i}_{k}": v for i in (1, 2) for k, v in STAGE_COLUMNS.items()},
    "device": "TEXT", "device_name": "TEXT", "threads": "INTEGER", "git": "TEXT", "versions": "TEXT",
    "finished_at": "REAL",
}


class Store:
    """One run's SQLite store. Open with :func:`open_store`."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path, self.conn = path, conn

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
        """Every unit's identity, status and video columns (what a rerun checks on disk before generating)."""
        cols = ["unit_hash", "status", "config", "prompt_id", "sample", "seed",
                *(f"s{i}_video_{k}" for i in (1, 2) for k in ("path", "bytes"))]
        return [dict(zip(cols, r)) for r in self.conn.execute(f"SELECT {', '.join(cols)} FROM units")]

    def attempts(self, unit_hash: str) -> int:
        row = self.conn.execute("SELECT attempts FROM units WHERE unit_hash = ?", (unit_hash,)).fetchone()
        return int(row[0] or 0) if row else 0

    def put_unit(self, row: dict[str, Any], metrics: dict[str, tuple[float | None, str | None, str]] | None = None) -> None:
        """Insert or replace a unit's row (and its metrics) in one transaction."""
        unknown = set(row) - set(UNIT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown store columns: {sorted(unknown)}")
        cols = list(row)
        sql = f"INSERT OR REPLACE INTO units ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        with self.write() as c:
            c.execute(sql, [row[k] for k in cols])
            for name, (value, error, version) in (metrics or {}).items():
                c.execute("INSERT OR REPLACE INTO metrics (unit_hash, metric, value, error, version) VALUES (?, ?, ?, ?, ?)",
                          (row["unit_hash"], name, value, error, version))

    def put_metrics(self, unit_hash: str, metrics: dict[str, tuple[float | None, str | None, str]]) -> None:
        with self.write() as c:
            for name, (value, error, version) in metrics.items():
                c.execute("INSERT OR REPLACE INTO metrics (unit_hash, metric, value, error, version) VALUES (?, ?, ?, ?, ?)",
                          (unit_hash, name, value, error, version))

    def set_info(self, key: str, value: Any) -> None:
        with self.write() as c:
            c.execute("INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def info(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM info")}

    def close(self) -> None:
        self.conn.close()


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


def open_store(run_dir: Path, create: bool = False, readonly: bool = False) -> Store:
    """Open (or, with ``create``, create) the store of a run folder; a store of another schema is refused untouched.

    ``readonly`` opens it for reading only (reports, exports, checks), which works in a read-only folder.
    """
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
    except sqlite3.DatabaseError as e:
        raise FvbenchError(f"{path} is not a readable SQLite store: {e}") from None
    if exists and tables:
        version = None
        if "schema" in tables:
            row = conn.execute("SELECT version FROM schema").fetchone()
            version = row[0] if row else None
        if version != SCHEMA_VERSION or "units" not in tables:
            conn.close()
            raise FvbenchError(f"{path} holds a store of another schema (version {version}, this fvbench writes "
                               f"{SCHEMA_VERSION}); use a new --out folder. Nothing was changed.")
        if not readonly:
            have = {r[1] for r in conn.execute("PRAGMA table_info(units)")}
            for col in [c for c in UNIT_COLUMNS if c not in have]:  # columns added within this schema version
                conn.execute(f"ALTER TABLE units ADD COLUMN {col} {UNIT_COLUMNS[col]}")
        return Store(path, conn)
    if not create:
        conn.close()
        raise FvbenchError(f"{path} is empty: not an fvbench store")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE schema (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema (version) VALUES (?)", (SCHEMA_VERSION,))
    conn.execute("CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute(f"CREATE TABLE units ({', '.join(f'{k} {v}' for k, v in UNIT_COLUMNS.items())})")
    conn.execute("CREATE TABLE metrics (unit_hash TEXT NOT NULL, metric TEXT NOT NULL, value REAL, error TEXT, "
                 "version TEXT, PRIMARY KEY (unit_hash, metric))")
    conn.execute("COMMIT")
    return Store(path, conn)


def video_problems(run_dir: Path, rows) -> dict[str, str]:
    """``unit_hash -> what is wrong`` for finished rows whose saved videos are gone or changed on disk.

    Cheap (one ``lstat`` per file): a video must exist as a regular file, non-empty, and of the size stored when it
    was written (stores written before sizes were recorded are checked for existence only). ``rows`` are mappings
    with ``unit_hash``, ``status`` and the ``s*_video_path`` / ``s*_video_bytes`` columns.
    """
    out: dict[str, str] = {}
    for row in rows:
        if row.get("status") != "done":
            continue
        for i in (1, 2):
            rel = row.get(f"s{i}_video_path")
            if not isinstance(rel, str) or not rel:
                continue
            try:
                st = os.lstat(Path(run_dir) / rel)
            except OSError:
                out[row["unit_hash"]] = f"{rel} is missing"
                break
            size = row.get(f"s{i}_video_bytes")
            if not stat.S_ISREG(st.st_mode):
                out[row["unit_hash"]] = f"{rel} is not a regular file"
            elif st.st_size == 0 or (isinstance(size, (int, float)) and size == size and st.st_size != int(size)):
                out[row["unit_hash"]] = f"{rel} changed on disk ({st.st_size} bytes, {size} when written)"
            if row["unit_hash"] in out:
                break
    return out


def load_results(run_dir: str | Path, include_failed: bool = True):
    """A run's rows as a pandas DataFrame, one per video, with metrics pivoted into ``metric:<name>`` columns."""
    import pandas as pd

    store = open_store(Path(run_dir), readonly=True)
    try:
        units = pd.read_sql_query("SELECT * FROM units ORDER BY preset, config, prompt_id, sample", store.conn)
        metrics = pd.read_sql_query("SELECT unit_hash, metric, value FROM metrics", store.conn)
    finally:
        store.close()
    bad = _numeric(units, [c for c, t in UNIT_COLUMNS.items() if t in ("INTEGER", "REAL")],
                   units.config.astype(str) + " / " + units.prompt_id.astype(str))
    bad += _numeric(metrics, ["value"],
                    "metric " + metrics.metric.astype(str) + " of " + metrics.unit_hash.astype(str).str[:12])
    if bad:
        warnings.warn(f"{store.path}: text in numeric column(s), read as missing (was the store edited by hand?): "
                      f"{'; '.join(bad[:5])}{f' and {len(bad) - 5} more' if len(bad) > 5 else ''}",
                      FvbenchWarning, stacklevel=2)
    if not include_failed:
        units = units[units.status == "done"]
    if len(metrics):
        wide = metrics.pivot(index="unit_hash", columns="metric", values="value")
        wide.columns = [f"metric:{c}" for c in wide.columns]
        units = units.merge(wide, left_on="unit_hash", right_index=True, how="left")
    units = units.reset_index(drop=True)
    units.attrs["bad_values"] = bad  # `fvbench check` refuses such a store; the report lists them
    return units


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
        bad += [f"{c} ({name})" for name in row_names[lost]]
        df[c] = values.astype(float) if values.dtype == object else values
    return bad


def load_metric_errors(run_dir: str | Path):
    """Metric rows that failed (value NULL), with their error text."""
    import pandas as pd

    store = open_store(Path(run_dir), readonly=True)
    try:
        return pd.read_sql_query("SELECT * FROM metrics WHERE error IS NOT NULL", store.conn)
    finally:
        store.close()
