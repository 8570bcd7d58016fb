"""Checks every model family's tests make the same way: a diffusers-layout folder loads to the same generator, and
a missing file is a one-line error naming it."""

import dataclasses
from pathlib import Path

import pytest
import torch

from fvbench.errors import FvbenchError
from fvbench.generation.generator import Generator
from fvbench.generation.presets import Preset


def assert_loads_the_same(built: Generator, preset: Preset, folder: Path, prompt: str) -> Generator:
    """The preset loaded from ``folder`` generates bitwise what the generator built in code does; returns it."""
    loaded = Generator.from_preset(dataclasses.replace(preset, weights=str(folder)))
    a, b = built.generate(prompt, 3).stages[0], loaded.generate(prompt, 3).stages[0]
    assert torch.equal(a.latents, b.latents) and torch.equal(a.video, b.video)
    return loaded


def assert_missing_file_named(preset: Preset, folder: Path, role: str, file: str) -> None:
    """Without ``folder/role/file`` loading fails with one line naming the role and its folder."""
    (folder / role / file).unlink()
    with pytest.raises(FvbenchError) as e:
        Generator.from_preset(dataclasses.replace(preset, weights=str(folder)))
    msg = str(e.value)
    assert "\n" not in msg and role in msg and str(folder / role) in msg


def assert_defaults(cls, given: dict, skip: tuple[str, ...] = ()) -> None:
    """Every value in ``given`` equals the default of ``cls.__init__`` (or ``__call__``) for that name: a preset
    transcribed from a published config that equals the class defaults carries no typo."""
    import inspect

    fn = cls.__init__ if isinstance(cls, type) else cls
    params = inspect.signature(fn).parameters
    for key, value in given.items():
        if key in skip:
            continue
        default = params[key].default
        default = list(default) if isinstance(default, tuple) else default
        assert value == default, f"{key}: preset {value!r}, diffusers default {default!r}"
