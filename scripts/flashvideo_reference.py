"""Run FlashVideo's RELEASED inference code on tiny random-weight models and record fixtures for fvbench's test.

This script is not part of fvbench and never imports it. It runs in its own virtual environment beside a local
checkout of github FoundationVision/FlashVideo (read there, never copied here), builds stage I, stage II and the 3D VAE
with the release's own classes from its own ``configs/stage1.yaml`` / ``stage2.yaml`` with the widths shrunk, saves
random weights as SAT checkpoints in the release's layout, loads them back through the release's ``init_model``
(LoRA merge included), then runs the release's ``get_first_results`` and ``get_second_results`` (stage-I DPM++ SDE
sampler with DynamicCFG, slice decode, upsample, slice encode, degradation, stage-II Euler flow, slice decode) on
CPU in float32. Every random draw the release makes is recorded in order, with the quantities fvbench must match.

Setup (see tests/fixtures/flashvideo_release/README.md for what was measured)::

    python3 -m venv /work/venvs/flashvideo-ref
    /work/venvs/flashvideo-ref/bin/pip install torch==2.13.0          # first: the CPU wheel
    /work/venvs/flashvideo-ref/bin/pip install swissarmytransformer==0.4.12 triton requests wandb kornia scipy \\
        torchdiffeq omegaconf einops pytorch_lightning imageio imageio-ffmpeg transformers sentencepiece numpy \\
        safetensors beartype     # no torchvision: it would pull a CUDA torch (the script stubs it)
    git -C /path/to/FlashVideo checkout 8de4ae2b2c468e78116ad821e8bcd2339282e2b8
    /work/venvs/flashvideo-ref/bin/python scripts/flashvideo_reference.py --flashvideo /path/to/FlashVideo \\
        --out tests/fixtures/flashvideo_release

What is patched, in this process only (the release's files are not modified):

- torchvision is replaced by an empty stub module (PyPI torchvision does not import beside the CPU torch; the
  release uses it only for ``write_video``, LPIPS training losses and metrics, none of which inference runs).
- CUDA: ``.cuda()`` is the identity, ``'cuda'`` devices map to ``'cpu'`` in ``Tensor.to``, ``Module.to`` and tensor
  factories, ``torch.cuda.set_device``/``empty_cache`` are no-ops; ``autocast(device_type='cuda')`` disables itself
  on a CPU (so the transformers run in float32, where the release uses bfloat16 autocast).
- T5-XXL cannot run here: the conditioner's ``FrozenT5Embedder`` is replaced by a recorder returning a fixed random
  embedding per prompt string (seeded by the string, drawn from its own generator, so it takes nothing from the
  global RNG). The release's own ``GeneralConditioner`` still zeroes the unconditional text embedding.
- ``ResLoraMixin`` passes the 5B widths (in 512, out 36864) for the adaLN LoRA layers; here the layer's own shape.
- ``utils.decode`` casts the VAE and latent to float16; here it stays float32 (the release decodes in fp16).
- Stage II: the release's model dtype is bfloat16, so ``flow_video.FlowEngine.sample`` builds the time grid in
  bfloat16 (``dtype=ref_x.dtype``) and ``single_function_evaluation`` computes the model timestep ``1000 - 1000 t``
  in bfloat16. The latents here are float32, so the grid is built in bfloat16 (``torch.linspace`` inside
  ``flow_video`` returns bfloat16, the shift arithmetic then runs in bfloat16 as in the release) and the timestep
  handed to the network is rounded as bfloat16 arithmetic does. Latents and the Euler update stay float32.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import inspect
import json
import os
import sys
import tempfile
import types
import zlib
from pathlib import Path

import torch

# ----------------------------------------------------------------------------------------------- tiny geometry
NUM_FRAMES = 49  # the release's stage-II slice encode splits 49 frames as 17/16/16: any other count fails there
STAGE1_HW = (16, 16)  # pixels; latent 2x2, one 2x2 patch per frame
STAGE2_HW = (32, 32)  # pixels; latent 4x4 (the width is decoded in two halves, as the release does)
HIDDEN = 64  # one attention head of the release's head size 64 (RoPE split 16/24/24 as in the release)
HEADS = 1
LAYERS = 2
TIME_EMBED = 32
TEXT_DIM = 32
TEXT_LEN = 16
LORA_R = 4
VAE_CH = 32  # the release's GroupNorm has 32 groups
SEED = 0
PROMPT = "a red fox runs across a snowy field at dawn"


# ------------------------------------------------------------------------------------------------- environment
def stub_torchvision() -> None:
    """An importable, empty torchvision (see module docstring): attributes exist but raise when called."""

    def missing(name):
        if name.startswith("__"):
            raise AttributeError(name)

        def fail(*_a, **_k):
            raise RuntimeError(f"torchvision stub: {name} is not available")
        return fail

    names = ["torchvision", "torchvision.io", "torchvision.io.video", "torchvision.models",
             "torchvision.transforms", "torchvision.transforms.functional", "torchvision.utils", "torchvision.ops"]
    mods = {}
    for n in names:
        m = types.ModuleType(n)
        m.__spec__ = importlib.machinery.ModuleSpec(n, None)
        m.__getattr__ = missing
        m.__path__ = []
        mods[n] = m
    for n, m in mods.items():
        if "." in n:
            parent, child = n.rsplit(".", 1)
            setattr(mods[parent], child, m)
    sys.modules.update(mods)


def _cpu(device):
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    if isinstance(device, str) and device.startswith("cuda"):
        return "cpu"
    if isinstance(device, int) and not isinstance(device, bool):
        return "cpu"
    return device


def patch_cuda() -> None:
    """Map every CUDA device request of the release to the CPU."""
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    try:  # the VAE is a lightning module, whose mixin has its own .cuda()
        from lightning_fabric.utilities.device_dtype_mixin import _DeviceDtypeModuleMixin
        _DeviceDtypeModuleMixin.cuda = lambda self, *a, **k: self
    except ImportError:
        pass
    torch.cuda.set_device = lambda *a, **k: None
    torch.cuda.empty_cache = lambda *a, **k: None

    tensor_to, module_to = torch.Tensor.to, torch.nn.Module.to

    def t_to(self, *args, **kw):
        args = tuple(_cpu(a) for a in args)
        if "device" in kw:
            kw["device"] = _cpu(kw["device"])
        return tensor_to(self, *args, **kw)

    def m_to(self, *args, **kw):
        args = tuple(_cpu(a) for a in args)
        if "device" in kw:
            kw["device"] = _cpu(kw["device"])
        return module_to(self, *args, **kw)

    torch.Tensor.to, torch.nn.Module.to = t_to, m_to
    for name in ("arange", "zeros", "ones", "tensor", "linspace", "full", "empty", "as_tensor", "randn", "rand",
                 "zeros_like", "ones_like", "randn_like", "empty_like", "full_like"):
        original = getattr(torch, name)

        def factory(*args, __f=original, **kw):
            if "device" in kw:
                kw["device"] = _cpu(kw["device"])
            return __f(*args, **kw)
        setattr(torch, name, factory)


# ---------------------------------------------------------------------------------------------------- recording
class Recorder:
    """Ordered record of random draws and named tensors (lists per name keep call order)."""

    def __init__(self):
        self.on = False
        self.draws: list[dict] = []
        self.tensors: dict[str, torch.Tensor] = {}
        self.meta: dict = {}
        self.lists: dict[str, list] = {}

    def tensor(self, name: str, value: torch.Tensor) -> None:
        self.tensors[name] = value.detach().to(torch.float32).cpu().contiguous().clone()

    def append(self, name: str, value) -> None:
        self.lists.setdefault(name, []).append(value)

    def draw(self, fn: str, value: torch.Tensor) -> None:
        if not self.on:
            return
        site = "?"
        for frame in inspect.stack()[2:]:
            path = frame.filename
            if "flashvideo" in path and "flashvideo_reference" not in path:
                site = f"{Path(path).name}:{frame.lineno}:{frame.function}"
                break
        key = f"noise/{len(self.draws):03d}"
        self.draws.append({"index": len(self.draws), "key": key, "fn": fn, "site": site,
                           "shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")})
        self.tensor(key, value)


REC = Recorder()


def patch_random() -> None:
    """Record every draw of the global torch RNG that the release makes while recording is on."""
    for name in ("randn", "randn_like", "rand", "rand_like", "randint", "randint_like", "normal", "bernoulli",
                 "multinomial", "randperm"):
        original = getattr(torch, name)

        def wrapped(*args, __f=original, __n=name, **kw):
            out = __f(*args, **kw)
            if kw.get("generator") is None:
                REC.draw(__n, out)
            return out
        setattr(torch, name, wrapped)
    for name in ("normal_", "uniform_", "bernoulli_", "random_", "exponential_"):
        original = getattr(torch.Tensor, name)

        def method(self, *args, __f=original, __n=name, **kw):
            out = __f(self, *args, **kw)
            if kw.get("generator") is None:
                REC.draw(f"Tensor.{__n}", out)
            return out
        setattr(torch.Tensor, name, method)


# ------------------------------------------------------------------------------------------------------ configs
def tiny_config(src: Path, dst: Path, vae_ckpt: Path | None, stage: str) -> None:
    """The release's stage YAML with widths shrunk, float32, inference mode, and the tiny VAE checkpoint path."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(src)
    cfg.args.mode = "inference"
    cfg.args.checkpoint_activations = False
    cfg.deepspeed.bf16.enabled = False
    net = cfg.model.network_config.params
    net.num_layers, net.hidden_size, net.num_attention_heads = LAYERS, HIDDEN, HEADS
    net.time_embed_dim = TIME_EMBED
    net.transformer_args.checkpoint_activations = False
    mods = net.modules
    mods.pos_embed_config.params.text_length = TEXT_LEN
    mods.patch_embed_config.params.text_hidden_size = TEXT_DIM
    if "lora_config" in mods:
        mods.lora_config.params.r = LORA_R
    emb = cfg.model.conditioner_config.params.emb_models[0]
    emb.params.max_length = TEXT_LEN
    emb.params.model_dir = f"recorded-text-embedding-{stage}"
    fs = cfg.model.first_stage_config.params
    fs.ckpt_path = str(vae_ckpt) if vae_ckpt else None
    for part in (fs.encoder_config.params, fs.decoder_config.params):
        part.ch, part.ch_mult, part.num_res_blocks = VAE_CH, [1, 1, 1, 1], 1
    OmegaConf.save(cfg, dst)


def recorded_text_embedder(base: type) -> type:
    """A FlashVideo ``AbstractEmbModel`` subclass standing in for FrozenT5Embedder (see below)."""

    class RecordedTextEmbedder(_RecordedText, base):
        pass
    return RecordedTextEmbedder


class _RecordedText:
    """Stands in for FrozenT5Embedder: a fixed random (1, TEXT_LEN, TEXT_DIM) embedding per prompt string.

    Drawn from a generator seeded by the string's CRC32, so it takes nothing from the global RNG.
    """

    def __init__(self, model_dir="", device="cpu", max_length=TEXT_LEN, freeze=True, cache_dir=None):
        super().__init__()
        self.max_length = max_length
        self.stage = model_dir.rsplit("-", 1)[-1]

    def forward(self, text):
        out = []
        for s in text:
            g = torch.Generator().manual_seed(zlib.crc32(s.encode()))
            e = torch.randn(1, self.max_length, TEXT_DIM, generator=g)
            REC.meta.setdefault("text_embeddings", {})[s] = f"text/{zlib.crc32(s.encode()):08x}"
            REC.tensor(f"text/{zlib.crc32(s.encode()):08x}", e[0])
            REC.append(f"prompts_{self.stage}", s)
            out.append(e)
        return torch.cat(out)


def random_state(module: torch.nn.Module, seed: int, prefix: str = "",
                 dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """Random values for every tensor of a state dict, rounded to bfloat16, stored as ``dtype``.

    bf16 values load exactly into the float32 models. Stage I is stored in float32: its LoRA is merged in the
    checkpoint's dtype (SAT's ``merge_linear_lora`` in the model's dtype, fvbench's converter in the file's), and
    this float32 run merges in float32.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in module.state_dict().items():
        if not name.startswith(prefix) or not t.is_floating_point():
            continue
        if t.ndim == 1 and ("norm" in name or name.endswith("gamma")) and "bias" not in name:
            v = 1.0 + 0.1 * torch.randn(t.shape, generator=g)
        elif t.ndim == 1:
            v = 0.05 * torch.randn(t.shape, generator=g)
        else:
            fan_in = max(1, t[0].numel())
            v = torch.randn(t.shape, generator=g) / fan_in ** 0.5
        out[name] = v.to(torch.bfloat16).to(dtype)
    return out


# ---------------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flashvideo", required=True, type=Path, help="checkout of FoundationVision/FlashVideo")
    ap.add_argument("--out", required=True, type=Path, help="fixture folder to write")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--seed", type=int, default=SEED)
    a = ap.parse_args()
    root = (a.flashvideo / "flashvideo").resolve()
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # thread count can change the last bits; one thread is reproducible

    # transformers / lightning look for torchvision on import: import them before the stub is in place
    from transformers import T5EncoderModel, T5Tokenizer  # noqa: F401
    import pytorch_lightning  # noqa: F401
    stub_torchvision()
    patch_cuda()
    sys.path.insert(0, str(root))
    os.chdir(root)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")

    import sgm.modules.encoders.modules as encoders
    encoders.FrozenT5Embedder = recorded_text_embedder(encoders.AbstractEmbModel)
    import extra_models.dit_res_adapter as adapter
    original_lora = adapter.replace_linear_with_lora

    def lora_own_shape(lin, partition, r, *args, **kw):
        if kw.get("in_size") == 512 and kw.get("out_size") == 36864:  # the adaLN LoRA's hard-coded 5B widths
            kw["out_size"], kw["in_size"] = lin.weight.shape
        return original_lora(lin, partition, r, *args, **kw)
    adapter.replace_linear_with_lora = lora_own_shape

    import dist_inf_text_file as dist
    import flow_video
    import utils as fv_utils
    from arguments import get_args
    from diffusion_video import SATVideoDiffusionEngine
    from sat.model.base_model import get_model
    from sgm.util import instantiate_from_config

    tmp = Path(tempfile.mkdtemp(prefix="fvref."))
    ckpt = out / "checkpoints"
    ckpt.mkdir(exist_ok=True)

    # -- VAE first: the engines load it at construction (first_stage_config.ckpt_path) ----------------------
    tiny_config(root / "configs/stage1.yaml", tmp / "probe.yaml", None, "1")
    from omegaconf import OmegaConf
    vae = instantiate_from_config(OmegaConf.load(tmp / "probe.yaml").model.first_stage_config)
    vae_sd = random_state(vae, 3)
    torch.save({"state_dict": vae_sd}, ckpt / "3d-vae.pt")
    del vae
    tiny_config(root / "configs/stage1.yaml", tmp / "stage1.yaml", ckpt / "3d-vae.pt", "1")
    tiny_config(root / "configs/stage2.yaml", tmp / "stage2.yaml", ckpt / "3d-vae.pt", "2")

    common = ["--distributed-backend", "gloo", "--inf-ckpt", str(ckpt / "stage1.pt"),
              "--inf-ckpt2", str(ckpt / "stage2.pt")]
    args = get_args(["--base", str(tmp / "stage1.yaml")] + common)
    second_args = get_args(["--base", str(tmp / "stage2.yaml")] + common)
    for x in (args, second_args):  # as the release's __main__ does
        x.model_config.first_stage_config.params.cp_size = 1
        x.model_config.network_config.params.transformer_args.model_parallel_size = 1
        x.model_config.network_config.params.transformer_args.checkpoint_activations = False
        x.model_config.loss_fn_config.params.sigma_sampler_config.params.uniform_sampling = False
    second_model = get_model(second_args, flow_video.FlowEngine)
    model = get_model(args, SATVideoDiffusionEngine)

    # random DiT weights saved as SAT checkpoints in the release's layout, with the new modules registered first
    for m, a_, name, seed in ((model, args, "stage1", 1), (second_model, second_args, "stage2", 2)):
        cache = dict(a_.share_cache_config) if hasattr(a_, "share_cache_config") else {}
        for _, sub in m.named_modules():
            sub.share_cache = cache
            if hasattr(sub, "register_new_modules"):
                sub.register_new_modules()
        sd = random_state(m, seed, prefix="model.diffusion_model.",
                          dtype=torch.float32 if name == "stage1" else torch.bfloat16)
        torch.save({"module": sd}, ckpt / f"{name}.pt")
    del model, second_model
    second_model = get_model(second_args, flow_video.FlowEngine)
    model = get_model(args, SATVideoDiffusionEngine)
    dist.init_model(model, second_model, args, second_args)  # the release's loader: load_state_dict + LoRA merge
    model.eval()
    second_model.eval()

    # share_cache as the release's sampling_main sets it (values, not code)
    model.share_cache["cfg"] = 8
    sc = second_model.share_cache
    sc["target_size"] = STAGE2_HW
    sc["ref_noise_step"] = 675
    sc["sample_ref_noise_step"] = 675
    sc["shift_t"] = 2.5
    sc["sample_step"] = 5
    sc["cfg"] = 13
    sc.pop("ref_noise_step_range", None)
    sc["time_size_embedding"] = True

    # -- recording hooks --------------------------------------------------------------------------------------
    patch_random()
    stage = {"name": "stage1"}

    def dit_hook(dit, stage_name):
        fwd = dit.forward

        def forward(x, timesteps=None, context=None, y=None, **kw):
            REC.append(f"{stage['name']}_model_timesteps", [float(v) for v in timesteps])
            if stage["name"] == "stage2" and "t_emulated" in stage:
                timesteps = stage.pop("t_emulated").to(timesteps.dtype).expand_as(timesteps).clone()
                REC.lists[f"{stage['name']}_model_timesteps"][-1] = [float(v) for v in timesteps]
            out = fwd(x, timesteps=timesteps, context=context, y=y, **kw)
            n = len(REC.lists[f"{stage['name']}_model_timesteps"])
            if n == 1:  # the first DiT call of each stage, whole: a unit check of the converted DiT
                for key, value in (("x", x), ("timesteps", timesteps), ("context", context), ("out", out)):
                    REC.tensor(f"{stage['name']}/dit_call0_{key}", value)
            return out
        dit.forward = forward

    dit_hook(model.model.diffusion_model, "stage1")
    dit_hook(second_model.model.diffusion_model, "stage2")

    guider = model.sampler.guider
    scale_fn = guider.scale_schedule_dy

    def scale_dy(sigma, step_index):
        v = scale_fn(sigma, step_index)
        REC.append("stage1_guidance", {"step_index": float(step_index), "scale": float(v)})
        return v
    guider.scale_schedule_dy = scale_dy

    sampler = model.sampler
    step_fn = sampler.sampler_step

    def sampler_step(*args_, **kw):
        x, denoised = step_fn(*args_, **kw)
        REC.append("stage1_steps", {"timestep": int(kw["timestep"]), "idx": int(kw["idx"])})
        REC.append("stage1_latents", x.detach().clone())
        return x, denoised
    sampler.sampler_step = sampler_step

    prepare = sampler.prepare_sampling_loop

    def prepare_sampling_loop(x, cond, uc=None, num_steps=None):
        res = prepare(x, cond, uc, num_steps)
        REC.tensor("stage1/sqrt_alphas_cumprod", res[2])  # the sampler's schedule on its timestep subset, then 1
        REC.meta["stage1_sampler_timesteps"] = [int(v) for v in res[6]]
        return res
    sampler.prepare_sampling_loop = prepare_sampling_loop

    sample1 = model.sample

    def sample_stage1(c, uc=None, **kw):
        REC.tensor("stage1/c_crossattn", c["crossattn"])
        REC.tensor("stage1/uc_crossattn", uc["crossattn"])
        z = sample1(c, uc=uc, **kw)
        REC.tensor("stage1/final_latent", z)
        return z
    model.sample = sample_stage1

    # stage II: bf16 time grid as in the release (see module docstring), recorded z0 and ODE solution
    class Bf16Grid(types.ModuleType):
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def linspace(*args_, **kw):
            kw["dtype"] = torch.bfloat16
            return torch.linspace(*args_, **kw)
    flow_video.torch = Bf16Grid("torch_bf16_grid")

    sfe = second_model.single_function_evaluation

    def single_function_evaluation(t, x, **kw):
        tb = t.to(torch.bfloat16).reshape(1)
        stage["t_emulated"] = (1000 - (tb * 1000)).to(torch.bfloat16)  # bf16 op by op, as in the release
        REC.append("stage2_t", float(t))
        REC.append("stage2_guidance", float(kw.get("cfg", 1)))
        return sfe(t, x, **kw)
    second_model.single_function_evaluation = single_function_evaluation

    odeint = flow_video.odeint

    def odeint_rec(func, y0, t, **kw):
        REC.tensor("stage2/z0", y0)
        REC.meta["stage2_time_grid"] = [float(v) for v in t]
        REC.meta["stage2_time_grid_dtype"] = str(t.dtype).removeprefix("torch.")
        sol = odeint(func, y0, t, **kw)
        REC.tensor("stage2/solution", sol)
        return sol
    flow_video.odeint = odeint_rec

    sample2 = second_model.sample

    def sample_stage2(ref_x, c, uc=None, **kw):
        stage["name"] = "stage2"
        REC.tensor("stage2/encoded_latent", ref_x)
        REC.tensor("stage2/c_crossattn", c["crossattn"])
        REC.tensor("stage2/uc_crossattn", uc["crossattn"])
        z = sample2(ref_x, c, uc=uc, **kw)
        REC.tensor("stage2/final_latent", z)
        return z
    second_model.sample = sample_stage2

    # decode in float32 (module docstring): utils.decode's float16 casts
    class Fp32Decode(types.ModuleType):
        float16 = torch.float32

        def __getattr__(self, name):
            return getattr(torch, name)
    fv_utils.torch = Fp32Decode("torch_fp32_decode")

    # -- the release's inference, as sampling_main runs it for one prompt --------------------------------------
    fv_utils.seed_everything(a.seed)
    REC.on = True
    with torch.no_grad():
        first = dist.get_first_results(model, a.prompt, NUM_FRAMES, *STAGE1_HW)
        REC.tensor("stage1/frames", first)
        REC.meta["stage1_draws"] = len(REC.draws)
        second = dist.get_second_results(second_model, a.prompt, first, NUM_FRAMES)
        REC.tensor("stage2/frames", second)
    REC.on = False

    # -- write ------------------------------------------------------------------------------------------------
    from safetensors.torch import save_file
    lat = REC.lists.pop("stage1_latents")
    REC.tensor("stage1/step_latents", torch.stack(lat))
    sol = REC.tensors.pop("stage2/solution")
    REC.tensors["stage2/step_latents"] = sol[1:].contiguous()
    save_file(REC.tensors, str(out / "trace.safetensors"))
    meta = {
        "flashvideo_commit": git_head(a.flashvideo),
        "versions": versions(),
        "prompt": a.prompt,
        "seed": a.seed,
        "frames": NUM_FRAMES,
        "stage1_hw": list(STAGE1_HW),
        "stage2_hw": list(STAGE2_HW),
        "geometry": {"hidden": HIDDEN, "heads": HEADS, "layers": LAYERS, "time_embed_dim": TIME_EMBED,
                     "text_dim": TEXT_DIM, "text_len": TEXT_LEN, "lora_r": LORA_R, "vae_ch": VAE_CH},
        "scale_factor": {"stage1": float(model.scale_factor), "stage2": float(second_model.scale_factor)},
        "noise": REC.draws,
        **REC.meta,
        **{k: v for k, v in REC.lists.items()},
    }
    (out / "trace.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {out}: {len(REC.draws)} random draws, {len(REC.tensors)} tensors")


def versions() -> dict[str, str]:
    """Versions of the packages the release's code ran on (SwissArmyTransformer, torch, torchdiffeq, python)."""
    from importlib.metadata import version

    out = {"python": sys.version.split()[0]}
    for name in ("SwissArmyTransformer", "torch", "torchdiffeq", "omegaconf", "deepspeed"):
        out[name] = version(name)
    return out


def git_head(path: Path) -> str:
    head = (path / ".git" / "HEAD")
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref:"):
            return (path / ".git" / ref.split()[1]).read_text().strip()
        return ref
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
