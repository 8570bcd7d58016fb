"""Sweep expansion and unit identity."""

import pytest

from fvbench.errors import FvbenchError
from fvbench.generation.presets import get_preset
from fvbench.spec import SweepOptions, config_points, expand_units, group_units
from fvbench.suites import Prompt, Suite

SUITE = Suite("t", (Prompt("a", "a cat"), Prompt("b", "a dog")), "0" * 64, "test")


def test_default_nfe_sweep_grid():
    points = config_points(SweepOptions(presets=("tiny-flashvideo", "tiny-dit"), nfe_sweep=True))
    cascade = [p.nfe for p in points if p.base == "tiny-flashvideo"]
    single = [p.nfe for p in points if p.base == "tiny-dit"]
    assert cascade == [(a, b) for a in (10, 20, 30, 50) for b in (1, 2, 4, 8)]
    assert single == [(10,), (20,), (30,), (50,)]


def test_default_families_by_size():
    """Without --presets the trained ShapesWorld families run; a family that lacks a size is left out of it."""
    points = config_points(SweepOptions(sizes=("s", "m")))
    assert [p.base for p in points] == ["sw-flashvideo-s", "sw-dit-s", "sw-dit-p4-s", "sw-flashvideo-m"]
    assert all(get_preset(p.base).cpu_scale and not get_preset(p.base).builtin for p in points)
    with pytest.raises(FvbenchError, match="known sizes: m, s"):
        config_points(SweepOptions(sizes=("xl",)))


def test_unit_identity_ignores_order_and_depends_on_content():
    pts = config_points(SweepOptions(presets=("tiny-flashvideo",), stage1_nfe=(2, 3), stage2_nfe=(1, 2)))
    a = expand_units(pts, SUITE, 2)
    b = expand_units(list(reversed(pts)), Suite("t", tuple(reversed(SUITE.prompts)), "0" * 64, "x"), 2)
    assert {u.unit_hash for u in a} == {u.unit_hash for u in b}
    assert len({u.unit_hash for u in a}) == len(a) == 16
    seeds = {(u.prompt.id, u.sample): u.seed for u in a}
    assert all(seeds[(u.prompt.id, u.sample)] == u.seed for u in b)
    assert len(set(seeds.values())) == 4


def test_groups_share_stage1_across_stage2_variants():
    pts = config_points(SweepOptions(presets=("tiny-flashvideo",), stage1_nfe=(2, 3), stage2_nfe=(1, 2, 4)))
    units = expand_units(pts, SUITE, 1)
    groups = group_units(units)
    assert len(groups) == 2  # one per prompt
    for g in groups:
        assert len(g.units) == 6 and len({u.prefix_key for u in g.units}) == 2


@pytest.mark.parametrize("opts", [SweepOptions(presets=("tiny-flashvideo",), stage2_nfe=(0,)),
                                  SweepOptions(presets=("tiny-dit",), stage1_nfe=(4, -1))])
def test_nonpositive_nfe_is_refused(opts):
    with pytest.raises(FvbenchError, match="NFE must be positive"):
        config_points(opts)
