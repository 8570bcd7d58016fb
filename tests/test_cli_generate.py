"""`fvbench generate` and `fvbench presets` from the command line: outputs, and one-line errors for bad input."""

import json

import pytest

from fvbench.cli import main
from fvbench.video import read_mp4


def test_generate_writes_playable_mp4s_and_timings(tmp_path, capsys):
    out = tmp_path / "v.mp4"
    assert main(["generate", "--preset", "tiny-flashvideo", "--prompt", "a red cat", "--out", str(out),
                 "--stage2-nfe", "3"]) == 0
    final, preview = read_mp4(out), read_mp4(tmp_path / "v.stage1.mp4")
    assert final.shape == (9, 64, 64, 3) and preview.shape == (9, 16, 16, 3)
    rec = json.loads((tmp_path / "v.json").read_text())
    assert [s["nfe_executed"] for s in rec["stages"]] == [4, 3]
    assert [s["nfe_configured"] for s in rec["stages"]] == [4, 3]
    assert rec["stages"][0]["ready_after_seconds"] < rec["stages"][1]["ready_after_seconds"]
    assert rec["provenance"]["device"] == "cpu" and rec["parameters"]["stage2"] > 0
    assert "stage1" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--preset", "nope"], "unknown preset 'nope'; known:"),
    (["--preset", "tiny-dit", "--stage1-nfe", "0"], "NFE must be positive"),
    (["--preset", "tiny-flashvideo", "--stage2-nfe", "-1"], "NFE must be positive"),
    (["--preset", "tiny-dit", "--set", "stage1.height=40"], "not divisible by 16"),
    (["--preset", "tiny-dit", "--frames", "12"], "frames must be of the form 4k+1"),
    (["--preset", "tiny-dit", "--stage2-nfe", "2"], "has no stage 2"),
    (["--preset", "tiny-dit", "--set", "stage9.nfe=2"], "unknown stage"),
    (["--preset", "flashvideo"], "weights folder"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys, args, message):
    rc = main(["generate", *args, "--prompt", "a", "--out", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_presets_lists_every_family(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("cpu-flashvideo-s", "cpu-dit-s", "flashvideo", "cogvideox-5b", "tiny-flashvideo"):
        assert name in out
