"""``fvbench shapesworld``: train (and list) the small ShapesWorld models that ship with the package."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def shapesworld() -> None:
    """ShapesWorld: a procedural video world with exact metrics and small trained cascades."""


@shapesworld.command("models")
def models() -> None:
    """List the trainable models, their recipe and where their shipped weights are."""
    import json

    from fvbench.shapesworld.train import SPECS, shipped_weights

    for spec in SPECS.values():
        folder = shipped_weights(spec.name)
        state = "not shipped"
        if (folder / "config.json").is_file():
            record = json.loads((folder / "training.json").read_text(encoding="utf-8"))
            state = (f"shipped, trained {record['steps_done']}/{record['spec']['steps']} steps "
                     f"in {record['train_seconds']:.0f} s on {record['threads']} thread(s)")
        click.echo(f"{spec.name:10s} {spec.kind:7s} steps {spec.steps:5d} batch {spec.batch_size:3d} "
                   f"{spec.resolution}x{spec.resolution}  {state}: {folder}")


@shapesworld.command("train")
@click.argument("name")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for weights, checkpoint and training.json (default: RUNS/shapesworld/NAME). "
                   "An existing checkpoint there is resumed.")
@click.option("--seed", default=0, show_default=True, type=int, help="Training seed (data and initialisation).")
@click.option("--threads", default=1, show_default=True, type=int, help="torch CPU threads.")
@click.option("--max-steps", type=int, help="Stop after this many more steps (resume later from the checkpoint).")
def train(name: str, out: Path | None, seed: int, threads: int, max_steps: int | None) -> None:
    """Train model NAME (see `fvbench shapesworld models`) from scratch, or resume it."""
    from fvbench.errors import FvbenchError
    from fvbench.paths import default_runs_dir
    from fvbench.shapesworld.train import get_spec
    from fvbench.shapesworld.train import train as run_training

    spec = get_spec(name)
    if threads <= 0:
        raise FvbenchError(f"--threads must be positive, got {threads}")
    if max_steps is not None and max_steps <= 0:
        raise FvbenchError(f"--max-steps must be positive, got {max_steps}")
    folder = out or default_runs_dir() / "shapesworld" / name
    run_training(spec, folder, seed=seed, max_steps=max_steps, threads=threads, log=click.echo)
    click.echo(f"weights, checkpoint and training.json in {folder}")
