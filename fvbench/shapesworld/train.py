"""Training of the ShapesWorld models: stage I (16x16), stage II (16x16 -> 64x64 cross-resolution flow) and the
single-stage 64x64 baselines, on freshly rendered videos every step.

Objective (rectified flow, the generator's convention): x_t = (1 - t) z0 + t x1, velocity target x1 - z0, and the
model sees timestep 1000 (1 - t). For stage I and the single-stage baselines z0 is Gaussian noise and x1 the video
at the model's resolution; for stage II z0 is FlashVideo's degraded input, sqrt(abar_675) * up(low-res) +
sqrt(1 - abar_675) * eps with ``up`` the generator's bilinear upsampling, and x1 the true 64x64 video.
t ~ sigmoid(N(0, 1)); AdamW, warm-up then cosine to 0.1x, gradient clipping 1.0, EMA, joint label dropout (all three
labels zeroed at once = the null label of classifier-free guidance).

A run writes beside its weights: ``config.json`` + ``diffusion_pytorch_model.safetensors`` (EMA weights stored in float16, what
the generator loads) and ``training.json`` (spec, seed, steps, wall time, threads, training curve). ``checkpoint.pt``
(model, EMA, optimiser, step, curve) is written every ``checkpoint_every`` steps; a run restarted on the same folder
resumes from it, and the batch of step n depends only on (seed, n), so a resumed run sees the same data.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from fvbench.errors import FvbenchError, UnknownNameError
from fvbench.generation.samplers.flow import degrade
from fvbench.shapesworld.models import ShapesWorldUNet, multi_hot
from fvbench.shapesworld.world import HIGH_RES, LOW_RES, batch, training_attributes, upsample

CHECKPOINT = "checkpoint.pt"
RECORD = "training.json"


@dataclass(frozen=True)
class TrainSpec:
    """One model's training recipe. ``kind``: stage1 (16x16 from noise), stage2 (64x64 from the degraded
    upsampled 16x16), single (64x64 from noise)."""

    name: str
    kind: str
    network: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    final_lr_fraction: float = 0.1
    ema_max: float = 0.998
    label_dropout: float = 0.1
    noise_step: int = 675
    grad_clip: float = 1.0
    checkpoint_every: int = 50
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.kind not in ("stage1", "stage2", "single"):
            raise FvbenchError(f"training kind must be stage1, stage2 or single, got {self.kind!r}")
        if self.steps <= 0 or self.batch_size <= 0:
            raise FvbenchError("steps and batch size must be positive")

    @property
    def resolution(self) -> int:
        return LOW_RES if self.kind == "stage1" else HIGH_RES


SMALL = {"channels": [32, 64, 128], "emb_dim": 128}
MEDIUM = {"channels": [48, 96, 192], "emb_dim": 192}
STAGE2 = {"channels": [32, 64, 128], "emb_dim": 128, "patch": 4, "stem_channels": 16, "prediction": "sample"}
SMALL_P4 = {"channels": [32, 64, 128], "emb_dim": 128, "patch": 4, "stem_channels": 16}

SPECS: dict[str, TrainSpec] = {s.name: s for s in [
    TrainSpec("stage1-s", "stage1", SMALL, steps=1000),
    TrainSpec("stage1-m", "stage1", MEDIUM, steps=600),
    TrainSpec("stage2-s", "stage2", STAGE2, steps=1500, batch_size=8, label_dropout=0.0),
    TrainSpec("single-s", "single", SMALL, steps=300, batch_size=8),
    TrainSpec("single-p4-s", "single", SMALL_P4, steps=700),
]}


def shipped_weights(name: str) -> Path:
    """The folder of a model's weights inside the package (what the baselines/shapesworld.yaml presets load)."""
    return Path(__file__).resolve().parent / "weights" / name


def get_spec(name: str) -> TrainSpec:
    if name not in SPECS:
        raise UnknownNameError("ShapesWorld model", name, list(SPECS))
    return SPECS[name]


def learning_rate(spec: TrainSpec, step: int) -> float:
    """Linear warm-up, then cosine from lr to lr * final_lr_fraction at the last step."""
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    progress = min(1.0, (step - spec.warmup) / max(1, spec.steps - spec.warmup))
    return spec.lr * (spec.final_lr_fraction + (1 - spec.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))


def ema_decay(spec: TrainSpec, step: int) -> float:
    """min(ema_max, (1 + n) / (10 + n)): short memory early, so the EMA suits short runs."""
    return min(spec.ema_max, (1 + step) / (10 + step))


def training_batch(spec: TrainSpec, seed: int, step: int) -> dict[str, torch.Tensor]:
    """z0, x1, t, label vectors of step ``step``: a function of (spec, seed, step) only."""
    rng = np.random.default_rng([seed, step])
    pool = training_attributes()
    picks = rng.integers(0, len(pool), spec.batch_size)
    attrs = [pool[i] for i in picks]
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, spec.batch_size)]
    hr, lr, ids = batch(attrs, seeds)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    labels = multi_hot(ids + 1)[:, 0]
    drop = torch.rand(spec.batch_size, generator=gen) < spec.label_dropout
    labels[drop] = 0.0
    t = torch.sigmoid(torch.randn(spec.batch_size, generator=gen))
    if spec.kind == "stage1":
        x1 = lr
        z0 = torch.randn(x1.shape, generator=gen)
    elif spec.kind == "single":
        x1 = hr
        z0 = torch.randn(x1.shape, generator=gen)
    else:
        x1 = hr
        z0 = degrade(upsample(lr), spec.noise_step, gen)
    return {"z0": z0, "x1": x1, "t": t, "labels": labels}


def loss_fn(model: ShapesWorldUNet, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """MSE in the network's own parameterisation: velocity x1 - z0, or the clean video x1 for ``prediction: sample``."""
    t = b["t"].view(-1, 1, 1, 1, 1)
    xt = (1 - t) * b["z0"] + t * b["x1"]
    out = model.network(xt.permute(0, 2, 1, 3, 4), 1000.0 * (1.0 - b["t"]), b["labels"]).permute(0, 2, 1, 3, 4)
    target = b["x1"] if model.config.prediction == "sample" else b["x1"] - b["z0"]
    return F.mse_loss(out, target)


def _save_checkpoint(folder: Path, model, ema, opt, step: int, curve: list, seconds: float) -> None:
    tmp = folder / (CHECKPOINT + ".tmp")
    torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "curve": curve, "seconds": seconds}, tmp)
    tmp.replace(folder / CHECKPOINT)


def _write_record(folder: Path, spec: TrainSpec, seed: int, step: int, curve: list, seconds: float, threads: int,
                  done: bool) -> None:
    record = {"spec": dataclasses.asdict(spec), "seed": seed, "steps_done": step, "finished": done,
              "train_seconds": round(seconds, 1), "threads": threads, "device": "cpu",
              "curve": {"step": [c[0] for c in curve], "loss": [c[1] for c in curve], "seconds": [c[2] for c in curve]},
              "note": "loss = mean training MSE over the last log_every steps; seconds = wall time since start"}
    tmp = folder / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    tmp.replace(folder / RECORD)


def train(spec: TrainSpec, folder: str | Path, seed: int = 0, max_steps: int | None = None,
          threads: int = 1, log: Callable[[str], None] = print) -> Path:
    """Train ``spec`` into ``folder`` (resuming from its checkpoint); stops at spec.steps or after ``max_steps`` more."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = ShapesWorldUNet(**spec.network)
    ema = ShapesWorldUNet(**spec.network)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.99), weight_decay=0.0)
    step, curve, seconds = 0, [], 0.0
    ckpt = folder / CHECKPOINT
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        step, curve, seconds = int(state["step"]), [list(c) for c in state["curve"]], float(state["seconds"])
        log(f"{spec.name}: resumed at step {step} ({seconds:.0f} s trained)")
    stop = spec.steps if max_steps is None else min(spec.steps, step + max_steps)
    model.train()
    losses: list[float] = []
    t_start = time.perf_counter() - seconds
    while step < stop:
        for g in opt.param_groups:
            g["lr"] = learning_rate(spec, step)
        loss = loss_fn(model, training_batch(spec, seed, step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        opt.step()
        d = ema_decay(spec, step)
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1.0 - d)
        step += 1
        losses.append(float(loss.detach()))
        if step % spec.log_every == 0 or step == stop:
            seconds = time.perf_counter() - t_start
            curve.append([step, round(float(np.mean(losses)), 6), round(seconds, 1)])
            losses = []
            log(f"{spec.name}: step {step}/{spec.steps} loss {curve[-1][1]:.5f} {seconds:.0f} s")
        if step % spec.checkpoint_every == 0 or step == stop:
            seconds = time.perf_counter() - t_start
            _save_checkpoint(folder, model, ema, opt, step, curve, seconds)
            copy.deepcopy(ema).half().save_pretrained(folder, safe_serialization=True)  # shipped in float16
            _write_record(folder, spec, seed, step, curve, seconds, threads, step >= spec.steps)
    return folder
