"""What every notebook shares: the install cell, the setup call, Google Drive, and the choice of a model.

- :data:`INSTALL_CELL`: the first code cell of every notebook. On Colab (any Python where ``i2l`` is not
  importable) it installs the package from :data:`REPO_URL`; elsewhere it does nothing.
- :func:`setup`: seed, versions, device, the Colab extras (custom widget manager, TeX when asked), plot style,
  the smoke switch.
- :func:`use_drive`: on Colab, keep the run folder on Google Drive, so that 05 and 06 find what 04 saved.
- :func:`choose_model`: the model a notebook reads with, chosen openly; nothing trains unless asked.

The repository's address is written once, in :data:`REPO`; ``python -m i2l.notebook`` writes the install cell
and the Colab badge into every notebook, and ``tests/test_notebook.py`` checks that they match.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from i2l.config import PRETRAINED, Config, get_config, project_root, smoke_mode
from i2l.errors import I2LError

#: The course's GitHub repository (owner/name): the one place its address is written.
REPO = "i2l-course/i2l"
REPO_URL = f"https://github.com/{REPO}"
#: Overrides the install cell's source (a pip requirement, e.g. ``git+file:///path/to/clone``), for tests.
INSTALL_URL_ENV = "I2L_INSTALL_URL"
#: Where :func:`use_drive` mounts Google Drive on Colab, and the run folder it points at there.
DRIVE_MOUNT = "/content/drive"
DRIVE_RUNS = f"{DRIVE_MOUNT}/MyDrive/i2l/runs"

INSTALL_CELL = f"""\
# On Colab (or wherever i2l is not installed yet) this installs the course's package; elsewhere it does nothing.
import importlib
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("i2l") is None:
    source = os.environ.get("{INSTALL_URL_ENV}", "git+{REPO_URL}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", source], check=True)
    importlib.invalidate_caches()"""


def colab_badge(notebook: str) -> str:
    """The Markdown 'Open In Colab' badge of ``notebook`` (a file name in ``notebooks/``)."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{notebook})")


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def install_tex() -> bool:
    """On Colab, install pdflatex and Ghostscript from apt (about a minute), so that i2l renders formulas exactly as
    Im2Latex-100K was made; returns whether pdflatex is there. Elsewhere it only looks: without TeX, rendering
    falls back to matplotlib's mathtext and says so."""
    from i2l.data.render import latex_available

    if latex_available():
        return True
    if not in_colab():
        print("pdflatex or Ghostscript not found: i2l renders with matplotlib's mathtext here, which looks different "
              "from Im2Latex-100K (install texlive-latex-base and ghostscript to render like the dataset)")
        return False
    print("installing pdflatex and Ghostscript from apt (about a minute) ...")  # pragma: no cover - only on Colab
    subprocess.run("apt-get update -qq && apt-get install -y -qq --no-install-recommends texlive-latex-base "
                   "ghostscript > /dev/null", shell=True, check=True)  # pragma: no cover
    return latex_available()  # pragma: no cover


def device_name() -> str:
    """'cuda' (with the GPU's name), 'mps' or 'cpu'."""
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def versions() -> dict[str, str]:
    """Versions of Python and the main libraries."""
    import lightning
    import torch
    import torchvision

    import i2l

    return {
        "python": platform.python_version(),
        "i2l": i2l.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning.__version__,
    }


def setup(preset: str | None = None, seed: int | None = None, quiet: bool = False, tex: bool = False,
          **overrides: Any) -> Config:
    """Seed, print versions and device, set the plot style; return the config.

    On Colab it enables the custom widget manager (for the app of notebook 06) and, with ``tex=True`` (the
    notebooks that render formulas), installs pdflatex (:func:`install_tex`). In smoke mode (``I2L_SMOKE=1`` or
    ``CI`` set) the ``smoke`` preset is used whatever ``preset`` says, so every notebook runs in seconds on a CPU.
    """
    if in_colab():  # pragma: no cover - only on Colab
        from google.colab import output  # type: ignore

        output.enable_custom_widget_manager()
    if tex:
        install_tex()
    smoke = smoke_mode()
    cfg = get_config("smoke" if smoke else preset, **overrides)
    if seed is not None:
        cfg = cfg.replace(seed=seed)

    import lightning as L

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        import matplotlib as mpl
        import seaborn as sns

        sns.set_theme(context="notebook", style="whitegrid")
        mpl.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight"})
    except ImportError:  # pragma: no cover
        pass
    if not quiet:
        v = " | ".join(f"{k} {val}" for k, val in versions().items())
        print(v)
        print(f"device: {device_name()} | colab: {in_colab()} | smoke mode: {smoke} | preset: {cfg.name}")
    return cfg


def use_drive(cfg: Config, enabled: bool = True, mount: Any = None) -> Config:
    """``cfg`` with its run folder on Google Drive (:data:`DRIVE_RUNS`), on Colab when ``enabled``: checkpoints
    outlive the Colab session, and notebooks 05 and 06 find what 04 saved there. Elsewhere (or when not
    ``enabled``) ``cfg`` is returned as it is. ``mount`` replaces ``google.colab.drive.mount`` (tests)."""
    if not enabled:
        print(f"run folder: {cfg.run_dir}")
        return cfg
    if mount is None:
        if not in_colab():
            print(f"not on Colab: the run folder stays {cfg.run_dir}")
            return cfg
        from google.colab import drive  # type: ignore  # pragma: no cover - only on Colab

        mount = drive.mount  # pragma: no cover
    mount(DRIVE_MOUNT)
    cfg = cfg.replace(out_dir=DRIVE_RUNS)
    Path(DRIVE_RUNS).mkdir(parents=True, exist_ok=True)
    print(f"run folder on Google Drive: {cfg.run_dir}")
    return cfg


#: The models a notebook can read with (:func:`choose_model`).
MODEL_CHOICES = ("pretrained", "run", "demo")


def choose_model(which: str, cfg: Config) -> str | Path:
    """The model for notebooks 05 and 06, chosen openly; nothing is trained here.

    - ``"pretrained"``: the model shipped with i2l (``i2l/weights``);
    - ``"run"``: your run of notebook 04, the checkpoint in ``cfg.run_dir`` (the same run folder: call
      :func:`use_drive` the same way as 04 did);
    - ``"demo"``: the model of ``make demo`` (``i2l demo``).
    A missing checkpoint raises :class:`I2LError` saying what to run first."""
    from i2l.train import find_checkpoint

    if which == "pretrained":
        return PRETRAINED
    if which == "run":
        return find_checkpoint(cfg, train_if_missing=False)
    if which == "demo":
        from i2l.demo import DEMO_RUN

        return find_checkpoint(get_config("cpu", run_name=DEMO_RUN, out_dir=cfg.out_dir), train_if_missing=False)
    raise I2LError(f"unknown model {which!r}: choose one of {', '.join(MODEL_CHOICES)}")


# ------------------------------------------------------------------------- the notebooks' shared header
def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def header_problems(path: str | Path) -> list[str]:
    """What differs in notebook ``path`` from the shared header: the title cell's Colab badge, and the install cell
    as the first code cell. Empty when it matches."""
    path = Path(path)
    nb = json.loads(path.read_text())
    problems = []
    cells = nb["cells"]
    if not cells or cells[0]["cell_type"] != "markdown" or colab_badge(path.name) not in _source(cells[0]):
        problems.append(f"{path.name}: the first cell lacks the Colab badge {colab_badge(path.name)}")
    code = [c for c in cells if c["cell_type"] == "code"]
    if not code or _source(code[0]) != INSTALL_CELL:
        problems.append(f"{path.name}: the first code cell is not i2l.notebook.INSTALL_CELL")
    return problems


def sync_header(path: str | Path) -> bool:
    """Write the shared header into notebook ``path`` (badge in the title cell, the install cell as the first code
    cell); returns whether the file changed."""
    path = Path(path)
    text = path.read_text()
    nb = json.loads(text)
    cells = nb["cells"]
    title = _source(cells[0])
    badge = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
    title = badge.sub(colab_badge(path.name), title) if badge.search(title) else \
        title.replace("\n", "\n\n" + colab_badge(path.name) + "\n", 1)
    cells[0]["source"] = title.splitlines(keepends=True)
    first_code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    install = {"cell_type": "code", "execution_count": None, "id": "install", "metadata": {}, "outputs": [],
               "source": INSTALL_CELL.splitlines(keepends=True)}
    if "importlib.util.find_spec(\"i2l\")" in _source(cells[first_code]):
        install["id"] = cells[first_code].get("id", "install")
        cells[first_code] = install
    else:
        cells.insert(first_code, install)
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new)
    return new != text


def main() -> None:  # pragma: no cover - a maintenance command, its parts are tested
    changed = [p.name for p in sorted((project_root() / "notebooks").glob("[0-9]*.ipynb")) if sync_header(p)]
    print("updated: " + ", ".join(changed) if changed else "every notebook's header is up to date")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
