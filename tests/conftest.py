"""Test setup: never touch a hub, keep thread counts fixed so outputs are reproducible."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_cascade():
    """The tiny-flashvideo preset's generator, built once per session."""
    from fvbench.generation.generator import Generator
    from fvbench.generation.presets import get_preset

    return Generator.from_preset(get_preset("tiny-flashvideo"))
