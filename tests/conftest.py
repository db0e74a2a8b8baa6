"""Shared fixtures. Simulated data are session-scoped: each is built once per test run."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

#: the real public datasets, read in place (never copied into the project).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path under ``../shared/data``; skip (or fail on CI, where it must exist) when missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real data missing on CI: {path}")
        pytest.skip(f"real data not available: {path}")
    return path


@pytest.fixture(scope="session")
def shared():
    """``shared("folder", "file")`` -> path under ../shared/data (skip locally, fail on CI if missing)."""
    return shared_data


@pytest.fixture(scope="session")
def tissue_large():
    """100k-cell planted tissue: enough cells for 20% effect-size recovery."""
    from spatialpath.datasets import simulate_tissue

    return simulate_tissue(seed=7, n_cells=100_000)


@pytest.fixture(scope="session")
def tissue_small():
    from spatialpath.datasets import simulate_tissue

    return simulate_tissue(seed=3, n_cells=3_000)
