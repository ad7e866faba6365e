"""Shared fixtures: the real Im2Latex-100K files in ../shared (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, the real Im2Latex-100K sample, splits and formulas (not part of the project)."""
    if not (SHARED_DATA / "im2latex").is_dir():
        pytest.skip(f"real Im2Latex-100K files not found at {SHARED_DATA} (only present on the team's machines)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread is faster and steadier than two on a shared CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
