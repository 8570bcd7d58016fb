"""Generating the units of a group: text once, each distinct stage prefix once, then every later variant.

The worker writes the videos (atomically, inside the run folder) and returns one store row per unit; it never
touches the store itself, so any executor can run it and the driver stays the single writer.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from fvbench.compute.flops import preset_flops
from fvbench.executors.base import GroupResult
from fvbench.generation.generator import Components, Generator, StageOutput, load_components
from fvbench.generation.pipelines import make_generator
from fvbench.generation.presets import get_preset
from fvbench.runfiles import safe_path, vbench_file_name
from fvbench.spec import Unit, UnitGroup
from fvbench.video import video_sha256, write_mp4

MetricFn = Callable[[torch.Tensor, Unit], dict[str, tuple[float | None, str | None, str]]]


class GroupWorker:
    """Holds loaded generators (one per base preset) and turns unit groups into rows."""

    def __init__(self, run_dir: Path, provenance: dict[str, Any], suite: tuple[str, str], device: str = "cpu",
                 weights: Path | None = None, save_videos: str = "all", metric_fn: MetricFn | None = None):
        self.run_dir = Path(run_dir)
        self.provenance = provenance
        self.suite_name, self.suite_sha = suite
        self.device = device
        self.weights = weights
        self.save_videos = save_videos
        self.metric_fn = metric_fn
        self._components: dict[str, Components] = {}
        self._flops: dict[str, dict[str, Any]] = {}

    def components(self, base: str) -> Components:
        """Load (once) the components of a base preset."""
        if base not in self._components:
            self._components[base] = load_components(get_preset(base), self.weights, self.device)
        return self._components[base]

    def warmup(self, base: str, unit: Unit) -> float:
        """One discarded generation at 1 NFE per stage, so first-call costs stay out of the stored timings."""
        start = time.perf_counter()
        preset = unit.config.preset.with_overrides({s.name: {"nfe": 1} for s in unit.config.preset.stages})
        make_generator(preset, self.components(base), self.device).generate(unit.prompt.text, unit.seed)
        return time.perf_counter() - start

    def _flops_of(self, unit: Unit) -> dict[str, Any]:
        key = unit.config.config_hash
        if key not in self._flops:
            self._flops[key] = preset_flops(unit.config.preset)
        return self._flops[key]

    def video_paths(self, unit: Unit) -> list[str]:
        """The files (relative to the run folder) this unit's videos will be written to, by the save setting."""
        name, _ = vbench_file_name(unit.prompt.text, unit.sample)
        kinds = {"all": ("previews", "videos"), "previews": ("previews",), "none": ()}[self.save_videos]
        cascade = len(unit.config.preset.stages) > 1
        return [f"{kind}/{unit.config.label}/{name}" for kind in kinds if kind == "videos" or cascade]

    def _save(self, kind: str, unit: Unit, video: torch.Tensor, row: dict[str, Any], stage: int) -> None:
        if self.save_videos == "none" or (kind == "videos" and self.save_videos == "previews"):
            return
        if not video.shape[0]:  # a stage that does not decode its latents (Wan 2.2's high-noise expert)
            return
        name, _ = vbench_file_name(unit.prompt.text, unit.sample)
        path = write_mp4(video, safe_path(self.run_dir, kind, unit.config.label, name))
        row[f"s{stage}_video_path"] = str(path.relative_to(self.run_dir))
        row[f"s{stage}_video_bytes"] = path.stat().st_size  # a rerun checks the file is still there, same size
        if kind == "videos":  # the final video (the last stage's), recorded once for every reader
            row["final_video_path"], row["final_video_bytes"] = row[f"s{stage}_video_path"], row[f"s{stage}_video_bytes"]

    def process(self, group: UnitGroup, skip: set[str]) -> Iterator[GroupResult]:
        """Generate the group's units not in ``skip``, yielding a row as each video is done."""
        todo = [u for u in group.units if u.unit_hash not in skip]
        if not todo:
            return
        comps = self.components(group.base)
        text = None
        text_s = 0.0
        # Caches by key (the generator says what each stage's output and z0 depend on). Units come sorted by their
        # prefix keys, so equal prefixes are adjacent: one entry per stage depth is enough and older ones are dropped.
        out_cache: dict[int, tuple[str, StageOutput]] = {}
        init_cache: dict[int, tuple[str, Generator.FlowInit]] = {}
        for unit in todo:
            start = time.perf_counter()
            try:
                gen = make_generator(unit.config.preset, comps, self.device)
                first_text = text is None
                if first_text:
                    text, text_s = gen.encode_text(unit.prompt.text)
                outputs: list[StageOutput] = []
                keys = gen.stage_keys(unit.prompt.text, unit.seed)
                shared = [False] * len(keys)
                init_shared = [False] * len(keys)
                for i, key in enumerate(keys):
                    previous = outputs[-1] if outputs else None
                    cached = out_cache.get(i)
                    if cached is not None and cached[0] == key.output:
                        outputs.append(cached[1])
                        shared[i] = True
                        continue
                    init = None
                    if key.init is not None:
                        cached_init = init_cache.get(i)
                        init_shared[i] = cached_init is not None and cached_init[0] == key.init
                        if not init_shared[i]:
                            init_cache[i] = (key.init, gen.flow_init(i, unit.seed, previous))
                        init = init_cache[i][1]
                    out = gen.run_stage(i, text, unit.seed, previous, init=init)
                    if i < len(keys) - 1:  # a final video is never a prefix of another unit
                        out_cache[i] = (key.output, out)
                    outputs.append(out)
                wall = time.perf_counter() - start + (text_s if first_text else 0.0)
                row = self._row(unit, outputs, shared, text_s, wall)
                for i, flag in enumerate(init_shared):
                    if i > 0:
                        row[f"s{i + 1}_init_shared"] = int(flag)
                if len(outputs) > 1 and self.save_videos in ("previews", "all"):
                    self._save("previews", unit, outputs[0].video, row, 1)
                self._save("videos", unit, outputs[-1].video, row, len(outputs))
                final = row.get(f"s{len(outputs)}_video_path")
                metrics = (self.metric_fn(outputs[-1].video, unit, self.run_dir / final if final else None)
                           if self.metric_fn else {})
                yield GroupResult(row, metrics)
            except Exception as e:  # one failed unit is recorded and the sweep goes on
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                row = self._base_row(unit)
                row.update(status="failed", error=f"{type(e).__name__}: {first}"[:1000],
                           wall_s=time.perf_counter() - start, finished_at=time.time())
                row["traceback"] = traceback.format_exc(limit=5)
                yield GroupResult({k: v for k, v in row.items() if k != "traceback"}, {})

    def _base_row(self, unit: Unit) -> dict[str, Any]:
        p = unit.config.preset
        name, vbench_ok = vbench_file_name(unit.prompt.text, unit.sample)
        return {
            "unit_hash": unit.unit_hash, "config_hash": unit.config.config_hash, "config": unit.config.label,
            "preset": unit.config.base, "family": p.family, "size": p.size, "frames": p.frames,
            "suite": self.suite_name, "suite_sha256": self.suite_sha, "prompt_id": unit.prompt.id,
            "prompt": unit.prompt.text, "dimensions": json.dumps(list(unit.prompt.dimensions)),
            "sample": unit.sample, "seed": unit.seed, "vbench_name": int(vbench_ok),
            "device": self.provenance["device"], "device_name": self.provenance.get("device_name"),
            "threads": self.provenance.get("torch_threads"), "git": self.provenance.get("git"),
            "versions": json.dumps(self.provenance.get("versions", {}), sort_keys=True), "n_stages": len(p.stages),
            **{f"s{i + 1}_{k}": v for i, s in enumerate(p.stages)
               for k, v in (("name", s.name), ("nfe", s.nfe), ("cfg", s.cfg), ("height", s.height),
                            ("width", s.width), ("solver", s.solver))},
        }

    def _row(self, unit: Unit, outputs: list[StageOutput], shared: list[bool], text_s: float,
             wall: float) -> dict[str, Any]:
        p = unit.config.preset
        flops = self._flops_of(unit)
        params = self.components(unit.config.base).parameter_counts()
        row = self._base_row(unit)
        for i, (out, stage) in enumerate(zip(outputs, p.stages)):
            k = f"s{i + 1}_"
            sf = flops["stages"][stage.name]
            row.update({
                k + "nfe_executed": out.nfe, k + "batch_rows": out.rows,
                k + "upsample_s": out.seconds.get("upsample"), k + "vae_encode_s": out.seconds.get("vae_encode"),
                k + "denoise_s": out.seconds.get("denoise"), k + "vae_decode_s": out.seconds.get("vae_decode"),
                k + "seconds": out.total_seconds, k + "shared": int(shared[i]), k + "flops": sf["total"],
                k + "denoise_flops": sf["denoise"], k + "params": params[stage.transformer],
                k + "peak_mem_bytes": out.peak_memory_bytes, k + "video_sha256": video_sha256(out.video),
            })
        stage_s = [o.total_seconds for o in outputs]
        row.update(
            status="done", error=None, text_encode_s=text_s,
            preview_s=text_s + stage_s[0] if len(outputs) > 1 else None,
            total_s=text_s + sum(stage_s), wall_s=wall, text_flops=flops["text_encode"], flops_total=flops["total"],
            params_total=sum(params.values()), peak_mem_kind=outputs[0].memory_kind, finished_at=time.time(),
            final_video_sha256=row[f"s{len(outputs)}_video_sha256"],
        )
        return row
