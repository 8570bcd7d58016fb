"""The report as data: report.json is the data the renderers drew from, sections come from a registry that plug-ins
fill (a third-party section through $FVBENCH_PLUGINS), the core report names no toy world, Markdown tables fit a
laptop screen, availability is what the sweep's machine recorded, and small videos are shown large."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_report_answer import SW144, sw144  # noqa: F401  (the measured ShapesWorld store, copied per test)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sw144_report(tmp_path_factory):
    from fvbench.report import build_report

    tmp = tmp_path_factory.mktemp("sw144rep")
    run = tmp / "sw144"
    run.mkdir()
    shutil.copyfile(SW144 / "results.sqlite", run / "results.sqlite")
    return run, build_report(run, tmp / "out")


def test_report_json_holds_the_data_and_its_numbers(sw144_report):
    import fvbench
    from fvbench.metrics.semantics import semantics
    from fvbench.report.answer import compute_answer
    from fvbench.report.tables import config_table
    from fvbench.suites import suite_meta

    run, rep = sw144_report
    written = json.loads(rep.json_path.read_text())
    assert written == rep.data.to_json()
    # the same numbers as an analysis done here, apart from the report
    df = fvbench.load_results(run)
    meta = suite_meta("shapesworld")
    metrics = [c.removeprefix("metric:") for c in df.columns if c.startswith("metric:")]
    answer = compute_answer(df, [semantics(m) for m in metrics], primary=meta.primary_metric, margin=meta.margin,
                            margin_source="x")
    assert written["answer"]["comparisons"] == answer.to_json()["comparisons"]
    assert written["answer"]["frontier"] == answer.to_json()["frontier"]
    table = config_table(df).set_index("config")
    configs = {c["config"]: c for c in written["configs"]}
    assert set(configs) == set(table.index)
    for config, row in table.iterrows():
        assert configs[config]["flops"] == pytest.approx(row.flops)
        assert configs[config]["sw_all_three"] == pytest.approx(row.sw_all_three)
        assert configs[config]["sw_all_three ci95"] == pytest.approx(list(row["sw_all_three ci95"]))
    # and the layout the renderers drew holds them, formatted
    md = rep.md_path.read_text().replace("\\", "")
    for config, row in table.iterrows():
        assert f"{row.sw_all_three:.4g} [{row['sw_all_three ci95'][0]:.4g}, {row['sw_all_three ci95'][1]:.4g}]" in md
    kinds = {b["kind"] for s in written["layout"] for b in s["blocks"]}
    assert {"text", "table", "pre"} <= kinds
    assert [s["name"] for s in written["layout"]][:2] == ["summary", "answer"]


def test_markdown_tables_fit_a_laptop_screen(sw144_report):
    from fvbench.report.data import Table
    from fvbench.report.render_md import MAX_WIDTH, table_lines

    _, rep = sw144_report
    lines = [line for line in rep.md_path.read_text().splitlines() if line.startswith("|")]
    assert lines and max(map(len, lines)) <= MAX_WIDTH == 120
    # a table far wider than the screen is split, its key column repeated, nothing lost; an over-long cell is
    # abbreviated to fit
    cols = ("config",) + tuple(f"metric number {i}" for i in range(12))
    rows = tuple((f"cfg-{r}",) + tuple(f"{r * 100 + i}.125 [0.1, 0.2]" for i in range(12)) for r in range(3))
    parts = table_lines(Table(cols, rows + (("x" * 300,) + ("y",) * 12,)))
    assert len(parts) > 1 and all(len(line) <= 120 for p in parts for line in p)
    text = "\n".join("\n".join(p) for p in parts)
    assert all(p[0].startswith("| config |") for p in parts)
    for row in rows:
        for cell in row:
            assert f"| {cell} |" in text.replace("\\", "")
    assert "…" in text and "x" * 300 not in text


def test_core_report_names_no_toy_world():
    core = sorted((ROOT / "fvbench" / "report").glob("*.py")) + [ROOT / "fvbench" / "commands" / "report.py"]
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in core for i, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(r"shapes_?world|\bsw_|issue 8", line, flags=re.I)]
    assert not hits, hits


PLUGIN = '''
from fvbench.report.data import Section, Table, Text
from fvbench.report.sections import register_section


def section(run):
    n = int((run.df.status == "done").sum())
    return Section("thirdparty", "Third-party check", {"done_videos": n},
                   (Text(("hello from a plug-in section",)), Table(("what", "count"), (("done videos", str(n)),))))


register_section("thirdparty", "fvbench_test_section:section", order=15, origin="fvbench_test_section")
'''


def test_third_party_section_via_env_appears_in_the_report(sw144, tmp_path):
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "fvbench_test_section.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'plug'}{os.pathsep}{ROOT}", "HF_HUB_OFFLINE": "1",
           "FVBENCH_PLUGINS": "fvbench_test_section"}
    out = tmp_path / "rep"
    proc = subprocess.run([sys.executable, "-m", "fvbench.cli", "report", str(sw144), "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = (out / "report.md").read_text()
    assert "## Third-party check" in md and "| done videos | 720 |" in md
    assert md.index("## Answer") < md.index("## Third-party check") < md.index("## Configurations")  # order 15
    assert "<h2>Third-party check</h2><p>hello from a plug-in section</p>" in (out / "index.html").read_text()
    assert json.loads((out / "report.json").read_text())["thirdparty"] == {"done_videos": 720}


def test_shapesworld_section_registers_through_the_seam():
    code = "from fvbench.report.sections import section_names; print(section_names())"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names = eval(proc.stdout)
    assert names.index("answer") < names.index("shapesworld") < names.index("configs")


def test_unavailable_is_what_the_run_recorded(sw144, tmp_path, monkeypatch):
    from fvbench.metrics.registry import get_metric
    from fvbench.report import build_report
    from fvbench.store import open_store

    # the reporting machine lacks every metric's tools...
    monkeypatch.setattr(type(get_metric("sw_all_three")), "missing", lambda self: ["not on the reporting machine"])
    rep = build_report(sw144, tmp_path / "old")
    old = rep.md_path.read_text()
    assert "metric sw_all_three unavailable: not on the reporting machine" in old
    assert "did not record which metrics its machine could compute" in old
    # ...but the run recorded what its own machine could compute: that is what the report says
    recorded = {"sw_all_three": {"version": "1", "level": "video", "source": "frames", "available": True,
                                 "missing": []},
                "clip_score": {"version": "1", "level": "video", "source": "frames", "available": False,
                               "missing": ["no CLIP folder on the sweep machine"]}}
    store = open_store(sw144)  # migrates the schema-1 copy (after a backup) to write the info key
    store.set_info("metrics_at_run", recorded)
    store.close()
    rep = build_report(sw144, tmp_path / "new")
    md = rep.md_path.read_text()
    assert "metric clip_score unavailable: no CLIP folder on the sweep machine" in md
    assert "not on the reporting machine" not in md
    assert "as recorded by the machine that ran the sweep" in md
    assert rep.data.section("missing").values["unavailable"] == {"clip_score": "no CLIP folder on the sweep machine"}


def test_small_videos_are_upscaled_nearest_neighbour_and_large_ones_reduced():
    from fvbench.report.render_html import MIN_VIDEO_PX, video_frames_for_display

    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, size=(3, 32, 48, 3), dtype=np.uint8)
    big = video_frames_for_display(small)
    k = big.shape[2] // 48
    assert big.shape == (3, 32 * k, 48 * k, 3) and big.shape[2] >= MIN_VIDEO_PX
    assert np.array_equal(big[:, ::k, ::k], small)  # every pixel a k x k block of its source: no blur
    assert np.array_equal(big[:, k - 1::k, k - 1::k], small)
    huge = video_frames_for_display(np.zeros((2, 720, 1280, 3), np.uint8))
    assert 320 <= huge.shape[2] <= 640
