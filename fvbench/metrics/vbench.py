"""VBench, run out of process: VBench pins transformers 4.33, numpy<2 and detectron2, which cannot live beside this
stack, so fvbench drives VBench's Python API in an interpreter the user prepared (``--vbench-python``).

Per configuration: the final videos are linked into a FRESH folder under VBench's standard names ``{prompt}-{i}.mp4``
(stale files would be scored too), a small driver calls
``VBench(device, full_info, output).evaluate(videos_path, name, dimension_list=..., mode='vbench_standard')``, and
fvbench reads ``{output}/{name}_eval_results.json``. The exit code is never trusted alone: the JSON must exist and hold
every requested dimension. Quality, Semantic and Total follow VBench's official normalisation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fvbench.errors import FvbenchError

QUALITY = ("subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
           "aesthetic_quality", "imaging_quality", "dynamic_degree")
SEMANTIC = ("object_class", "multiple_objects", "human_action", "color", "spatial_relationship", "scene",
            "appearance_style", "temporal_style", "overall_consistency")
# (min, max) of VBench's normalisation; every other dimension is (0, 1). Weight 1 except dynamic_degree 0.5.
NORM_RANGE = {"subject_consistency": (0.1462, 1.0), "background_consistency": (0.2615, 1.0),
              "temporal_flickering": (0.6293, 1.0), "motion_smoothness": (0.706, 0.9975), "scene": (0.0, 0.8222),
              "appearance_style": (0.0009, 0.2855), "temporal_style": (0.0, 0.364), "overall_consistency": (0.0, 0.364)}
WEIGHTS = {"dynamic_degree": 0.5}

DRIVER = """
import json, sys
from vbench import VBench
req = json.load(open(sys.argv[1]))
VBench(req["device"], req["full_info"], req["output_path"]).evaluate(
    videos_path=req["videos_path"], name=req["name"], prompt_list=[], dimension_list=req["dimensions"],
    local=req["local"], read_frame=False, mode="vbench_standard")
"""


def normalized(dimension: str, score: float) -> float:
    """VBench's normalised, weighted dimension score: (score - min) / (max - min) * weight."""
    lo, hi = NORM_RANGE.get(dimension, (0.0, 1.0))
    return (score - lo) / (hi - lo) * WEIGHTS.get(dimension, 1.0)


def total_scores(per_dimension: dict[str, float]) -> dict[str, float | None]:
    """Quality, Semantic and Total (= (4 Quality + Semantic) / 5); None where dimensions are missing."""
    def group(dims):
        if not all(d in per_dimension for d in dims):
            return None
        return sum(normalized(d, per_dimension[d]) for d in dims) / sum(WEIGHTS.get(d, 1.0) for d in dims)

    quality, semantic = group(QUALITY), group(SEMANTIC)
    total = (4 * quality + semantic) / 5 if quality is not None and semantic is not None else None
    return {"quality": quality, "semantic": semantic, "total": total}


@dataclass(frozen=True)
class VBenchResult:
    per_dimension: dict[str, float]
    per_video: dict[str, dict[str, float]]  # dimension -> file name -> value
    totals: dict[str, float | None]


def stage_videos(videos: list[tuple[str, Path]], dest: Path) -> Path:
    """Link (or copy) ``(vbench_file_name, path)`` pairs into a fresh folder ``dest``; refuses an existing one."""
    if dest.exists():
        raise FvbenchError(f"{dest} exists: VBench scores every file in its folder, so fvbench uses a fresh one")
    dest.mkdir(parents=True)
    for name, src in videos:
        try:
            os.link(src, dest / name)
        except OSError:
            shutil.copyfile(src, dest / name)
    return dest


def run_vbench(python: str, videos_path: Path, output_path: Path, name: str, dimensions: list[str],
               full_info: Path, device: str = "cuda", timeout: float | None = None) -> VBenchResult:
    """Run VBench's evaluate() in another interpreter and read its results JSON."""
    if not shutil.which(python) and not Path(python).is_file():
        raise FvbenchError(f"--vbench-python {python!r} is not an executable (an environment with VBench and its weights)")
    cache = os.environ.get("VBENCH_CACHE_DIR")
    if cache is not None and not Path(cache).is_dir():
        raise FvbenchError(f"VBENCH_CACHE_DIR={cache} does not exist: VBench would try to download its weights")
    output_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        driver, request = Path(tmp) / "driver.py", Path(tmp) / "request.json"
        driver.write_text(DRIVER)
        request.write_text(json.dumps({"device": device, "full_info": str(full_info), "output_path": str(output_path),
                                       "videos_path": str(videos_path), "name": name, "dimensions": dimensions,
                                       "local": cache is not None}))
        proc = subprocess.run([python, str(driver), str(request)], capture_output=True, text=True, timeout=timeout)
    results = output_path / f"{name}_eval_results.json"
    if not results.is_file():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise FvbenchError(f"VBench wrote no {results.name} (exit code {proc.returncode}; last line: {tail[0][:200]})")
    return parse_results(results, dimensions)


def parse_results(path: Path, dimensions: list[str]) -> VBenchResult:
    """Read ``{name}_eval_results.json``: {dimension: [aggregate, [{video_path, video_results}, ...]]}."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FvbenchError(f"{path} is not valid JSON: {e}") from None
    missing = [d for d in dimensions if d not in data]
    if missing:
        raise FvbenchError(f"{path} lacks dimension(s) {missing}: VBench failed for them (its exit code says nothing)")
    per_dim: dict[str, float] = {}
    per_video: dict[str, dict[str, float]] = {}
    for d in dimensions:
        agg, videos = data[d][0], data[d][1]
        per_dim[d] = float(agg)
        per_video[d] = {Path(v["video_path"]).name: float(v["video_results"]) for v in videos
                        if isinstance(v, dict) and "video_path" in v and "video_results" in v}
    return VBenchResult(per_dim, per_video, total_scores(per_dim))
