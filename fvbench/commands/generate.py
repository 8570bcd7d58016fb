"""``fvbench generate`` (one prompt through one preset, mp4 + JSON) and ``fvbench presets``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fvbench.errors import FvbenchError
from fvbench.video import video_sha256


def parse_overrides(items: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``stage2.nfe=8`` -> {"stage2": {"nfe": 8}}; values are parsed as YAML scalars."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        stage, dot, field = key.partition(".")
        if not sep or not dot or not stage or not field:
            raise FvbenchError(f"--set expects STAGE.FIELD=VALUE (e.g. stage2.nfe=8), got {item!r}")
        out.setdefault(stage, {})[field] = yaml.safe_load(value)
    return out


@click.command()
@click.option("--preset", required=True, help="Preset name (see `fvbench presets`).")
@click.option("--prompt", required=True, help="Text prompt.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Final video (mp4); the stage-I preview and a JSON of timings go beside it.")
@click.option("--stage1-nfe", type=int, help="Override stage I NFE.")
@click.option("--stage2-nfe", type=int, help="Override stage II NFE (cascades).")
@click.option("--set", "sets", multiple=True, metavar="STAGE.FIELD=VALUE", help="Override any stage field.")
@click.option("--frames", type=int, help="Override the frame count (4k+1, odd latent count).")
@click.option("--weights", type=click.Path(file_okay=False, path_type=Path), help="Folder with the preset's weights.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--allow-large", is_flag=True,
              help="Lift the ceilings on NFE, frames and height/width on purpose (also FVBENCH_ALLOW_LARGE=1).")
def generate(preset: str, prompt: str, seed: int, out: Path, stage1_nfe: int | None, stage2_nfe: int | None,
             sets: tuple[str, ...], frames: int | None, weights: Path | None, device: str, allow_large: bool) -> None:
    """Generate one video and write OUT (mp4), OUT's stage previews and OUT.json (timings, NFE, parameters)."""
    from fvbench.generation.generator import Generator
    from fvbench.generation.presets import get_preset, lift_ceilings
    from fvbench.provenance import provenance
    from fvbench.video import write_mp4

    if allow_large:
        lift_ceilings()
    p = get_preset(preset)
    overrides = parse_overrides(sets)
    names = [s.name for s in p.stages]
    for idx, nfe in ((0, stage1_nfe), (1, stage2_nfe)):
        if nfe is not None:
            if idx >= len(names):
                raise FvbenchError(f"preset {preset!r} has no stage {idx + 1}")
            overrides.setdefault(names[idx], {})["nfe"] = nfe
    p = p.with_overrides(overrides, frames)
    out = out.with_suffix(".mp4") if out.suffix != ".mp4" else out
    if not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    gen = Generator.from_preset(p, weights, device)
    stage_files: list[Path] = []

    def on_stage_end(i: int, so, t: float) -> None:
        last = i == len(p.stages) - 1
        path = out if last else out.with_name(f"{out.stem}.{so.name}.mp4")
        if not so.video.shape[0]:  # a stage that does not decode (Wan 2.2's high-noise expert): no file
            stage_files.append(None)
            click.echo(f"{so.name}: latents ready after {t:.2f} s wall ({device}), not decoded")
            return
        write_mp4(so.video, path)
        stage_files.append(path)
        click.echo(f"{so.name}: {tuple(so.video.shape)} ready after {t:.2f} s wall ({device}) -> {path}")

    result = gen.generate(prompt, seed, on_stage_end)
    record = {
        "preset": p.name, "prompt": prompt, "seed": seed, "frames": p.frames,
        "text_encode_seconds": result.text_seconds,
        "parameters": gen.components.parameter_counts(),
        "stages": [
            {"name": so.name, "height": cfg.height, "width": cfg.width, "solver": cfg.solver,
             "nfe_configured": cfg.nfe, "nfe_executed": so.nfe, "transformer_batch_rows": so.rows, "cfg": cfg.cfg,
             "seconds": so.seconds, "stage_seconds": so.total_seconds, "ready_after_seconds": t,
             "peak_memory_bytes": so.peak_memory_bytes, "peak_memory_kind": so.memory_kind,
             "peak_memory_scope": so.memory_scope, "video_sha256": video_sha256(so.video), "file": str(f) if f else None}
            for so, cfg, t, f in zip(result.stages, p.stages, result.ready_at, stage_files)
        ],
        "total_seconds": result.ready_at[-1],
        "provenance": provenance(device),
    }
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    click.echo(f"total {result.ready_at[-1]:.2f} s wall for 1 video on {device} (text encode + all stages, 1 run); "
               f"timings -> {json_path}")


@click.command()
def presets() -> None:
    """List the generator presets under baselines/."""
    from fvbench.generation.presets import all_presets
    from fvbench.textsafe import printable

    for name, p in all_presets().items():
        stages = " -> ".join(f"{s.name} {s.height}x{s.width} {s.solver} {s.nfe} NFE" for s in p.stages)
        where = "built in code" if p.builtin else f"weights: {p.weights_dir()}"
        label = " [COST-ONLY PROXY]" if p.cost_only else ""
        label += f" [as released: {p.release.split(' ')[0]}]" if p.release and not p.cost_only else ""
        click.echo(printable(f"{name:28s} {p.family:12s} {stages}  [{where}]{label}"))
