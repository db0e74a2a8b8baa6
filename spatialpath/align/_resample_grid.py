"""Pixel grids for resampling: a µm image's grid, the output grid and the per-chunk source windows.

A grid is the 3×3 affine ``G`` from pixel index ``[col, row, 1]`` to frame µm ``[x, y, 1]`` (pixel
centres, as in :func:`spatialpath.model.make_image`) plus its ``(rows, cols)`` shape. The source
index of an output pixel is ``G_src⁻¹ · T⁻¹ · G_out · [col, row, 1]``; for an affine ``T`` that is
one matrix; for a non-rigid one the exact inverse is evaluated on a lattice every 8 output
pixels and interpolated between, where a check at every lattice cell's centre allows it
(blocks that fail it are quartered and retried, down to exact evaluation of 64 × 64 pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage

from spatialpath.align._transform import Transform
from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["Grid", "PixelMap", "grid_of", "output_grid", "source_windows"]

#: matrix entries of the output-index → source-index map within this of an integer are snapped to it,
#: so pixel-centre grids that map onto each other (90°/180° turns, flips, integer shifts) copy pixels
#: exactly instead of interpolating with 1e-13 weights.
_SNAP = 1e-9
#: non-rigid maps are evaluated exactly every ``_LATTICE_PX`` output pixels and bilinearly in
#: between, when that matches the exact map within ``_LATTICE_TOL_PX`` source pixels at every
#: lattice cell's centre (else the block is evaluated exactly at every pixel).
_LATTICE_PX = 8
_LATTICE_TOL_PX = 0.05
#: border samples of a chunk for a non-rigid map, every this many output pixels.
_BORDER_STEP = 8
#: interior samples of a chunk for a non-rigid map (insurance against folds), every this many pixels.
_INTERIOR_STEP = 64


@dataclass(frozen=True)
class Grid:
    """A regular pixel grid: ``shape`` (rows, cols) and ``affine`` [col, row, 1] → [x, y, 1] µm."""

    shape: tuple[int, int]
    affine: np.ndarray

    @property
    def pixel_size_um(self) -> float:
        """The mean edge length of a pixel (µm)."""
        return float(np.sqrt(abs(np.linalg.det(self.affine[:2, :2]))))

    def coords(self) -> dict[str, np.ndarray]:
        """The ``y``/``x`` µm coordinates of an axis-aligned grid (pixel centres)."""
        g = self.affine
        return {
            "y": g[1, 2] + g[1, 1] * np.arange(self.shape[0], dtype=np.float64),
            "x": g[0, 2] + g[0, 0] * np.arange(self.shape[1], dtype=np.float64),
        }

    def edge_points(self) -> np.ndarray:
        """``(n, 2)`` µm points along the outline of the pixels' footprint (pixel edges)."""
        rows, cols = self.shape
        nr, nc = min(rows, 4096) + 1, min(cols, 4096) + 1
        r = np.linspace(-0.5, rows - 0.5, nr)
        c = np.linspace(-0.5, cols - 0.5, nc)
        idx = np.concatenate(
            [
                np.stack([c, np.full(nc, -0.5)], 1),
                np.stack([c, np.full(nc, rows - 0.5)], 1),
                np.stack([np.full(nr, -0.5), r], 1),
                np.stack([np.full(nr, cols - 0.5), r], 1),
            ]
        )
        return idx @ self.affine[:2, :2].T + self.affine[:2, 2]


def _axis_step(arr: xr.DataArray, dim: str, what: str) -> tuple[float, float]:
    """(first centre, step) of coordinate ``dim`` in µm; refuses missing or irregular coordinates."""
    if dim not in arr.coords:
        raise DataModelError(
            f"{what} has no {dim!r} coordinate: x/y must be µm at pixel centres; build it with "
            "spatialpath.model.make_image/make_labels"
        )
    c = np.asarray(arr[dim].values, dtype=np.float64)
    if c.size > 1:
        step = np.diff(c)
        if not np.allclose(step, step[0], rtol=1e-6, atol=1e-9) or step[0] == 0:
            raise DataModelError(
                f"{what} coordinate {dim!r} is not a regular grid (steps from {step.min():.6g} to "
                f"{step.max():.6g} µm); resampling needs pixel centres at index × pixel size + origin"
            )
        return float(c[0]), float((c[-1] - c[0]) / (c.size - 1))
    ps = arr.attrs.get(Key.attrs.pixel_size_um)
    if not isinstance(ps, int | float | np.floating) or not ps > 0:
        raise DataModelError(
            f"{what} has one pixel along {dim!r} and no positive attrs['pixel_size_um'] to size it"
        )
    return float(c[0]), float(ps)


def grid_of(arr: xr.DataArray, what: str = "image") -> Grid:
    """The pixel grid of a µm DataArray (``attrs['units'] == 'um'``, regular ``x``/``y`` coordinates)."""
    units = arr.attrs.get(Key.attrs.units)
    if units != Key.unit:
        raise DataModelError(
            f"{what} attrs['units'] is {units!r}, expected 'um': its x/y coordinates must be µm at pixel "
            "centres (spatialpath.model.make_image sets it); convert pixel coordinates with the pixel size"
        )
    x0, dx = _axis_step(arr, "x", what)
    y0, dy = _axis_step(arr, "y", what)
    affine = np.array([[dx, 0.0, x0], [0.0, dy, y0], [0.0, 0.0, 1.0]])
    return Grid((int(arr.sizes["y"]), int(arr.sizes["x"])), affine)


def output_grid(source: Grid, transform: Transform, pixel_size_um: float | None) -> Grid:
    """The axis-aligned grid covering the image of the source footprint under ``transform``.

    The pixel size defaults to the source's times the transform's area scale (``√|det M|``), so the
    output has about as many pixels as the input (exactly the source pixel size for rigid maps).
    Pixel edges sit on the bounding box's lower-left corner.
    """
    if pixel_size_um is None:
        scale = float(np.sqrt(abs(np.linalg.det(transform.linear))))
        ps = source.pixel_size_um * (1.0 if abs(scale - 1.0) < 1e-12 else scale)
    else:
        ps = float(pixel_size_um)
        if not np.isfinite(ps) or ps <= 0:
            raise DataModelError(f"pixel_size_um must be a positive number of µm, got {pixel_size_um!r}")
    pts = transform.apply_points(source.edge_points())
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    n = np.maximum(1, np.ceil((hi - lo) / ps - 1e-6)).astype(int)  # (nx, ny)
    origin = lo + ps / 2
    affine = np.array([[ps, 0.0, origin[0]], [0.0, ps, origin[1]], [0.0, 0.0, 1.0]])
    return Grid((int(n[1]), int(n[0])), affine)


@dataclass(frozen=True, eq=False)
class PixelMap:
    """Output pixel index → source pixel index (fractional ``(row, col)``), picklable for dask tasks."""

    matrix: np.ndarray | None  # affine case: [col, row, 1]_out → [col, row, 1]_src
    out_affine: np.ndarray | None = None  # non-rigid case: G_out
    inverse: Transform | None = None  # T⁻¹ with its (inverse) field
    src_inv: np.ndarray | None = None  # G_src⁻¹

    @classmethod
    def build(cls, source: Grid, out: Grid, transform: Transform) -> PixelMap:
        src_inv = np.linalg.inv(source.affine)
        if transform.displacement is None:
            m = src_inv @ np.linalg.inv(transform.matrix) @ out.affine
            near = np.abs(m - np.rint(m)) < _SNAP
            m[near] = np.rint(m[near])
            return cls(m)
        return cls(None, out.affine, transform.inverse(), src_inv)

    def points(self, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Source ``(n, 2)`` fractional ``(col, row)`` of output pixel indices ``cols``, ``rows`` (n,)."""
        idx = np.stack([cols, rows], axis=1).astype(np.float64)
        if self.matrix is not None:
            return idx @ self.matrix[:2, :2].T + self.matrix[:2, 2]
        um = idx @ self.out_affine[:2, :2].T + self.out_affine[:2, 2]
        src = self.inverse.apply_points(um)
        return src @ self.src_inv[:2, :2].T + self.src_inv[:2, 2]

    def block(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """``(2, r1 − r0, c1 − c0)`` source (row, col) of every output pixel of a block."""
        h, w = r1 - r0, c1 - c0
        if self.matrix is not None:
            m = self.matrix
            r = np.arange(r0, r1, dtype=np.float64)[:, None]
            c = np.arange(c0, c1, dtype=np.float64)[None, :]
            out = np.empty((2, h, w))
            out[0] = m[1, 0] * c + m[1, 1] * r + m[1, 2]
            out[1] = m[0, 0] * c + m[0, 1] * r + m[0, 2]
            return out
        return self._nonrigid_block(r0, r1, c0, c1)

    def _nonrigid_block(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Lattice fast path where it is accurate; where not, quarter the block and retry."""
        h, w = r1 - r0, c1 - c0
        if h * w <= 64 * _LATTICE_PX**2:
            return self._exact_block(r0, r1, c0, c1)
        fast = self._lattice_block(r0, r1, c0, c1)
        if fast is not None:
            return fast
        rm, cm = r0 + h // 2, c0 + w // 2
        out = np.empty((2, h, w))
        for a, b in ((r0, rm), (rm, r1)):
            for c, d in ((c0, cm), (cm, c1)):
                out[:, a - r0 : b - r0, c - c0 : d - c0] = self._nonrigid_block(a, b, c, d)
        return out

    def _exact_block(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        h, w = r1 - r0, c1 - c0
        rows, cols = np.mgrid[r0:r1, c0:c1]
        pts = self.points(cols.ravel(), rows.ravel())
        return np.stack([pts[:, 1].reshape(h, w), pts[:, 0].reshape(h, w)])

    def _lattice_block(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None:
        """Non-rigid fast path: exact on a lattice every ``_LATTICE_PX`` pixels, bilinear between.

        Accepted only if it matches the exact map within ``_LATTICE_TOL_PX`` at the centre of
        every lattice cell (the worst place for bilinear interpolation); else ``None``.
        """
        lr = np.unique(np.r_[np.arange(r0, r1, _LATTICE_PX), r1 - 1]).astype(np.float64)
        lc = np.unique(np.r_[np.arange(c0, c1, _LATTICE_PX), c1 - 1]).astype(np.float64)
        gr, gc = np.meshgrid(lr, lc, indexing="ij")
        lat = self.points(gc.ravel(), gr.ravel()).T.reshape(2, lr.size, lc.size)  # (col, row) source

        def interpolate(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            fr = np.interp(rows, lr, np.arange(lr.size))
            fc = np.interp(cols, lc, np.arange(lc.size))
            return np.stack([ndimage.map_coordinates(lat[k], [fr, fc], order=1) for k in (1, 0)])

        mr, mc = np.meshgrid((lr[:-1] + lr[1:]) / 2, (lc[:-1] + lc[1:]) / 2, indexing="ij")
        exact = self.points(mc.ravel(), mr.ravel())
        approx = interpolate(mr.ravel(), mc.ravel())
        if np.max(np.abs(approx - exact[:, ::-1].T)) > _LATTICE_TOL_PX:
            return None
        wr = _bilinear_weights(np.arange(r0, r1, dtype=np.float64), lr)  # (h, n_lattice_rows)
        wc = _bilinear_weights(np.arange(c0, c1, dtype=np.float64), lc)
        return np.stack([wr @ lat[k] @ wc.T for k in (1, 0)])  # separable bilinear: (row, col)


def _bilinear_weights(x: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """``(len(x), len(nodes))`` linear-interpolation weights of ``x`` between sorted ``nodes``."""
    f = np.interp(x, nodes, np.arange(nodes.size, dtype=np.float64))
    j = np.minimum(np.floor(f).astype(np.intp), nodes.size - 2)
    t = f - j
    w = np.zeros((x.size, nodes.size))
    w[np.arange(x.size), j] = 1.0 - t
    w[np.arange(x.size), j + 1] += t
    return w


def _block_samples(r0: int, r1: int, c0: int, c1: int, affine: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Output (rows, cols) sampled on a block and how many of them walk its border in order.

    Affine: the 4 corner pixels (exact). Non-rigid: the border every few pixels (top, right, bottom,
    left: consecutive samples are neighbours) plus a coarse interior grid.
    """
    if affine:
        return np.array([r0, r0, r1 - 1, r1 - 1]), np.array([c0, c1 - 1, c0, c1 - 1]), 0
    rr = np.unique(np.r_[np.arange(r0, r1, _BORDER_STEP), r1 - 1])
    cc = np.unique(np.r_[np.arange(c0, c1, _BORDER_STEP), c1 - 1])
    rows = np.r_[np.full(cc.size, r0), rr, np.full(cc.size, r1 - 1), rr[::-1]]
    cols = np.r_[cc, np.full(rr.size, c1 - 1), cc[::-1], np.full(rr.size, c0)]
    gr, gc = np.meshgrid(np.arange(r0, r1, _INTERIOR_STEP), np.arange(c0, c1, _INTERIOR_STEP), indexing="ij")
    return np.r_[rows, gr.ravel()], np.r_[cols, gc.ravel()], rows.size


def source_windows(
    pixel_map: PixelMap, row_bounds: np.ndarray, col_bounds: np.ndarray, order: int
) -> tuple[np.ndarray, np.ndarray]:
    """The source pixel box every output block needs, in one vectorised pass.

    Returns ``lo`` and ``hi`` (``(n_row_blocks, n_col_blocks, 2)`` integer ``(row, col)``, ``hi``
    exclusive) before clipping to the source. A non-rigid map has no folds (Jacobian > 0), so a block's
    image is bounded by the image of its border; the border is sampled every few pixels and the box
    is padded by the largest step between consecutive samples (which bounds the curve's excursion
    between them). Interpolation of order k > 1 (spline prefilter) adds 12 pixels (0.27¹² ≈ 1e-7).
    """
    affine = pixel_map.matrix is not None
    nbr, nbc = len(row_bounds) - 1, len(col_bounds) - 1
    rows_l, cols_l, ids, walk = [], [], [], []
    for i in range(nbr):
        for j in range(nbc):
            r0, r1, c0, c1 = row_bounds[i], row_bounds[i + 1], col_bounds[j], col_bounds[j + 1]
            r, c, n_border = _block_samples(r0, r1, c0, c1, affine)
            rows_l.append(r)
            cols_l.append(c)
            ids.append(np.full(r.size, i * nbc + j))
            walk.append(np.arange(r.size) < n_border)
    rows, cols, bid = np.concatenate(rows_l), np.concatenate(cols_l), np.concatenate(ids)
    src = pixel_map.points(cols, rows)[:, ::-1]  # (row, col)
    lo = np.full((nbr * nbc, 2), np.inf)
    hi = np.full((nbr * nbc, 2), -np.inf)
    np.minimum.at(lo, bid, src)
    np.maximum.at(hi, bid, src)
    pad = 0.0 if order <= 1 else 12.0
    if not affine:  # the curve between border samples strays at most ~ one step from them
        on_walk = np.concatenate(walk)
        pairs = on_walk[1:] & on_walk[:-1] & (bid[1:] == bid[:-1])
        step = np.hypot(*np.diff(src, axis=0)[pairs].T)
        pad += 1.0 + (float(np.ceil(step.max())) if step.size else 0.0)
    lo_i = np.floor(lo - pad).astype(np.int64).reshape(nbr, nbc, 2)
    hi_i = (np.ceil(hi + pad).astype(np.int64) + 1).reshape(nbr, nbc, 2)
    return lo_i, hi_i


def as_grid(like: Any) -> Grid:
    """The grid of ``like`` (a µm DataArray) for the output."""
    if not isinstance(like, xr.DataArray):
        raise DataModelError(
            f"like must be an xarray.DataArray on a µm grid (the fixed image), got {type(like).__name__}"
        )
    return grid_of(like, "like")
