"""SpatialData interop, shared parts: the lazy import, the pixel-grid convention and the result type.

The conversion itself is in :mod:`spatialpath.io._spatialdata_write` (:func:`to_spatialdata`) and
:mod:`spatialpath.io._spatialdata_read` (:func:`from_spatialdata`); see ``docs/spatialdata.md``.

Pixel grids. spatialdata places the centre of pixel ``i`` at intrinsic coordinate ``i + 0.5`` (the
pixel covers ``[i, i + 1]``); spatialpath places it at ``origin + i × pixel_size`` µm. The intrinsic →
µm map of a spatialpath image is therefore ``Translation(origin - pixel_size / 2) ∘ Scale(pixel_size)``:
``x_µm = pixel_size · x_intrinsic + origin - pixel_size / 2``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from spatialpath.model import DataModelError

__all__ = ["SpatialPathElements"]

#: ``sdata.attrs`` key of spatialpath's record (units, coordinate system, elements' attrs, baked transforms).
SDATA_ATTRS_KEY = "spatialpath"
#: ``table.uns`` key of what :func:`to_spatialdata` added to a table (removed again on reading).
TABLE_UNS_KEY = "spatialpath_spatialdata"
#: suffix of the circles element that carries the positions of a table's cells.
CIRCLES_SUFFIX = "_circles"
#: obs columns :func:`to_spatialdata` adds to annotate the circles (spatialdata's region/instance keys).
REGION_KEY = "spatialdata_region"
INSTANCE_KEY = "spatialdata_instance"
#: tolerance on "is this matrix a pixel grid (positive isotropic scale + translation)".
GRID_RTOL = 1e-9
XY = ("x", "y")


def import_spatialdata() -> ModuleType:
    """``import spatialdata`` or an ImportError naming the extra to install."""
    try:
        import spatialdata
    except ImportError:
        raise ImportError(
            'SpatialData interop needs spatialdata 0.7: pip install "spatialpath[spatialdata]"'
        ) from None
    return spatialdata


def grid_matrix(pixel_size_um: float, origin_um: tuple[float, float]) -> np.ndarray:
    """3×3 map from spatialdata intrinsic pixel coordinates to spatialpath µm (see the module docstring).

    Examples
    --------
    >>> grid_matrix(2.0, (10.0, 0.0)) @ [0.5, 0.5, 1.0]  # centre of pixel (0, 0) -> the origin
    array([10.,  0.,  1.])
    """
    ps = float(pixel_size_um)
    return np.array(
        [[ps, 0.0, origin_um[0] - ps / 2], [0.0, ps, origin_um[1] - ps / 2], [0.0, 0.0, 1.0]],
        dtype=np.float64,
    )


def grid_of(matrix: np.ndarray) -> tuple[float, tuple[float, float]] | None:
    """``(pixel_size_um, origin_um)`` when ``matrix`` is a pixel grid (positive isotropic scale + shift)."""
    lin = matrix[:2, :2]
    s = lin[0, 0]
    if not (s > 0 and abs(lin[0, 1]) <= GRID_RTOL * s and abs(lin[1, 0]) <= GRID_RTOL * s):
        return None
    if abs(lin[1, 1] - s) > GRID_RTOL * s:
        return None
    s = float(s)
    return s, (float(matrix[0, 2] + s / 2), float(matrix[1, 2] + s / 2))


def xy_matrix(transformation: Any) -> np.ndarray:
    """The 3×3 (x, y) affine matrix of a spatialdata transformation."""
    return np.asarray(transformation.to_affine_matrix(input_axes=XY, output_axes=XY), dtype=np.float64)


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types (zarr attrs); anything else becomes its ``str``."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def check_coordinate_system(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise DataModelError(f"coordinate_system must be a non-empty name, got {name!r}")
    return name


@dataclass
class SpatialPathElements:
    """What :func:`~spatialpath.io.from_spatialdata` returns: spatialpath objects by element name.

    Attributes
    ----------
    images, labels
        µm DataArrays (dims ``c, y, x`` / ``y, x``), lazy with dask as stored.
    shapes
        GeoDataFrames in the coordinate system (µm).
    tables
        AnnData tables; ``obsm["spatial"]`` in the coordinate system (µm) for tables annotating circles.
    transforms
        For images and labels whose pixel grid is rotated, sheared or anisotropic in the coordinate
        system: the :class:`~spatialpath.align.Transform` from the element's own µm frame into the
        coordinate system (the pixels are not resampled). Apply it with
        :func:`spatialpath.align.apply_transform`.
    coordinate_system
        The coordinate system the elements were read in.
    """

    images: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    shapes: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    transforms: dict[str, Any] = field(default_factory=dict)
    coordinate_system: str = "global"

    def __repr__(self) -> str:
        parts = [
            f"{kind}={sorted(getattr(self, kind))}"
            for kind in ("images", "labels", "shapes", "tables", "transforms")
            if getattr(self, kind)
        ]
        return f"SpatialPathElements({self.coordinate_system!r}: {', '.join(parts) or 'empty'})"
