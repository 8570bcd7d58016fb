"""The report's ShapesWorld section: verdicts with margins from a configuration table, and the end-to-end path
(`fvbench run --suite shapesworld` stores the suite's exact metrics by default; the report shows the section)."""

import pandas as pd

from fvbench.cli import main
from fvbench.shapesworld import report_section as sw


def _row(config, family, s1, s2, n, flops, acc, detail):
    return {"config": config, "preset": config.split("_")[0], "family": family, "stage1_nfe": s1, "stage2_nfe": s2,
            "n": n, "flops": flops, "sw_all_three": acc, "sw_detail_ratio": detail}


TABLE = pd.DataFrame([
    _row("casc_s1-30_s2-1", "cascade", 30, 1, 144, 75e9, 0.95, 0.70),
    _row("casc_s1-30_s2-4", "cascade", 30, 4, 144, 80e9, 0.96, 0.82),
    _row("casc_s1-30_s2-8", "cascade", 30, 8, 144, 86e9, 0.96, 0.84),
    _row("single_s1-50", "single-stage", 50, None, 36, 1954e9, 0.99, 0.90),
    _row("weak_s1-50", "single-stage", 50, None, 144, 600e9, 0.50, 0.40),
])


def test_findings_compare_with_the_best_single_stage_and_give_margins():
    lines = sw.findings(TABLE)
    text = "\n".join(lines)
    # best single stage at 50 NFE is the more accurate one, not the cheaper one
    assert "vs best single stage single_s1-50" in text
    acc = next(line for line in lines if "all three 0.960 vs 0.990" in line)
    assert "-3.0 points" in acc and "MISSED (-1.0 points of margin)" in acc  # 2-point target missed by 1
    assert "= 0.041" in acc and "target <= 0.2: met" in acc
    assert "36 videos, fewer than the 144" in acc
    det = next(line for line in lines if "detail ratio 0.820 vs" in line)
    assert "-8.9%" in det and "met" in det
    curve = next(line for line in lines if "rises and flattens" in line)
    assert "0.700 / 0.820 / 0.840" in curve and "gain 1->4 +0.120" in curve and "change 4->8 +0.020" in curve
    assert ": met (" in curve


def _curve(d1, d4, d8, ci=None):
    rows = [_row(f"c_s1-30_s2-{n}", "cascade", 30, n, 144, 80e9, 0.9, d) for n, d in ((1, d1), (4, d4), (8, d8))]
    t = pd.DataFrame(rows)
    if ci is not None:
        t["sw_detail_ratio ci95"] = ci
    return next(line for line in sw.findings(t) if "rises and flattens" in line)


def test_stage2_verdict_needs_a_real_rise_a_flat_end_and_closeness_to_one():
    assert ": MISSED (" in _curve(0.5, 0.7, 0.89) and "flat by 4-8: NO" in _curve(0.5, 0.7, 0.89)
    overshoot = _curve(1.0, 1.5, 1.55)  # more "detail" than the real world is noise, not quality
    assert ": MISSED (" in overshoot and "measurably worse: NO" in overshoot
    overlap = _curve(0.80, 0.81, 0.81, ci=[(0.7, 0.9), (0.72, 0.9), (0.72, 0.9)])
    assert ": MISSED (" in overlap and "intervals overlap" in overlap
    separate = _curve(0.70, 0.82, 0.83, ci=[(0.68, 0.72), (0.80, 0.84), (0.81, 0.85)])
    assert ": met (" in separate and "intervals separate" in separate
    assert "not answerable" in _curve(0.7, float("nan"), 0.8)


def test_two_points_below_is_within_the_target():
    t = TABLE.copy()
    t.loc[t.config == "casc_s1-30_s2-4", "sw_all_three"] = 0.97
    acc = next(line for line in sw.findings(t) if "all three 0.970 vs 0.990" in line)
    assert "-2.0 points" in acc and "target no worse than -2: met" in acc


def test_findings_say_when_the_run_cannot_answer():
    only_cascade = TABLE[TABLE.family == "cascade"]
    assert sw.findings(only_cascade)[0].startswith("cascade vs single stage: not answerable")
    png = sw.stage2_curves(TABLE)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    no_cascade_values = TABLE.copy()
    no_cascade_values.loc[no_cascade_values.family == "cascade", ["sw_all_three", "sw_detail_ratio"]] = float("nan")
    assert sw.stage2_curves(no_cascade_values)[:4] == b"\x89PNG"  # a non-square cascade: no values, no crash
    assert "detail: not answerable" in "\n".join(sw.findings(TABLE.assign(sw_detail_ratio=float("nan"))))


def test_shapesworld_run_stores_its_metrics_and_the_report_shows_the_section(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--suite", "shapesworld", "--presets", "sw-flashvideo-s", "--stage1-nfe", "2",
                 "--stage2-nfe", "1,2", "--limit", "1", "--save-videos", "none", "--out", str(out)]) == 0
    import fvbench

    df = fvbench.load_results(out)
    assert {"metric:sw_all_three", "metric:sw_detail_ratio", "metric:sw_colour"} <= set(df.columns)
    assert df["metric:sw_colour"].notna().all()
    assert main(["report", str(out)]) == 0
    md = (out / "report" / "report.md").read_text()
    assert "## ShapesWorld targets" in md
    assert "not answerable from this run" in md
    assert "sw_detail_ratio by stage-II NFE: 1:" in md
    assert "sw-flashvideo-s understands only ShapesWorld prompts" in md
    # the suite's primary metric ranks: the answer section (the first one) is given in all-three accuracy
    answer = md.split("## Answer: how to split capacity and NFEs")[1].split("\n## ")[0]
    assert md.index("## Answer") < md.index("## ShapesWorld targets")
    assert "Ranking metric: sw_all_three (higher is better); chosen as the suite's primary metric" in answer
