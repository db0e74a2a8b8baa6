"""The logic of the "Compartments and densities" widget, as plain functions (no napari, no Qt).

A napari Shapes layer holds compartment polygons as ``(N, D)`` vertex arrays in *data*
coordinates, ``(…, row, column)``; its world coordinates (µm, ``(…, y, x)``) come from
``layer.data_to_world``, which honours the layer's ``scale``, ``translate``, ``rotate``, ``shear``
and ``affine``. These functions convert between such layers and a regions GeoDataFrame in µm
(:mod:`spatialpath.regions`), build margin bands, count cells per compartment and write the
biomarker table of one image. Layers are duck-typed: only ``data``, ``shape_type``, ``features``,
``data_to_world`` and ``world_to_data`` are read.

Examples
--------
>>> square = np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0]])  # (row, col)
>>> r = shapes_to_regions([square], "rectangle", "tumour", lambda p: 0.5 * np.asarray(p) + [100.0, 0.0])
>>> r.total_bounds.tolist(), r.area.tolist()
([0.0, 100.0, 5.0, 105.0], [25.0])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely  # noqa: F401 (used by the doctests)

from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.regions import (
    MARGIN_INNER,
    MARGIN_OUTER,
    TISSUE,
    TUMOUR,
    cell_membership,
    check_regions,
    compartment_areas,
    from_napari_shapes,
    margin_bands,
    to_napari_shapes,
)

__all__ = [
    "COMPARTMENT",
    "HOLE",
    "cells_world_xy",
    "compartment_densities",
    "density_matrix",
    "export_biomarkers",
    "margin_regions",
    "regions_to_shapes",
    "shapes_to_regions",
    "world_matrix",
]

#: the Shapes layer feature naming each shape's compartment, and the one flagging holes.
COMPARTMENT = Key.obs.compartment
HOLE = "hole"
#: vertices of an ellipse turned into a polygon (as :mod:`spatialpath.regions._napari`).
ELLIPSE_VERTICES = 256
#: the band rows shown by the widget's margin layer.
BAND_COMPARTMENTS = (MARGIN_INNER, MARGIN_OUTER)

Mapping = Callable[[Any], Any]


def world_matrix(mapping: Mapping | None, ndim: int = 2) -> np.ndarray:
    """The ``(ndim + 1)²`` homogeneous matrix of an affine map given point by point.

    napari's ``layer.data_to_world`` (and ``world_to_data``) maps one position at a time; it is
    affine, so ``ndim + 1`` probes give it exactly and whole vertex arrays can then be mapped at
    once. ``None`` is the identity.

    Examples
    --------
    >>> world_matrix(lambda p: 2 * np.asarray(p) + [1, 3]).tolist()
    [[2.0, 0.0, 1.0], [0.0, 2.0, 3.0], [0.0, 0.0, 1.0]]
    """
    m = np.eye(ndim + 1)
    if mapping is None:
        return m
    origin = np.asarray(mapping(np.zeros(ndim)), float)[-ndim:]
    for i in range(ndim):
        m[:ndim, i] = np.asarray(mapping(np.eye(ndim)[i]), float)[-ndim:] - origin
    m[:ndim, ndim] = origin
    return m


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:-1, :-1].T + matrix[:-1, -1]


def _ellipse(corners: np.ndarray) -> np.ndarray:
    """Polygon of the ellipse inscribed in napari's 4 consecutive box corners (any rotation)."""
    c = np.asarray(corners, float)
    centre = c.mean(axis=0)
    u, v = (c[1] - c[0]) / 2, (c[3] - c[0]) / 2
    t = np.linspace(0, 2 * np.pi, ELLIPSE_VERTICES, endpoint=False)[:, None]
    return centre + np.cos(t) * u + np.sin(t) * v


def _per_shape(value: Any, n: int, what: str) -> list:
    if value is None or isinstance(value, str) or np.isscalar(value):
        return [value] * n
    out = list(value)
    if len(out) != n:
        raise DataModelError(
            f"{what} has {len(out)} entries for {n} shapes; pass one per shape or one for all"
        )
    return out


def shapes_to_regions(
    data: Sequence[np.ndarray],
    shape_types: str | Sequence[str],
    compartments: str | Sequence[Any],
    data_to_world: Mapping | None = None,
    *,
    holes: Sequence[bool] | None = None,
    image_id: str | None = None,
):
    """Regions (µm) from a Shapes layer's ``data``, mapped to the world through ``data_to_world``.

    Parameters
    ----------
    data
        ``layer.data``: one ``(N, D)`` vertex array per shape, ``(…, row, column)`` data coordinates.
    shape_types
        ``layer.shape_type``: ``"polygon"``, ``"rectangle"`` or ``"ellipse"`` (one for all or one
        per shape; paths and lines enclose no area and are refused).
    compartments
        Compartment of each shape (``layer.features["compartment"]``), or one name for all.
    data_to_world
        ``layer.data_to_world`` (world = µm, ``(…, y, x)``); None when data are already µm.
    holes
        ``layer.features["hole"]``: shapes cut out of their compartment.
    image_id
        Adds an ``image_id`` column.

    Returns
    -------
    GeoDataFrame with one row per compartment (``compartment``, ``geometry`` in µm, x then y).

    Examples
    --------
    >>> tri = np.array([[0.0, 0.0], [0.0, 4.0], [3.0, 0.0]])
    >>> shapes_to_regions([tri], "polygon", ["stroma"]).area.tolist()
    [6.0]
    """
    n = len(data)
    if n == 0:
        raise DataModelError("the Shapes layer has no shapes: draw at least one tumour or stroma polygon")
    kinds = [str(k) for k in _per_shape(shape_types, n, "shape_types")]
    names = _per_shape(compartments, n, "compartments")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise DataModelError(
                f"shape {i} has no compartment ({name!r}); every shape needs a compartment name in the "
                f"layer's '{COMPARTMENT}' feature: choose one (e.g. 'tumour', 'stroma') and assign it"
            )
    ndim = np.asarray(data[0]).shape[-1]
    matrix = world_matrix(data_to_world, ndim)
    world = []
    for verts, kind in zip(data, kinds, strict=True):
        v = np.asarray(verts, float)
        if kind == "ellipse":  # make the polygon in data space: the world map may rotate or shear it
            flat = _ellipse(v[:, -2:])
            v = np.column_stack([np.repeat(v[:1, :-2], len(flat), axis=0), flat])
        world.append(_apply(matrix, v)[:, -2:])
    kinds = ["polygon" if k in ("ellipse", "rectangle") else k for k in kinds]
    regions = from_napari_shapes(world, kinds, names=[str(c) for c in names], holes=holes, image_id=image_id)
    regions.attrs[Key.uns.spatialpath] = {"source": "napari", "data_to_world": matrix.tolist()}
    return regions


def regions_to_shapes(regions, world_to_data: Mapping | None = None, *, image_id: str | None = None) -> dict:
    """What a Shapes layer needs to show ``regions``: ``data``, ``shape_type`` and ``features``.

    ``world_to_data`` is the target layer's ``world_to_data`` (None: a new layer in µm, scale 1).
    Holes become extra shapes flagged in the ``hole`` feature (napari shapes have no holes).

    Examples
    --------
    >>> from spatialpath.regions import make_regions
    >>> r = make_regions(["tumour"], [shapely.box(0, 0, 4, 2)])
    >>> s = regions_to_shapes(r, lambda p: np.asarray(p) / 2)
    >>> s["data"][0].max(axis=0).tolist(), s["features"].to_dict("list")
    ([1.0, 2.0], {'compartment': ['tumour'], 'hole': [False]})
    """
    s = to_napari_shapes(regions, image_id=image_id)
    matrix = world_matrix(world_to_data, 2)
    return {
        "data": [_apply(matrix, d) for d in s["data"]],
        "shape_type": "polygon",
        "features": pd.DataFrame(s["properties"]),
    }


def margin_regions(
    regions, *, tumour: str = TUMOUR, inner_um: float = 100.0, outer_um: float = 100.0, frame: Any = None
):
    """``regions`` with margin bands (:func:`spatialpath.regions.margin_bands`) around ``tumour``.

    Adds ``margin_inner`` (tumour within ``inner_um`` of its border), ``margin_outer`` (the rest
    within ``outer_um``, clipped to ``tissue`` or else to the other compartments), ``margin`` and
    ``tumour_core``.

    Examples
    --------
    >>> from spatialpath.regions import make_regions
    >>> r = make_regions(["tumour", "stroma"], [shapely.box(0, 0, 100, 100), shapely.box(-50, -50, 150, 150)])
    >>> b = margin_regions(r, inner_um=10, outer_um=20)
    >>> b.set_index("compartment").area.round(1).to_dict()["margin_inner"]
    3600.0
    """
    check_regions(regions)
    names = sorted(set(regions[COMPARTMENT].astype(str)))
    if tumour not in names:
        raise DataModelError(
            f"unknown compartment {tumour!r}: margin bands need a tumour compartment and the regions have "
            f"{names}; draw a '{tumour}' polygon or choose the tumour compartment's name"
        )
    for name, w in (("inner_um", inner_um), ("outer_um", outer_um)):
        if not np.isfinite(w) or w < 0:
            raise DataModelError(f"{name} must be a band width ≥ 0 in µm, got {w!r}")
    tissue = TISSUE if TISSUE in names else None
    return margin_bands(
        regions, tumour=tumour, widths_um=(float(inner_um), float(outer_um)), tissue=tissue, frame=frame
    )


def cells_world_xy(points: np.ndarray, data_to_world: Mapping | None = None) -> np.ndarray:
    """World x, y (µm) of a Points layer's ``(n, D)`` (…, row, col) data: the cells where they are shown.

    Examples
    --------
    >>> cells_world_xy(np.array([[1.0, 2.0]]), lambda p: np.asarray(p) * 10).tolist()
    [[20.0, 10.0]]
    """
    pts = np.asarray(points, float)
    ndim = pts.shape[1] if pts.ndim == 2 else 2
    return _apply(world_matrix(data_to_world, ndim), pts.reshape(-1, ndim))[:, [-1, -2]]


def compartment_densities(
    adata,
    regions,
    cluster_key: str = Key.obs.cell_type,
    *,
    xy: np.ndarray | None = None,
    compartments: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Cells per mm² of each compartment and ``obs[cluster_key]`` category.

    A cell counts in a compartment when it lies inside or on its border
    (:func:`spatialpath.regions.cell_membership`); the area is the union of the compartment's rows
    (:func:`spatialpath.regions.compartment_areas`), summed over images.

    Parameters
    ----------
    adata
        The cells (``obsm["spatial"]`` x, y µm) of the image the regions belong to.
    regions
        Regions table (µm).
    cluster_key
        Categorical ``obs`` column (cell type).
    xy
        Override of the cells' positions (x, y µm), e.g. where a Points layer shows them
        (:func:`cells_world_xy`) after an alignment.
    compartments
        Compartments to report (default all, in table order).

    Returns
    -------
    DataFrame with columns ``compartment``, ``cluster_key``, ``n_cells``, ``area_mm2`` and
    ``density_per_mm2``, one row per compartment and category (zeros included).

    Examples
    --------
    >>> from anndata import AnnData
    >>> from spatialpath.regions import make_regions
    >>> a = AnnData(obs=pd.DataFrame({"cell_type": pd.Categorical(["T", "B", "T"])}, index=list("abc")))
    >>> a.obsm["spatial"] = np.array([[10.0, 10.0], [20.0, 20.0], [2000.0, 10.0]])
    >>> d = compartment_densities(a, make_regions(["tumour"], [shapely.box(0, 0, 1000, 1000)]))
    >>> d[["cell_type", "n_cells", "density_per_mm2"]].values.tolist()
    [['B', 1, 1.0], ['T', 1, 1.0]]
    """
    check_regions(regions)
    if cluster_key not in adata.obs:
        raise DataModelError(
            f"obs has no column {cluster_key!r} (it has {list(adata.obs.columns)[:8]}); choose the "
            "cell-type column"
        )
    cells = adata
    if xy is not None:
        from anndata import AnnData

        xy = np.asarray(xy, float)
        if xy.shape != (adata.n_obs, 2):
            raise DataModelError(f"xy must be (n_cells, 2) = ({adata.n_obs}, 2) x, y in µm, got {xy.shape}")
        cells = AnnData(obs=adata.obs[[c for c in (cluster_key, Key.obs.image_id) if c in adata.obs]].copy())
        cells.obsm[Key.obsm.spatial] = xy
    member = cell_membership(cells, regions)
    areas = compartment_areas(regions)
    if isinstance(areas.index, pd.MultiIndex):
        areas = areas.groupby(level=COMPARTMENT, sort=False).sum()
    names = list(member.columns)
    if compartments is not None:
        bad = [c for c in compartments if c not in names]
        if bad:
            raise DataModelError(f"unknown compartment {bad}: the regions have {names}")
        names = list(compartments)
    labels = adata.obs[cluster_key]
    labels = labels if isinstance(labels.dtype, pd.CategoricalDtype) else labels.astype("category")
    rows = []
    for comp in names:
        counts = labels[member[comp].to_numpy()].value_counts(sort=False).reindex(labels.cat.categories)
        area = float(areas[comp])
        for cat, k in counts.fillna(0).astype(int).items():
            rows.append((comp, cat, int(k), area, k / area if area > 0 else np.nan))
    return pd.DataFrame(rows, columns=[COMPARTMENT, cluster_key, "n_cells", "area_mm2", "density_per_mm2"])


def density_matrix(densities: pd.DataFrame, decimals: int = 1) -> pd.DataFrame:
    """Cell types × compartments of cells/mm², with an ``all cells`` row and an ``area (mm²)`` row.

    Examples
    --------
    >>> d = pd.DataFrame({"compartment": ["t", "t"], "cell_type": ["A", "B"], "n_cells": [1, 3],
    ...                   "area_mm2": [0.5, 0.5], "density_per_mm2": [2.0, 6.0]})  # fmt: skip
    >>> density_matrix(d).to_dict()
    {'t': {'A': 2.0, 'B': 6.0, 'all cells': 8.0, 'area (mm²)': 0.5}}
    """
    key = densities.columns[1]
    order = list(dict.fromkeys(densities[COMPARTMENT]))
    table = densities.pivot_table(
        index=key, columns=COMPARTMENT, values="density_per_mm2", observed=False, sort=False
    )
    area = densities.groupby(COMPARTMENT, sort=False)["area_mm2"].first()
    total = densities.groupby(COMPARTMENT, sort=False)["n_cells"].sum() / area
    table.loc["all cells"] = total
    table = table.round(decimals)
    table.loc["area (mm²)"] = area.round(4)
    table.index = table.index.astype(str)
    table.index.name, table.columns.name = None, None
    return table[order]


def export_biomarkers(
    adata,
    regions,
    out_dir: str | os.PathLike[str],
    *,
    image_id: str | None = None,
    cluster_key: str = Key.obs.cell_type,
    library_key: str = Key.obs.image_id,
    metrics: Sequence[str] | None = None,
    formats: Sequence[str] = ("csv",),
    overwrite: bool = False,
    name: str = "biomarkers",
) -> dict[str, Path]:
    """Write the biomarker table of one image (cells of ``image_id``) with these regions.

    Runs :func:`spatialpath.export.biomarker_table` and :func:`spatialpath.export.write_tables`
    (atomic writes; existing files are never replaced unless ``overwrite``: a
    :class:`FileExistsError` and nothing written).

    Returns
    -------
    The paths written, by role (``long_csv``, ``wide_csv``, ``dictionary_csv``, ``manifest``...).
    """
    from spatialpath.export import biomarker_table, write_tables

    check_regions(regions)
    cells = adata
    if image_id is not None and library_key in adata.obs:
        cells = adata[adata.obs[library_key].astype(str) == str(image_id)]
        if cells.n_obs == 0:
            raise DataModelError(f"no cells of image {image_id!r} in obs[{library_key!r}]")
    elif library_key not in adata.obs:
        cells = {str(image_id or "image"): adata}
    images = pd.unique(cells.obs[library_key].astype(str)) if not isinstance(cells, dict) else list(cells)
    if len(images) != 1:
        raise DataModelError(
            f"the cells hold {len(images)} images ({list(images)[:5]}); export the table of one image: "
            "pass image_id"
        )
    if Key.obs.image_id not in regions.columns:
        regions = regions.assign(**{Key.obs.image_id: str(images[0])})
    long, wide = biomarker_table(
        cells, regions, metrics=metrics, cluster_key=cluster_key, library_key=library_key
    )
    return write_tables(long, wide, out_dir, formats, overwrite=overwrite, name=name)
