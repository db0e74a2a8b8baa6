"""spatialpath's napari plugin (npe2) and its notebook entry point.

Install with ``pip install "spatialpath[napari]"``. The plugin's contributions are declared in
``napari.yaml`` (reader, writers, sample data and four widgets); this module only exposes
:func:`view`, and importing it imports neither napari nor Qt: they are imported when a viewer is
made. The widgets' logic lives in plain functions (``_cell_types``, ``_nhood``,
``_compartments``, ``_alignment``) tested without Qt; their Qt front ends live in ``_qt/``.

Every layer spatialpath makes is in micrometres: points and shapes hold µm directly, images and
masks hold pixels with ``scale`` = pixel size (µm) and ``translate`` = origin (µm), and registered
modalities are placed by the layer ``affine`` (no resampling). ``layer.metadata`` carries the data
behind a layer under the keys of :mod:`spatialpath.napari._keys`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["view"]

if TYPE_CHECKING:  # pragma: no cover
    from spatialpath.napari._view import view


def __getattr__(name: str) -> Any:
    if name == "view":
        from spatialpath.napari._view import view

        return view
    raise AttributeError(f"module 'spatialpath.napari' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
