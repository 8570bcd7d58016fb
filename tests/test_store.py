"""Direct tests of the results store: schema 2 (stages as rows), schema-1 reading and migration, concurrency."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fvbench import store_migrate
from fvbench.errors import FvbenchError
from fvbench.store import (SetMetric, load_metrics, load_results, load_set_metrics, load_stages, open_store)

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


def test_load_results_fast_path_equals_reference(tmp_path):
    rng = np.random.default_rng(0)
    store = open_store(tmp_path, create=True)
    for u in range(120):
        row, stages = _unit(f"u{u:03d}", int(rng.integers(1, 4)), config=f"c{u % 5}", sample=u % 3)
        metrics = {f"m{k}": (float(rng.normal()), None, "1") for k in range(4) if rng.random() < 0.7}
        store.put_unit(row, metrics, stages=stages)
    store.put_set_metric(SetMetric("fvd", "c1", "c0", 1.0, None, "2", 3, 3, {"called_with": {}}))
    store.close()
    df = load_results(tmp_path)
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    units = pd.read_sql_query("SELECT * FROM units ORDER BY preset, config, prompt_id, sample", conn)
    stages = pd.read_sql_query("SELECT * FROM stages", conn)
    metrics = pd.read_sql_query("SELECT unit_hash, metric, value FROM metrics", conn)
    conn.close()
    ref = units
    sw = stages.pivot(index="unit_hash", columns="stage")
    sw.columns = [f"s{s}_{c}" for c, s in sw.columns]
    ref = ref.merge(sw, left_on="unit_hash", right_index=True, how="left")
    mw = metrics.pivot(index="unit_hash", columns="metric", values="value")
    mw.columns = [f"metric:{c}" for c in mw.columns]
    ref = ref.merge(mw, left_on="unit_hash", right_index=True, how="left")
    assert {c for c in ref.columns if c[0] == "s" and c[1].isdigit()} == \
        {c for c in df.columns if c[0] == "s" and c[1].isdigit()}
    for c in ref.columns:
        a, b = ref[c].to_numpy(), df[c].to_numpy()
        if a.dtype.kind in "fiu":
            np.testing.assert_array_equal(a.astype(float), b.astype(float), err_msg=c)
        else:
            assert [x if pd.notna(x) else None for x in a] == [x if pd.notna(x) else None for x in b], c
    assert len(load_set_metrics(tmp_path)) == 1


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
