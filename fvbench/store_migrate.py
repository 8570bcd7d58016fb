"""Schema 1 -> schema 2 of the results store.

Schema 1 (fvbench up to a9c3d54 and the hostile-input fixes) kept two stages as wide ``s1_*``/``s2_*`` unit columns
(``s*_video_bytes`` only in later files), set-level metrics as ``set:{metric}:{config}`` info keys and the metric's
input only as a ``+frames``/``+mp4`` version suffix. :func:`migrate_conn` rewrites those into schema 2 inside ONE
transaction on a connection, checking row counts; it is used in place (after a backup copy, by writers) and on an
in-memory copy (by readers, so a schema-1 file is read as it is and never changed). The legacy rule "the final video
is stage II's when the row has a stage II, else stage I's" lives only here.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

from fvbench.errors import FvbenchError
from fvbench.store import (CREATE_TABLES, METRIC_SOURCES, SCHEMA_VERSION, STAGE_COLUMNS, STORE_NAME, UNIT_COLUMNS,
                           _connect, schema_of)

_LEGACY_STAGES = (1, 2)


def migrate_conn(conn: sqlite3.Connection) -> dict[str, int]:
    """Migrate a schema-1 store on ``conn`` to schema 2 in one transaction; returns the row counts it checked.

    Any mismatch or error rolls everything back and raises, leaving schema 1 as it was.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = schema_of(conn)
        if version != 1:
            raise FvbenchError(f"cannot migrate a store of schema {version} (only schema 1 is migrated)")
        have = {r[1] for r in conn.execute("PRAGMA table_info(units)")}
        n_units = conn.execute("SELECT count(*) FROM units").fetchone()[0]
        n_metrics = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
        sets = [(k, json.loads(v)) for k, v in conn.execute("SELECT key, value FROM info WHERE key LIKE 'set:%'")]
        for old, new in (("units", "units_v1"), ("metrics", "metrics_v1"), ("info", "info_v1")):
            conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
        for sql in CREATE_TABLES:
            conn.execute(sql)
        conn.execute("INSERT INTO info (key, value) SELECT key, value FROM info_v1 WHERE key NOT LIKE 'set:%'")
        n_stage_rows = 0
        for i in _LEGACY_STAGES:
            if f"s{i}_name" not in have:
                continue
            cols = [k for k in STAGE_COLUMNS if f"s{i}_{k}" in have]
            conn.execute(f"INSERT INTO stages (unit_hash, stage, {', '.join(cols)}) "
                         f"SELECT unit_hash, {i}, {', '.join(f's{i}_{k}' for k in cols)} FROM units_v1 "
                         f"WHERE s{i}_name IS NOT NULL")
            n_stage_rows += conn.execute(f"SELECT count(*) FROM units_v1 WHERE s{i}_name IS NOT NULL").fetchone()[0]

        def final(col: str) -> str:  # the legacy rule: stage II's when the row has a stage II
            return f"CASE WHEN s2_name IS NOT NULL THEN s2_{col} ELSE s1_{col} END" \
                if f"s2_{col}" in have and f"s1_{col}" in have else "NULL"

        common = [c for c in UNIT_COLUMNS if c in have]
        extra = {"n_stages": "CASE WHEN s2_name IS NOT NULL THEN 2 WHEN s1_name IS NOT NULL THEN 1 END",
                 "final_video_path": final("video_path"), "final_video_sha256": final("video_sha256"),
                 "final_video_bytes": final("video_bytes")}
        conn.execute(f"INSERT INTO units ({', '.join(common + list(extra))}) "
                     f"SELECT {', '.join(common + list(extra.values()))} FROM units_v1")
        conn.execute("INSERT INTO metrics (unit_hash, metric, value, error, version, source) "
                     "SELECT unit_hash, metric, value, error, version, CASE "
                     + " ".join(f"WHEN version LIKE '%+{s}' THEN '{s}'" for s in METRIC_SOURCES)
                     + " END FROM metrics_v1")
        base = {"value", "error", "reference", "videos", "reference_videos", "version"}
        for key, v in sets:
            _, metric, config = key.split(":", 2)
            conn.execute("INSERT INTO set_metrics (metric, config, reference, value, error, version, videos, "
                         "reference_videos, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (metric, config, v.get("reference"), v.get("value"), v.get("error"), v.get("version"),
                          v.get("videos"), v.get("reference_videos"),
                          json.dumps({k: x for k, x in v.items() if k not in base}, sort_keys=True)))
        got = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
               for t in ("units", "stages", "metrics", "set_metrics")}
        want = {"units": n_units, "stages": n_stage_rows, "metrics": n_metrics, "set_metrics": len(sets)}
        if got != want:
            raise FvbenchError(f"store migration rolled back: row counts {got} differ from schema 1's {want}")
        for t in ("units_v1", "metrics_v1", "info_v1"):
            conn.execute(f"DROP TABLE {t}")
        conn.execute("UPDATE schema SET version = ?", (SCHEMA_VERSION,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return got


def migrated_copy(conn: sqlite3.Connection) -> sqlite3.Connection:
    """An in-memory schema-2 copy of the schema-1 store on ``conn`` (which is closed); the file is not changed."""
    mem = sqlite3.connect(":memory:", isolation_level=None)
    conn.backup(mem)
    conn.close()
    migrate_conn(mem)
    return mem


def migrate_store(run_dir: Path) -> Path:
    """Migrate a run folder's schema-1 store in place, after a byte-exact backup copy beside it; returns the backup.

    The migration is one transaction: a failure leaves the store at schema 1, as it was.
    """
    path = Path(run_dir) / STORE_NAME
    conn = _connect(path)
    try:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        backup = path.with_name(f"results.schema1-{stamp}.sqlite")
        n = 1
        while backup.exists():
            n += 1
            backup = path.with_name(f"results.schema1-{stamp}-{n}.sqlite")
        dst = sqlite3.connect(str(backup))
        try:
            conn.backup(dst)
        finally:
            dst.close()
        counts = migrate_conn(conn)
    finally:
        conn.close()
    print(f"{path}: store migrated from schema 1 to {SCHEMA_VERSION} ({counts['units']} videos, {counts['stages']} "
          f"stage rows, {counts['metrics']} metric values, {counts['set_metrics']} set-level values); "
          f"the schema-1 store is kept as {backup}", file=sys.stderr)
    return backup
