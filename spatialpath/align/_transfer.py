"""Cross-modal transfer between single cells and Visium spots that share one µm frame.

A cell belongs to a spot when its centroid lies in the spot's disc (on the circle counts as
inside); a cell in several discs (overlapping discs of a custom diameter) belongs to the nearest
centre, ties to the spot first in ``spots.obs`` order. :func:`cells_to_spots` counts cell types
and averages marker intensities per spot; :func:`spots_to_cells` gives each cell inside a spot
that spot's expression. Both store the cell–spot links in ``uns["spatialpath_transfer"]``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy.spatial import cKDTree

from spatialpath.keys import Key
from spatialpath.model import DataModelError, validate_categorical

__all__ = ["FRACTION_LAYER", "VISIUM_SPOT_DIAMETER_UM", "cells_to_spots", "spots_to_cells"]

#: µm diameter of a printed Visium (SD) capture spot (10x), the default disc of a cell's spot.
#: 10x's ``spot_diameter_fullres`` spans a "theoretical" 65 µm spot instead (see
#: :data:`spatialpath.io.VISIUM_SPOT_DIAMETER_FULLRES_UM`); pass ``spot_diameter_um=65`` for it.
VISIUM_SPOT_DIAMETER_UM = 55.0
#: layer of :func:`cells_to_spots`' output with the cell-type fractions of each spot.
FRACTION_LAYER = "fraction"
_TRANSFORMS = "transforms"  # where apply_transform records what it applied (uns["spatialpath"])


def _xy(adata: AnnData, what: str) -> np.ndarray:
    if not isinstance(adata, AnnData):
        raise DataModelError(f"{what} must be an AnnData, got {type(adata).__name__}")
    if Key.obsm.spatial not in adata.obsm:
        raise DataModelError(
            f"{what}.obsm[{Key.obsm.spatial!r}] is missing: store centroids in µm as an (n, 2) float "
            f"array, x (columns) then y (rows), in the same frame as the other input"
        )
    xy = np.asarray(adata.obsm[Key.obsm.spatial])
    if xy.ndim != 2 or xy.shape[1] not in (2, 3) or not np.issubdtype(xy.dtype, np.number):
        raise DataModelError(
            f"{what}.obsm[{Key.obsm.spatial!r}] must be a numeric (n, 2) array of x, y in µm, "
            f"got shape {xy.shape} and dtype {xy.dtype}"
        )
    xy = xy[:, :2].astype(np.float64)
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        raise DataModelError(
            f"{what}.obsm[{Key.obsm.spatial!r}] has {int(bad.sum())} rows with NaN or infinite "
            f"coordinates (first: {adata.obs_names[bad][:5].tolist()}); drop them with "
            f"{what} = {what}[np.isfinite({what}.obsm['spatial']).all(axis=1)].copy()"
        )
    if len(xy) == 0:
        raise DataModelError(f"{what} has no rows: there is nothing to transfer")
    if Key.obs.image_id in adata.obs and adata.obs[Key.obs.image_id].nunique() > 1:
        ids = pd.unique(adata.obs[Key.obs.image_id].astype(str))[:5].tolist()
        raise DataModelError(
            f"{what}.obs[{Key.obs.image_id!r}] holds several images ({ids}...): each image has its own "
            f"frame; transfer one image at a time, e.g. {what}[{what}.obs['image_id'] == {ids[0]!r}]"
        )
    return xy


def _records(adata: AnnData) -> list[dict[str, Any]]:
    """The transforms ``apply_transform`` recorded, oldest first (JSON strings or dicts)."""
    raw = adata.uns.get(Key.uns.spatialpath, {}).get(_TRANSFORMS, [])
    return [json.loads(r) if isinstance(r, str) else dict(r) for r in raw]


def _frame(adata: AnnData) -> str | None:
    """Target frame of the last recorded transform; None when no transform was applied."""
    records = _records(adata)
    return str(records[-1]["target"]) if records else None


def _check_frames(cells: AnnData, spots: AnnData) -> str:
    fc, fs = _frame(cells), _frame(spots)
    if fc is not None and fs is not None and fc != fs:
        raise DataModelError(
            f"cells and spots are in different frames: the last transform applied to cells maps into "
            f"{fc!r}, the last applied to spots into {fs!r}; map one into the other's frame with "
            "spatialpath.align.apply_transform (a Transform whose target is the other's frame) first"
        )
    return fs or fc or "unrecorded"


def _diameter(spots: AnnData, given: float | None) -> tuple[float, str]:
    """Spot diameter in µm of the spots' frame, and where it came from."""
    if given is not None:
        ok = isinstance(given, int | float | np.integer | np.floating) and not isinstance(given, bool)
        if not ok or not np.isfinite(given) or given <= 0:
            raise DataModelError(f"spot_diameter_um must be a positive number of µm, got {given!r}")
        return float(given), "spot_diameter_um"
    images = spots.uns.get(Key.uns.spatialpath, {}).get(Key.uns.images, {})
    visium = [r for r in images.values() if r.get("technology") == "visium"]
    if not visium:
        raise DataModelError(
            "no spot diameter known: spots carry no Visium metadata record (uns['spatialpath']['images'] "
            "with technology 'visium', written by spatialpath.io.read_visium); pass spot_diameter_um=, "
            f"e.g. {VISIUM_SPOT_DIAMETER_UM:g} for the printed Visium spot"
        )
    if any("bin_size_um" in r.get("extra", {}) for r in visium):
        raise DataModelError(
            "no spot diameter known: spots are Visium HD bins (squares of bin_size_um), not discs; pass "
            "spot_diameter_um= explicitly (the bin size gives the disc inscribed in each bin)"
        )
    scale, note = 1.0, ""
    for rec in _records(spots):
        if "matrix" not in rec:
            raise DataModelError(
                f"cannot tell the scale of the transform {rec.get('source')!r} → {rec.get('target')!r} "
                "recorded on spots (no 'matrix'); pass spot_diameter_um= in the spots' frame"
            )
        scale *= float(np.sqrt(abs(np.linalg.det(np.asarray(rec["matrix"], float)[:2, :2]))))
    if not np.isclose(scale, 1.0, rtol=1e-12, atol=0.0):
        note = f" × {scale:.6g} (area scale of the transforms applied to spots)"
    return VISIUM_SPOT_DIAMETER_UM * scale, f"Visium printed spot, {VISIUM_SPOT_DIAMETER_UM:g} µm{note}"


def _assign(cell_xy: np.ndarray, spot_xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Index of each cell's spot (-1: in no disc) and the distance to that (nearest) centre."""
    k = min(2, len(spot_xy))
    dist, idx = cKDTree(spot_xy).query(cell_xy, k=k)
    if k == 1:
        d, i = dist, idx
    else:  # exact ties go to the spot first in spots.obs order, whatever the tree returned
        tie = dist[:, 0] == dist[:, 1]
        d, i = dist[:, 0], np.where(tie, idx.min(axis=1), idx[:, 0])
    spot = np.where(d <= radius, i, -1).astype(np.int64)
    if (spot < 0).all():
        (cx0, cy0), (cx1, cy1) = cell_xy.min(0), cell_xy.max(0)
        (sx0, sy0), (sx1, sy1) = spot_xy.min(0), spot_xy.max(0)
        raise DataModelError(
            f"no cell lies inside any spot (disc diameter {2 * radius:g} µm; nearest cell–spot distance "
            f"{d.min():.4g} µm): cells span x {cx0:.6g}..{cx1:.6g}, y {cy0:.6g}..{cy1:.6g} µm, spots x "
            f"{sx0:.6g}..{sx1:.6g}, y {sy0:.6g}..{sy1:.6g} µm; both must be in one µm frame: align the "
            "cells with spatialpath.align.apply_transform first, and check neither is in pixels"
        )
    return spot, d


def _matrix(adata: AnnData, layer: str | None, what: str) -> Any:
    if layer is None:
        if adata.X is None:
            raise DataModelError(f"{what}.X is empty; pass layer= naming one of {list(adata.layers)}")
        return adata.X
    if layer not in adata.layers:
        raise DataModelError(
            f"{what}.layers[{layer!r}] is missing (layers: {list(adata.layers) or 'none'}); "
            "pass layer=None to use X"
        )
    return adata.layers[layer]


def _markers(cells: AnnData, markers: Sequence[str] | None) -> list[str]:
    if markers is None:
        return [str(m) for m in cells.var_names]
    if isinstance(markers, str):
        markers = [markers]
    markers = [str(m) for m in markers]
    unknown = [m for m in markers if m not in cells.var_names]
    if unknown:
        raise DataModelError(
            f"unknown markers {unknown}: not in cells.var_names ({cells.var_names[:20].tolist()}"
            f"{'...' if cells.n_vars > 20 else ''}); pass markers from cells.var_names or None for all"
        )
    if len(set(markers)) != len(markers):
        raise DataModelError(f"markers must be unique, got {markers}")
    return markers


def _record(
    cells: AnnData,
    spots: AnnData,
    spot: np.ndarray,
    dist: np.ndarray,
    diameter: tuple[float, str],
    **params: Any,
) -> dict[str, Any]:
    inside = spot >= 0
    links = pd.DataFrame(
        {
            "cell": cells.obs_names[inside].to_numpy(dtype=str),
            "spot": spots.obs_names[spot[inside]].to_numpy(dtype=str),
            "distance_um": dist[inside],
        }
    )
    return {
        **params,
        "links": links,
        "unassigned_cells": cells.obs_names[~inside].to_numpy(dtype=object).astype(str),
        "spot_diameter_um": diameter[0],
        "spot_diameter_from": diameter[1],
        "n_cells": len(spot),
        "n_cells_assigned": int(inside.sum()),
        "n_cells_unassigned": int((~inside).sum()),
        "n_spots": int(spots.n_obs),
        "n_spots_with_cells": len(np.unique(spot[inside])),
    }


def cells_to_spots(
    cells: AnnData,
    spots: AnnData,
    *,
    cluster_key: str,
    markers: Sequence[str] | None = None,
    layer: str | None = None,
    spot_diameter_um: float | None = None,
) -> AnnData:
    """Cell-type composition and mean marker intensity of the cells inside each spot.

    Parameters
    ----------
    cells
        Cells with ``obsm["spatial"]`` (µm) in the spots' frame, ``obs[cluster_key]`` and marker
        intensities in ``X`` (or ``layers[layer]``); one image.
    spots
        Spots with ``obsm["spatial"]`` (µm), e.g. from :func:`spatialpath.io.read_visium`; one library.
    cluster_key
        Categorical column of ``cells.obs``; every category is a column of the result, empty ones too.
    markers
        Markers (``cells.var_names``) to average; default all.
    layer
        Layer of ``cells`` holding the intensities; default ``X``.
    spot_diameter_um
        Disc diameter in µm; default :data:`VISIUM_SPOT_DIAMETER_UM` (55, the printed spot) for spots
        read by ``read_visium``, scaled by the transforms recorded on ``spots``.

    Returns
    -------
    AnnData spots × types, spots in ``spots``' order: ``X`` the cell counts (int64), ``layers["fraction"]``
    counts / ``obs["n_cells"]`` (NaN where a spot has no cell), ``obsm["spatial"]`` copied,
    ``obsm["marker_mean"]`` (DataFrame spots × markers, NaN where a spot has no cell), ``obs`` = spots'
    plus ``n_cells``, ``uns`` = a deep copy of spots' plus ``uns["spatialpath_transfer"]``: ``links``
    (DataFrame ``cell``, ``spot``, ``distance_um``), ``unassigned_cells``, the diameter and counts.

    Raises
    ------
    DataModelError
        On a missing or non-finite ``obsm["spatial"]``, an unknown or non-categorical
        ``cluster_key``, unknown markers or layer, a non-positive or unknown diameter, inputs in
        different recorded frames or with several images, or no cell inside any spot.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> spots = ad.AnnData(np.ones((2, 1)), obsm={"spatial": np.array([[0.0, 0.0], [100.0, 0.0]])})
    >>> obs = pd.DataFrame({"t": pd.Categorical(["a", "b", "a"])}, index=["c0", "c1", "c2"])
    >>> cells = ad.AnnData(np.array([[1.0], [3.0], [9.0]]), obs=obs)
    >>> cells.obsm["spatial"] = np.array([[5.0, 0.0], [0.0, -20.0], [60.0, 0.0]])
    >>> out = cells_to_spots(cells, spots, cluster_key="t", spot_diameter_um=55)
    >>> out.X.tolist(), out.obsm["marker_mean"].iloc[0].tolist()
    ([[1, 1], [0, 0]], [2.0])
    >>> out.uns["spatialpath_transfer"]["unassigned_cells"].tolist()
    ['c2']
    """
    cell_xy, spot_xy = _xy(cells, "cells"), _xy(spots, "spots")
    frame = _check_frames(cells, spots)
    try:
        validate_categorical(cells, cluster_key, allow_empty_categories=True)
    except DataModelError as e:
        raise DataModelError(f"cells: {e}") from None
    names = _markers(cells, markers)
    x = _matrix(cells, layer, "cells")
    diameter = _diameter(spots, spot_diameter_um)
    spot, dist = _assign(cell_xy, spot_xy, diameter[0] / 2)

    inside = np.flatnonzero(spot >= 0)
    col = cells.obs[cluster_key]
    n_types, n_spots = len(col.cat.categories), spots.n_obs
    codes = col.cat.codes.to_numpy().astype(np.int64)
    flat = np.bincount(spot[inside] * n_types + codes[inside], minlength=n_spots * n_types)
    counts = flat.reshape(n_spots, n_types).astype(np.int64)
    n = counts.sum(axis=1)
    member = sp.csr_matrix((np.ones(len(inside)), (spot[inside], inside)), shape=(n_spots, cells.n_obs))
    sums = member @ x[:, cells.var_names.get_indexer(names)]
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(n[:, None] > 0, counts / n[:, None], np.nan)
        means = np.where(n[:, None] > 0, sums / n[:, None], np.nan)

    obs = spots.obs.copy()
    obs[Key.obs.n_cells] = n
    var = pd.DataFrame(index=pd.Index(col.cat.categories.astype(str), name=cluster_key))
    out = AnnData(counts, obs=obs, var=var, uns=copy.deepcopy(dict(spots.uns)))
    out.layers[FRACTION_LAYER] = fraction
    out.obsm[Key.obsm.spatial] = np.array(spots.obsm[Key.obsm.spatial], dtype=np.float64)
    out.obsm[Key.obsm.marker_mean] = pd.DataFrame(means, index=out.obs_names, columns=names)
    out.uns[Key.uns.transfer] = _record(
        cells,
        spots,
        spot,
        dist,
        diameter,
        direction="cells_to_spots",
        frame=frame,
        cluster_key=cluster_key,
        markers=np.asarray(names, dtype=object).astype(str),
        layer=layer or "X",
    )
    return out


def spots_to_cells(
    spots: AnnData,
    cells: AnnData,
    *,
    layer: str | None = None,
    spot_diameter_um: float | None = None,
) -> AnnData:
    """Give each cell inside a spot that spot's expression.

    Parameters
    ----------
    spots
        Spots with ``obsm["spatial"]`` (µm) and expression in ``X`` (or ``layers[layer]``); one library.
    cells
        Cells with ``obsm["spatial"]`` (µm) in the spots' frame; one image.
    layer
        Layer of ``spots`` to transfer; default ``X``.
    spot_diameter_um
        Disc diameter in µm; default as in :func:`cells_to_spots` (55 µm for Visium SD).

    Returns
    -------
    AnnData cells inside a spot × ``spots.var``, cells in ``cells``' order: ``X`` the rows of the
    spots' matrix (sparse stays sparse CSR), ``obs`` = cells' plus ``obs["spot"]`` (the spot's
    obs_name), ``obsm["spatial"]`` the cells' positions, ``uns`` = a deep copy of cells' plus
    ``uns["spatialpath_transfer"]`` with ``links`` and the cells outside every spot
    (``unassigned_cells``, ``n_cells_unassigned``): they are not rows of the result.

    Raises
    ------
    DataModelError
        As :func:`cells_to_spots` (coordinates, layer, diameter, frames, images, no cell in any spot).

    Examples
    --------
    >>> import anndata as ad, numpy as np, scipy.sparse as sp
    >>> spots = ad.AnnData(sp.csr_matrix([[1.0, 0.0], [0.0, 7.0]]))
    >>> spots.obsm["spatial"] = np.array([[0.0, 0.0], [100.0, 0.0]])
    >>> xy = np.array([[90.0, 5.0], [50.0, 0.0], [3.0, 3.0]])
    >>> cells = ad.AnnData(np.zeros((3, 1)), obsm={"spatial": xy})
    >>> out = spots_to_cells(spots, cells, spot_diameter_um=55)
    >>> out.obs["spot"].tolist(), out.X.toarray().tolist()
    (['1', '0'], [[0.0, 7.0], [1.0, 0.0]])
    """
    spot_xy, cell_xy = _xy(spots, "spots"), _xy(cells, "cells")
    frame = _check_frames(cells, spots)
    x = _matrix(spots, layer, "spots")
    diameter = _diameter(spots, spot_diameter_um)
    spot, dist = _assign(cell_xy, spot_xy, diameter[0] / 2)

    inside = np.flatnonzero(spot >= 0)
    rows = spot[inside]
    data = sp.csr_matrix(x)[rows] if sp.issparse(x) else np.asarray(x)[rows]
    obs = cells.obs.iloc[inside].copy()
    obs[Key.obs.spot] = spots.obs_names[rows].to_numpy(dtype=object)
    out = AnnData(data, obs=obs, var=spots.var.copy(), uns=copy.deepcopy(dict(cells.uns)))
    out.obsm[Key.obsm.spatial] = np.array(cells.obsm[Key.obsm.spatial], dtype=np.float64)[inside]
    out.uns[Key.uns.transfer] = _record(
        cells, spots, spot, dist, diameter, direction="spots_to_cells", frame=frame, layer=layer or "X"
    )
    return out
