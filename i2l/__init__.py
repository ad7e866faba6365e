"""i2l: images of mathematical formulas to LaTeX, a course of notebooks over a small, tested package."""

from i2l.config import PRESETS, Config, get_config, smoke_mode

__version__ = "0.1.0"
__all__ = ["Config", "PRESETS", "get_config", "smoke_mode", "__version__"]
