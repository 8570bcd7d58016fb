"""The samplers against hand-made models: the flow update, the degradation, NFE and CFG accounting, and the
stage-I loop against diffusers' own CogVideoXPipeline."""

import pytest
import torch

from fvbench.generation.denoiser import Denoiser, TextConditioning
from fvbench.generation.samplers.flow import degrade, flow_euler_step, sample_flow
from fvbench.generation.schedules import degradation_coefficients, shifted_time_grid


class Recorder(torch.nn.Module):
    """A fake transformer: returns a fixed velocity and records timesteps and batch sizes."""

    def __init__(self, velocity: torch.Tensor, cond_offset: float = 0.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.velocity, self.cond_offset = velocity, cond_offset
        self.timesteps, self.batches, self.timestep_conds = [], [], []

    def forward(self, hidden_states, encoder_hidden_states, timestep, image_rotary_emb=None, return_dict=False,
                timestep_cond=None):
        self.timesteps.append(timestep.clone())
        self.batches.append(hidden_states.shape[0])
        self.timestep_conds.append(timestep_cond)
        out = self.velocity.expand_as(hidden_states).clone()
        if hidden_states.shape[0] == 2:  # second half is the conditional branch
            out[1:] += self.cond_offset
        return (out,)


def _text(b=1):
    return TextConditioning(torch.ones(b, 3, 4), torch.zeros(b, 3, 4))


def test_flow_integrates_constant_velocity_exactly_on_any_grid():
    z0 = torch.randn(1, 2, 3, 4, 4, dtype=torch.float64)
    z_hr = torch.randn(1, 2, 3, 4, 4, dtype=torch.float64)
    model = Recorder((z_hr - z0).float())
    den = Denoiser(model, _text(), use_cfg=False)
    out = sample_flow(den, z0.float(), nfe=4, cfg=1.0, shift=2.5)
    torch.testing.assert_close(out, z_hr.float(), atol=1e-5, rtol=0)
    grid = shifted_time_grid(4, 2.5)
    assert [float(t[0]) for t in model.timesteps] == pytest.approx([1000 * (1 - float(t)) for t in grid[:-1]], abs=1e-3)
    assert den.nfe == 4 and den.rows == 4


def test_flow_step_and_cfg_combination():
    x = torch.zeros(1, 1, 1, 2, 2)
    v = torch.full_like(x, 2.0)
    assert torch.equal(flow_euler_step(x, v, 0.25, 0.75), torch.full_like(x, 1.0))
    # CFG: uncond + g * (cond - uncond) with cond = uncond + 1 -> v + g
    model = Recorder(torch.zeros(1, 1, 1, 2, 2), cond_offset=1.0)
    den = Denoiser(model, _text(), use_cfg=True, timestep_cond=torch.tensor([[675.0, 1.0]]))
    out = den(x, 500.0, 13.0)
    assert torch.allclose(out, torch.full_like(x, 13.0))
    assert model.batches == [2], "CFG must evaluate one call with batch 2"
    assert model.timestep_conds[0].shape == (2, 2) and float(model.timestep_conds[0][0, 0]) == 675.0
    assert den.nfe == 1 and den.rows == 2


def test_degrade_is_the_formula():
    z = torch.randn(1, 3, 4, 8, 8)
    g1 = torch.Generator().manual_seed(7)
    g2 = torch.Generator().manual_seed(7)
    out = degrade(z, 675, g1)
    eps = torch.randn(z.shape, generator=g2)
    a, b = degradation_coefficients(675)
    torch.testing.assert_close(out, a * z + b * eps)


@pytest.mark.parametrize("solver,schedule", [("dpm++2m", "dynamic"), ("ddim", "constant")])
def test_stage1_loop_matches_diffusers_pipeline(tiny_cascade, solver, schedule):
    """Our stage-I loop and diffusers' CogVideoXPipeline give the same latents from the same noise."""
    from diffusers import CogVideoXPipeline

    from fvbench.generation.generator import rotary_embedding
    from fvbench.generation.samplers.cogvideox import make_scheduler, sample_cogvideox

    gen = tiny_cascade
    comps = gen.components
    transformer = comps.transformers["stage1"]
    text, _ = gen.encode_text("a red cat")
    stage = gen.preset.stage("stage1")
    shape = (1, gen.preset.latent_frames, transformer.config.in_channels, 16 // 8, 32 // 8)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    # rope 'crop' is the diffusers pipeline's own RoPE
    crop_stage = type(stage)(**{**stage.__dict__, "rope": "crop", "solver": solver, "cfg_schedule": schedule,
                                "height": 16, "width": 32})
    rotary = rotary_embedding(crop_stage, transformer, (shape[1], shape[3] // 2, shape[4] // 2))
    den = Denoiser(transformer, text, True, rotary)
    ours = sample_cogvideox(den, noise.clone(), solver, 5, 6.0, schedule, 1.0, torch.Generator().manual_seed(11))

    pipe = CogVideoXPipeline(tokenizer=comps.tokenizer, text_encoder=comps.text_encoder, vae=comps.vae,
                             transformer=transformer, scheduler=make_scheduler(solver))
    theirs = pipe(prompt_embeds=text.cond, negative_prompt_embeds=text.uncond, num_inference_steps=5,
                  guidance_scale=6.0, use_dynamic_cfg=schedule == "dynamic", latents=noise.clone(),
                  height=16, width=32, num_frames=gen.preset.frames, output_type="latent",
                  generator=torch.Generator().manual_seed(11), max_sequence_length=gen.preset.max_text_length).frames
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert den.nfe == 5 and den.rows == 10
