"""Hostile inputs, round two (issue 17, items 2, 4, 5, 7, 10, 11, 12, 15, 16): bounded work, clean errors, exit codes."""

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import torch
import yaml

from fvbench.cli import main
from fvbench.dataio import load_data
from fvbench.errors import FvbenchError

ROOT = Path(__file__).resolve().parents[1]
# The classic "billion laughs": 9 levels of 9 aliases, 9**9 (387 million) strings once expanded.
BOMB = "\n".join(['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] +
                 [f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]) + "\n"


class _Timeout(Exception):
    pass


def _bounded(fn, seconds: float):
    """Run ``fn`` with a SIGALRM deadline, so a regression fails the test instead of hanging the suite."""
    def alarm(*_):
        raise _Timeout(f"still busy after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _home(tmp_path, monkeypatch, files: dict[str, bytes]) -> None:
    """A project root whose baselines/ holds these preset files (suites/ linked from the real one)."""
    root = tmp_path / "home"
    (root / "baselines").mkdir(parents=True)
    for name, blob in files.items():
        (root / "baselines" / name).write_bytes(blob)
    os.symlink(ROOT / "suites", root / "suites")
    monkeypatch.setenv("FVBENCH_HOME", str(root))
    from fvbench.generation import presets

    presets._all_presets.cache_clear()


@pytest.fixture
def clear_presets():
    yield
    from fvbench.generation import presets

    presets._all_presets.cache_clear()


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """A run of a single-stage preset only (tiny-dit, 2 prompts, 1 NFE): stage-II columns all NULL."""
    tmp = tmp_path_factory.mktemp("single")
    prompts = tmp / "p.txt"
    prompts.write_text("a red cat\na blue dog\n")
    out = tmp / "run"
    assert main(["run", "--suite", str(prompts), "--presets", "tiny-dit", "--stage1-nfe", "1", "--out", str(out)]) == 0
    return out


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("report", "check.xml"))
    return dest


def _sql(run: Path, *statements: str) -> None:
    conn = sqlite3.connect(run / "results.sqlite")
    with conn:
        for s in statements:
            conn.execute(s)
    conn.close()


# ------------------------------------------------------------------------------------------- item 2: alias bomb


def test_yaml_alias_bomb_is_refused_fast_everywhere(tmp_path, monkeypatch, capsys, clear_presets, single_run):
    assert len(BOMB.encode()) < 400
    suite = tmp_path / "bomb.yaml"
    suite.write_text("name: bomb\nprompts: [a red cat]\n" + BOMB)
    start = time.perf_counter()
    with pytest.raises(FvbenchError, match="aliases") as e:
        _bounded(lambda: load_data(suite), 10)
    assert time.perf_counter() - start < 0.5 and "\n" not in str(e.value)
    # the CLI paths that read YAML: a suite, a preset file, a baseline
    rc = _bounded(lambda: main(["run", "--suite", str(suite), "--presets", "tiny-dit", "--dry-run"]), 60)
    assert rc == 2 and "alias bomb" in capsys.readouterr().err
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text("configs: {}\n" + BOMB)
    rc = _bounded(lambda: main(["check", str(single_run), "--baseline", str(baseline), "--junit",
                                str(tmp_path / "j.xml")]), 60)
    assert rc == 2 and "alias bomb" in capsys.readouterr().err
    _home(tmp_path, monkeypatch, {"x.yaml": ("presets: {}\n" + BOMB).encode()})
    assert _bounded(lambda: main(["presets"]), 60) == 2 and "alias bomb" in capsys.readouterr().err
    # a recursive alias is refused, and modest aliasing (as in baselines/cpu.yaml) still loads
    (tmp_path / "rec.yaml").write_text("a: &a [x, *a]\n")
    with pytest.raises(FvbenchError, match="recursive"):
        _bounded(lambda: load_data(tmp_path / "rec.yaml"), 10)
    (tmp_path / "ok.yaml").write_text("base: &b {x: 1, y: [1, 2]}\nother: {<<: *b, x: 2}\nlist: [*b, *b]\n")
    assert load_data(tmp_path / "ok.yaml")["other"] == {"x": 2, "y": [1, 2]}


# ---------------------------------------------------------------------------------------------- item 7: UTF-8


def test_invalid_utf8_in_any_yaml_is_one_clean_line(tmp_path, monkeypatch, capsys, clear_presets, single_run):
    bad = b"name: caf\xe9\nprompts: [a red cat]\n"
    suite = tmp_path / "latin1.yaml"
    suite.write_bytes(bad)
    assert main(["run", "--suite", str(suite), "--presets", "tiny-dit", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8 text (byte 0xe9 at offset 9)" in err and err.count("\n") == 1
    baseline = tmp_path / "b.yaml"
    baseline.write_bytes(b"configs: {}\nnote: \xff\xfe\n")
    assert main(["check", str(single_run), "--baseline", str(baseline), "--junit", str(tmp_path / "j.xml")]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err
    _home(tmp_path, monkeypatch, {"x.yaml": b"presets: {}\n# \xc3\x28\n"})
    assert main(["presets"]) == 2 and "not UTF-8 text" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- item 4: report crashes


def test_report_of_a_single_stage_only_run(single_run, tmp_path):
    run = _copy(single_run, tmp_path / "run")
    assert main(["report", str(run)]) == 0
    md = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "tiny-dit_s1-1" in md and (run / "report" / "plot0.png").is_file()


def test_report_of_a_run_whose_videos_all_failed(single_run, tmp_path, capsys):
    run = _copy(single_run, tmp_path / "run")
    _sql(run, "UPDATE units SET status = 'failed', error = 'RuntimeError: boom'")
    assert main(["report", str(run)]) == 0
    md = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "no finished videos: all 2 in the store failed" in md and "RuntimeError: boom" in md


# -------------------------------------------------------------------------------------- item 5: baseline shape


def test_check_validates_its_baseline_and_exits_2_for_bad_input(single_run, tmp_path, capsys):
    run = _copy(single_run, tmp_path / "run")
    good = tmp_path / "good.yaml"
    assert main(["check", str(run), "--baseline", str(good), "--update"]) == 0
    base = yaml.safe_load(good.read_text())
    config = next(iter(base["configs"]))

    def check(data) -> tuple[int, str]:
        path = tmp_path / "b.yaml"
        path.write_text(yaml.safe_dump(data))
        rc = main(["check", str(run), "--baseline", str(path), "--junit", str(tmp_path / "j.xml")])
        return rc, capsys.readouterr().err

    assert check(base) == (0, "")
    cases = {
        "missing flops_total": ({**base, "configs": {config: {k: v for k, v in base["configs"][config].items()
                                                               if k != "flops_total"}}}, "missing required key 'flops_total'"),
        "missing nfe_executed": ({**base, "configs": {config: {k: v for k, v in base["configs"][config].items()
                                                                if k != "nfe_executed"}}}, "'nfe_executed'"),
        "null config": ({**base, "configs": {config: None}}, "expected a mapping"),
        "null configs": ({**base, "configs": None}, "expected a mapping"),
        "string tolerance": ({**base, "tolerances": {**base["tolerances"], "metric_rel": "lots"}}, "expected a number"),
        "negative tolerance": ({**base, "tolerances": {**base["tolerances"], "speed_ratio_rel": -1}}, ">= 0"),
        "unknown tolerance": ({**base, "tolerances": {**base["tolerances"], "metrc_rel": 0.1}}, "unknown key(s) ['metrc_rel']"),
        "unknown config key": ({**base, "configs": {config: {**base["configs"][config], "flops": 1}}},
                               "unknown key(s) ['flops']"),
        "string NFE": ({**base, "configs": {config: {**base["configs"][config], "nfe_executed": ["ten"]}}},
                       "expected an integer"),
        "unknown top-level key": ({**base, "tolerance": {}}, "unknown key(s) ['tolerance']"),
    }
    for name, (data, message) in cases.items():
        rc, err = check(data)
        assert rc == 2 and message in err and err.startswith("error: ") and err.count("\n") == 1, (name, rc, err)
    # a real regression is still exit 1, distinct from bad input
    regressed = {**base, "configs": {config: {**base["configs"][config],
                                              "flops_total": base["configs"][config]["flops_total"] + 1}}}
    rc, _ = check(regressed)
    assert rc == 1


# ------------------------------------------------------------------------------------ item 10: run exit status


def test_run_exits_3_when_videos_failed_and_says_where(tmp_path, capsys, monkeypatch):
    from fvbench.generation.generator import Generator

    def boom(*args, **kwargs):
        raise RuntimeError("stage exploded")

    monkeypatch.setattr(Generator, "run_stage", boom)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\na blue dog\n")
    out = tmp_path / "run"
    rc = main(["run", "--suite", str(prompts), "--presets", "tiny-dit", "--stage1-nfe", "1", "--no-warmup",
               "--metrics", "none", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "2 of 2 videos failed" in err and "error column" in err and str(out / "results.sqlite") in err
    from fvbench import load_results

    assert (load_results(out).error == "RuntimeError: stage exploded").all()


# ------------------------------------------------------------------------------ item 11: text in numeric columns


def test_text_in_numeric_store_columns(single_run, tmp_path, capsys):
    run = _copy(single_run, tmp_path / "run")
    _sql(run, "UPDATE units SET flops_total = 'lots', total_s = 'slow' WHERE prompt_id = 'p0000'",
         "UPDATE stages SET nfe = 'x' WHERE stage = 1 AND unit_hash IN (SELECT unit_hash FROM units WHERE prompt_id = 'p0000')",
         "UPDATE metrics SET value = 'high' WHERE metric = 'motion_px'")
    before = (run / "results.sqlite").read_bytes()
    assert main(["report", str(run)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "flops_total (tiny-dit_s1-1 / p0000)" in err and "Traceback" not in err
    md = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "text in a numeric store column, read as missing: total_s (tiny-dit_s1-1 / p0000)" in md
    assert main(["export", str(run), "--format", "csv", "--out", str(tmp_path / "r.csv")]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "r.parquet")]) == 0
    import pandas as pd

    assert pd.read_parquet(tmp_path / "r.parquet").flops_total.isna().sum() == 1
    capsys.readouterr()
    rc = main(["check", str(run), "--baseline", str(ROOT / "reports" / "ci-baseline.yaml"), "--junit",
               str(tmp_path / "j.xml")])
    err = capsys.readouterr().err
    assert rc == 2 and "text where numbers belong" in err and "Traceback" not in err
    assert (run / "results.sqlite").read_bytes() == before  # nothing stored was changed


# --------------------------------------------------------------------------------- item 12: NFE/size ceilings


def test_nfe_frames_and_resolution_have_ceilings_with_a_way_out(tmp_path, capsys, monkeypatch, clear_presets):
    monkeypatch.setenv("FVBENCH_ALLOW_LARGE", "0")  # restored at teardown (--allow-large sets it for the process)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\n")
    args = ["run", "--suite", str(prompts), "--presets", "tiny-dit", "--stage1-nfe", "1000000000", "--dry-run"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "NFE 1000000000 is over fvbench's limit of 1000" in err and "--allow-large" in err
    assert "FVBENCH_ALLOW_LARGE=1" in err
    assert main(["run", "--suite", str(prompts), "--presets", "tiny-dit", "--stage1-nfe", "1000", "--dry-run"]) == 0
    tiny = (ROOT / "baselines" / "tiny.yaml").read_text()
    big = tiny.replace("\n    frames: 9\n", "\n    frames: 4097\n", 1)
    assert big != tiny
    _home(tmp_path, monkeypatch, {"tiny.yaml": big.encode()})
    assert main(["presets"]) == 2 and "frames 4097 is over fvbench's limit" in capsys.readouterr().err
    wide = tiny.replace(" width: 16}", " width: 8192}", 1)
    assert wide != tiny
    _home(tmp_path / "w", monkeypatch, {"tiny.yaml": wide.encode()})
    assert main(["presets"]) == 2 and "width 8192 is over" in capsys.readouterr().err
    # lifted on purpose: the plan is made (and predicted) instead of refused
    _home(tmp_path / "o", monkeypatch, {"tiny.yaml": tiny.encode()})
    assert main(args + ["--allow-large"]) == 0
    assert "tiny-dit_s1-1000000000" in capsys.readouterr().out


# ------------------------------------------------------------------------- item 15: legacy pickles, convert --out


class _Opaque:
    """Not an allowed global for weights_only loading (module-level so a trusted load can import it)."""

    def __init__(self):
        self.lr = 1e-4


def test_legacy_non_zip_full_pickle_is_recognised_and_loads_when_trusted(tmp_path, capsys):
    from fvbench.generation.models.sat import load_sat_checkpoint

    sd = {"model.diffusion_model.x": torch.ones(3)}
    legacy = tmp_path / "legacy.pt"  # what older tools write: torch.save's pre-zip format, pickle protocol 4
    torch.save({"module": sd, "args": _Opaque()}, legacy, _use_new_zipfile_serialization=False, pickle_protocol=4)
    with pytest.raises(FvbenchError, match=r"full pickle.*_Opaque.*--trust-checkpoint") as e:
        load_sat_checkpoint(legacy)
    assert "corrupt" not in str(e.value)
    assert torch.equal(load_sat_checkpoint(legacy, trust_pickle=True)["model.diffusion_model.x"], torch.ones(3))
    plain = tmp_path / "plain.pt"  # tensors only, but protocol 4: weights_only cannot read its opcodes either
    torch.save({"module": sd}, plain, _use_new_zipfile_serialization=False, pickle_protocol=4)
    with pytest.raises(FvbenchError, match="pickle features weights_only loading does not read"):
        load_sat_checkpoint(plain)
    assert set(load_sat_checkpoint(plain, trust_pickle=True)) == set(sd)
    # damaged bytes are still called damaged, trusted or not
    (tmp_path / "cut.pt").write_bytes(legacy.read_bytes()[:40])
    for trust in (False, True):
        with pytest.raises(FvbenchError, match="corrupt or truncated|not a readable checkpoint"):
            load_sat_checkpoint(tmp_path / "cut.pt", trust_pickle=trust)
    # a failed conversion leaves no --out folder behind (nor the parents it created)
    out = tmp_path / "new" / "weights"
    assert main(["convert-flashvideo", "--stage2", str(legacy), "--out", str(out), "--like", "tiny-flashvideo"]) == 2
    assert "--trust-checkpoint" in capsys.readouterr().err and not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert main(["convert-flashvideo", "--stage2", str(legacy), "--out", str(kept), "--like", "tiny-flashvideo"]) == 2
    assert kept.is_dir()  # a folder the user made is not removed


# ------------------------------------------------------------------------ item 16: terminal, Markdown, C locale


def test_escape_sequences_in_names_do_not_reach_the_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(click.utils, "should_strip_ansi", lambda *a, **k: False)  # as on a terminal
    suite = tmp_path / "s.yaml"
    suite.write_text('name: "\\e]0;pwned\\a\\e[2J\\rRED\\u202e"\nprompts: [a red cat]\n')
    assert main(["run", "--suite", str(suite), "--presets", "tiny-dit", "--stage1-nfe", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\u202e" not in out
    assert "suite \\x1b]0;pwned\\x07\\x1b[2J\\x0dRED\\u202e:" in out
    assert main(["run", "--suite", str(tmp_path / "\x1b[31mnope.txt"), "--presets", "tiny-dit", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[31mnope.txt does not exist" in err


def test_report_md_escapes_markdown_and_html(single_run, tmp_path):
    run = _copy(single_run, tmp_path / "run")
    hostile = "<img src=x onerror=alert(1)> [click](javascript:alert(2)) ![i](http://x/y.png) `code` *em*"
    _sql(run, f"UPDATE units SET status = 'failed', error = '{hostile}' WHERE prompt_id = 'p0001'",
         "UPDATE info SET value = json_set(value, '$.suite', '# <script>alert(3)</script>') WHERE key = 'last_plan'")
    assert main(["report", str(run)]) == 0
    md = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "<img" not in md and "<script" not in md and not re.search(r"(?<!\\)\]\((?!plot\d+\.png\))", md)  # links: our plots only
    assert "&lt;img src=x onerror=alert(1)&gt; \\[click\\](javascript:alert(2)) \\!\\[i\\](http://x/y.png)" in md
    assert "suite # &lt;script&gt;" in md  # mid-line '#' is text already


def test_non_ascii_prompts_work_under_an_ascii_locale(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("un café crème\na red cat\n", encoding="utf-8")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "LANG": "C", "LC_ALL": "C",
           "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "fvbench.cli", "run", "--suite", str(prompts), "--presets", "tiny-dit",
                           "--stage1-nfe", "1", "--metrics", "none", "--no-warmup", "--out", str(out)],
                          env=env, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    from fvbench import load_results

    df = load_results(out)
    assert (df.status == "done").all() and "un café crème" in set(df.prompt)
    row = df[df.prompt == "un café crème"].iloc[0]
    assert row.vbench_name == 0 and (out / row.s1_video_path).is_file()  # _p-<sha> name, exact prompt in the store
    proc = subprocess.run([sys.executable, "-m", "fvbench.cli", "report", str(out)], env=env, capture_output=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
