"""VBench, run out of process: VBench pins transformers 4.33, numpy<2 and needs detectron2, none of which can live
beside this stack, so fvbench drives VBench's Python API in an interpreter the user prepared (``--vbench-python``).

Per configuration: the final videos are linked into a FRESH folder under VBench's standard names ``{prompt}-{i}.mp4``
(VBench scores every file in the folder, stale ones included); every weight file the requested dimensions load is
checked under $VBENCH_CACHE_DIR (default ~/.cache/vbench, VBench's own rule) before anything starts, because VBench
would otherwise try to download it; a small driver calls ``VBench(device, full_info, output).evaluate(videos_path,
name, dimension_list=..., local=True, mode='vbench_standard')`` with non-loopback network blocked, and fvbench reads
``{output}/{name}_eval_results.json``. The exit code is never trusted alone: the JSON must exist, hold every requested
dimension, and score every staged video whose prompt belongs to that dimension (VBench only warns about missing
files). Quality, Semantic and Total follow VBench's official normalisation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fvbench.errors import FvbenchError, MissingWeightsError, UnknownNameError

QUALITY = ("subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
           "aesthetic_quality", "imaging_quality", "dynamic_degree")
SEMANTIC = ("object_class", "multiple_objects", "human_action", "color", "spatial_relationship", "scene",
            "appearance_style", "temporal_style", "overall_consistency")
DIMENSIONS = QUALITY + SEMANTIC
# (min, max) of VBench's normalisation; every other dimension is (0, 1). Weight 1 except dynamic_degree 0.5.
NORM_RANGE = {"subject_consistency": (0.1462, 1.0), "background_consistency": (0.2615, 1.0),
              "temporal_flickering": (0.6293, 1.0), "motion_smoothness": (0.706, 0.9975), "scene": (0.0, 0.8222),
              "appearance_style": (0.0009, 0.2855), "temporal_style": (0.0, 0.364), "overall_consistency": (0.0, 0.364)}
WEIGHTS = {"dynamic_degree": 0.5}

# Files each dimension loads with local=True, relative to VBENCH_CACHE_DIR, as vbench 0.1.5's
# utils.init_submodules and the dimension modules name them.
_GRIT = ("grit_model/grit_b_densecap_objectdet.pth",)
_VICLIP = ("ViCLIP/ViClip-InternVid-10M-FLT.pth", "ViCLIP/bpe_simple_vocab_16e6.txt.gz")
DIMENSION_FILES: dict[str, tuple[str, ...]] = {
    "subject_consistency": ("dino_model/facebookresearch_dino_main/hubconf.py", "dino_model/dino_vitbase16_pretrain.pth"),
    "background_consistency": ("clip_model/ViT-B-32.pt",),
    "temporal_flickering": (),
    "motion_smoothness": ("amt_model/amt-s.pth",),
    "dynamic_degree": ("raft_model/models/raft-things.pth",),
    "aesthetic_quality": ("clip_model/ViT-L-14.pt", "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth"),
    "imaging_quality": ("pyiqa_model/musiq_spaq_ckpt-358bb6af.pth",),
    "object_class": _GRIT, "multiple_objects": _GRIT, "color": _GRIT, "spatial_relationship": _GRIT,
    "human_action": ("umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth",),
    "scene": ("caption_model/tag2text_swin_14m.pth",),
    "appearance_style": ("clip_model/ViT-B-32.pt",),
    "temporal_style": _VICLIP, "overall_consistency": _VICLIP,
}
# Dimensions that also load the bert-base-uncased tokenizer through transformers (GRiT, Tag2Text): it comes from
# the Hugging Face cache of the VBench environment, which fvbench checks by folder name only.
HF_TOKENIZER_DIMENSIONS = ("object_class", "multiple_objects", "color", "spatial_relationship", "scene")
# Per-video values VBench writes on another scale than its aggregate: imaging_quality's per-video values are MUSIQ's
# 0-100 and only the aggregate is divided by 100 (vbench 0.1.5, imaging_quality.py). fvbench stores per-video values
# on the aggregate's scale (multiplied by this factor) and says so in the stored version.
PER_VIDEO_SCALE = {"imaging_quality": 0.01}

DRIVER = r'''
import json, os, socket, sys

req = json.load(open(sys.argv[1]))
status_path = req.get("status_path")
_connect = socket.socket.connect


def _guarded(self, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and host not in ("127.0.0.1", "::1", "localhost"):
        raise OSError(f"fvbench blocks network access from VBench (tried {address}): a weight is missing")
    return _connect(self, address)


socket.socket.connect = _guarded
version = device = None
try:
    from importlib.metadata import version as _version
    version = _version("vbench")
    device = req["device"]
    if device == "auto":  # decided here: this interpreter's torch is the one that runs VBench
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    from vbench import VBench

    VBench(device, req["full_info"], req["output_path"]).evaluate(
        videos_path=req["videos_path"], name=req["name"], prompt_list=[], dimension_list=req["dimensions"],
        local=True, read_frame=False, mode="vbench_standard")
    status = {"ok": True, "vbench": version, "device": device}
except BaseException as e:
    status = {"ok": False, "vbench": version, "device": device, "error": f"{type(e).__name__}: {e}"}
if status_path:
    with open(status_path, "w") as f:
        json.dump(status, f)
sys.exit(0 if status["ok"] else 1)
'''


def normalized(dimension: str, score: float) -> float:
    """VBench's normalised, weighted dimension score: (score - min) / (max - min) * weight."""
    lo, hi = NORM_RANGE.get(dimension, (0.0, 1.0))
    return (score - lo) / (hi - lo) * WEIGHTS.get(dimension, 1.0)


def total_scores(per_dimension: dict[str, float]) -> dict[str, float | None]:
    """Quality, Semantic and Total (= (4 Quality + Semantic) / 5); None where one of their dimensions is missing
    or has no value (NaN)."""
    def group(dims: tuple[str, ...]) -> float | None:
        if not all(d in per_dimension and per_dimension[d] == per_dimension[d] for d in dims):
            return None
        return sum(normalized(d, per_dimension[d]) for d in dims) / sum(WEIGHTS.get(d, 1.0) for d in dims)

    quality, semantic = group(QUALITY), group(SEMANTIC)
    total = (4 * quality + semantic) / 5 if quality is not None and semantic is not None else None
    return {"quality": quality, "semantic": semantic, "total": total}


def check_dimensions(dimensions: list[str]) -> list[str]:
    """The dimensions, or UnknownNameError for the first that VBench does not have."""
    for d in dimensions:
        if d not in DIMENSIONS:
            raise UnknownNameError("VBench dimension", d, list(DIMENSIONS))
    return list(dict.fromkeys(dimensions))


def cache_dir() -> Path:
    """Where VBench reads its weights: $VBENCH_CACHE_DIR, else ~/.cache/vbench (VBench's own rule)."""
    return Path(os.environ.get("VBENCH_CACHE_DIR") or Path.home() / ".cache" / "vbench").expanduser()


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache the VBench environment would read (same environment variables)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser() / "hub"


def missing_weights(dimensions: list[str], cache: Path | None = None) -> list[str]:
    """Every file the dimensions load that is absent (paths), per vbench 0.1.5's names; empty when all exist."""
    cache = cache or cache_dir()
    needed: dict[str, list[str]] = {}  # file -> the requested dimensions that load it (GRiT serves four)
    for d in check_dimensions(dimensions):
        for f in DIMENSION_FILES[d]:
            needed.setdefault(f, []).append(d)
    out = [f"{cache / f} (for {', '.join(dims)})" for f, dims in needed.items() if not (cache / f).is_file()]
    if any(d in HF_TOKENIZER_DIMENSIONS for d in dimensions):
        bert = hf_hub_cache() / "models--bert-base-uncased"
        if not bert.is_dir():
            out.append(f"{bert} (bert-base-uncased tokenizer in the Hugging Face cache, for GRiT/Tag2Text dimensions)")
    return out


def prompt_dimensions(full_info: Path, prompts: list[str]) -> list[str]:
    """The dimensions VBench_full_info.json lists for any of these prompts, in VBench's order: what VBench's standard
    mode can score for them (a dimension none of them belongs to comes back NaN)."""
    wanted = set(prompts)
    found = {d for e in json.loads(Path(full_info).read_text()) if e.get("prompt_en") in wanted
             for d in e.get("dimension", [])}
    return [d for d in DIMENSIONS if d in found]


@dataclass(frozen=True)
class VBenchResult:
    """One VBench evaluation of one configuration."""

    per_dimension: dict[str, float]  # VBench's aggregate per dimension; NaN where it found none of its videos
    per_video: dict[str, dict[str, float]]  # dimension -> file name -> value, on the aggregate's scale
    totals: dict[str, float | None]  # quality, semantic, total (None unless all their dimensions were scored)
    vbench_version: str | None = None
    protocol: str = "vbench_standard"
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the device the driver ran on

    @property
    def no_value(self) -> list[str]:
        """Dimensions VBench returned NaN for (none of the staged videos belongs to them)."""
        return [d for d, v in self.per_dimension.items() if v != v]

    def metric_version(self, dimension: str) -> str:
        """The version stored with each per-video value: VBench's version, protocol, and any rescaling."""
        scale = PER_VIDEO_SCALE.get(dimension)
        return f"vbench{self.vbench_version or '?'}-{self.protocol}" + (f"-pervideo-x{scale:g}" if scale else "")


def stage_videos(videos: list[tuple[str, Path]], dest: Path) -> Path:
    """Link (or copy) ``(vbench_file_name, path)`` pairs into a fresh folder ``dest``; refuses an existing one."""
    if dest.exists():
        raise FvbenchError(f"{dest} exists: VBench scores every file in its folder, so fvbench uses a fresh one")
    names = [n for n, _ in videos]
    if len(set(names)) != len(names):
        raise FvbenchError("two videos map to the same VBench file name")
    dest.mkdir(parents=True)
    for name, src in videos:
        if Path(name).name != name or not name.endswith(".mp4"):
            raise FvbenchError(f"not a VBench file name: {name!r}")
        try:
            os.link(src, dest / name)
        except OSError:
            shutil.copyfile(src, dest / name)
    return dest


def expected_videos(full_info: Path, names: list[str], dimensions: list[str]) -> dict[str, set[str]]:
    """Per dimension, the staged file names VBench's standard mode must score: ``{prompt}-{i}.mp4``, i = 0..4, for
    the prompts VBench_full_info.json lists under that dimension (the same lookup VBench does)."""
    staged = set(names)
    info = json.loads(Path(full_info).read_text())
    out: dict[str, set[str]] = {d: set() for d in dimensions}
    for entry in info:
        for d in dimensions:
            if d in entry.get("dimension", []):
                out[d] |= {f"{entry['prompt_en']}-{i}.mp4" for i in range(5)} & staged
    return out


def run_vbench(python: str, videos_path: Path, output_path: Path, name: str, dimensions: list[str],
               full_info: Path, device: str = "auto", timeout: float | None = None) -> VBenchResult:
    """Run VBench's evaluate() in another interpreter on a staged folder and read its results JSON.

    Fails before starting when the interpreter or a weight file is missing (MissingWeightsError naming the paths);
    after the run, when the JSON is absent, lacks a requested dimension, or lacks a video it had to score.
    ``device="auto"``: CUDA when the VBench environment's torch sees one, else CPU.
    """
    dimensions = check_dimensions(dimensions)
    if not (shutil.which(python) or Path(python).is_file()):
        raise FvbenchError(f"--vbench-python {python!r} is not an executable (an environment with VBench and its weights)")
    absent = missing_weights(dimensions)
    if absent:
        raise MissingWeightsError(f"VBench weights missing (VBench would try to download them): {'; '.join(absent)}")
    names = sorted(p.name for p in Path(videos_path).iterdir())
    output_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        driver, request, status = Path(tmp) / "driver.py", Path(tmp) / "request.json", Path(tmp) / "status.json"
        driver.write_text(DRIVER)
        request.write_text(json.dumps({"device": device, "full_info": str(full_info), "output_path": str(output_path),
                                       "videos_path": str(videos_path), "name": name, "dimensions": dimensions,
                                       "status_path": str(status)}))
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VBENCH_CACHE_DIR=str(cache_dir()))
        try:
            proc = subprocess.run([python, str(driver), str(request)], capture_output=True, text=True,
                                  timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise FvbenchError(f"VBench did not finish within {timeout} s") from None
        state = json.loads(status.read_text()) if status.is_file() else {}
    results = output_path / f"{name}_eval_results.json"
    if not results.is_file():
        reason = state.get("error") or ((proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"])[0]
        raise FvbenchError(f"VBench wrote no {results.name} (exit code {proc.returncode}; {str(reason)[:300]})")
    result = parse_results(results, dimensions, expected_videos(full_info, names, dimensions))
    return VBenchResult(result.per_dimension, result.per_video, result.totals, state.get("vbench"),
                        extra={"device": state.get("device")})


def parse_results(path: Path, dimensions: list[str], expected: dict[str, set[str]] | None = None) -> VBenchResult:
    """Read ``{name}_eval_results.json``: ``{dimension: [aggregate, [{"video_path", "video_results", ...}, ...]]}``.

    Every requested dimension must be there, and (given ``expected``) every expected file must have a per-video
    value. A NaN aggregate with no per-video values is kept as NaN (VBench found none of that dimension's videos:
    the others stay valid); a NaN beside per-video values is an error. Per-video values are brought to the
    aggregate's scale (:data:`PER_VIDEO_SCALE`).
    """
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FvbenchError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise FvbenchError(f"{path} is not a VBench results object")
    missing = [d for d in dimensions if d not in data]
    if missing:
        raise FvbenchError(f"{path} lacks dimension(s) {missing}: VBench failed for them (its exit code says nothing)")
    per_dim: dict[str, float] = {}
    per_video: dict[str, dict[str, float]] = {}
    for d in dimensions:
        try:
            agg, videos = data[d][0], data[d][1]
            per_dim[d] = float(agg)
            scale = PER_VIDEO_SCALE.get(d, 1.0)
            per_video[d] = {Path(v["video_path"]).name: float(v["video_results"]) * scale for v in videos}
        except (TypeError, KeyError, IndexError, ValueError) as e:
            raise FvbenchError(f"{path}: dimension {d} is not [aggregate, [{{video_path, video_results}}, ...]] "
                               f"({type(e).__name__}: {e})") from None
        if per_dim[d] != per_dim[d] and per_video[d]:  # NaN beside values: not VBench's empty-list NaN
            raise FvbenchError(f"{path}: dimension {d} has a NaN aggregate over {len(per_video[d])} video(s)")
        lost = sorted((expected or {}).get(d, set()) - set(per_video[d]))
        if lost:
            raise FvbenchError(f"{path}: dimension {d} has no value for {len(lost)} staged video(s), e.g. {lost[0]!r}")
    return VBenchResult(per_dim, per_video, total_scores(per_dim))
