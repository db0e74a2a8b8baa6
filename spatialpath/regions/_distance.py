"""Each cell's signed distance (µm) to the tumour border: negative inside the tumour.

The border is the tumour boundary minus the image frame of the cell's image (see
:func:`tumour_border`; the frame comes from the regions' ``frame`` column). Two methods
give the same distance (to the pixel-edge boundary, within half a raster pixel):

- ``"polygon"``: exact Euclidean distance from each cell to the border line, through an STRtree
  of its segments (O(n log V); about 5 s for 10⁶ cells and a 5,500-segment border, 2 cores);
- ``"raster"``: the tumour rasterised (pixel centres inside) at ``resolution_um``, two Euclidean
  distance transforms (inside and outside), each minus half a pixel so that the zero lies on the
  pixel edges, read at each cell by bilinear interpolation (about 0.6 s for 10⁶ cells on a
  1,868 × 1,400 raster). With the native pixel of a mask from :func:`from_mask` the raster is
  the mask itself.

inForm's "Distance from Tissue Category Edge" is measured between pixel centres, so it is half a
pixel larger than the distance to the pixel edge returned here.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import shapely
from anndata import AnnData
from scipy import ndimage

from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.regions._margins import frame_of, tumour_border
from spatialpath.regions._membership import check_regions
from spatialpath.regions._schema import TUMOUR, region_meta, union_of

__all__ = ["AUTO_POLYGON_MAX_CELLS", "signed_distance"]

#: ``method="auto"`` measures polygon distances up to this many cells, else uses the raster.
AUTO_POLYGON_MAX_CELLS = 200_000
#: at most this many pixels when the raster resolution is chosen automatically.
MAX_RASTER_PIXELS = 16_000_000


def _segments(line: Any) -> np.ndarray:
    out = []
    for part in shapely.get_parts(line):
        xy = shapely.get_coordinates(part)
        if len(xy) > 1:
            out.append(shapely.linestrings(np.stack([xy[:-1], xy[1:]], axis=1)))
    return np.concatenate(out) if out else np.empty(0, object)


def _polygon_distance(tum: Any, border: Any, xy: np.ndarray) -> np.ndarray:
    points = shapely.points(xy)
    tree = shapely.STRtree(_segments(border))
    _, dist = tree.query_nearest(points, return_distance=True, all_matches=False)
    shapely.prepare(tum)
    inside = shapely.contains_xy(tum, xy[:, 0], xy[:, 1])
    return np.where(inside, -dist, dist)


def _raster_distance(tum: Any, frame: Any, xy: np.ndarray, h: float, origin: Any) -> np.ndarray:
    if frame is not None:
        x0, y0, x1, y1 = frame.bounds  # raster = the frame: its edge is not a border
        ox, oy = origin if origin is not None else (x0 + h / 2, y0 + h / 2)
        ox, oy = ox + np.ceil((x0 - ox) / h) * h, oy + np.ceil((y0 - oy) / h) * h
        nx, ny = int(np.floor((x1 - ox) / h)) + 1, int(np.floor((y1 - oy) / h)) + 1
    else:  # raster = tumour and cells plus outside pixels; pixel edges on the tumour's bounds
        t0 = np.asarray(tum.bounds[:2])
        lo, hi = np.minimum(t0, xy.min(0)), np.maximum(tum.bounds[2:], xy.max(0))
        ox, oy = t0 + h / 2 - (np.ceil((t0 - lo) / h) + 2) * h
        nx, ny = (np.ceil((hi - (ox, oy)) / h) + 3).astype(int)
    if nx * ny > 4 * MAX_RASTER_PIXELS:
        raise DataModelError(f"resolution_um={h} gives a {nx}×{ny} raster; pass a coarser resolution_um")
    shapely.prepare(tum)
    mask = np.empty((ny, nx), bool)
    xs = ox + np.arange(nx) * h
    step = max(1, 2**20 // nx)
    for r0 in range(0, ny, step):
        gx, gy = np.meshgrid(xs, oy + np.arange(r0, min(ny, r0 + step)) * h)
        mask[r0 : r0 + step] = shapely.contains_xy(tum, gx, gy)
    if mask.all() or not mask.any():
        return np.full(len(xy), np.nan)
    inside = ndimage.distance_transform_edt(mask) * h - h / 2
    outside = ndimage.distance_transform_edt(~mask) * h - h / 2
    field = np.where(mask, -inside, outside)
    coords = np.stack([(xy[:, 1] - oy) / h, (xy[:, 0] - ox) / h])
    return ndimage.map_coordinates(field, coords, order=1, mode="nearest")


def signed_distance(
    adata: AnnData,
    regions,
    *,
    tumour: str = TUMOUR,
    method: Literal["auto", "polygon", "raster"] = "auto",
    resolution_um: float | None = None,
    frame: Any = None,
    key_added: str | None = "tumour_distance_um",
    library_key: str | None = Key.obs.image_id,
) -> np.ndarray:
    """Distance (µm) of each cell to the tumour border, negative inside the tumour.

    Parameters
    ----------
    adata
        Cells, ``obsm["spatial"]`` in µm.
    regions
        Regions table with a ``tumour`` compartment (per image when it has ``image_id``).
    tumour
        Name of the tumour compartment.
    method
        ``"polygon"`` (exact), ``"raster"`` (distance transforms), or ``"auto"``: polygon up to
        :data:`AUTO_POLYGON_MAX_CELLS` cells per image, raster above.
    resolution_um
        Raster pixel (µm); default the mask pixel recorded by :func:`from_mask`, else the tumour
        bounding box cut in about 4 million pixels.
    frame
        Image frame(s), as in :func:`margin_bands`: border parts on it are ignored. Default: the
        ``frame`` column of the image's rows (:func:`from_mask`; it survives ``pd.concat`` of
        per-image tables), else the frame recorded in ``attrs``.
    key_added
        ``obs`` column written (None: only return).
    library_key
        ``obs`` column of the image, matched to the regions' ``image_id``.

    Returns
    -------
    float array (n_cells,): NaN for cells of an image without tumour or without border.

    Examples
    --------
    >>> import shapely
    >>> from anndata import AnnData
    >>> from spatialpath.regions import make_regions
    >>> a = AnnData(np.zeros((3, 1)))
    >>> a.obsm["spatial"] = np.array([[30.0, 50.0], [90.0, 50.0], [130.0, 50.0]])
    >>> reg = make_regions(["tumour"], [shapely.box(0, 0, 100, 100)])
    >>> signed_distance(a, reg, method="polygon").tolist()
    [-30.0, -10.0, 30.0]
    >>> signed_distance(a, reg, method="raster", resolution_um=1.0).round(6).tolist()
    [-30.0, -10.0, 30.0]
    """
    check_regions(regions)
    if method not in {"auto", "polygon", "raster"}:
        raise DataModelError(f"method must be 'auto', 'polygon' or 'raster', got {method!r}")
    xy = np.asarray(adata.obsm[Key.obsm.spatial], float)[:, :2]
    meta = region_meta(regions)
    by_image = library_key is not None and library_key in adata.obs and Key.obs.image_id in regions.columns
    images = adata.obs[library_key].astype(str).to_numpy() if by_image else np.full(adata.n_obs, "")
    out = np.full(adata.n_obs, np.nan)
    found = False
    for image in dict.fromkeys(images):
        rows = np.flatnonzero(images == image)
        img = image if by_image else None
        tum = union_of(regions, tumour, img)
        if tum.is_empty:
            continue
        found = True
        box = frame_of(regions, img, frame)
        border = tumour_border(tum, box)
        if border.is_empty:
            continue
        use = method if method != "auto" else ("polygon" if len(rows) <= AUTO_POLYGON_MAX_CELLS else "raster")
        if use == "polygon":
            out[rows] = _polygon_distance(tum, border, xy[rows])
            continue
        h = resolution_um or meta.get("pixel_size_um")
        if not h:
            x0, y0, x1, y1 = tum.bounds
            h = max(np.sqrt((x1 - x0) * (y1 - y0) / (MAX_RASTER_PIXELS / 4)), 1e-6)
        origin = meta.get("origin_um") if resolution_um is None else None
        out[rows] = _raster_distance(tum, box, xy[rows], float(h), origin)
    if not found:
        raise DataModelError(
            f"no {tumour!r} compartment in regions (compartments: "
            f"{sorted(set(regions[Key.obs.compartment].astype(str)))}); pass tumour=<name>"
        )
    if key_added is not None:
        adata.obs[key_added] = out
    return out
