"""Prompt suites: VBench's data file read without importing vbench, per-dimension lists, user prompt files."""

import hashlib
import sys

import pytest

from fvbench.errors import FvbenchError, UnknownNameError
from fvbench.suites import VBENCH_DIMENSIONS, load_suite, vbench_info_path

COUNTS = {"subject_consistency": 72, "dynamic_degree": 72, "motion_smoothness": 72, "background_consistency": 86,
          "scene": 86, "aesthetic_quality": 93, "imaging_quality": 93, "overall_consistency": 93,
          "temporal_flickering": 75, "object_class": 79, "multiple_objects": 82, "human_action": 100, "color": 85,
          "spatial_relationship": 84, "appearance_style": 90, "temporal_style": 100}


def test_vbench_suite_is_read_from_the_package_without_importing_it():
    suite = load_suite("vbench")
    assert "vbench" not in sys.modules
    assert len(suite.prompts) == 944  # 946 entries, 944 unique prompts
    assert suite.samples_per_prompt == 5
    assert suite.sha256 == hashlib.sha256(vbench_info_path().read_bytes()).hexdigest()
    assert len({p.id for p in suite.prompts}) == 944


@pytest.mark.parametrize("dimension", VBENCH_DIMENSIONS)
def test_vbench_dimension_counts(dimension):
    assert len(load_suite(f"vbench:{dimension}").prompts) == COUNTS[dimension]


def test_unknown_suite_and_dimension():
    with pytest.raises(UnknownNameError, match="known:.*vbench:color"):
        load_suite("nosuch")
    with pytest.raises(UnknownNameError, match="unknown VBench dimension 'colour'"):
        load_suite("vbench:colour")


def test_prompt_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("a red cat\n\n  a dog; DROP TABLE units;--\n")
    s = load_suite(str(txt))
    assert [p.text for p in s.prompts] == ["a red cat", "  a dog; DROP TABLE units;--"]
    yml = tmp_path / "p.yaml"
    yml.write_text("name: mine\nsamples_per_prompt: 2\nprompts:\n  - {id: a, text: one, dimensions: [color]}\n  - two\n")
    s = load_suite(str(yml))
    assert s.name == "mine" and s.samples_per_prompt == 2
    assert [(p.id, p.text, p.dimensions) for p in s.prompts] == [("a", "one", ("color",)), ("p0001", "two", ())]


@pytest.mark.parametrize("name,content,message", [
    ("empty.txt", "\n\n", "has no prompts"),
    ("bad.yaml", "prompts: [unclosed", "not valid YAML"),
    ("keys.yaml", "name: x\nprompts: [a]\nbogus: 1\n", "unknown key"),
    ("dup.yaml", "prompts:\n  - {id: a, text: x}\n  - {id: a, text: y}\n", "duplicate prompt id"),
    ("blank.yaml", "prompts: ['  ']\n", "empty prompt"),
    ("type.yaml", "prompts: [[1, 2]]\n", "expected a prompt string"),
])
def test_malformed_prompt_files_are_refused(tmp_path, name, content, message):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(FvbenchError, match=message):
        load_suite(str(f))


def test_missing_prompt_file():
    with pytest.raises(FvbenchError, match="does not exist"):
        load_suite("/nonexistent/prompts.txt")
