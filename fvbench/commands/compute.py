"""``fvbench flops`` (FLOPs of real and CPU-scale presets, counted on the meta device) and ``fvbench bench``."""

from __future__ import annotations

import json

import click

from fvbench.errors import FvbenchError


def _resolution(value: str) -> tuple[int, int]:
    h, sep, w = value.lower().partition("x")
    try:
        return int(h), int(w)
    except ValueError:
        raise FvbenchError(f"--resolution expects HxW (e.g. 1072x1920), got {value!r}") from None


def _tera(x: float) -> str:
    return f"{x / 1e12:,.2f}"


@click.command()
@click.option("--preset", help="Preset to count (see `fvbench presets`).")
@click.option("--resolution", help="HxW of the LAST stage (stage II of a cascade, the only stage otherwise).")
@click.option("--frames", type=int, help="Frame count (4k+1, odd latent count).")
@click.option("--nfe", type=int, help="NFE of the LAST stage.")
@click.option("--set", "sets", multiple=True, metavar="STAGE.FIELD=VALUE", help="Override any stage field.")
@click.option("--compare", "comparison", is_flag=False, flag_value="families",
              help="A named comparison: flashvideo-1080p, or families (the default of a bare --compare): every real "
                   "preset at one output size (--resolution, --seconds; 720x1280, 5 s).")
@click.option("--seconds", type=float, help="Seconds of video per preset for --compare families (default 5).")
@click.option("--gpu", default="H100-SXM", show_default=True, help="GPU for the projected latency (--compare).")
@click.option("--gpu-tflops", type=float, help="Peak dense TFLOP/s instead of the --gpu table value.")
@click.option("--utilization", default=0.4, show_default=True, type=float, help="Assumed fraction of peak.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--allow-large", is_flag=True,
              help="Lift the ceilings on NFE, frames and height/width (counting runs nothing; also FVBENCH_ALLOW_LARGE=1).")
def flops(preset: str | None, resolution: str | None, frames: int | None, nfe: int | None, sets: tuple[str, ...],
          comparison: str | None, seconds: float | None, gpu: str, gpu_tflops: float | None, utilization: float, as_json: bool,
          allow_large: bool) -> None:
    """FLOPs per component and stage of one video (1 multiply-add = 2 FLOPs), counted on the meta device."""
    if allow_large:
        from fvbench.generation.presets import lift_ceilings

        lift_ceilings()
    if comparison == "families":
        _compare_families(resolution, seconds, utilization, as_json)
        return
    if comparison:
        _compare(comparison, gpu, gpu_tflops, utilization, as_json)
        return
    if not preset:
        raise FvbenchError("give --preset NAME or --compare NAME")
    from fvbench.commands.generate import parse_overrides
    from fvbench.compute.flops import cfg_batch, preset_flops, text_encoder_flops, transformer_forward_flops, vae_flops
    from fvbench.generation.presets import get_preset

    p = get_preset(preset)
    overrides = parse_overrides(sets)
    last = p.stages[-1].name
    if resolution:
        h, w = _resolution(resolution)
        overrides.setdefault(last, {}).update(height=h, width=w)
    if nfe is not None:
        overrides.setdefault(last, {})["nfe"] = nfe
    p = p.with_overrides(overrides, frames)
    total = preset_flops(p)
    from fvbench.generation.pipelines import flops_rule

    if flops_rule(p) is not None:  # a model family's own rule: its rows, or one row per stage part
        rows = total.get("rows") or _rule_rows(p, total)
        _print_flops(p, rows, total, as_json)
        return
    text = text_encoder_flops(p)
    rows = [{"stage": "-", "component": "text_encoder", "params": text.params, "tokens": text.tokens,
             "flops_per_forward": text.flops, "forwards": 2 if p.uncond == "empty" else 1,
             "flops_total": total["text_encode"], "attention_share": None}]
    for i, s in enumerate(p.stages):
        fwd = transformer_forward_flops(p, s, cfg_batch(s))
        sf = total["stages"][s.name]
        rows.append({"stage": f"{s.name} {s.height}x{s.width}x{p.frames}f", "component": f"transformer ({s.transformer})",
                     "params": fwd.params, "tokens": fwd.tokens, "batch": fwd.batch, "flops_per_forward": fwd.flops,
                     "forwards": s.nfe, "flops_total": sf["denoise"], "attention_share": fwd.attention_share})
        if s.init == "upsample":
            enc = vae_flops(p, "encode", s.height, s.width)
            how = f" ({'/'.join(map(str, p.vae_encode_chunks))} frames)" if p.vae_encode_chunks else ""
            how = " (tiled)" if p.vae_tiling else how
            rows.append({"stage": s.name, "component": "vae encode" + how, "params": enc.params, "tokens": None,
                         "flops_per_forward": enc.flops, "forwards": 1, "flops_total": sf["vae_encode"],
                         "attention_share": None})
        dec = vae_flops(p, "decode", s.height, s.width, s.decode_width_splits)
        how = f" ({s.decode_width_splits} width slices)" if s.decode_width_splits > 1 else ""
        how = " (tiled)" if p.vae_tiling else how
        rows.append({"stage": s.name, "component": "vae decode" + how, "params": dec.params, "tokens": None,
                     "flops_per_forward": dec.flops, "forwards": 1, "flops_total": sf["vae_decode"],
                     "attention_share": None})
    _print_flops(p, rows, total, as_json)


def _rule_rows(p, total: dict) -> list[dict]:
    """Rows of a pipeline FLOP rule that gives per-stage totals only: text, then each stage's parts."""
    rows = [{"stage": "-", "component": "text encoder(s)", "params": None, "tokens": None,
             "flops_per_forward": total["text_encode"], "forwards": 1, "flops_total": total["text_encode"],
             "attention_share": None}]
    for s in p.stages:
        sf = total["stages"][s.name]
        share = sf["denoise_attention"] / sf["denoise"] if sf.get("denoise") else None
        calls = sf.get("calls", s.nfe)  # a rule may say how many calls (two per guided step: Wan) and their size
        rows.append({"stage": f"{s.name} {s.height}x{s.width}x{p.frames}f", "component": f"transformer ({s.transformer})",
                     "params": sf.get("params"), "tokens": None,
                     "flops_per_forward": sf.get("forward", sf["denoise"] // max(calls, 1)), "forwards": calls,
                     "flops_total": sf["denoise"], "attention_share": share})
        for part in ("upsample", "vae_encode", "vae_decode"):
            if sf.get(part) or part == "vae_decode":
                note = "" if sf.get(part) else " (not decoded)"
                rows.append({"stage": s.name, "component": part.replace("_", " ") + note, "params": None,
                             "tokens": None, "flops_per_forward": sf.get(part, 0), "forwards": 1 if sf.get(part) else 0,
                             "flops_total": sf.get(part, 0), "attention_share": None})
    return rows


def _print_flops(p, rows: list[dict], total: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"preset": p.name, "unit": "FLOPs per video (multiply-add = 2)", "rows": rows,
                               "total": {k: v for k, v in total.items() if k != "rows"}}, indent=2))
        return
    click.echo(f"{p.name}: FLOPs of one video, counted on the meta device (1 multiply-add = 2 FLOPs; "
               f"a CFG step counted as its pipeline runs it: one forward at batch 2, or two forwards; TFLOP = 1e12)")
    if p.release:
        click.echo(f"samples as released: {p.release}")
    if p.cost_only:
        click.echo(f"COST-ONLY PROXY: {p.cost_only}")
    click.echo(f"{'stage':28s} {'component':28s} {'params':>15s} {'tokens':>8s} {'TFLOP/forward':>14s} "
               f"{'forwards':>8s} {'TFLOP total':>14s} {'attention':>9s}")
    for r in rows:
        share = f"{r['attention_share']:.1%}" if r["attention_share"] is not None else ""
        params = f"{r['params']:,d}" if r["params"] is not None else "-"
        click.echo(f"{r['stage']:28s} {r['component']:28s} {params:>15s} {r['tokens'] or '':>8} "
                   f"{_tera(r['flops_per_forward']):>14s} {r['forwards']:>8d} {_tera(r['flops_total']):>14s} {share:>9s}")
    click.echo(f"total: {_tera(total['total'])} TFLOP per video (text encoder + all stages incl. VAE); "
               f"pixel-space upsampling (FlashVideo), norms, softmax and activations are not counted; a latent upsampler (LTX) is")


def _compare(name: str, gpu: str, gpu_tflops: float | None, utilization: float, as_json: bool) -> None:
    from fvbench.compute.compare import GPU_PEAK_TFLOPS, compare, projected_seconds

    if gpu_tflops is None:
        if gpu not in GPU_PEAK_TFLOPS:
            from fvbench.errors import UnknownNameError

            raise UnknownNameError("GPU", gpu, list(GPU_PEAK_TFLOPS))
        gpu_tflops = GPU_PEAK_TFLOPS[gpu]
    if not 0 < utilization <= 1:
        raise FvbenchError(f"--utilization must be in (0, 1], got {utilization}")
    from fvbench.compute.compare import NOTES

    rows = compare(name)
    for r in rows:
        r["projected_seconds"] = projected_seconds(r["model_flops"], gpu_tflops, utilization)
    if as_json:
        click.echo(json.dumps({"comparison": name, "gpu": gpu, "gpu_peak_tflops": gpu_tflops,
                               "utilization": utilization, "rows": rows}, indent=2))
        return
    click.echo(f"{name}: FLOPs per 49-frame video counted on the meta device (text encoder + transformer forwards; "
               f"VAE shown apart, as the paper's times exclude VAE decode); PFLOP = 1e15")
    click.echo(f"{'configuration':66s} {'setting':15s} {'PFLOP':>9s} {'+VAE':>7s} {'FLOP ratio':>10s} {'paper s':>8s} "
               f"{'time ratio':>10s} {'projected s':>11s}")
    for r in rows:
        pt = f"{r['paper_seconds']:.1f}" if r["paper_seconds"] else "-"
        tr = f"{r['paper_time_ratio']:.2f}x" if r["paper_time_ratio"] else "-"
        click.echo(f"{r['configuration']:66s} {r['setting']:15s} {r['model_flops'] / 1e15:9.2f} "
                   f"{r['vae_flops'] / 1e15:7.2f} {r['flop_ratio']:9.2f}x {pt:>8s} {tr:>10s} "
                   f"{r['projected_seconds']:11.1f}")
    for note in NOTES.get(name, ()):
        click.echo(f"note: {note}")
    click.echo(f"ratios are to the first row; projected s = PFLOP / ({gpu} {gpu_tflops:.0f} TFLOP/s peak dense x "
               f"{utilization:.0%} assumed utilisation); paper times from arXiv 2502.05179 (GPU not named)")


def _compare_families(resolution: str | None, seconds: float | None, utilization: float, as_json: bool) -> None:
    from fvbench.compute.compare import COMMON_SIZE, FAMILY_GPUS, GPU_PEAK_TFLOPS, family_compare, projected_seconds

    h, w = _resolution(resolution) if resolution else COMMON_SIZE[:2]
    seconds = COMMON_SIZE[2] if seconds is None else seconds
    if seconds <= 0:
        raise FvbenchError(f"--seconds must be positive, got {seconds}")
    if not 0 < utilization <= 1:
        raise FvbenchError(f"--utilization must be in (0, 1], got {utilization}")
    rows = family_compare(h, w, seconds)
    for r in rows:
        r["projected_seconds"] = {g: projected_seconds(r["total_flops"], GPU_PEAK_TFLOPS[g], utilization)
                                  for g in FAMILY_GPUS}
    if as_json:
        click.echo(json.dumps({"comparison": "families", "height": h, "width": w, "seconds": seconds,
                               "utilization": utilization, "gpu_peak_tflops": {g: GPU_PEAK_TFLOPS[g] for g in FAMILY_GPUS},
                               "unit": "FLOPs per video (multiply-add = 2)", "rows": rows}, indent=2))
        return
    click.echo(f"every real preset at ~{h}x{w}, ~{seconds:g} s of video at its own fps: FLOPs per video counted on the "
               f"meta device (model = text encoders + transformer forwards; VAE = encode + decode + latent upsampler); "
               f"PFLOP = 1e15")
    gpus = " ".join(f"{g + ' s':>11s}" for g in FAMILY_GPUS)
    click.echo(f"{'preset':31s} {'frames':>6s} {'fps':>4s} {'HxW':>9s} {'stages':34s} {'model PF':>9s} {'VAE PF':>7s} "
               f"{'total PF':>9s} {gpus}")
    for r in rows:
        stages = " -> ".join(r["stages"])
        proj = " ".join(f"{r['projected_seconds'][g]:11.1f}" for g in FAMILY_GPUS)
        mark = "" if r["native"] else "*"
        click.echo(f"{r['preset'] + mark:31s} {r['frames']:6d} {r['fps']:4g} {str(r['height']) + 'x' + str(r['width']):>9s} "
                   f"{stages[:34]:34s} {r['model_flops'] / 1e15:9.2f} {r['vae_flops'] / 1e15:7.2f} "
                   f"{r['total_flops'] / 1e15:9.2f} {proj}")
    for r in rows:
        if r["same_as"]:
            click.echo(f"{r['preset']} also stands for {', '.join(r['same_as'])}: the same model at this size")
    click.echo("* not the preset's native size or length: its stages are scaled to the common output (a cascade keeps "
               "its resolution ratios), frames rounded up to what its VAE takes")
    click.echo(f"projected s = total FLOPs / (GPU peak dense bf16 TFLOP/s x {utilization:.0%} assumed utilisation): "
               + ", ".join(f"{g} {GPU_PEAK_TFLOPS[g]:g}" for g in FAMILY_GPUS)
               + "; a FLOP projection, not a measurement")


@click.command()
@click.option("--repeats", default=5, show_default=True, type=int)
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the models (compile time shown apart).")
def bench(repeats: int, use_compile: bool) -> None:
    """Measure fp32 GEMM throughput and each CPU-scale transformer's achieved FLOP/s in one run."""
    import torch

    from fvbench.compute.bench import run_bench

    if repeats <= 0:
        raise FvbenchError(f"--repeats must be positive, got {repeats}")
    gemm, results = run_bench(repeats=repeats, compile=use_compile)
    click.echo(f"roofline: fp32 GEMM 2048^3 = {gemm / 1e9:.1f} GFLOP/s (best of 5) on cpu, "
               f"{torch.get_num_threads()} threads")
    click.echo(f"{'preset':20s} {'stage':10s} {'width':>5s} {'layers':>6s} {'tokens':>6s} {'batch':>5s} "
               f"{'GFLOP/fwd':>9s} {'median s':>9s} {'min s':>8s} {'GFLOP/s':>8s} {'of GEMM':>7s}  note")
    for r in results:
        util = r.achieved / gemm
        note = ""
        if not r.batch:  # a model family's stage: its whole denoising loop, timed through its generator
            click.echo(f"{r.preset:20s} {r.stage:10s} {'':>5s} {'':>6s} {'':>6s} {'':>5s} "
                       f"{r.flops / 1e9:9.2f} {r.timing.median:9.4f} {r.timing.min:8.4f} {r.achieved / 1e9:8.1f} "
                       f"{util:7.1%}  whole denoise loop ({r.flops / 1e9:.2f} GFLOP counted for its NFE), "
                       f"{r.timing.repeats} repeats")
            continue
        if util < 0.4:
            note = (f"overhead-bound: {r.tokens} tokens x width {r.width} is too little work per matmul "
                    f"to amortise per-op overhead")
        if r.timing.compile_seconds is not None:
            note += f" (compile {r.timing.compile_seconds:.1f} s, excluded)"
        click.echo(f"{r.preset:20s} {r.stage:10s} {r.width:5d} {r.layers:6d} {r.tokens:6d} {r.batch:5d} "
                   f"{r.flops / 1e9:9.2f} {r.timing.median:9.4f} {r.timing.min:8.4f} {r.achieved / 1e9:8.1f} "
                   f"{util:7.1%}  {note}")
    click.echo(f"one forward per timing (a model family's stage: its whole denoising loop at 2 NFE, up to 3 repeats), "
               f"warm-up excluded, {repeats} repeats (median and min); FLOPs counted on meta")
