"""A third-party model family, added from its own package without editing fvbench (issue 16).

The test writes a package into a temp dir: a transformer class of its own (a diffusers ModelMixin), its own scheduler
choice (diffusers' FlowMatchEulerDiscreteScheduler configured by the package), a Generator subclass on fvbench's shared
loop, a FLOP rule, and a preset YAML; it registers through FVBENCH_PLUGINS. fvbench then lists, counts, and runs it.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = '''
from pathlib import Path

from fvbench.generation.models.registry import DIFFUSERS_WEIGHTS, ComponentType, register_component_type
from fvbench.generation.pipelines import PipelineInfo, register_pipeline
from fvbench.generation.presets import register_preset_dir


def _build(config):
    from myfam_impl import MyTransformer

    return MyTransformer(**config)


def _load(path, dtype):
    from myfam_impl import MyTransformer

    return MyTransformer.from_pretrained(path, torch_dtype=dtype, local_files_only=True)


register_component_type(ComponentType("myfam-transformer", _build, _load, DIFFUSERS_WEIGHTS,
                                      spatial_multiple=lambda c: 1), origin="myfam")
register_pipeline(PipelineInfo("myfam", "myfam_impl:MyGenerator", ("my-euler",), ("noise",),
                               flops="myfam_impl:preset_flops"), origin="myfam")
register_preset_dir(Path(__file__).parent / "presets")
'''

IMPL = '''
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from fvbench.compute.timing import ComponentTimer
from fvbench.generation.denoiser import GuidedCall
from fvbench.generation.generator import Generator, StageOutput, stage_seed, to_uint8
from fvbench.generation.noise import SeededNoise
from fvbench.generation.samplers.scheduler import sample_scheduler


class MyTransformer(ModelMixin, ConfigMixin):
    """A per-pixel MLP conditioned on the mean text embedding and the timestep: (B, C, F, H, W) -> same."""

    @register_to_config
    def __init__(self, channels: int = 4, text_dim: int = 32, hidden: int = 16):
        super().__init__()
        self.inp = torch.nn.Linear(channels + text_dim + 1, hidden)
        self.out = torch.nn.Linear(hidden, channels)

    def forward(self, hidden_states, timestep, encoder_hidden_states):
        b, c, f, h, w = hidden_states.shape
        x = hidden_states.permute(0, 2, 3, 4, 1)
        text = encoder_hidden_states.mean(1)[:, None, None, None, :].expand(b, f, h, w, -1)
        t = (timestep.float() / 1000)[:, None, None, None, None].expand(b, f, h, w, 1)
        y = self.out(torch.nn.functional.gelu(self.inp(torch.cat([x, text, t], -1))))
        return (y.permute(0, 4, 1, 2, 3),)


class MyGenerator(Generator):
    """Text by fvbench's T5, latents (B, C, F, h, w), flow matching with diffusers' Euler scheduler, shift 3."""

    def run_stage(self, index, text, seed, previous=None, stage=None, init=None, noise=None):
        stage = stage or self.preset.stages[index]
        model = self.components.transformers[stage.transformer]
        vae = self.components.vae
        f = self.preset.vae_spatial_factor
        shape = (1, model.config.channels, self.preset.latent_frames, stage.height // f, stage.width // f)
        noise = noise or SeededNoise(stage_seed(seed, index))
        timer = ComponentTimer(self.device)
        sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
        sched.set_timesteps(stage.nfe)
        call = GuidedCall(model, {"encoder_hidden_states": text.cond}, {"encoder_hidden_states": text.uncond})
        steps = []
        with timer.time("denoise"):
            latents = sample_scheduler(call, noise.randn(shape), sched, stage.cfg, trace=steps)
        with timer.time("vae_decode"):
            video = to_uint8(vae.decode(latents / vae.config.scaling_factor).sample)
        return StageOutput(stage.name, latents, video, dict(timer.seconds), call.nfe, call.rows, None, "none",
                           "none", steps=steps)


def preset_flops(preset):
    """A made-up but exact count: the MLP's two linears per latent pixel, per row, per NFE; nothing else."""
    stages, total = {}, 0
    for s in preset.stages:
        spec = preset.components[s.transformer].config
        f = preset.vae_spatial_factor
        pixels = preset.latent_frames * (s.height // f) * (s.width // f)
        per_row = 2 * pixels * ((4 + spec["text_dim"] + 1) * spec["hidden"] + spec["hidden"] * 4)
        d = s.nfe * per_row * (2 if s.cfg > 1 else 1)
        stages[s.name] = {"denoise": d, "denoise_attention": 0, "vae_encode": 0, "upsample": 0, "vae_decode": 0,
                          "total": d}
        total += d
    return {"text_encode": 0, "stages": stages, "total": total}
'''

PRESETS = '''
presets:
  tiny-myfam:
    description: A third-party family (its own transformer, scheduler and generator), from a package outside fvbench
    family: single-stage
    size: tiny
    frames: 9
    weights: builtin
    max_text_length: 8
    pipeline: myfam
    components:
      tokenizer: {type: t5-tokenizer}
      text_encoder: {type: t5-encoder, config: {d_model: 32, d_ff: 64, d_kv: 16, num_heads: 2, num_layers: 1,
                                                feed_forward_proj: gated-gelu}}
      vae:
        type: cogvideox-vae
        config: {block_out_channels: [8, 8, 8, 8], latent_channels: 4, layers_per_block: 1, norm_num_groups: 2,
                 temporal_compression_ratio: 4,
                 down_block_types: [CogVideoXDownBlock3D, CogVideoXDownBlock3D, CogVideoXDownBlock3D, CogVideoXDownBlock3D],
                 up_block_types: [CogVideoXUpBlock3D, CogVideoXUpBlock3D, CogVideoXUpBlock3D, CogVideoXUpBlock3D]}
      dit: {type: myfam-transformer, config: {channels: 4, text_dim: 32, hidden: 16}}
    stages:
      - {name: stage1, transformer: dit, solver: my-euler, nfe: 3, cfg: 4.0, height: 32, width: 32}
'''


def _package(tmp_path: Path) -> dict:
    pkg = tmp_path / "thirdparty"
    (pkg / "presets").mkdir(parents=True)
    (pkg / "myfam_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (pkg / "myfam_impl.py").write_text(textwrap.dedent(IMPL))
    (pkg / "presets" / "myfam.yaml").write_text(textwrap.dedent(PRESETS))
    env = dict(os.environ, FVBENCH_PLUGINS="myfam_plugin", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(pkg), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return env


def _fvbench(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "fvbench.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_a_third_party_family_lists_counts_and_runs(tmp_path):
    env = _package(tmp_path)
    repo = Path(__file__).resolve().parents[1]
    r = _fvbench(["presets"], env, repo)
    assert r.returncode == 0 and "tiny-myfam" in r.stdout, r.stderr
    r = _fvbench(["flops", "--preset", "tiny-myfam", "--json"], env, repo)
    assert r.returncode == 0, r.stderr
    # 3 NFE x 2 rows (CFG) x 3 latent frames x 4 x 4 latent pixels x 2 x (37 x 16 + 16 x 4) multiply-adds
    assert json.loads(r.stdout)["total"]["total"] == 3 * 2 * 3 * 4 * 4 * 2 * (37 * 16 + 16 * 4)
    out = tmp_path / "run"
    r = _fvbench(["run", "--presets", "tiny-myfam", "--suite", "suites/ci.yaml", "--limit", "2", "--samples", "1",
                  "--out", str(out), "--metrics", "none"], env, repo)
    assert r.returncode == 0, r.stdout + r.stderr
    check = subprocess.run([sys.executable, "-c", "import fvbench, json; df = fvbench.load_results(%r); "
                            "print(json.dumps([df.status.tolist(), df.s1_nfe_executed.tolist(), df.s1_batch_rows.tolist()]))"
                            % str(out)], env=env, capture_output=True, text=True, timeout=300)
    status, nfe, rows = json.loads(check.stdout)
    assert status == ["done", "done"] and nfe == [3, 3] and rows == [6, 6]


def test_without_the_plugin_the_family_is_unknown(tmp_path):
    env = _package(tmp_path)
    env.pop("FVBENCH_PLUGINS")
    r = _fvbench(["flops", "--preset", "tiny-myfam"], env, Path(__file__).resolve().parents[1])
    assert r.returncode == 2 and "unknown preset" in r.stderr
