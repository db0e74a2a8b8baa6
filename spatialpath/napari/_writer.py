"""The plugin's writers: a Shapes layer as GeoJSON compartments and a Points layer as landmarks, in µm.

napari passes a layer's ``data`` (data coordinates) and its state ``meta`` (``scale``,
``translate``, ``rotate``, ``shear``, ``affine``, ``features``, ``metadata``, ``name``). Both writers
convert the data to world coordinates exactly as ``layer.data_to_world`` does,
``world = affine · (rotate · shear · scale · data + translate)``, which for spatialpath layers is the
shared µm frame in (y, x) order, then write x = column axis and y = row axis.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.napari import _keys

__all__ = ["data_to_world", "landmarks_table", "shapes_to_regions", "write_compartments", "write_landmarks"]

#: column of a Points layer's features naming each landmark, written to the CSV when present.
LANDMARK_NAME_COLUMNS = ("landmark", "name", "label", "id")


def _matrix(meta: Mapping[str, Any]) -> np.ndarray:
    """The 3×3 (y, x) data-to-world matrix of a 2-D layer state."""
    scale = np.asarray(meta.get("scale", (1.0, 1.0)), float)[-2:]
    translate = np.asarray(meta.get("translate", (0.0, 0.0)), float)[-2:]
    rotate = np.asarray(meta.get("rotate", np.eye(2)), float)
    rotate = rotate[-2:, -2:] if rotate.ndim == 2 else np.eye(2)
    shear = np.asarray(meta.get("shear", (0.0,)), float).ravel()
    shear_m = np.array([[1.0, shear[-1] if shear.size else 0.0], [0.0, 1.0]])
    linear = rotate @ shear_m @ np.diag(scale)
    m = np.eye(3)
    m[:2, :2], m[:2, 2] = linear, translate
    affine = np.asarray(meta.get("affine", np.eye(3)), float)
    if affine.shape != (3, 3):  # an N-D affine: keep its last two axes
        a = np.eye(3)
        a[:2, :2], a[:2, 2] = affine[-3:-1, -3:-1], affine[-3:-1, -1]
        affine = a
    return affine @ m


def data_to_world(data: Any, meta: Mapping[str, Any]) -> np.ndarray:
    """World (µm, (y, x)) coordinates of ``(n, 2)`` data coordinates of a layer with state ``meta``.

    Examples
    --------
    >>> data_to_world([[0, 0], [2, 4]], {"scale": [0.5, 0.5], "translate": [100.0, 10.0]}).tolist()
    [[100.0, 10.0], [101.0, 12.0]]
    """
    pts = np.asarray(data, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise DataModelError(f"expected an (n, 2) array of (row, column) coordinates, got shape {pts.shape}")
    m = _matrix(meta)
    return pts[:, -2:] @ m[:2, :2].T + m[:2, 2]


def _features(meta: Mapping[str, Any], n: int) -> pd.DataFrame:
    feats = meta.get("features")
    if feats is None:
        feats = meta.get("properties") or {}
    df = pd.DataFrame(feats)
    return df if len(df) == n else pd.DataFrame(index=range(n))


def shapes_to_regions(data: Sequence[Any], meta: Mapping[str, Any]):
    """The regions (µm) drawn in a Shapes layer: its shapes in world coordinates, by compartment.

    Each shape's compartment is ``features["compartment"]`` when the layer has it (layers made by
    spatialpath do), else the layer's name; ``features["hole"]`` marks holes. The image is
    ``metadata[IMAGE_ID]``.

    Examples
    --------
    >>> square = np.array([[0, 0], [0, 10], [10, 10], [10, 0]], float)
    >>> r = shapes_to_regions([square], {"name": "tumour", "scale": [2, 2], "shape_type": ["polygon"]})
    >>> r["compartment"].tolist(), r.area.tolist()
    (['tumour'], [400.0])
    """
    from spatialpath.regions import from_napari_shapes

    if len(data) == 0:
        raise DataModelError("the Shapes layer has no shapes: draw at least one polygon before saving")
    world = [data_to_world(d, meta) for d in data]  # (y, x) µm: scale 1, translate 0
    feats = _features(meta, len(data))
    names = (
        feats[Key.obs.compartment].astype(str).tolist()
        if Key.obs.compartment in feats.columns
        else str(meta.get("name") or "tissue")
    )
    holes = feats["hole"].astype(bool).tolist() if "hole" in feats.columns else None
    metadata = meta.get("metadata") or {}
    return from_napari_shapes(
        world,
        meta.get("shape_type", "polygon"),
        names=names,
        holes=holes,
        image_id=metadata.get(_keys.IMAGE_ID),
    )


def write_compartments(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Shapes layer as GeoJSON compartments in µm (atomic; replaces ``path``).

    Read back with :func:`spatialpath.regions.read_geojson`; QuPath shows the classes.
    """
    from spatialpath.regions import write_geojson

    regions = shapes_to_regions(data, meta)
    write_geojson(regions, path, overwrite=True)
    return [str(path)]


def landmarks_table(data: Any, meta: Mapping[str, Any]) -> pd.DataFrame:
    """Landmarks of a Points layer in µm: ``landmark``, ``x_um`` (column axis), ``y_um`` (row axis).

    ``landmark`` is the first of the features ``landmark``, ``name``, ``label``, ``id``, else the
    point's index.

    Examples
    --------
    >>> landmarks_table([[10.0, 20.0]], {"scale": [1, 1], "translate": [0, 5]}).to_dict("records")
    [{'landmark': '0', 'x_um': 25.0, 'y_um': 10.0}]
    """
    yx = data_to_world(data, meta) if len(data) else np.zeros((0, 2))
    feats = _features(meta, len(yx))
    col = next((c for c in LANDMARK_NAME_COLUMNS if c in feats.columns), None)
    names = feats[col].astype(str).to_numpy() if col else np.arange(len(yx)).astype(str)
    return pd.DataFrame({"landmark": names, "x_um": yx[:, 1], "y_um": yx[:, 0]})


def write_landmarks(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Points layer as a landmark CSV in µm (``landmark, x_um, y_um``; atomic)."""
    table = landmarks_table(data, meta)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        table.to_csv(tmp, index=False)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return [str(target)]
