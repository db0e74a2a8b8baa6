"""Lazy rendering of a simulated tissue into a multichannel image and label masks.

Each dask chunk is computed on its own: the cells near the chunk are found with a KD-tree,
every pixel is given to the cell whose body covers it (where bodies overlap, to the cell with
the smallest distance / radius, a multiplicatively weighted Voronoi split, so every cell keeps
the pixel at its own centre), and pixel
noise comes from a generator seeded by ``(seed, chunk row, chunk column)``. A whole slide is
never held in memory, and any chunk is identical however the array is computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely.geometry.base import BaseGeometry

_K_NEAREST = 4


class CellRenderer:
    """Render cells (centres, nucleus and body radii, per-cell channel levels) onto a pixel grid."""

    def __init__(
        self,
        xy_um: np.ndarray,
        nucleus_radius_um: np.ndarray,
        body_radius_um: np.ndarray,
        levels: np.ndarray,
        nuclear: Sequence[bool],
        *,
        pixel_size_um: float,
        background: float,
        noise_sd: float,
        seed: int,
    ) -> None:
        self.xy = np.asarray(xy_um, dtype=np.float64)
        self.r_nuc = np.asarray(nucleus_radius_um, dtype=np.float64)
        self.r_body = np.asarray(body_radius_um, dtype=np.float64)
        self.levels = np.asarray(levels, dtype=np.float32)
        self.nuclear = np.asarray(nuclear, dtype=bool)
        self.ps = float(pixel_size_um)
        self.background = float(background)
        self.noise_sd = float(noise_sd)
        self.seed = int(seed)
        self.tree = cKDTree(self.xy) if len(self.xy) else None
        self.r_max = float(self.r_body.max()) if len(self.r_body) else 0.0

    def _owner(self, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Index of the owning cell of each pixel (-1 for none) and the pixel's distance to it."""
        ys = np.arange(rows.start, rows.stop) * self.ps
        xs = np.arange(cols.start, cols.stop) * self.ps
        shape = (len(ys), len(xs))
        none = (np.full(shape, -1, np.int64), np.full(shape, np.inf))
        if self.tree is None:
            return none
        cx, cy = xs.mean(), ys.mean()
        half_diag = 0.5 * np.hypot(xs[-1] - xs[0], ys[-1] - ys[0])
        cand = np.asarray(self.tree.query_ball_point([cx, cy], half_diag + self.r_max), dtype=np.int64)
        if len(cand) == 0:
            return none
        gx, gy = np.meshgrid(xs, ys)
        pix = np.column_stack([gx.ravel(), gy.ravel()])
        k = min(_K_NEAREST, len(cand))
        dist, idx = cKDTree(self.xy[cand]).query(pix, k=k, distance_upper_bound=self.r_max)
        dist, idx = dist.reshape(len(pix), k), idx.reshape(len(pix), k)
        valid = idx < len(cand)
        safe = np.where(valid, idx, 0)
        r = self.r_body[cand[safe]]
        score = np.where(valid & (dist <= r), dist / r, np.inf)
        best = score.argmin(axis=1)
        rows_ = np.arange(len(pix))
        has = np.isfinite(score[rows_, best])
        owner = np.where(has, cand[safe[rows_, best]], -1)
        d = np.where(has, dist[rows_, best], np.inf)
        return owner.reshape(shape), d.reshape(shape)

    def labels_block(self, rows: slice, cols: slice) -> np.ndarray:
        """Nucleus instance labels (cell ``i`` has label ``i + 1``, background 0)."""
        owner, d = self._owner(rows, cols)
        inside = (owner >= 0) & (d <= self.r_nuc[np.maximum(owner, 0)])
        return np.where(inside, owner + 1, 0).astype(np.int32)

    def image_block(self, rows: slice, cols: slice, block_id: tuple[int, int]) -> np.ndarray:
        """Channel intensities: cell level over the body (or nucleus) + background + Gaussian noise."""
        owner, d = self._owner(rows, cols)
        safe = np.maximum(owner, 0)
        in_body = owner >= 0
        in_nuc = in_body & (d <= self.r_nuc[safe])
        n_c = self.levels.shape[1]
        h, w = owner.shape
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=block_id))
        out = rng.standard_normal((n_c, h, w), dtype=np.float32) * np.float32(self.noise_sd)
        out += np.float32(self.background)
        vals = self.levels[safe]  # (h, w, c)
        for c in range(n_c):
            mask = in_nuc if self.nuclear[c] else in_body
            out[c] += np.where(mask, vals[..., c], np.float32(0))
        np.maximum(out, 0, out=out)
        return out


def _grid(shape: tuple[int, int], chunk_px: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    h, w = shape
    return (
        tuple(min(chunk_px, h - i) for i in range(0, h, chunk_px)),
        tuple(min(chunk_px, w - j) for j in range(0, w, chunk_px)),
    )


def _slices(block_info: dict) -> tuple[slice, slice]:
    loc = block_info[None]["array-location"]
    return slice(*loc[-2]), slice(*loc[-1])


def lazy_labels(renderer: CellRenderer, shape: tuple[int, int], chunk_px: int) -> da.Array:
    """Nucleus label mask as a dask array of ``shape``, one task per chunk."""

    def block(block_info: dict | None = None) -> np.ndarray:
        return renderer.labels_block(*_slices(block_info))

    return da.map_blocks(
        block, chunks=_grid(shape, chunk_px), dtype=np.int32, meta=np.empty((0, 0), np.int32)
    )


def lazy_image(renderer: CellRenderer, shape: tuple[int, int], chunk_px: int) -> da.Array:
    """Multichannel image ``(c, y, x)`` as a dask array, one task (and one noise seed) per chunk."""
    n_c = renderer.levels.shape[1]
    chunks = ((n_c,), *_grid(shape, chunk_px))

    def block(block_info: dict | None = None) -> np.ndarray:
        rows, cols = _slices(block_info)
        return renderer.image_block(rows, cols, tuple(block_info[None]["chunk-location"][1:]))

    return da.map_blocks(block, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))


def lazy_zone_mask(
    zones: Sequence[BaseGeometry], shape: tuple[int, int], pixel_size_um: float, chunk_px: int
) -> da.Array:
    """Class mask: value ``k + 1`` where a pixel centre lies in ``zones[k]``, 0 elsewhere."""
    for z in zones:
        shapely.prepare(z)

    def block(block_info: dict | None = None) -> np.ndarray:
        rows, cols = _slices(block_info)
        gx, gy = np.meshgrid(
            np.arange(cols.start, cols.stop) * pixel_size_um, np.arange(rows.start, rows.stop) * pixel_size_um
        )
        out = np.zeros(gx.shape, np.uint8)
        for k, z in enumerate(zones):
            out[shapely.contains_xy(z, gx, gy)] = k + 1
        return out

    return da.map_blocks(
        block, chunks=_grid(shape, chunk_px), dtype=np.uint8, meta=np.empty((0, 0), np.uint8)
    )
