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


def _outputs_text(cell: dict) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append("".join(out.get("text", "")))
        for kind, value in out.get("data", {}).items():
            if kind.startswith("text/"):
                parts.append("".join(value))
    return "\n".join(parts)


def test_notebook_outputs_come_from_a_full_run_only():
    """`make outputs` keeps the outputs of a real run for the notebooks that run on a CPU in minutes; 04 (hours on a
    GPU) has none, and smoke-mode outputs are never committed (`make strip` removes them)."""
    notebooks = sorted((REPO / "notebooks").glob("0*.ipynb"))
    assert len(notebooks) == 6
    for nb_path in notebooks:
        code = [c for c in json.loads(nb_path.read_text())["cells"] if c["cell_type"] == "code"]
        executed = [c for c in code if c.get("outputs") or c.get("execution_count") is not None]
        if nb_path.name.startswith("04_"):
            assert not executed, f"{nb_path.name} has outputs: run `make strip` (04 keeps none)"
            continue
        assert executed, f"{nb_path.name} has no outputs: run `make outputs` (GitHub and Colab show them)"
        assert any("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", [])), (
            f"{nb_path.name}: its outputs show no figure"
        )
        setup_output = _outputs_text(code[1])  # the setup cell, after the install cell
        assert "smoke mode: False" in setup_output, (
            f"{nb_path.name} holds outputs of a smoke run (or none from its setup cell): run `make outputs`"
        )
        assert all(c.get("execution_count") is not None for c in code), f"{nb_path.name}: partly executed"
        counts = [c["execution_count"] for c in code]
        assert counts == sorted(counts), f"{nb_path.name}: cells were run out of order"
        for c in code:
            text = _outputs_text(c)
            assert "/shared/data" not in text, f"{nb_path.name}: an output shows the real files of ../shared"
            assert "Traceback" not in text and not any(o.get("output_type") == "error" for o in c["outputs"]), (
                f"{nb_path.name}: an output is an error"
            )


def test_no_pytorch_lightning_imports():
    for path in list((REPO / "i2l").rglob("*.py")) + list((REPO / "tests").rglob("*.py")):
        text = path.read_text()
        old = "pytorch" + "_lightning"
        assert f"import {old}" not in text and f"from {old}" not in text, path
