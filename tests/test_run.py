"""`fvbench run` end to end on tiny presets: rows, resume, prefix sharing, kills, bad input, hostile prompts."""

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fvbench import load_results
from fvbench.cli import main
from fvbench.generation.generator import Generator
from fvbench.generation.presets import get_preset
from fvbench.worker import video_sha256

SWEEP = ["--presets", "tiny-flashvideo,tiny-dit", "--stage1-nfe", "2,3", "--stage2-nfe", "1,2"]
DETERMINISTIC = ["unit_hash", "config", "prompt", "sample", "seed", "status", "s1_nfe_executed", "s2_nfe_executed",
                 "s1_batch_rows", "s2_batch_rows", "s1_video_sha256", "s2_video_sha256", "flops_total", "s1_flops",
                 "s2_flops", "params_total"]


@pytest.fixture
def prompts(tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("a red cat\na blue dog\n")
    return f


def _run(args, capsys=None):
    rc = main(["run", *args])
    out = capsys.readouterr() if capsys else None
    return rc, out


def test_run_stores_one_row_per_video_and_resumes(tmp_path, prompts, capsys):
    out = tmp_path / "run"
    rc, o = _run(["--suite", str(prompts), *SWEEP, "--out", str(out)], capsys)
    assert rc == 0, o.err
    df = load_results(out)
    # 2 prompts x (4 cascade splits + 2 single-stage NFEs) x 1 sample
    assert len(df) == 12 and (df.status == "done").all()
    assert "stage I computed 8 times instead of 12" in o.out  # 4 shared cascade prefixes + 4 single-stage
    casc = df[df.preset == "tiny-flashvideo"]
    assert (casc.s1_nfe_executed == casc.s1_nfe).all() and (casc.s2_nfe_executed == casc.s2_nfe).all()
    assert (casc.s2_batch_rows == 2 * casc.s2_nfe).all()
    assert casc.s1_shared.sum() == 4 and casc.s2_init_shared.sum() == 4
    assert (df.flops_total > 0).all() and (df.s1_params > 0).all() and df.s1_peak_mem_bytes.notna().all()
    assert (casc.preview_s < casc.total_s).all()
    assert df.git.notna().all() and (df.device == "cpu").all() and (df.suite_sha256.str.len() == 64).all()
    for path in df.s2_video_path.dropna().tolist() + df.s1_video_path.dropna().tolist():
        assert (out / path).is_file()
    assert (out / "videos" / "tiny-flashvideo_s1-2_s2-1" / "a red cat-0.mp4").is_file()  # VBench naming
    # a rerun skips everything
    rc, o = _run(["--suite", str(prompts), *SWEEP, "--out", str(out)], capsys)
    assert rc == 0 and "done: 0 new, 12 already stored" in o.out
    assert len(load_results(out)) == 12


def test_shared_prefix_gives_the_same_videos_as_direct_generation(tmp_path, prompts, capsys):
    out = tmp_path / "run"
    assert _run(["--suite", str(prompts), "--presets", "tiny-flashvideo", "--stage1-nfe", "3",
                 "--stage2-nfe", "1,2,4", "--out", str(out)], capsys)[0] == 0
    df = load_results(out)
    for _, row in df.iterrows():
        preset = get_preset("tiny-flashvideo").with_overrides({"stage1": {"nfe": 3},
                                                               "stage2": {"nfe": int(row.s2_nfe)}})
        direct = Generator.from_preset(preset).generate(row.prompt, int(row.seed))
        assert video_sha256(direct.stages[0].video) == row.s1_video_sha256
        assert video_sha256(direct.video) == row.s2_video_sha256


def _cli(args, env):
    code = "import sys; from fvbench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _done_rows(run: Path) -> int:
    db = run / "results.sqlite"
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT count(*) FROM units WHERE status = 'done'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return 0


def test_sigkill_at_random_points_then_resume_equals_uninterrupted_run(tmp_path, prompts):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    args = ["run", "--suite", str(prompts), *SWEEP]
    ref = _cli([*args, "--out", str(tmp_path / "ref")], env)
    assert ref.wait(timeout=600) == 0, ref.stderr.read()
    killed = tmp_path / "killed"
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):
        before = _done_rows(killed)
        p = _cli([*args, "--out", str(killed)], env)
        # wait until this attempt has committed a row, then kill at a random moment shortly after
        while p.poll() is None and _done_rows(killed) <= before:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.4))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait(timeout=600)
    final = _cli([*args, "--out", str(killed)], env)
    assert final.wait(timeout=600) == 0, final.stderr.read()
    assert kills >= 2
    a = load_results(tmp_path / "ref").sort_values("unit_hash")[DETERMINISTIC].reset_index(drop=True)
    b = load_results(killed).sort_values("unit_hash")[DETERMINISTIC].reset_index(drop=True)
    assert len(b) == 12 and b.unit_hash.is_unique
    assert a.equals(b)


def test_bad_input_is_refused_and_the_store_untouched(tmp_path, prompts, capsys):
    out = tmp_path / "run"
    assert _run(["--suite", str(prompts), "--presets", "tiny-dit", "--stage1-nfe", "2", "--out", str(out)], capsys)[0] == 0
    digest = hashlib.sha256((out / "results.sqlite").read_bytes()).hexdigest()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompts: [unclosed")
    cases = [
        (["--suite", "nosuch"], "unknown suite 'nosuch'"),
        (["--suite", "vbench:colour"], "unknown VBench dimension"),
        (["--suite", str(empty)], "has no prompts"),
        (["--suite", str(bad)], "not valid YAML"),
        (["--suite", str(prompts), "--stage2-nfe", "0"], "NFE must be positive"),
        (["--suite", str(prompts), "--presets", "nope"], "unknown preset 'nope'"),
        (["--suite", str(prompts), "--limit", "0"], "--limit must be positive"),
    ]
    for args, message in cases:
        rc, o = _run([*args, "--presets", "tiny-dit", "--out", str(out)] if "--presets" not in args
                     else [*args, "--out", str(out)], capsys)
        assert rc == 2, args
        assert o.err.startswith("error: ") and message in o.err and o.err.count("\n") == 1, o.err
    assert hashlib.sha256((out / "results.sqlite").read_bytes()).hexdigest() == digest


def test_store_of_another_schema_and_unwritable_folder(tmp_path, prompts, capsys):
    other = tmp_path / "other"
    other.mkdir()
    conn = sqlite3.connect(other / "results.sqlite")
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    before = (other / "results.sqlite").read_bytes()
    rc, o = _run(["--suite", str(prompts), "--presets", "tiny-dit", "--out", str(other)], capsys)
    assert rc == 2 and "another schema" in o.err
    assert (other / "results.sqlite").read_bytes() == before
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, o = _run(["--suite", str(prompts), "--presets", "tiny-dit", "--out", str(blocker / "run")], capsys)
    assert rc == 2 and "cannot create run folder" in o.err


def test_second_process_on_the_same_run_folder_is_refused(tmp_path, prompts, capsys):
    from fvbench.runfiles import RunLock

    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        rc, o = _run(["--suite", str(prompts), "--presets", "tiny-dit", "--out", str(out)], capsys)
    assert rc == 2 and "another fvbench process" in o.err


NASTY = ["../../escape", "/etc/passwd", "-rf", "a\x00b", "tab\there\nnewline", "x" * 10_000, "emoji 🎬🔥 cat",
         "\u202eright-to-left\u200f mark", "caf\u00e9", "cafe\u0301", "<script>alert(1)</script>",
         "\"><img src=x onerror=alert(1)>", "it's; DROP TABLE units; --", "_p-fake-0", ".hidden", "a/b\\c"]


def test_hostile_prompts_round_trip_and_stay_inside_the_run_folder(tmp_path, capsys):
    import yaml

    f = tmp_path / "nasty.yaml"
    f.write_text(yaml.safe_dump({"prompts": NASTY}, allow_unicode=True))
    out = tmp_path / "run"
    rc, o = _run(["--suite", str(f), "--presets", "tiny-dit", "--stage1-nfe", "1", "--out", str(out)], capsys)
    assert rc == 0, o.err
    df = load_results(out)
    assert sorted(df.prompt) == sorted(NASTY)  # exact round trip, NUL, quotes and all
    names = {Path(p).name for p in df.s1_video_path}
    assert len(names) == len(NASTY)  # no collisions (cafe + combining accent vs cafe with precomposed accent)
    root = out.resolve()
    for dirpath, _, files in os.walk(tmp_path):
        for name in files:
            p = Path(dirpath, name).resolve()
            assert p == f.resolve() or str(p).startswith(str(root) + os.sep), p
    assert set(df.loc[df.prompt == "emoji 🎬🔥 cat", "vbench_name"]) == {1}
    assert set(df.loc[df.prompt == "../../escape", "vbench_name"]) == {0}


def test_export(tmp_path, prompts, capsys):
    out = tmp_path / "run"
    assert _run(["--suite", str(prompts), "--presets", "tiny-dit", "--stage1-nfe", "1", "--out", str(out)], capsys)[0] == 0
    assert main(["export", str(out), "--format", "csv", "--out", str(tmp_path / "r.csv")]) == 0
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "r.csv")) == 2
    assert main(["export", str(out), "--out", str(tmp_path / "r.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "r.parquet")) == 2


def test_ray_executor_without_ray_says_how_to_install(tmp_path, prompts, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    rc = main(["run", "--suite", str(prompts), "--presets", "tiny-dit", "--executor", "ray", "--out", str(tmp_path / "r")])
    assert rc == 2 and "pip install 'fvbench[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_default_run_is_the_trained_shapesworld_pair_and_says_what_it_understands(capsys):
    """With nothing configured: sw-flashvideo-s + sw-dit-s + sw-dit-p4-s, 2 prompts x 1 sample, the suite's exact metrics first."""
    rc, o = _run(["--suite", "shapesworld", "--nfe-sweep", "--dry-run"], capsys)
    assert rc == 0, o.err
    assert "preset sw-flashvideo-s: 16 configuration(s)" in o.out and "preset sw-dit-s: 4 configuration(s)" in o.out
    assert "preset sw-dit-p4-s: 4 configuration(s)" in o.out
    assert "the first 2 of its 18 prompts (--limit 2), 1 sample(s) per prompt" in o.out
    assert "metrics per video: sw_all_three, sw_colour" in o.out
    assert "sw-flashvideo-s, sw-dit-s, sw-dit-p4-s understand only ShapesWorld prompts" in o.out
    assert "random weights" not in o.out
    rc, o = _run(["--suite", "shapesworld", "--sizes", "xl", "--dry-run"], capsys)
    assert rc == 2 and "known sizes: m, s" in o.err
