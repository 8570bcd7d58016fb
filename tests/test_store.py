"""Direct tests of the results store: schema 2 (stages as rows), schema-1 reading and migration, concurrency."""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing as mp
import shutil
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fvbench import store as store_mod
from fvbench import store_migrate
from fvbench.errors import FvbenchError
from fvbench.store import (SetMetric, load_metrics, load_results, load_set_metrics, load_stages, open_store,
                           video_problems)

FIXTURE = Path(__file__).parent / "fixtures" / "store_schema1_a9c3d54"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _unit(h: str, n_stages: int, config: str = "c", sample: int = 0) -> tuple[dict, list[dict]]:
    row = {"unit_hash": h, "config": config, "preset": "p", "prompt_id": f"p{h}", "sample": sample, "status": "done",
           "flops_total": 10 * n_stages, "final_video_sha256": f"sha{h}-{n_stages}", "n_stages": n_stages}
    stages = [{"name": f"stage{i}", "nfe": 2 * i, "nfe_executed": 2 * i, "denoise_s": 0.5 * i,
               "video_sha256": f"sha{h}-{i}", "video_path": f"videos/{h}-{i}.mp4", "video_bytes": 100 + i}
              for i in range(1, n_stages + 1)]
    return row, stages


def test_three_stage_rows_round_trip(tmp_path):
    store = open_store(tmp_path, create=True)
    row, stages = _unit("a", 3)
    store.put_unit(row, {"m": (1.5, None, "1+mp4")}, stages=stages)
    wide_row, wide_stages = _unit("b", 2)
    store.put_unit({**wide_row, **{f"s{s_i + 1}_{k}": v for s_i, s in enumerate(wide_stages) for k, v in s.items()}})
    store.close()
    df = load_results(tmp_path).set_index("unit_hash")
    assert df.loc["a", "s3_nfe_executed"] == 6 and df.loc["a", "s3_video_sha256"] == "sha" "a-3"
    assert np.isnan(df.loc["b", "s3_nfe"]) and df.loc["b", "s2_video_path"] == "videos/b-2.mp4"
    assert df.loc["a", "final_video_sha256"] == "sha" "a-3" and df.loc["a", "metric:m"] == 1.5
    st = load_stages(tmp_path)
    assert list(st.stage) == [1, 2, 3, 1, 2] and list(st.unit_hash) == ["a"] * 3 + ["b"] * 2
    assert load_metrics(tmp_path).source.tolist() == ["mp4"]
    rows = {r["unit_hash"]: r for r in open_store(tmp_path, readonly=True).video_rows()}
    assert [v[0] for v in rows["a"]["videos"]] == [1, 2, 3]


def test_unknown_column_is_fvbench_error_and_nothing_written(tmp_path):
    store = open_store(tmp_path, create=True)
    row, stages = _unit("a", 2)
    with pytest.raises(FvbenchError, match="unknown store columns"):
        store.put_unit({**row, "bogus": 1}, {"m": (1.0, None, "1")}, stages=stages)
    with pytest.raises(FvbenchError, match="unknown store columns"):
        store.put_unit(row, {"m": (1.0, None, "1")}, stages=[*stages, {"nope": 3}])
    with pytest.raises(FvbenchError, match="unknown store columns"):
        store.put_unit({**row, "s3_nope": 1}, {"m": (1.0, None, "1")})
    counts = [store.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("units", "stages", "metrics")]
    assert counts == [0, 0, 0]


def _v1_cells(path: Path) -> dict:
    """Every value of a schema-1 store: units cells, metric rows, set keys."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    units = pd.read_sql_query("SELECT * FROM units", conn).set_index("unit_hash")
    metrics = pd.read_sql_query("SELECT * FROM metrics", conn)
    info = dict(conn.execute("SELECT key, value FROM info"))
    conn.close()
    return {"units": units, "metrics": metrics, "info": info}


def _assert_v2_equals_v1(run: Path, v1: dict) -> None:
    df = load_results(run).set_index("unit_hash")
    units = v1["units"]
    assert set(df.index) == set(units.index)
    for col in units.columns:
        for h in units.index:
            a, b = units.loc[h, col], df.loc[h, col]
            assert (pd.isna(a) and pd.isna(b)) or a == b, (col, h, a, b)
    for h in units.index:  # the legacy final video: stage II's if the row has one
        s = "s2" if pd.notna(units.loc[h, "s2_name"]) else "s1"
        assert df.loc[h, "final_video_sha256"] == units.loc[h, f"{s}_video_sha256"]
        assert df.loc[h, "final_video_path"] == units.loc[h, f"{s}_video_path"]
    m = load_metrics(run).set_index(["unit_hash", "metric"]).sort_index()
    old = v1["metrics"].set_index(["unit_hash", "metric"]).sort_index()
    assert m.index.equals(old.index)
    pd.testing.assert_frame_equal(m[["value", "error", "version"]], old[["value", "error", "version"]])
    sets = load_set_metrics(run)
    keys = {k: v for k, v in v1["info"].items() if k.startswith("set:")}
    assert len(sets) == len(keys) >= 1
    store = open_store(run, readonly=True)
    for k, v in keys.items():
        _, metric, config = k.split(":", 2)
        assert store.set_metric(metric, config) == __import__("json").loads(v)
    assert {k for k in store.info()} == {k for k in v1["info"] if not k.startswith("set:")}
    store.close()


def test_schema1_fixture_reads_as_is_untouched(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIXTURE / "results.sqlite", run)
    before = _sha(run / "results.sqlite")
    v1 = _v1_cells(run / "results.sqlite")
    _assert_v2_equals_v1(run, v1)
    load_stages(run)
    assert open_store(run, readonly=True).schema == 1
    assert _sha(run / "results.sqlite") == before
    assert not list(run.glob("results.schema1-*"))


def test_schema1_migrates_with_backup_nothing_lost(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIXTURE / "results.sqlite", run)
    v1 = _v1_cells(run / "results.sqlite")
    # a failure in the middle of the migration (after the old tables were renamed) leaves schema 1 as it was
    monkeypatch.setattr(store_migrate, "CREATE_TABLES", (*store_migrate.CREATE_TABLES, "SELECT * FROM killed_here"))
    with pytest.raises(sqlite3.OperationalError, match="killed_here"):
        open_store(run)
    monkeypatch.undo()
    conn = sqlite3.connect(run / "results.sqlite")
    assert conn.execute("SELECT version FROM schema").fetchone()[0] == 1
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")} == \
        {"schema", "info", "units", "metrics"}
    conn.close()
    _assert_v2_equals_v1(run, v1)
    for p in run.glob("results.schema1-*.sqlite"):
        p.unlink()
    store = open_store(run)  # a writer migrates
    assert store.schema == 2
    store.close()
    assert "migrated from schema 1 to 2" in capsys.readouterr().err
    backups = list(run.glob("results.schema1-*.sqlite"))
    assert len(backups) == 1
    assert _v1_cells(backups[0])["units"].equals(v1["units"])
    conn = sqlite3.connect(run / "results.sqlite")
    assert conn.execute("SELECT version FROM schema").fetchone()[0] == 2
    conn.close()
    _assert_v2_equals_v1(run, v1)


def _writer(run: str, k: int) -> None:
    store = open_store(Path(run))
    for j in range(50):
        row, stages = _unit(f"w{k}-{j}", 1 + j % 3)
        store.put_unit(row, {"m": (float(j), None, "1"), "n": (None, "err", "1+frames")}, stages=stages)
    store.close()


def test_concurrent_writers_lose_no_rows(tmp_path):
    open_store(tmp_path, create=True).close()
    procs = [mp.get_context("spawn").Process(target=_writer, args=(str(tmp_path), k)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    df = load_results(tmp_path)
    assert len(df) == 200 and df["metric:m"].notna().sum() == 200
    assert len(load_stages(tmp_path)) == 4 * sum(1 + j % 3 for j in range(50))
    assert len(load_metrics(tmp_path)) == 400


TEXTS = ["a red cat", "it's a \"quoted\" dog", "", "ünïcødé 猫 🐈", "comma, and; semicolon", "x" * 300, None]


def _random_store(run: Path, seed: int) -> None:
    """A store as real runs leave them, and odder: 1-3 stages or none, failed units, missing metrics and values,
    ties in the sort keys, text with quotes/unicode/empty, integers past 2**53, NULLs in every kind of column."""
    rng = np.random.default_rng(seed)
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    store = open_store(run, create=True)
    for u in range(int(rng.integers(20, 90))):
        n_stages = int(rng.integers(0, 4))
        failed = rng.random() < 0.2
        row = {"unit_hash": f"h{seed}-{u:03d}", "config": f"c{int(rng.integers(4))}",
               "preset": pick(["p0", "p1", None]),
               "prompt_id": f"p{int(rng.integers(6))}", "prompt": pick(TEXTS), "sample": pick([0, 1, 2, None]),
               "seed": int(rng.integers(2 ** 62)), "status": "failed" if failed else "done",
               "error": "RuntimeError: boom" if failed else None, "total_s": pick([float(rng.random()), None]),
               "flops_total": pick([2 ** 60 + 1, 10 ** 12, None]), "n_stages": n_stages or None,
               "dimensions": pick(["subject_consistency", None]), "final_video_sha256": pick(TEXTS)}
        stages = [{"name": f"stage{i}", "nfe": int(rng.integers(1, 50)), "cfg": pick([6.0, None, 1.5]),
                   "solver": pick(["flow-euler", "ddim", None, ""]), "denoise_s": float(rng.random()),
                   "shared": pick([0, 1, None]), "flops": pick([2 ** 55 + 3, 7]), "video_path": pick(TEXTS)}
                  for i in range(1, n_stages + 1 - int(failed and n_stages > 0))]
        metrics = {} if failed else {
            f"m{k}": pick([(float(rng.normal()), None, "1"), (None, "nan frames", "1+mp4")])
            for k in range(4) if rng.random() < 0.7}
        store.put_unit(row, metrics, stages=stages)
    store.put_set_metric(SetMetric("fvd", "c1", "c0", 1.0, None, "2", 3, 3, {"called_with": {}}))
    store.close()


def _joined_reference(run: Path) -> pd.DataFrame:
    """load_results as it was built before the fast path: one joined query per stage, ordered in SQL."""
    conn = sqlite3.connect(f"file:{run / 'results.sqlite'}?mode=ro", uri=True)
    n = max(2, conn.execute("SELECT max(stage) FROM stages").fetchone()[0] or 0)
    cols = ", ".join(f"s{i}.{k} AS s{i}_{k}" for i in range(1, n + 1) for k in store_mod.STAGE_COLUMNS)
    joins = " ".join(f"LEFT JOIN stages AS s{i} ON s{i}.unit_hash = u.unit_hash AND s{i}.stage = {i}"
                     for i in range(1, n + 1))
    types = {**store_mod.UNIT_COLUMNS,
             **{f"s{i}_{k}": t for i in range(1, n + 1) for k, t in store_mod.STAGE_COLUMNS.items()}}
    units = store_mod._frame(conn, f"SELECT u.*, {cols} FROM units AS u {joins} "
                             f"ORDER BY u.preset, u.config, u.prompt_id, u.sample", types=types)
    store_mod._numeric(units, [c for c, t in types.items() if t in ("INTEGER", "REAL")], units.config)
    wide, _ = store_mod._metric_matrix(pd.Index(units.unit_hash, dtype=object),
                                       conn.execute("SELECT unit_hash, metric, value FROM metrics").fetchall())
    conn.close()
    return pd.concat([units, pd.DataFrame(wide, index=units.index)], axis=1).reset_index(drop=True)


def _uncached(run: Path, monkeypatch) -> pd.DataFrame:
    with monkeypatch.context() as m:
        m.setattr(store_mod, "_read_load_cache", lambda store: None)
        return load_results(run)


@pytest.mark.parametrize("seed", range(6))
def test_load_results_fast_path_equals_reference(tmp_path, monkeypatch, seed):
    _random_store(tmp_path, seed)
    df = _uncached(tmp_path, monkeypatch)
    # exactly the frame of the joined, SQL-ordered query: columns, dtypes, order (ties included), values
    pd.testing.assert_frame_equal(df, _joined_reference(tmp_path), check_exact=True)
    assert df.attrs == {"bad_values": []}
    # and the values of a plain pandas pivot of the three tables
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    units = pd.read_sql_query("SELECT * FROM units", conn).set_index("unit_hash")
    stages = pd.read_sql_query("SELECT * FROM stages", conn)
    metrics = pd.read_sql_query("SELECT unit_hash, metric, value FROM metrics", conn)
    conn.close()
    ref = units
    sw = stages.pivot(index="unit_hash", columns="stage")
    sw.columns = [f"s{s}_{c}" for c, s in sw.columns]
    ref = ref.join(sw, how="left")
    mw = metrics.pivot(index="unit_hash", columns="metric", values="value")
    mw.columns = [f"metric:{c}" for c in mw.columns]
    ref = ref.join(mw, how="left").loc[df.unit_hash]
    assert {c for c in ref.columns if c[0] == "s" and c[1].isdigit()} <= set(df.columns)
    for c in ref.columns:
        a, b = ref[c].to_numpy(), df[c].to_numpy()
        if a.dtype.kind in "fiu":
            np.testing.assert_array_equal(a.astype(float), b.astype(float), err_msg=c)
        else:
            assert [x if pd.notna(x) else None for x in a] == [x if pd.notna(x) else None for x in b], c
    assert len(load_set_metrics(tmp_path)) == 1
    # the column file the writer left gives the same frame, and so does the filter on failed units
    assert (tmp_path / store_mod.LOAD_CACHE_NAME).is_file()
    with monkeypatch.context() as m:
        m.setattr(store_mod, "_units_wide", None)  # the store is not read: the column file is
        cached = load_results(tmp_path)
        done = load_results(tmp_path, include_failed=False)
    pd.testing.assert_frame_equal(cached, df, check_exact=True)
    pd.testing.assert_frame_equal(done, df[df.status == "done"].reset_index(drop=True), check_exact=True)
    assert cached.attrs == {"bad_values": []}


def _folder(run: Path) -> dict[str, bytes]:
    """The run folder's files (SQLite's own -wal/-shm journals, which any reader of a WAL store may create, aside)."""
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())
            if p.is_file() and p.suffix not in (".sqlite-wal", ".sqlite-shm")}


HAND_EDITS = [
    "UPDATE units SET total_s = 123.5 WHERE rowid = (SELECT min(rowid) FROM units WHERE status = 'done')",
    "UPDATE stages SET solver = 'edited' WHERE stage = 1",
    "INSERT INTO metrics (unit_hash, metric, value) SELECT unit_hash, 'hand', 7.0 FROM units LIMIT 2",
    "DELETE FROM stages WHERE stage = 2",
    "INSERT OR REPLACE INTO units (unit_hash, config, status) SELECT unit_hash, 'cX', 'done' FROM units LIMIT 1",
    "DELETE FROM metrics",
    "UPDATE units SET seed = 'not a number' WHERE rowid = (SELECT max(rowid) FROM units WHERE seed IS NOT NULL)",
    "ALTER TABLE units ADD COLUMN extra TEXT DEFAULT 'new'",
    "DROP TRIGGER units_update_changes_token; UPDATE units SET total_s = 99.0",
    "DELETE FROM change_token; UPDATE units SET total_s = 98.0",
]


def test_load_cache_is_never_stale(tmp_path, monkeypatch):
    """A change made behind fvbench's back (plain sqlite3, as a user editing the store would) right after a writer
    left a current column file: load_results returns what the store holds now, and reading writes nothing."""
    _random_store(tmp_path, 11)
    for sql in HAND_EDITS:
        store = open_store(tmp_path)  # a writer: restores the change tracking a previous edit dropped
        assert store_mod.write_load_cache(store)
        store.close()
        with monkeypatch.context() as m, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.setattr(store_mod, "_units_wide", None)  # the column file is current: the store is not read
            before = load_results(tmp_path)
        conn = sqlite3.connect(tmp_path / "results.sqlite", isolation_level=None)
        conn.executescript(sql)
        conn.close()
        files = _folder(tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = load_results(tmp_path)
            want = _uncached(tmp_path, monkeypatch)
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=sql)
        assert got.attrs == want.attrs
        assert not got.equals(before), sql  # every edit changed the frame, and the change is seen
        assert _folder(tmp_path) == files, sql  # a reader writes nothing, the column file included
    assert any("seed" in b for b in got.attrs["bad_values"])


def test_load_cache_is_used_only_when_current(tmp_path, monkeypatch):
    _random_store(tmp_path, 12)
    other = tmp_path / "other"
    other.mkdir()
    _random_store(other, 12)  # the same rows, another store: another token
    cache = tmp_path / store_mod.LOAD_CACHE_NAME
    good = cache.read_bytes()
    want = load_results(tmp_path)
    monkeypatch.setattr(store_mod, "_units_wide", None)  # from here on, reading the store would fail
    pd.testing.assert_frame_equal(load_results(tmp_path), want, check_exact=True)
    cache.write_bytes((other / store_mod.LOAD_CACHE_NAME).read_bytes())
    with pytest.raises(TypeError):  # the borrowed file is refused, so the store is read
        load_results(tmp_path)
    for broken in (good[: len(good) // 2], b"", b"not arrow"):
        cache.write_bytes(broken)
        with pytest.raises(TypeError):
            load_results(tmp_path)
    cache.unlink()
    (tmp_path / "elsewhere.arrow").write_bytes(good)
    cache.symlink_to(tmp_path / "elsewhere.arrow")  # never read through a symlink
    with pytest.raises(TypeError):
        load_results(tmp_path)
    cache.unlink()
    cache.write_bytes(good)
    pd.testing.assert_frame_equal(load_results(tmp_path), want, check_exact=True)
    monkeypatch.setattr(store_mod, "_code_version", lambda: "another fvbench")  # written by other code
    with pytest.raises(TypeError):
        load_results(tmp_path)


def test_writer_refreshes_cache_and_readers_never_create_it(tmp_path, monkeypatch):
    _random_store(tmp_path, 13)
    cache = tmp_path / store_mod.LOAD_CACHE_NAME
    cache.unlink()
    files = _folder(tmp_path)
    for read in (load_results, load_stages, load_metrics, load_set_metrics):
        read(tmp_path)
    assert _folder(tmp_path) == files and not cache.exists()
    store = open_store(tmp_path)
    row, stages = _unit("late", 2)
    store.put_unit(row, {"m0": (5.0, None, "1")}, stages=stages)
    store.close()
    assert cache.is_file()
    df = load_results(tmp_path)
    assert df.set_index("unit_hash").loc["late", "metric:m0"] == 5.0
    pd.testing.assert_frame_equal(df, _uncached(tmp_path, monkeypatch), check_exact=True)


def test_store_refuses_schema_3_untouched(tmp_path):
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    conn.execute("CREATE TABLE schema (version INTEGER)")
    conn.execute("INSERT INTO schema VALUES (3)")
    conn.execute("CREATE TABLE units (unit_hash TEXT)")
    conn.commit()
    conn.close()
    before = _sha(tmp_path / "results.sqlite")
    for kw in ({}, {"readonly": True}, {"create": True}):
        with pytest.raises(FvbenchError, match="another schema"):
            open_store(tmp_path, **kw)
    assert _sha(tmp_path / "results.sqlite") == before
    assert not list(tmp_path.glob("results.schema1-*"))


def test_video_problems_same_from_a_frame_records_and_video_rows(tmp_path):
    store = open_store(tmp_path, create=True)
    for h, n, status in (("a", 2, "done"), ("b", 2, "done"), ("c", 1, "done"), ("d", 3, "done"), ("e", 1, "failed")):
        row, stages = _unit(h, n)
        store.put_unit({**row, "status": status}, stages=stages)
    store.close()
    (tmp_path / "videos").mkdir()
    for name, size in (("a-1", 101), ("a-2", 102), ("b-1", 101), ("c-1", 5), ("d-1", 101), ("d-2", 102)):
        (tmp_path / "videos" / f"{name}.mp4").write_bytes(b"x" * size)
    (tmp_path / "videos" / "d-3.mp4").mkdir()
    want = {"b": "videos/b-2.mp4 is missing", "c": "videos/c-1.mp4 changed on disk (5 bytes, 101 when written)",
            "d": "videos/d-3.mp4 is not a regular file"}
    df = load_results(tmp_path)
    assert video_problems(tmp_path, df) == want
    assert video_problems(tmp_path, df.to_dict("records")) == want
    rows = open_store(tmp_path, readonly=True).video_rows()
    assert video_problems(tmp_path, rows) == want


def test_remove_temps_clears_a_killed_writers_column_file_temporary(tmp_path):
    from fvbench.runfiles import remove_temps

    _random_store(tmp_path, 14)
    cache = tmp_path / store_mod.LOAD_CACHE_NAME
    good = cache.read_bytes()
    (tmp_path / ".tmp-k1ll3d.arrow").write_bytes(good[:100])  # what a SIGKILL in write_load_cache leaves
    assert remove_temps(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.glob(".tmp-*")) == [] and cache.read_bytes() == good
