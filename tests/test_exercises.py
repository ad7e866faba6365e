"""The notebooks' exercises: one to three per notebook, each a task, a cell for the learner and a hidden solution.

An exercise is a markdown cell ``### Exercise N: <title>``, then, before the next heading, a code cell for the
learner (``# your code here``) and a hidden solution: a code cell collapsed in Colab (``cellView: form``) and
JupyterLab (``jupyter.source_hidden``) whose first line is :data:`SOLUTION_TITLE` and which ends in ``assert``s
(so that CI, which runs every notebook in smoke mode, fails when the exercise's claim stops holding), or a hidden
markdown cell starting with ``**Solution.**``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTION_TITLE = "# @title Solution (run to check; double-click to show the code)"
EXERCISE = re.compile(r"### Exercise (\d+): \S")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _is_heading(cell: dict) -> bool:
    return cell["cell_type"] == "markdown" and _source(cell).lstrip().startswith("#")


def _hidden(cell: dict) -> bool:
    return cell.get("metadata", {}).get("jupyter", {}).get("source_hidden") is True


def exercises(nb: dict) -> list[tuple[int, str, list[dict]]]:
    """(number, heading, the cells up to the next heading) of every exercise of notebook ``nb``."""
    cells = nb["cells"]
    found = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        match = EXERCISE.match(_source(cell).lstrip())
        if match is None:
            continue
        end = next((j for j in range(i + 1, len(cells)) if _is_heading(cells[j])), len(cells))
        found.append((int(match.group(1)), _source(cell).splitlines()[0], cells[i + 1:end]))
    return found


def solution_problems(cell: dict) -> list[str]:
    """What is wrong with ``cell`` as a hidden solution; empty when it is one."""
    src = _source(cell)
    if cell["cell_type"] == "code":
        problems = []
        if cell.get("metadata", {}).get("cellView") != "form" or not _hidden(cell):
            problems.append("a code solution needs metadata cellView: form and jupyter.source_hidden: true")
        if src.splitlines()[:1] != [SOLUTION_TITLE]:
            problems.append(f"a code solution's first line must be {SOLUTION_TITLE!r}")
        if not re.search(r"^assert\b", src, re.MULTILINE):
            problems.append("a code solution must check its claim with assert")
        return problems
    if not _hidden(cell) or not src.startswith("**Solution.**"):
        return ["a text solution is a markdown cell with jupyter.source_hidden: true starting with **Solution.**"]
    return []


def test_every_numbered_notebook_is_checked():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_one_to_three_exercises_numbered_in_order(path):
    found = exercises(json.loads(path.read_text()))
    assert 1 <= len(found) <= 3, f"{path.name}: {len(found)} exercises (expected 1 to 3)"
    assert [n for n, _, _ in found] == list(range(1, len(found) + 1)), f"{path.name}: exercises numbered 1, 2, 3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_each_exercise_has_a_learner_cell_then_a_hidden_solution(path):
    for _, heading, cells in exercises(json.loads(path.read_text())):
        learner = next((k for k, c in enumerate(cells) if c["cell_type"] == "code"
                        and "# your code here" in _source(c) and not _hidden(c)), None)
        assert learner is not None, f"{path.name}, {heading}: no code cell with '# your code here' for the learner"
        solutions = [c for c in cells[learner + 1:] if "Solution" in _source(c)[:80]]
        assert solutions, f"{path.name}, {heading}: no solution after the learner's cell"
        for cell in solutions:
            assert solution_problems(cell) == [], f"{path.name}, {heading}: {solution_problems(cell)}"


def test_the_checks_catch_a_visible_or_unchecked_solution():
    visible = {"cell_type": "code", "metadata": {}, "source": [SOLUTION_TITLE + "\n", "assert True"]}
    unchecked = {"cell_type": "code", "metadata": {"cellView": "form", "jupyter": {"source_hidden": True}},
                 "source": [SOLUTION_TITLE + "\n", "print(1)"]}
    shown_text = {"cell_type": "markdown", "metadata": {}, "source": ["**Solution.** Because."]}
    assert solution_problems(visible) and solution_problems(unchecked) and solution_problems(shown_text)
    ok = {**unchecked, "source": [SOLUTION_TITLE + "\n", "x = 1\n", "assert x == 1"]}
    assert solution_problems(ok) == []
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["### Exercise 1: a task"]},
                    {"cell_type": "code", "metadata": {}, "source": ["# your code here"]}, ok,
                    {"cell_type": "markdown", "metadata": {}, "source": ["## Summary"]},
                    {"cell_type": "code", "metadata": {}, "source": ["x = 2"]}]}
    [(number, heading, cells)] = exercises(nb)
    assert number == 1 and heading == "### Exercise 1: a task" and cells[-1] is ok  # stops at the next heading
