"""spatialpath: spatial pathology in Python.

Multiplexed tissue images and spatial omics in one micrometre frame (AnnData for cells and
spots, xarray for images), tumour-microenvironment statistics, and biomarker tables a trial
analyst can trust.

Subpackages are imported on first use, so ``import spatialpath as sp`` is fast and never
imports napari or Qt:

>>> import spatialpath as sp
>>> sp.datasets.simulate_tissue(n_cells=300).adata.n_obs
300
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from spatialpath._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from spatialpath import (
        align,
        datasets,
        export,
        gr,
        io,
        keys,
        metrics,
        model,
        pipeline,
        pl,
        provenance,
        regions,
    )

__all__ = [
    "__version__",
    "align",
    "datasets",
    "export",
    "gr",
    "io",
    "keys",
    "metrics",
    "model",
    "pipeline",
    "pl",
    "provenance",
    "regions",
]

#: subpackages and modules loaded lazily on attribute access (napari is reached only through
#: its own entry point, never from here).
_LAZY = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"spatialpath.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'spatialpath' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
