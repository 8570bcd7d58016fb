"""``fvbench convert-flashvideo``: FlashVideo's SAT checkpoints -> the diffusers folders of the flashvideo preset."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("convert-flashvideo")
@click.option("--stage1", type=click.Path(dir_okay=False, path_type=Path),
              help="FlashVideo stage1.pt (CogVideoX-5B shape; its LoRA is merged).")
@click.option("--stage2", type=click.Path(dir_okay=False, path_type=Path), help="FlashVideo stage2.pt.")
@click.option("--vae", type=click.Path(dir_okay=False, path_type=Path), help="FlashVideo 3d-vae.pt.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write stage1/, stage2/, vae/ into (the flashvideo preset's weights folder).")
@click.option("--like", default="flashvideo", show_default=True,
              help="Two-stage preset whose stage1/stage2/vae component configs describe the checkpoints.")
@click.option("--lora-alpha", default=1.0, show_default=True, type=float,
              help="SAT LoRA alpha: merged W = W0 + B @ A * alpha / r (SAT's default alpha is 1).")
@click.option("--lora-dtype", type=click.Choice(["checkpoint", "float32"]), default="checkpoint", show_default=True,
              help="dtype of merged LoRA weights: the checkpoint's (as the release, which runs bf16, merges) or "
                   "float32 (as SAT merges in a float32 model, e.g. the release fixtures' reference run).")
@click.option("--overwrite", is_flag=True, help="Replace existing stage1/, stage2/ or vae/ folders in --out.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Allow full unpickling when weights_only loading refuses a file. Unpickling runs code chosen by "
                   "the file's author: use only for files from a source you trust.")
def convert_flashvideo(stage1: Path | None, stage2: Path | None, vae: Path | None, out: Path, like: str,
                       lora_alpha: float, lora_dtype: str, overwrite: bool, trust_checkpoint: bool) -> None:
    """Convert FlashVideo's SAT checkpoints (stage1.pt, stage2.pt, 3d-vae.pt) into diffusers-format folders."""
    import torch

    from fvbench.generation.models.sat import convert_flashvideo as convert

    convert(stage1, stage2, vae, out, trust_checkpoint, like=like, lora_alpha=lora_alpha,
            lora_dtype=torch.float32 if lora_dtype == "float32" else None, overwrite=overwrite, log=click.echo)
    click.echo(f"next: copy text_encoder/ and tokenizer/ (T5-v1.1-XXL) from a CogVideoX diffusers folder, e.g. "
               f"CogVideoX-2b, into {out}; then run: fvbench generate --preset {like} --weights {out} "
               f"--prompt '...' --out video.mp4")
