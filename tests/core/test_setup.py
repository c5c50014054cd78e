"""The pins that results depend on live in pyproject.toml; environment.yml must install the same."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _requirement_names(requirements):
    return {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower(): r.replace(" ", "") for r in requirements}


def test_environment_yml_pins_equal_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pyproject = _requirement_names(project["dependencies"] + project["optional-dependencies"]["test"])
    pip_block = (ROOT / "environment.yml").read_text().split("- pip:", 1)[1]
    conda_pip = _requirement_names(re.findall(r"^\s+- ([A-Za-z][^\s#]*)\s*$", pip_block, flags=re.M))
    assert pyproject == conda_pip
    assert pyproject["torch"] == "torch==2.13.0" and pyproject["transformers"].startswith("transformers==5.")


def test_torchvision_is_never_required():
    for name in ("pyproject.toml", "environment.yml"):
        assert not re.search(r"^\s*-?\s*\"?torchvision", (ROOT / name).read_text(), flags=re.M), name


def test_ci_runs_the_readme_test_command():
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")
    assert "make test" in (ROOT / "README.md").read_text()


def test_the_original_llava_pin_is_the_same_everywhere():
    from llava_patch.models.loading import LLAVA_REQUIREMENT

    assert f"LLAVA_REQUIREMENT := {LLAVA_REQUIREMENT}" in (ROOT / "Makefile").read_text()
    assert f"pip install --no-deps {LLAVA_REQUIREMENT}" in (ROOT / "environment.yml").read_text()
