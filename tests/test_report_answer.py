"""The report's answer section: metric directions, paired bootstrap, baselines, non-inferiority, JSON = Markdown."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fvbench.metrics.base import VideoMetric
from fvbench.metrics.semantics import Semantics, ranking_metric, semantics
from fvbench.report.answer import blocks, compute_answer, mean_scores, num, unit_matrix, unpaired_diff_ci
from fvbench.report.tables import pareto_front

SW144 = Path(__file__).parent / "fixtures" / "sw144"
HIGHER = Semantics("q", "higher")


def _results(configs: dict[str, tuple[str, float, np.ndarray]], metric: str = "q", prompts: int = 1) -> pd.DataFrame:
    """A results frame: config -> (family, FLOPs per video, one value per unit); units are (prompt, sample)."""
    rows = []
    for config, (family, flops, values) in configs.items():
        for i, v in enumerate(values):
            rows.append({"config": config, "family": family, "status": "done", "prompt_id": f"p{i % prompts}",
                         "sample": i // prompts, "flops_total": flops, "total_s": flops / 10, "preview_s": np.nan,
                         f"metric:{metric}": v})
    return pd.DataFrame(rows)


def test_direction_declarations_and_derived_higher_is_better():
    assert semantics("temporal_flickering").rewards_still and not semantics("temporal_flickering").ranks
    for name in ("detail_laplacian_var", "detail_hf_ratio", "motion_px"):
        assert semantics(name).direction == "descriptive"
    assert (semantics("sw_detail_ratio").direction, semantics("sw_detail_ratio").target) == ("target", 1.0)
    assert semantics("sw_temporal_rms_px").direction == "lower"
    assert semantics("sw_all_three").direction == "higher"
    assert semantics("fvd").direction == "lower"  # derived from an older higher_is_better = False

    class Old(VideoMetric):
        name, higher_is_better, level = "old", False, "video"

        def score(self, video, *, prompt, reference=None):
            return 0.0

    class New(VideoMetric):
        name, direction, level = "new", "lower", "video"

        def score(self, video, *, prompt, reference=None):
            return 0.0

    assert Old.direction == "lower" and New.higher_is_better is False
    with pytest.raises(TypeError, match="direction"):
        type("Bad", (VideoMetric,), {"name": "bad", "direction": "sideways", "level": "video"})
    with pytest.raises(TypeError, match="target"):
        type("NoTarget", (VideoMetric,), {"name": "nt", "direction": "target", "level": "video"})


def test_paired_interval_narrower_than_unpaired():
    # 30 prompts x 4 samples; a per-prompt effect (sd 1) shared by both configurations, a true difference of 0.1
    rng = np.random.default_rng(1)
    prompt_effect = rng.normal(0, 1, 30)[np.arange(120) % 30]  # unit i is prompt i % 30 (see _results)
    base = prompt_effect + rng.normal(0, 0.05, 120)
    casc = prompt_effect + 0.1 + rng.normal(0, 0.05, 120)
    df = _results({"c": ("cascade", 1.0, casc), "s": ("single-stage", 2.0, base)}, prompts=30)
    (p,) = compute_answer(df, [HIGHER]).comparisons
    assert p.n_pairs == 120 and p.mean_diff == pytest.approx(0.1, abs=0.03)
    lo, hi = p.ci95
    ulo, uhi = unpaired_diff_ci(casc, base)
    assert lo > 0 and lo < 0.1 < hi  # the shared effect cancels: the difference is clearly positive
    assert hi - lo < 0.2 * (uhi - ulo)  # resampled apart, the per-prompt spread swamps it
    assert ulo < 0 < uhi


def test_baseline_is_best_single_at_equal_or_higher_flops():
    n = 20
    const = lambda v: np.full(n, v)  # noqa: E731
    df = _results({"c10": ("cascade", 10.0, const(0.6)), "c25": ("cascade", 25.0, const(0.6)),
                   "cheap": ("single-stage", 5.0, const(0.99)),  # best overall, but cheaper than both cascades
                   "eq": ("single-stage", 10.0, const(0.70)), "mid": ("single-stage", 20.0, const(0.80)),
                   "big": ("single-stage", 40.0, const(0.75))})
    by = {p.cascade: p for p in compute_answer(df, [HIGHER]).comparisons}
    assert by["c10"].baseline == "mid" and by["c10"].flops_ratio == pytest.approx(0.5)
    assert by["c25"].baseline == "big"  # the only single-stage at >= 25 FLOPs
    assert by["c10"].mean_diff == pytest.approx(-0.2)
    # lower-is-better: the best baseline is the lowest value
    low = Semantics("q", "lower")
    assert {p.cascade: p.baseline for p in compute_answer(df, [low]).comparisons}["c10"] == "eq"


def test_cheapest_non_inferior_uses_ci_lower_bound_and_margin():
    n = 40
    alt = np.where(np.arange(n) % 2, 1.0, -1.0)
    df = _results({"c1": ("cascade", 1.0, 0.5 - 0.05 + 0.01 * alt),  # clearly worse by 0.05
                   "c2": ("cascade", 2.0, 0.5 - 0.01 + 0.10 * alt),  # mean within 0.02, interval not
                   "c3": ("cascade", 3.0, 0.5 + 0.00 + 0.01 * alt),  # within 0.02 with its interval
                   "s": ("single-stage", 10.0, np.full(n, 0.5))})
    a = compute_answer(df, [HIGHER], margin=0.02, margin_source="test")
    by = {p.cascade: p for p in a.comparisons}
    assert by["c2"].mean_diff > -0.02 > by["c2"].ci95[0]
    assert a.cheapest_non_inferior.cascade == "c3"
    assert compute_answer(df, [HIGHER], margin=0.1).cheapest_non_inferior.cascade == "c1"
    assert compute_answer(df, [HIGHER], margin=0.0).cheapest_non_inferior is None
    none = compute_answer(df, [HIGHER])
    assert none.cheapest_non_inferior is None and any("no non-inferiority margin given" in x for x in none.notes)


def test_target_metric_ranks_by_distance():
    detail = semantics("sw_detail_ratio")
    n = 10
    df = _results({"over": ("single-stage", 1.0, np.full(n, 1.29)), "casc": ("cascade", 0.5, np.full(n, 0.82)),
                   "casc2": ("cascade", 2.0, np.full(n, 0.82))}, metric="sw_detail_ratio")
    a = compute_answer(df, [detail])
    assert a.metric == "sw_detail_ratio" and a.direction == "target"
    # at the 1.0 FLOP budget, 0.82 (distance 0.18) beats 1.29 (distance 0.29); higher-is-better would pick 1.29
    assert [r.config for r in a.frontier if r.budget_flops == 1.0] == ["casc"]
    (p,) = [p for p in a.comparisons if p.cascade == "casc"]
    assert p.baseline == "over" and p.mean_diff == pytest.approx(0.29 - 0.18)
    x, y = np.array([0.5, 1.0]), np.array([0.82, 1.29])
    assert pareto_front(x, detail.score(y)).tolist() == [0]
    # a configuration whose videos scatter around the target is not close to it: the mean distance ranks
    spread = _results({"a": ("cascade", 1.0, np.array([0.5, 1.5] * 5)), "b": ("cascade", 1.0, np.full(n, 0.8))},
                      metric="sw_detail_ratio")
    ms = mean_scores(unit_matrix(spread, "metric:sw_detail_ratio"), detail)
    assert ms["a"] == pytest.approx(-0.5) and ms["b"] == pytest.approx(-0.2)


def test_default_metrics_give_costs_only_answer():
    names = ["temporal_flickering", "detail_laplacian_var", "detail_hf_ratio", "motion_px"]
    sems = [semantics(m) for m in names]
    assert ranking_metric(sems)[0] is None
    n = 6
    df = _results({"c": ("cascade", 1.0, np.full(n, 0.999)), "s": ("single-stage", 2.0, np.full(n, 0.9))},
                  metric="temporal_flickering")
    a = compute_answer(df, sems, primary="temporal_flickering")
    assert a.metric is None and not a.frontier and not a.comparisons and a.cheapest_non_inferior is None
    assert [c.config for c in a.costs] == ["c", "s"]
    text = " ".join(" ".join(lines) for _, lines, _ in blocks(a))
    assert "no metric of this run measures quality meaningfully" in text and "costs only" in text
    assert "temporal_flickering (higher is better, rewards still video)" in text


@pytest.mark.parametrize("margin", ["-0.1", "abc", ".nan"])
def test_suite_margin_is_checked(tmp_path, margin):
    from fvbench.errors import FvbenchError
    from fvbench.suites import load_prompt_file

    f = tmp_path / "s.yaml"
    f.write_text(f"primary_metric: sw_all_three\nmargin: {margin}\nprompts: [a red circle moving left]\n")
    with pytest.raises(FvbenchError, match="margin"):
        load_prompt_file(f)
    f.write_text("primary_metric: sw_all_three\nmargin: 0.02\nprompts: [a red circle moving left]\n")
    assert load_prompt_file(f).prompts[0].text == "a red circle moving left"


@pytest.fixture
def sw144(tmp_path):
    """A copy of the measured store: reading a WAL store in place would leave -shm/-wal files beside the fixture."""
    run = tmp_path / "sw144"
    run.mkdir()
    shutil.copyfile(SW144 / "results.sqlite", run / "results.sqlite")
    return run


def _answer(df):
    from fvbench.suites import suite_meta

    meta = suite_meta("shapesworld")
    metrics = [c.removeprefix("metric:") for c in df.columns if c.startswith("metric:")]
    return compute_answer(df, [semantics(m) for m in metrics], primary=meta.primary_metric, margin=meta.margin,
                          margin_source="suite")


def test_sw144_answer_reproduces_readme(sw144):
    import fvbench

    df = fvbench.load_results(sw144)
    assert len(df) == 720 and (df.status == "done").all()
    a = _answer(df)
    assert a.metric == "sw_all_three" and a.margin == 0.02
    cascade = {int(c.rsplit("-", 1)[1]): c for c in df.config.unique() if c.startswith("sw-flashvideo-s_s1-30_s2-")}
    by = {p.cascade: p for p in a.comparisons}
    p = by[cascade[4]]
    assert p.baseline == "sw-dit-p4-s_s1-50" and p.n_pairs == 144
    assert (round(p.raw_mean_cascade, 3), round(p.raw_mean_baseline, 3)) == (0.986, 0.819)
    assert round(100 * p.mean_diff, 1) == 16.7 and p.ci95[0] > -a.margin and p.ci95[0] > 0
    assert round(p.flops_ratio, 3) == 0.487
    detail = {q.cascade: q for q in a.other_metrics if q.metric == "sw_detail_ratio"}
    d = detail[cascade[4]]
    assert (round(d.raw_mean_cascade, 2), round(d.raw_mean_baseline, 2)) == (0.82, 1.29)
    assert abs(d.raw_mean_cascade - 1) < abs(d.raw_mean_baseline - 1) and d.mean_diff > 0
    assert [round(detail[cascade[k]].raw_mean_cascade, 3) for k in (1, 2, 4, 8)] == [0.708, 0.798, 0.822, 0.836]
    assert [round(by[cascade[k]].raw_mean_cascade, 3) for k in (1, 2, 4, 8)] == [0.979, 0.986, 0.986, 0.986]
    # every cascade point is non-inferior here, so the cheapest one (stage II at 1 NFE) is named
    assert a.cheapest_non_inferior.cascade == cascade[1]


def _numbers(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from _numbers(v)
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield x


def test_json_and_markdown_hold_the_same_numbers(sw144, tmp_path):
    from fvbench.cli import main

    out = tmp_path / "rep"
    assert main(["report", str(sw144), "--out", str(out)]) == 0
    data = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    page = (out / "index.html").read_text()
    assert {"answer", "configs", "provenance"} <= set(data)
    assert re.findall(r"^## .*", md, flags=re.M)[0] == "## Answer: how to split capacity and NFEs"
    assert page.index("<h2>Answer") < page.index("<h2>", page.index("<h2>Answer") + 1)
    answer = data["answer"]
    assert answer["metric"] == "sw_all_three" and len(answer["comparisons"]) == 4
    plain = md.replace("\\", "")  # Markdown escapes of [ ] + - |
    numbers = list(_numbers(answer))
    assert len(numbers) > 100
    for x in numbers:
        assert num(x) in plain, (x, num(x))
        assert num(x) in page, (x, num(x))
    for p in answer["comparisons"] + answer["other_metrics"]:
        assert f"{num(p['mean_diff'])} [{num(p['ci95'][0])}, {num(p['ci95'][1])}]" in plain
    assert answer["cheapest_non_inferior"]["cascade"] in md.split("\n## ")[1]
