"""Cross-family cascades (pipeline: composite): each stage run by its own pipeline on the components its roles name.

tiny-composite is tiny-flashvideo with stage II on its own copies of the text encoder and VAE (same configs, so the
same seeded weights): run as a composite it must give tiny-flashvideo's videos bitwise, share its stage I across
stage-II variants, and cost what both stages cost plus a second text encoding.
"""

import torch

from fvbench.cli import main
from fvbench.compute.flops import preset_flops
from fvbench.generation.composite import stage_view
from fvbench.generation.generator import Generator
from fvbench.generation.presets import get_preset
from fvbench.store import load_results


def test_composite_equals_the_one_family_cascade_bitwise():
    a = Generator.from_preset(get_preset("tiny-flashvideo")).generate("a red ball", 3)
    gen = Generator.from_preset(get_preset("tiny-composite"))
    assert type(gen).__name__ == "CompositeGenerator"
    assert gen.views[1].components.vae is gen.components.modules["fv_vae"]  # stage II sees its own VAE
    assert gen.views[1].components.vae is not gen.components.vae
    b = gen.generate("a red ball", 3)
    for sa, sb in zip(a.stages, b.stages):
        assert torch.equal(sa.latents, sb.latents) and torch.equal(sa.video, sb.video)


def test_composite_flops_count_each_stage_by_its_pipeline_and_each_text_encoding():
    one, comp = preset_flops(get_preset("tiny-flashvideo")), preset_flops(get_preset("tiny-composite"))
    assert comp["stages"] == one["stages"]
    assert comp["text_encode"] == 2 * one["text_encode"]  # stage II's text encoder is a second component


def test_composite_views_validate_each_stage_against_its_pipeline():
    import dataclasses

    import pytest

    p = get_preset("tiny-composite")
    assert stage_view(p, 1).components["vae"] is p.components["fv_vae"]
    bad = dataclasses.replace(p.stages[1], pipeline="nope")
    with pytest.raises(Exception, match="nope"):
        dataclasses.replace(p, stages=(p.stages[0], bad))
    bad = dataclasses.replace(p.stages[1], roles={"vae": "missing_vae"})
    with pytest.raises(ValueError, match="missing_vae"):
        dataclasses.replace(p, stages=(p.stages[0], bad))


def test_composite_sweep_shares_stage_one(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--presets", "tiny-composite", "--suite", "suites/ci.yaml", "--limit", "1", "--samples", "1",
                 "--stage2-nfe", "1,2,3", "--out", str(out), "--metrics", "none"]) == 0
    df = load_results(out)
    assert len(df) == 3 and (df["status"] == "done").all()
    assert df["s1_video_sha256"].nunique() == 1 and sorted(df["s1_shared"]) == [0, 1, 1]


def test_cross_family_cascade_is_each_family_stage_bitwise():
    """tiny-wan-flashvideo: stage I is tiny-wan's video, stage II is FlashVideo's tiny stage II run on that video."""
    import dataclasses

    seed, prompt = 5, "a red ball"
    comp = Generator.from_preset(get_preset("tiny-wan-flashvideo")).generate(prompt, seed)
    wan = Generator.from_preset(get_preset("tiny-wan")).generate(prompt, seed)
    assert torch.equal(comp.stages[0].latents, wan.stages[0].latents)
    assert torch.equal(comp.stages[0].video, wan.stages[0].video)
    fv_preset = get_preset("tiny-flashvideo")
    fv = Generator.from_preset(fv_preset)
    text, _ = fv.encode_text(prompt)
    stage2 = fv.run_stage(1, text, seed, previous=comp.stages[0])  # FlashVideo's stage II on Wan's pixels
    assert torch.equal(comp.stages[1].latents, stage2.latents) and torch.equal(comp.stages[1].video, stage2.video)
    assert comp.stages[1].video.shape == (9, 64, 64, 3)
    # the FLOPs are each family's own count of its stage
    flops = preset_flops(get_preset("tiny-wan-flashvideo"))
    assert flops["stages"]["stage2"] == preset_flops(fv_preset)["stages"]["stage2"]
    wan_flops = preset_flops(dataclasses.replace(get_preset("tiny-wan"), stages=(
        dataclasses.replace(get_preset("tiny-wan").stages[0], options={"decode": True}),)))
    assert flops["stages"]["stage1"] == wan_flops["stages"]["stage1"]
