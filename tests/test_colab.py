"""The notebooks' install cell, run for real as on Colab: in a fresh environment where ``i2l`` is not importable
(but its heavy dependencies are, as on Colab), the first code cell of the notebooks pip-installs the package, from
this repository's committed HEAD instead of GitHub (``I2L_INSTALL_URL=git+file://...``), and a second run does
nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO
from envs import fresh_env, output

from i2l.notebook import INSTALL_CELL, INSTALL_URL_ENV

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))


def install_cell(notebook: Path) -> str:
    """The source of the first code cell of ``notebook``."""
    cells = json.loads(notebook.read_text())["cells"]
    src = next(c for c in cells if c["cell_type"] == "code")["source"]
    return "".join(src) if isinstance(src, list) else src


def test_every_notebook_starts_with_the_install_cell() -> None:
    assert [p.name for p in NOTEBOOKS] == [f"0{k}_{name}.ipynb" for k, name in enumerate(
        ["data_exploration", "tokenization", "model", "training", "evaluation", "interactive_inference"], 1)]
    for nb in NOTEBOOKS:
        assert install_cell(nb) == INSTALL_CELL, f"{nb.name}: the first code cell is not i2l.notebook.INSTALL_CELL"


@pytest.mark.slow
def test_the_install_cell_installs_i2l_where_it_is_missing(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.fail("git not found: this test pip-installs i2l from the repository (git+file://), which needs git")
    if not (REPO / ".git").exists():
        pytest.fail(f"{REPO} is not a git checkout: the install cell is tested by installing its committed HEAD")
    env = fresh_env(tmp_path)

    # the isolation: the dependencies are there, i2l is not (else this test could not fail)
    r = env.run("-c", "import torch, lightning, ipywidgets, anywidget")
    assert r.returncode == 0, f"the fresh environment does not see the installed dependencies:\n{output(r)}"
    r = env.run("-c", "import i2l; print(i2l.__file__)")
    assert r.returncode != 0 and "No module named 'i2l'" in r.stderr, \
        f"i2l is importable in the fresh environment before the install cell ran (isolation broken):\n{output(r)}"

    # the first notebook's install cell installs i2l (as on Colab, where it is missing)
    cells = {nb.name: install_cell(nb) for nb in NOTEBOOKS}
    assert set(cells.values()) == {INSTALL_CELL}
    first, *others = NOTEBOOKS
    r = env.run("-c", cells[first.name], **{INSTALL_URL_ENV: f"git+{REPO.as_uri()}"})
    assert r.returncode == 0, f"{first.name}'s install cell failed:\n{output(r)}"

    r = env.run("-c", "import i2l; print(i2l.__file__); from i2l.notebook import setup; setup(quiet=True); print('ok')")
    assert r.returncode == 0, f"i2l does not import or set up after the install cell:\n{output(r)}"
    installed = Path(r.stdout.splitlines()[0]).resolve()
    assert installed.is_relative_to(env.site_packages.resolve()), installed
    assert not installed.is_relative_to(REPO), installed
    assert r.stdout.splitlines()[-1] == "ok"

    # now i2l is there: every notebook's install cell does nothing (no pip: a source pip cannot install is not used)
    bogus = str(tmp_path / "no-such-package-i2l")
    r = env.run("-m", "pip", "install", "-q", bogus)
    assert r.returncode != 0, f"pip installed the bogus source {bogus}:\n{output(r)}"
    for nb in [first, *others]:
        r = env.run("-c", cells[nb.name], timeout=60, **{INSTALL_URL_ENV: bogus})
        assert r.returncode == 0, f"{nb.name}'s install cell ran pip although i2l is installed:\n{output(r)}"
        assert "pip" not in r.stdout + r.stderr, output(r)
    env.assert_host_untouched()
