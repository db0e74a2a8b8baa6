"""Lazy, chunked resampling of µm images and label masks through a :class:`~spatialpath.align.Transform`.

Images are *pulled back*: every output pixel centre ``p`` (target frame) is mapped to the source by
``T⁻¹`` and the source is interpolated there, whereas points and polygons are pushed forward by
``T``. The output is a dask array built block by block: each output block depends only on the
source chunks under its window, so a whole slide is never loaded (see ``docs/resampling.md``).
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from scipy import ndimage

from spatialpath.align._apply import TRANSFORMS_KEY
from spatialpath.align._resample_grid import Grid, PixelMap, as_grid, grid_of, output_grid, source_windows
from spatialpath.align._transform import Transform
from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["warp_image"]


def warp_image(
    image: xr.DataArray,
    transform: Transform,
    *,
    like: xr.DataArray | None = None,
    pixel_size_um: float | None = None,
    order: int | None = None,
    fill_value: float = 0,
    dtype: Any = None,
    chunks: int | tuple[int, int] = 1024,
) -> xr.DataArray:
    """Resample an image or label mask from ``transform.source`` into ``transform.target``, lazily.

    Each output pixel centre ``p`` takes the source value at ``T⁻¹(p)`` (pull-back), interpolated
    with a spline of ``order``. Nothing is computed here: the result is a dask array whose every
    block reads only the source chunks under its window.

    Parameters
    ----------
    image
        µm DataArray in the transform's source frame: ``(c, y, x)`` image or ``(y, x)`` mask (numpy
        or dask), ``attrs["units"] == "um"``, ``x``/``y`` the pixel centres in µm.
    transform
        The map from the image's frame to the output frame (affine or non-rigid).
    like
        The output grid: a µm DataArray in ``transform.target`` (e.g. the fixed image). By default
        the bounding box of the mapped image footprint, at the source pixel size times the
        transform's area scale ``√|det M|`` (or ``pixel_size_um``).
    pixel_size_um
        Output pixel size (µm) of the default grid; not allowed with ``like``.
    order
        Spline order (0 nearest … 5). Default: 0 for a ``(y, x)`` integer or boolean mask (labels
        keep their ids), 1 (bilinear) otherwise.
    fill_value
        Value of output pixels whose centre maps outside the source footprint (its pixel edges).
    dtype
        Output dtype, default the input's. Interpolated values for an integer dtype are rounded and
        clipped to its range (a uint8 slide stays uint8); pass ``np.float32`` to keep fractions.
    chunks
        Output block size in pixels along y and x (channels keep the source's chunking).

    Returns
    -------
    DataArray with the input's dims, channel names and attrs; ``x``/``y`` in µm of the target frame,
    ``attrs["pixel_size_um"]`` the output's, and the transform's record appended to
    ``attrs["transforms"]``.

    Raises
    ------
    DataModelError
        For a non-Transform, an array that is not a 2-D/3-D µm image, conflicting or bad options, or
        an output grid that does not overlap the mapped image.

    Examples
    --------
    >>> from spatialpath.model import make_image
    >>> img = make_image(np.arange(6.0).reshape(1, 2, 3), channels=["DAPI"], pixel_size_um=1.0)
    >>> turn = Transform([[-1, 0, 2], [0, -1, 1], [0, 0, 1]], "he", "global")  # 180° about the centre
    >>> out = warp_image(img, turn)
    >>> out.values[0].tolist()
    [[5.0, 4.0, 3.0], [2.0, 1.0, 0.0]]
    >>> out.x.values.tolist(), out.attrs["transforms"][-1]["target"]
    ([0.0, 1.0, 2.0], 'global')
    """
    if not isinstance(transform, Transform):
        raise DataModelError(
            f"transform must be a spatialpath.align.Transform, got {type(transform).__name__}"
        )
    if not isinstance(image, xr.DataArray):
        raise DataModelError(f"image must be an xarray.DataArray on a µm grid, got {type(image).__name__}")
    if image.ndim not in (2, 3) or image.dims[-2:] != ("y", "x"):
        raise DataModelError(
            f"can only resample a (c, y, x) image or a (y, x) label mask, got dims {image.dims} with shape "
            f"{image.shape}; build images with spatialpath.model.make_image/make_labels"
        )
    if image.dtype.kind not in "biuf":
        raise DataModelError(f"image must be numeric or boolean to be resampled, got dtype {image.dtype}")
    src_grid = grid_of(image, "image")
    is_mask = image.ndim == 2 and image.dtype.kind in "biu"
    order = (0 if is_mask else 1) if order is None else order
    if not isinstance(order, int | np.integer) or not 0 <= order <= 5:
        raise DataModelError(f"order must be a spline order from 0 (nearest) to 5, got {order!r}")
    out_dtype = np.dtype(image.dtype if dtype is None else dtype)
    _check_fill(fill_value, out_dtype)
    if like is not None and pixel_size_um is not None:
        raise DataModelError("pass either like (the output grid) or pixel_size_um (default grid), not both")
    out_grid = as_grid(like) if like is not None else output_grid(src_grid, transform, pixel_size_um)
    size = (chunks, chunks) if np.isscalar(chunks) else tuple(chunks)
    if len(size) != 2 or min(size) < 1:
        raise DataModelError(
            f"chunks must be a positive block size in pixels (or (y, x) sizes), got {chunks!r}"
        )

    src = image.data if isinstance(image.data, da.Array) else da.from_array(
        np.asarray(image.data), chunks=(-1, *size)[-image.ndim :]
    )  # fmt: skip
    data = _warp_dask(src, src_grid, out_grid, transform, int(order), fill_value, out_dtype, size)

    coords = out_grid.coords() if like is None else {"y": like["y"].values, "x": like["x"].values}
    if image.ndim == 3:
        coords = {image.dims[0]: image[image.dims[0]].values, **coords}
    attrs = dict(image.attrs)
    attrs[Key.attrs.pixel_size_um] = out_grid.pixel_size_um
    attrs[Key.attrs.units] = Key.unit
    attrs[TRANSFORMS_KEY] = [*attrs.get(TRANSFORMS_KEY, []), transform.to_dict()]
    return xr.DataArray(data, dims=image.dims, coords=coords, attrs=attrs, name=image.name)


def _check_fill(fill_value: Any, dtype: np.dtype) -> None:
    try:
        value = float(fill_value)
        ok = dtype.kind == "f" or (np.isfinite(value) and np.array(value).astype(dtype) == value)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise DataModelError(
            f"fill_value {fill_value!r} is not representable in the output dtype {dtype}; pick a value in "
            "range or pass dtype=np.float32"
        )


def _bounds(n: int, size: int) -> np.ndarray:
    return np.r_[np.arange(0, n, size), n]


def _warp_dask(
    src: da.Array,
    src_grid: Grid,
    out_grid: Grid,
    transform: Transform,
    order: int,
    fill_value: float,
    dtype: np.dtype,
    size: tuple[int, int],
) -> da.Array:
    """One graph layer: per output block a coordinate task and one warp task per channel chunk."""
    pixel_map = PixelMap.build(src_grid, out_grid, transform)
    rb, cb = _bounds(out_grid.shape[0], size[0]), _bounds(out_grid.shape[1], size[1])
    lo, hi = source_windows(pixel_map, rb, cb, order)
    h_src, w_src = src_grid.shape
    lo_c = np.maximum(lo, 0)
    hi_c = np.minimum(hi, [h_src, w_src])
    empty = np.any(hi_c <= lo_c, axis=-1)
    if empty.all():
        pts = transform.apply_points(src_grid.edge_points())
        mapped = np.r_[pts.min(axis=0), pts.max(axis=0)].round(2).tolist()
        edges = out_grid.edge_points()
        grid = np.r_[edges.min(axis=0), edges.max(axis=0)].round(2).tolist()
        raise DataModelError(
            f"the output grid (x0, y0, x1, y1 = {grid} µm) does not overlap the image mapped into "
            f"{transform.target!r} ({mapped} µm): like must be on the transform's target frame, and the "
            "transform must map the image's frame into it"
        )
    token = tokenize(
        src.name, transform.to_json(), out_grid.shape, out_grid.affine, order, fill_value, dtype, size
    )
    name, cname = f"warp-image-{token}", f"warp-coords-{token}"
    y_starts, x_starts = (np.cumsum((0, *c)) for c in src.chunks[-2:])
    c_chunks = src.chunks[0] if src.ndim == 3 else (None,)
    layer: dict[Any, Any] = {}
    for i in range(len(rb) - 1):
        for j in range(len(cb) - 1):
            h, w = int(rb[i + 1] - rb[i]), int(cb[j + 1] - cb[j])
            if empty[i, j]:
                for ci, cc in enumerate(c_chunks):
                    shape = [h, w] if cc is None else [cc, h, w]
                    layer[_key(name, ci, i, j, src.ndim)] = (np.full, shape, fill_value, dtype)
                continue
            (r0, c0), (r1, c1) = lo_c[i, j], hi_c[i, j]
            bi = range(np.searchsorted(y_starts, r0, "right") - 1, np.searchsorted(y_starts, r1, "left"))
            bj = range(np.searchsorted(x_starts, c0, "right") - 1, np.searchsorted(x_starts, c1, "left"))
            layer[(cname, i, j)] = (pixel_map.block, int(rb[i]), int(rb[i + 1]), int(cb[j]), int(cb[j + 1]))
            window = [int(r0 - y_starts[bi[0]]), int(r1 - y_starts[bi[0]]), int(c0 - x_starts[bj[0]])]
            window += [int(c1 - x_starts[bj[0]]), int(y_starts[bi[0]]), int(x_starts[bj[0]])]
            for ci in range(len(c_chunks)):
                blocks = [[_key(src.name, ci, a, b, src.ndim) for b in bj] for a in bi]
                layer[_key(name, ci, i, j, src.ndim)] = (
                    _warp_block, (cname, i, j), blocks, window, h_src, w_src, order, fill_value, dtype
                )  # fmt: skip
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[src])
    out_chunks = (tuple(np.diff(rb).tolist()), tuple(np.diff(cb).tolist()))
    if src.ndim == 3:
        out_chunks = (src.chunks[0], *out_chunks)
    return da.Array(graph, name, out_chunks, dtype=dtype, meta=np.empty((0,) * src.ndim, dtype))


def _key(name: str, ci: int, i: int, j: int, ndim: int) -> tuple:
    return (name, ci, i, j) if ndim == 3 else (name, i, j)


def _warp_block(
    coords: np.ndarray,
    blocks: list[list[np.ndarray]],
    window: list[int],
    h_src: int,
    w_src: int,
    order: int,
    fill_value: float,
    dtype: np.dtype,
) -> np.ndarray:
    """Resample one output block from the source chunks under its window (a dask task)."""
    wr0, wr1, wc0, wc1, oy, ox = window
    src = np.block(blocks) if len(blocks) > 1 or len(blocks[0]) > 1 else blocks[0][0]
    src = src[..., wr0:wr1, wc0:wc1]  # coordinates below are relative to this window
    rows, cols = coords[0], coords[1]
    outside = (rows < -0.5) | (rows >= h_src - 0.5) | (cols < -0.5) | (cols >= w_src - 0.5)
    r = rows - (oy + wr0)
    c = cols - (ox + wc0)
    planes = src[None] if src.ndim == 2 else src
    out = np.empty((planes.shape[0], *rows.shape), dtype)
    if order == 0:  # exact for any dtype (ids beyond 2**53 too)
        ri = np.clip(np.rint(r), 0, src.shape[-2] - 1).astype(np.intp)
        ci = np.clip(np.rint(c), 0, src.shape[-1] - 1).astype(np.intp)
        for k, plane in enumerate(planes):
            out[k] = plane[ri, ci]
    else:
        # float32 arithmetic for ≤ 16-bit data and float32 output, float64 otherwise
        small = max(dtype.itemsize, planes.dtype.itemsize) <= 2 or (
            dtype == np.float32 and planes.dtype.itemsize <= 4
        )
        work = np.float32 if small else np.float64
        for k, plane in enumerate(planes):
            plane = plane.view(np.uint8) if plane.dtype == bool else plane
            vals = ndimage.map_coordinates(plane, [r, c], order=order, mode="nearest", output=work)
            if dtype.kind in "iub":
                info = np.iinfo(dtype) if dtype.kind in "iu" else None
                vals = np.rint(vals)
                if info is not None:
                    vals = np.clip(vals, info.min, info.max)
            out[k] = vals
    out[:, outside] = fill_value
    return out[0] if src.ndim == 2 else out
