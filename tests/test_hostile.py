"""Hostile files: strict YAML (unknown keys, size, depth), symlinks in run folders, SQL metacharacters."""

import os
from pathlib import Path

import pytest

from fvbench.cli import main
from fvbench.dataio import load_data
from fvbench.errors import FvbenchError


def _home(tmp_path, monkeypatch, preset_yaml: str) -> None:
    """A project root whose baselines/ holds one preset file (suites/ and reports/ copied from the real one)."""
    root = tmp_path / "home"
    (root / "baselines").mkdir(parents=True)
    (root / "baselines" / "x.yaml").write_text(preset_yaml)
    real = Path(__file__).resolve().parents[1]
    os.symlink(real / "suites", root / "suites")
    monkeypatch.setenv("FVBENCH_HOME", str(root))
    from fvbench.generation import presets

    presets._all_presets.cache_clear()


def test_unknown_keys_in_presets_are_errors(tmp_path, monkeypatch, capsys):
    tiny = (Path(__file__).resolve().parents[1] / "baselines" / "tiny.yaml").read_text()
    _home(tmp_path, monkeypatch, tiny.replace("    family: cascade\n", "    family: cascade\n    famliy: typo\n", 1))
    assert main(["presets"]) == 2
    assert "unknown key(s) ['famliy']" in capsys.readouterr().err
    _home(tmp_path / "2", monkeypatch, tiny.replace("nfe: 4, cfg: 8.0", "nfe: 4, cfgg: 8.0", 1))
    assert main(["presets"]) == 2
    assert "unknown key(s) ['cfgg']" in capsys.readouterr().err
    from fvbench.generation import presets

    monkeypatch.delenv("FVBENCH_HOME")
    presets._all_presets.cache_clear()


def test_oversized_and_deeply_nested_files_are_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("prompts: [" + ", ".join(["'x'"] * 1_000_000) + "]")
    with pytest.raises(FvbenchError, match="over the"):
        load_data(big)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 100 + "]" * 100)
    with pytest.raises(FvbenchError, match="nested deeper"):
        load_data(deep)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x]\nb: &b [*a, *a]\nc: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(FvbenchError, match="not valid YAML"):  # safe loader: no Python tags
        load_data(bomb)


def test_a_symlink_in_the_run_folder_cannot_redirect_writes(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\n")
    run = tmp_path / "run"
    args = ["run", "--suite", str(prompts), "--presets", "tiny-dit", "--stage1-nfe", "1", "--metrics", "none"]
    assert main([*args, "--save-videos", "none", "--out", str(run)]) == 0  # a run folder (store, no videos)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "videos").mkdir()
    os.symlink(elsewhere, run / "videos" / "tiny-dit_s1-2")  # a symlink below the top: the unit fails
    args[args.index("1")] = "2"
    rc = main([*args, "--out", str(run)])
    assert list(elsewhere.iterdir()) == []
    from fvbench import load_results

    df = load_results(run)
    failed = df[df.status == "failed"]
    assert rc == 3 and len(failed) == 1  # 3: a video failed
    assert "symlink" in failed.error.iloc[0]
    (run / "videos" / "tiny-dit_s1-2").unlink()
    (run / "videos").rmdir()
    os.symlink(elsewhere, run / "videos")  # at the top: the whole run is refused before any work
    capsys.readouterr()
    assert main([*args, "--out", str(run)]) == 2
    assert "symlink" in capsys.readouterr().err and list(elsewhere.iterdir()) == []
    link_run = tmp_path / "linked-run"
    os.symlink(elsewhere, link_run)
    assert main(["run", "--suite", str(prompts), "--presets", "tiny-dit", "--out", str(link_run)]) == 2
    assert "symlink" in capsys.readouterr().err and list(elsewhere.iterdir()) == []


def test_safe_path_tolerates_workers_creating_the_same_folder_at_once(tmp_path):
    """Two Ray actors once failed with FileExistsError creating RUN/previews together (check-then-mkdir race)."""
    import threading

    from fvbench.runfiles import safe_path

    for round_ in range(20):
        root = tmp_path / f"r{round_}"
        root.mkdir()
        barrier, errors = threading.Barrier(8), []

        def make(i: int) -> None:
            barrier.wait()
            try:
                safe_path(root, "previews", "cfg", f"{i}.mp4")
            except Exception as e:  # noqa: BLE001 - any error is the failure under test
                errors.append(e)

        threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and (root / "previews" / "cfg").is_dir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "r0" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FvbenchError, match="symlink"):
        safe_path(tmp_path / "r0", "link", "x.mp4")
