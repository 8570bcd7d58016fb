"""`fvbench report` renders in headless Chromium without errors or scripts; `fvbench check` catches regressions."""

import copy
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fvbench.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = ["<script>alert(1)</script>", "\"><img src=x onerror=alert(2)>", "a red cat"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    f = tmp / "p.yaml"
    f.write_text(yaml.safe_dump({"prompts": HOSTILE}))
    out = tmp / "run"
    assert main(["run", "--suite", str(f), "--presets", "tiny-flashvideo,tiny-dit", "--stage1-nfe", "2,3",
                 "--stage2-nfe", "1,2", "--out", str(out)]) == 0
    return out


def _chromium_dom(page: Path, tmp: Path) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=3000", "--dump-dom", page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


def test_report_is_self_contained_and_escapes_prompts(run_dir):
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report" / "index.html").read_text()
    assert "<script" not in page.lower().replace("&lt;script", "")  # only the escaped prompt
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from the network
    assert page.count("data:image/png;base64,") >= 4  # plots
    assert page.count("data:image/gif;base64,") >= 2  # videos
    widths = [int(w) for w in re.findall(r'<img class="video" width="(\d+)"', page)]
    assert len(widths) >= 2 and min(widths) >= 320  # tiny videos shown large enough to see
    assert "overflow-x:auto" in page and page.count("<div class='scroll'><table>") == page.count("<table>")
    assert "Missing and failed" in page and "clip_score unavailable" in page
    md = (run_dir / "report" / "report.md").read_text()
    assert "## Configurations" in md and "tiny-flashvideo_s1-2_s2-1" in md
    # the default metrics (temporal_flickering rewards still video; the detail and motion ones describe): costs only
    answer = md.split("## Answer: how to split capacity and NFEs")[1].split("\n## ")[0]
    assert "no metric of this run measures quality meaningfully" in answer and "costs only" in answer
    assert "### Best configuration under each FLOP budget" not in answer
    assert "| tiny-dit_s1-" in answer  # the costs table


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium_without_running_scripts(run_dir, tmp_path):
    main(["report", str(run_dir)])
    dom = _chromium_dom(run_dir / "report" / "index.html", tmp_path)
    assert "fvbench report" in dom
    assert dom.count("<img") >= 6
    # the hostile prompts are text, not elements: no injected <script> or <img src="x">
    assert "<script" not in dom.lower().replace("&lt;script", "")
    assert 'src="x"' not in dom


def test_report_of_a_run_with_failures_still_renders(run_dir, tmp_path):
    from fvbench.store import open_store

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    store = open_store(broken)
    with store.write() as c:
        c.execute("UPDATE units SET status = 'failed', error = 'RuntimeError: boom <b>' WHERE config = 'tiny-dit_s1-2'")
        c.execute("UPDATE metrics SET value = NULL, error = 'ValueError: bad' WHERE metric = 'motion_px'")
    store.close()
    assert main(["report", str(broken)]) == 0
    page = (broken / "report" / "index.html").read_text()
    assert "video failed: tiny-dit_s1-2" in page and "RuntimeError: boom &lt;b&gt;" in page
    assert "metric motion_px failed" in page


def _check(run_dir, baseline, tmp_path):
    return main(["check", str(run_dir), "--baseline", str(baseline), "--junit", str(tmp_path / "j.xml")])


def test_check_passes_unchanged_and_fails_on_each_injected_regression(run_dir, tmp_path, capsys):
    baseline = tmp_path / "baseline.yaml"
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--update"]) == 0
    assert _check(run_dir, baseline, tmp_path) == 0
    assert "0 regressed" in capsys.readouterr().out
    assert 'failures="0"' in (tmp_path / "j.xml").read_text()
    base = yaml.safe_load(baseline.read_text())
    config = "tiny-flashvideo_s1-2_s2-1"
    baseline.write_text(yaml.safe_dump({**base, "tolerances": {**base["tolerances"], "speed_ratio_rel": 1.0}}))
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--update"]) == 0
    assert yaml.safe_load(baseline.read_text())["tolerances"]["speed_ratio_rel"] == 1.0  # hand-set, kept

    def mutated(change):
        data = copy.deepcopy(base)
        change(data)
        path = tmp_path / "mutated.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    key = next(iter(base["configs"][config]["checksums"]))
    ratio = next(iter(base["speed_ratios"]))
    cases = {
        "FLOPs per video": lambda d: d["configs"][config].update(flops_total=d["configs"][config]["flops_total"] + 1),
        "output checksums": lambda d: d["configs"][config]["checksums"].update({key: "0" * 64}),
        "metric detail_hf_ratio": lambda d: d["configs"][config]["metrics"].update(
            detail_hf_ratio=d["configs"][config]["metrics"]["detail_hf_ratio"] * 1.5),
        "speed ratio": lambda d: d["speed_ratios"].update({ratio: d["speed_ratios"][ratio] / 10}),
        "NFE executed": lambda d: d["configs"][config].update(nfe_executed=[2, 2]),
    }
    for name, change in cases.items():
        capsys.readouterr()
        assert _check(run_dir, mutated(change), tmp_path) == 1, name
        out = capsys.readouterr().out
        assert re.search(rf"REGRESSED .*{re.escape(name)}", out), (name, out)
        assert 'failures="0"' not in (tmp_path / "j.xml").read_text()
