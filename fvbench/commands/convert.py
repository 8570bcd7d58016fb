"""``fvbench convert-flashvideo``: FlashVideo's SAT checkpoints -> diffusers-format folders for the flashvideo preset."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("convert-flashvideo")
@click.option("--stage1", type=click.Path(dir_okay=False, path_type=Path), help="FlashVideo stage1.pt (LoRA merged).")
@click.option("--stage2", type=click.Path(dir_okay=False, path_type=Path), help="FlashVideo stage2.pt.")
@click.option("--vae", type=click.Path(dir_okay=False, path_type=Path), help="3d-vae.pt.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write stage1/, stage2/, vae/ into (the flashvideo preset's weights folder).")
@click.option("--like", "like", default="flashvideo", show_default=True,
              help="Preset whose stage1/stage2/vae component configs describe the checkpoints' architecture.")
@click.option("--lora-alpha", default=1.0, show_default=True, type=float,
              help="SAT LoRA alpha (scaling = alpha / r; SAT's default is 1).")
@click.option("--trust-checkpoint", is_flag=True,
              help="Allow full unpickling (runs code from the file!) when weights_only loading fails.")
def convert_flashvideo(stage1: Path | None, stage2: Path | None, vae: Path | None, out: Path, like: str,
                       lora_alpha: float, trust_checkpoint: bool) -> None:
    """Convert FlashVideo's SAT checkpoints into the diffusers-format folders fvbench loads."""
    from fvbench.errors import FvbenchError
    from fvbench.generation.models.sat import convert_flashvideo as convert
    from fvbench.generation.presets import get_preset

    if not any((stage1, stage2, vae)):
        raise FvbenchError("give at least one of --stage1, --stage2, --vae")
    preset = get_preset(like)
    roles = {s.name: s.transformer for s in preset.stages}
    if not {"stage1", "stage2"} <= set(roles):
        raise FvbenchError(f"--like {like}: needs a two-stage preset with stages stage1 and stage2")
    configs = {"stage1": preset.components[roles["stage1"]].config, "stage2": preset.components[roles["stage2"]].config,
               "vae": preset.components["vae"].config}
    for folder in convert(stage1, stage2, vae, out, configs, trust_checkpoint, lora_alpha):
        click.echo(f"wrote {folder}")
    click.echo(f"now copy text_encoder/ and tokenizer/ from a CogVideoX diffusers folder into {out} "
               f"(T5-v1.1-XXL), then: fvbench generate --preset flashvideo --weights {out} ...")
