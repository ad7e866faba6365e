"""The one setup call at the top of every notebook: seed, versions, device, Colab, plot style, smoke switch."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

from i2l.config import Config, get_config, smoke_mode

REPO_URL = "https://github.com/i2l-course/i2l"


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def _colab_setup() -> None:  # pragma: no cover - only on Colab
    try:
        import i2l  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{REPO_URL}"], check=True)
    from google.colab import output  # type: ignore

    output.enable_custom_widget_manager()


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


def setup(preset: str | None = None, seed: int | None = None, quiet: bool = False, **overrides: Any) -> Config:
    """Seed, print versions and device, detect Colab, set the plot style; return the config.

    In smoke mode (``I2L_SMOKE=1`` or ``CI`` set) the ``smoke`` preset is used whatever ``preset`` says,
    so every notebook runs in seconds on a CPU.
    """
    if in_colab():  # pragma: no cover
        _colab_setup()
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
