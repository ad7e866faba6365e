"""Fresh Python environments for the tests that must run outside the project's own: a new virtual environment in
a temporary folder that sees the running interpreter's installed packages (torch, lightning, ipywidgets, ...) but
not ``i2l``.

The new environment's site-packages gets a ``.pth`` file whose lines are the running interpreter's site-packages
folders. A plain path line in a ``.pth`` adds that folder to ``sys.path`` without processing the ``.pth`` files
inside it, so the editable install of ``i2l`` there (``__editable__.i2l-*.pth``) stays inactive; the new
environment's own site-packages comes first, so what is installed into it shadows the shared packages. pip run in
the new environment installs into it only: it never uninstalls what lies outside it ("Not uninstalling ... outside
environment"), and :meth:`FreshEnv.assert_host_untouched` checks that nothing changed there.

Every command runs with ``cwd`` in the temporary folder (never the repository, where ``import i2l`` would find the
source folder) and without ``PYTHONPATH``, unless a test sets it.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

#: Set by tests/test_widgets_v7.py for the tests/test_widgets.py it runs: the ipywidgets major version expected.
EXPECT_IPYWIDGETS_ENV = "I2L_EXPECT_IPYWIDGETS"
#: Environment variables that would let the new environment see more (or other) packages than intended.
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")


def host_site_packages() -> list[Path]:
    """The running interpreter's site-packages folders (where the project's dependencies are installed)."""
    candidates = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    out: list[Path] = []
    for c in candidates:
        p = Path(c).resolve()
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def _listing(folders: list[Path]) -> dict[str, list[str]]:
    return {str(f): sorted(os.listdir(f)) for f in folders}


@dataclass
class FreshEnv:
    """A virtual environment in ``root`` / "venv" that sees the host's packages through a ``.pth`` file."""

    root: Path
    python: Path
    site_packages: Path
    host: list[Path]
    _host_before: dict[str, list[str]] = field(repr=False, default_factory=dict)

    def environ(self, **extra: str) -> dict[str, str]:
        """The environment of every command: the current one less PYTHONPATH and the like, plus ``extra``."""
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
        env.update(extra)
        return env

    def run(self, *args: str | Path, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """``python *args`` in this environment, in ``root``; returns the completed process (not checked)."""
        return subprocess.run([str(self.python), *map(str, args)], cwd=self.root, env=self.environ(**extra_env),
                              capture_output=True, text=True, timeout=timeout)

    def pip_install(self, *requirements: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``pip install -q *requirements`` into this environment; fails the test with pip's output if pip fails."""
        r = self.run("-m", "pip", "install", "-q", *requirements, timeout=timeout)
        assert r.returncode == 0, f"pip install {' '.join(requirements)} failed:\n{output(r)}"
        return r

    def assert_host_untouched(self) -> None:
        """Nothing was added to or removed from the host's site-packages since this environment was made."""
        assert _listing(self.host) == self._host_before, "the host environment's site-packages changed"


def output(r: subprocess.CompletedProcess[str], tail: int = 6000) -> str:
    """The end of a command's stdout and stderr, for assertion messages."""
    return f"exit {r.returncode}\n--- stdout\n{r.stdout[-tail:]}\n--- stderr\n{r.stderr[-tail:]}"


def fresh_env(root: Path) -> FreshEnv:
    """A new virtual environment (with pip) in ``root`` / "venv" that imports the host's packages but not ``i2l``."""
    root = Path(root)
    host = host_site_packages()
    before = _listing(host)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], cwd=root, check=True, capture_output=True, text=True,
                   env={k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}, timeout=300)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             cwd=root, check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    site_packages = Path(purelib)
    assert site_packages.is_dir() and site_packages.resolve().is_relative_to(venv.resolve()), site_packages
    (site_packages / "_i2l_host_packages.pth").write_text("".join(f"{p}\n" for p in host))
    return FreshEnv(root=root, python=python, site_packages=site_packages, host=host, _host_before=before)


__all__ = ["EXPECT_IPYWIDGETS_ENV", "FreshEnv", "fresh_env", "host_site_packages", "output"]
