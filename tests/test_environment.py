"""The project's own files stay consistent: environment.yml vs pyproject, notebooks without outputs."""

import json
import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_the_project_with_dev_extra():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"], "conda-forge only"
    deps = env["dependencies"]
    pip = [d for d in deps if isinstance(d, dict)]
    assert pip == [{"pip": ['-e ".[dev]"']}] or pip == [{"pip": ["-e .[dev]"]}], pip
    names = {re.split(r"[<>=! ]", d)[0] for d in deps if isinstance(d, str)}
    assert names == {"python", "pip"}, "every other dependency belongs in pyproject.toml"
    py = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    low = re.search(r">=\s*(3\.\d+)", project["requires-python"]).group(1)
    assert f">={low}" in py, f"environment.yml {py!r} disagrees with requires-python {project['requires-python']!r}"


def test_pyproject_dependencies_have_lower_bounds_only():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    for r in reqs:
        assert "==" not in r and "<" not in r, f"{r}: lower bounds only (Colab must keep its preinstalled versions)"
    names = {re.split(r"[<>=\[ ]", r)[0].lower() for r in project["dependencies"]}
    assert {"torch", "torchvision", "lightning", "rapidfuzz", "ipywidgets", "tqdm"} <= names
    assert "pytorch-lightning" not in names
    assert any(r.startswith("ipywidgets>=7.7") for r in project["dependencies"])


def test_notebooks_are_committed_without_outputs():
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    for nb_path in notebooks:
        nb = json.loads(nb_path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, (
                    f"{nb_path.name} has outputs: run `make strip`"
                )


def test_no_pytorch_lightning_imports():
    for path in list((REPO / "i2l").rglob("*.py")) + list((REPO / "tests").rglob("*.py")):
        text = path.read_text()
        old = "pytorch" + "_lightning"
        assert f"import {old}" not in text and f"from {old}" not in text, path
