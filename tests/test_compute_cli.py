"""`fvbench flops` and `fvbench bench`: output, JSON, errors; the bench on a tiny preset."""

import json

import pytest

from fvbench.cli import main
from fvbench.compute.bench import bench_stage, gemm_throughput
from fvbench.compute.flops import cfg_batch, transformer_forward_flops
from fvbench.generation.presets import get_preset


def test_flops_table_and_json(capsys):
    assert main(["flops", "--preset", "cogvideox-2b", "--resolution", "1072x1920"]) == 0
    out = capsys.readouterr().out
    assert "5,611.92" in out  # 2 x 2805.96 TFLOP: one CFG forward at batch 2
    assert "1,693,783,872" in out and "90.1%" in out
    assert main(["flops", "--preset", "flashvideo", "--nfe", "5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    stage2 = [r for r in data["rows"] if r["stage"].startswith("stage2") and r["component"].startswith("transformer")]
    assert stage2[0]["forwards"] == 5
    assert data["total"]["stages"]["stage2"]["denoise"] / 1e15 == pytest.approx(28.1, rel=0.01)


def test_compare_reproduces_the_paper_table(capsys):
    assert main(["flops", "--compare", "flashvideo-1080p", "--json", "--gpu", "A100", "--utilization", "0.5"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["preset"] + "/" + r["stage"]: r for r in data["rows"]}
    single = rows["cogvideox-5b-1080p/all"]
    assert single["paper_time_ratio"] == pytest.approx(2150 / 102.3)
    assert single["flop_ratio"] == pytest.approx(21.6, rel=0.02)
    assert single["projected_seconds"] == pytest.approx(single["model_flops"] / (312e12 * 0.5))
    assert rows["flashvideo/stage1"]["model_flops"] / 1e15 == pytest.approx(8.3, rel=0.01)


@pytest.mark.parametrize("args,message", [
    (["--preset", "nope"], "unknown preset"),
    (["--preset", "cogvideox-2b", "--resolution", "1080x1920"], "not divisible by 16"),
    (["--preset", "cogvideox-2b", "--nfe", "0"], "NFE must be positive"),
    (["--preset", "cogvideox-2b", "--resolution", "big"], "expects HxW"),
    (["--compare", "nope"], "unknown comparison"),
    (["--compare", "flashvideo-1080p", "--gpu", "TPU"], "unknown GPU"),
])
def test_flops_bad_input(capsys, args, message):
    assert main(["flops", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_bench_stage_on_a_tiny_preset():
    gemm, timing = gemm_throughput(n=256, repeats=2)
    assert gemm > 0 and timing.min <= timing.median
    p = get_preset("tiny-flashvideo")
    r = bench_stage(p, 1, repeats=2)
    assert r.flops == transformer_forward_flops(p, p.stages[1], cfg_batch(p.stages[1])).flops
    assert r.batch == 2 and r.achieved > 0 and r.timing.repeats == 2


def test_compare_families_counts_each_real_preset_at_one_size(capsys):
    from fvbench.compute.compare import family_presets
    from fvbench.compute.flops import preset_flops

    # at CogVideoX's native size and length (480x720, 49 frames = 6.125 s at 8 fps) its row is its own preset's count
    assert main(["flops", "--compare", "--resolution", "480x720", "--seconds", "6.125", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["preset"]: r for r in data["rows"]}
    assert set(rows) | {n for r in rows.values() for n in r["same_as"]} == set(family_presets())
    five = rows["cogvideox-5b"]
    assert five["native"] and five["frames"] == 49 and "cogvideox-5b-1080p" in five["same_as"]
    assert five["total_flops"] == preset_flops(get_preset("cogvideox-5b"))["total"]
    assert five["projected_seconds"]["A100"] == pytest.approx(five["total_flops"] / (312e12 * 0.4))
    # FlashVideo keeps its stage ratio: stage I scaled with the output
    fv = rows["flashvideo"]
    assert fv["height"] == 480 and fv["stages"][0].startswith("112x") and not fv["native"]


def test_compare_families_table_and_bad_input(capsys):
    # the size of the test above: its counts are cached, so the table costs no second count
    assert main(["flops", "--compare", "--resolution", "480x720", "--seconds", "6.125"]) == 0
    out = capsys.readouterr().out
    assert "~480x720" in out and "PFLOP = 1e15" in out and "A100 s" in out and "wan2.1-t2v-14b" in out
    assert main(["flops", "--compare", "--seconds", "0"]) == 2
    assert "--seconds must be positive" in capsys.readouterr().err


def test_bench_denoise_times_any_pipeline_through_its_generator():
    from fvbench.compute.bench import bench_denoise

    p = get_preset("tiny-flashvideo")
    r = bench_denoise(p, 1, repeats=2, nfe=3)  # stage II after an untimed stage I
    fwd = transformer_forward_flops(p, p.stages[1], cfg_batch(p.stages[1]))
    assert r.flops == 3 * fwd.flops and r.timing.repeats == 2 and r.achieved > 0
