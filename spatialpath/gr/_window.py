"""Observation windows of point-pattern statistics: tissue polygons, masks or convex hulls.

Edge corrections need the window ``W`` in which cells could have been observed: the tissue, not
the image rectangle. A :class:`Window` holds the exact area (from the polygon when there is one)
and a raster of ``W`` at a stated resolution, from which it derives, once:

- the distance of any location to the boundary of ``W`` (border correction), from a Euclidean
  distance transform: the distance from a pixel centre to the nearest outside pixel centre, minus
  half a pixel (the boundary lies between the two);
- the **set covariogram** ``γ(u) = |W ∩ (W + u)|`` (translation correction) as the FFT
  autocorrelation of the raster, for offsets up to a given reach;
- the eroded areas ``|W ⊖ d|`` (Hanisch correction of nearest-neighbour functions);
- uniform random points in ``W`` (CSR null) and a regular grid of test locations (empty-space
  function F).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
import xarray as xr
from scipy import fft, ndimage

from spatialpath.model import DataModelError

__all__ = ["Window", "WindowLike", "make_window"]

#: at most this many raster pixels in an automatically rasterised window.
MAX_PIXELS = 1_000_000
#: empty-space test locations: about this many grid points in the window.
N_TEST_POINTS = 20_000

WindowLike = Any  # shapely geometry | GeoDataFrame/GeoSeries | xarray.DataArray | Window | None


@dataclass(frozen=True, eq=False)
class Window:
    """A window ``W`` rasterised on a µm grid (``mask[row, col]``, pixel centres at ``origin + index·h``).

    Build one with :func:`make_window` (from a polygon, a mask DataArray or a convex hull), or
    directly from a boolean raster.

    Parameters
    ----------
    mask
        ``(rows, cols)`` bool raster: True inside ``W``.
    pixel_size_um
        Raster pixel edge ``h`` in µm.
    origin_um
        ``(x, y)`` in µm of the centre of pixel ``(0, 0)``.
    area_um2
        Exact area of ``W`` (the polygon's when there is one, else pixel count × h²).
    source
        How the window was made (``"polygon"``, ``"mask"``, ``"convex hull"``...), for reports.
    polygon
        The exact (Multi)Polygon, if any: :meth:`contains` then tests points exactly.

    Examples
    --------
    >>> import numpy as np
    >>> w = Window(np.ones((4, 6), bool), pixel_size_um=10.0, origin_um=(5.0, 5.0), area_um2=2400.0,
    ...            source="mask")  # a 60 × 40 µm rectangle from (0, 0)
    >>> w.contains(np.array([[5.0, 5.0], [100.0, 20.0]]))
    array([ True, False])
    >>> w.boundary_distance_map[1]  # µm to the boundary from the pixel centres of row 1
    array([ 5., 15., 15., 15., 15.,  5.])
    """

    mask: np.ndarray
    pixel_size_um: float
    origin_um: tuple[float, float]
    area_um2: float
    source: str
    polygon: Any = None
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ geometry
    @property
    def boundary_distance_map(self) -> np.ndarray:
        """Distance (µm) from each pixel centre inside ``W`` to the boundary; 0 outside."""
        if "edt" not in self._cache:
            padded = np.pad(self.mask, 1)
            edt = ndimage.distance_transform_edt(padded)[1:-1, 1:-1] * self.pixel_size_um
            self._cache["edt"] = np.where(self.mask, np.maximum(edt - 0.5 * self.pixel_size_um, 0.0), 0.0)
        return self._cache["edt"]

    @property
    def inscribed_radius_um(self) -> float:
        """The largest boundary distance in ``W``: the largest r a border correction can use."""
        return float(self.boundary_distance_map.max())

    def _pixel(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        col = np.rint((xy[:, 0] - self.origin_um[0]) / self.pixel_size_um).astype(np.int64)
        row = np.rint((xy[:, 1] - self.origin_um[1]) / self.pixel_size_um).astype(np.int64)
        inside = (row >= 0) & (row < self.mask.shape[0]) & (col >= 0) & (col < self.mask.shape[1])
        return row, col, inside

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Whether each point lies in ``W`` (exactly for a polygon, by its pixel for a mask)."""
        xy = np.asarray(xy, np.float64)
        if self.polygon is not None:
            return shapely.contains_xy(self.polygon, xy[:, 0], xy[:, 1]) | shapely.intersects_xy(
                self.polygon.boundary, xy[:, 0], xy[:, 1]
            )
        row, col, ok = self._pixel(xy)
        out = np.zeros(len(xy), bool)
        out[ok] = self.mask[row[ok], col[ok]]
        return out

    def boundary_distance(self, xy: np.ndarray) -> np.ndarray:
        """Distance (µm) of each point to the boundary of ``W`` (bilinear in the distance map)."""
        xy = np.asarray(xy, np.float64)
        coords = np.stack(
            [
                (xy[:, 1] - self.origin_um[1]) / self.pixel_size_um,
                (xy[:, 0] - self.origin_um[0]) / self.pixel_size_um,
            ]
        )
        return ndimage.map_coordinates(self.boundary_distance_map, coords, order=1, mode="constant", cval=0.0)

    def eroded_area(self, d: np.ndarray) -> np.ndarray:
        """``|W ⊖ d|`` (µm²): the area of the points of ``W`` at least ``d`` from its boundary."""
        if "eroded" not in self._cache:
            values = np.sort(self.boundary_distance_map[self.mask])
            self._cache["eroded"] = (values, self.area_um2 / max(len(values), 1))
        values, per_pixel = self._cache["eroded"]
        return (len(values) - np.searchsorted(values, np.asarray(d, np.float64), side="left")) * per_pixel

    def covariogram(self, reach_um: float) -> tuple[np.ndarray, int]:
        """``(γ(0)/γ(u), R)``: inverse relative covariogram on offsets ``|u_x|, |u_y| ≤ R`` pixels.

        Entry ``[R + dy, R + dx]`` is the translation weight of two points ``(dx, dy)`` pixels
        apart; ``inf`` where ``γ(u) = 0`` (the shift moves ``W`` off itself).
        """
        radius = int(np.ceil(reach_um / self.pixel_size_um)) + 1
        if radius not in self._cache:
            m = self.mask.astype(np.float32)
            shape = (m.shape[0] + radius + 1, m.shape[1] + radius + 1)
            spec = fft.rfft2(m, s=shape, workers=-1)
            ac = fft.irfft2(spec * np.conj(spec), s=shape, workers=-1)
            rows = np.r_[np.arange(-radius, 0) + shape[0], np.arange(0, radius + 1)]
            cols = np.r_[np.arange(-radius, 0) + shape[1], np.arange(0, radius + 1)]
            gamma = np.maximum(np.rint(ac[np.ix_(rows, cols)]), 0.0)
            with np.errstate(divide="ignore"):
                weight = np.where(gamma > 0, gamma[radius, radius] / gamma, np.inf)
            self._cache[radius] = weight.astype(np.float64)
        return self._cache[radius], radius

    def translation_support_um(self, reach_um: float) -> float:
        """Largest r ≤ ``reach_um`` such that ``γ(u) > 0`` for every ``|u| ≤ r``."""
        weight, radius = self.covariogram(reach_um)
        dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1] * self.pixel_size_um
        dist = np.hypot(dx, dy)
        bad = dist[~np.isfinite(weight)]
        return float(min(reach_um, bad.min() - self.pixel_size_um)) if bad.size else float(reach_um)

    # ------------------------------------------------------------------ sampling
    def sample_uniform(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent uniform points in ``W`` (rejection from the bounding box of a polygon)."""
        if self.polygon is not None:
            x0, y0, x1, y1 = self.polygon.bounds
            out = np.empty((0, 2))
            frac = max(self.area_um2 / max((x1 - x0) * (y1 - y0), 1e-300), 1e-3)
            while len(out) < n:
                k = int((n - len(out)) / frac * 1.2) + 16
                cand = np.column_stack([rng.uniform(x0, x1, k), rng.uniform(y0, y1, k)])
                out = np.vstack([out, cand[shapely.contains_xy(self.polygon, cand[:, 0], cand[:, 1])]])
            return out[:n]
        flat = np.flatnonzero(self.mask)
        pick = flat[rng.integers(0, len(flat), n)]
        row, col = np.divmod(pick, self.mask.shape[1])
        jitter = rng.uniform(-0.5, 0.5, (n, 2))
        return np.column_stack(
            [
                self.origin_um[0] + (col + jitter[:, 0]) * self.pixel_size_um,
                self.origin_um[1] + (row + jitter[:, 1]) * self.pixel_size_um,
            ]
        )

    def test_points(self, n_target: int = N_TEST_POINTS) -> tuple[np.ndarray, np.ndarray]:
        """A regular grid of about ``n_target`` locations in ``W`` and their boundary distances."""
        count = int(self.mask.sum())
        stride = max(1, int(np.floor(np.sqrt(count / n_target))))
        sub = self.mask[::stride, ::stride]
        row, col = np.nonzero(sub)
        row, col = row * stride, col * stride
        xy = np.column_stack(
            [self.origin_um[0] + col * self.pixel_size_um, self.origin_um[1] + row * self.pixel_size_um]
        )
        return xy, self.boundary_distance_map[row, col]

    def _repr_html_(self) -> str:
        h, w = self.mask.shape
        return (
            f"<b>Window</b> ({self.source}): area {self.area_um2 / 1e6:.4g} mm², raster {w}×{h} at "
            f"{self.pixel_size_um:.3g} µm, inscribed radius {self.inscribed_radius_um:.4g} µm"
        )


def _rasterise(geom: Any, resolution_um: float | None, source: str) -> Window:
    x0, y0, x1, y1 = geom.bounds
    h = resolution_um or max(np.sqrt((x1 - x0) * (y1 - y0) / MAX_PIXELS), 1e-9)
    ox, oy = x0 - h, y0 - h
    nx, ny = int(np.ceil((x1 - ox) / h)) + 2, int(np.ceil((y1 - oy) / h)) + 2
    if nx * ny > 16 * MAX_PIXELS:
        raise DataModelError(
            f"window_resolution_um={h} µm gives a {nx}×{ny} raster; use a coarser resolution "
            f"(≥ {np.sqrt((x1 - x0) * (y1 - y0) / MAX_PIXELS):.3g} µm)"
        )
    mask = np.empty((ny, nx), bool)
    shapely.prepare(geom)
    xs = ox + np.arange(nx) * h
    rows = max(1, 2**20 // nx)  # pixel centres tested in slabs of about a million
    for r0 in range(0, ny, rows):
        ys = oy + np.arange(r0, min(ny, r0 + rows)) * h
        gx, gy = np.meshgrid(xs, ys)
        mask[r0 : r0 + len(ys)] = shapely.contains_xy(geom, gx, gy)
    return Window(mask, float(h), (float(ox), float(oy)), float(geom.area), source, geom)


def _from_dataarray(da: xr.DataArray) -> Window:
    if da.ndim != 2 or set(da.dims) != {"y", "x"}:
        raise DataModelError(
            f"a window mask must be a 2-D DataArray with dims ('y', 'x') in µm, got dims {da.dims}; "
            "wrap a numpy mask with spatialpath.model.make_labels(mask, pixel_size_um=...)"
        )
    da = da.transpose("y", "x")
    xs, ys = np.asarray(da["x"], float), np.asarray(da["y"], float)
    if len(xs) < 2 or len(ys) < 2:
        raise DataModelError("a window mask needs at least 2 pixels along x and y")
    h = float(xs[1] - xs[0])
    if not np.isclose(ys[1] - ys[0], h, rtol=1e-6):
        raise DataModelError(f"window mask pixels must be square, got {h} × {ys[1] - ys[0]} µm")
    mask = np.asarray(da.data != 0) if da.dtype != bool else np.asarray(da.data)
    # very large masks (whole slides at native resolution) are reduced by an integer factor
    factor = int(np.ceil(np.sqrt(mask.size / MAX_PIXELS)))
    origin = (float(xs[0]), float(ys[0]))
    if factor > 1:
        hh, ww = mask.shape[0] // factor * factor, mask.shape[1] // factor * factor
        mask = mask[:hh, :ww].reshape(hh // factor, factor, ww // factor, factor).mean(axis=(1, 3)) >= 0.5
        origin = (origin[0] + (factor - 1) * h / 2, origin[1] + (factor - 1) * h / 2)
        h *= factor
    if not mask.any():
        raise DataModelError("the window mask is empty (no nonzero pixel)")
    return Window(mask, h, origin, float(mask.sum()) * h * h, "mask")


def make_window(
    window: WindowLike, xy: np.ndarray | None = None, *, resolution_um: float | None = None
) -> Window:
    """Build a :class:`Window` from a polygon, a mask, or the convex hull of ``xy``.

    Parameters
    ----------
    window
        A shapely (Multi)Polygon or a GeoDataFrame/GeoSeries (its union) in µm; a 2-D
        ``xarray.DataArray`` mask with ``y``/``x`` coordinates in µm (nonzero = inside, e.g. a tissue
        map made with :func:`spatialpath.model.make_labels`); a :class:`Window`; or ``None`` for the
        convex hull of ``xy``.
    xy
        The cells' coordinates (µm), for the convex hull.
    resolution_um
        Raster resolution of a polygon window; default: the bounding box cut in about
        :data:`MAX_PIXELS` pixels.

    Examples
    --------
    >>> import shapely
    >>> w = make_window(shapely.box(0, 0, 100, 50), resolution_um=1.0)
    >>> round(w.area_um2), abs(w.inscribed_radius_um - 25) <= 1  # within a pixel of the truth
    (5000, True)
    """
    if isinstance(window, Window):
        return window
    if isinstance(window, xr.DataArray):
        return _from_dataarray(window)
    if window is None:
        if xy is None or len(xy) < 3:
            raise DataModelError("a convex-hull window needs at least 3 cells")
        hull = shapely.MultiPoint(np.asarray(xy, float)).convex_hull
        if hull.area <= 0:
            raise DataModelError("the cells are collinear: their convex hull has no area; pass a window")
        return _rasterise(hull, resolution_um, "convex hull")
    if hasattr(window, "geometry") and hasattr(window, "union_all"):  # GeoDataFrame / GeoSeries
        window = window.union_all() if len(window) else shapely.Polygon()
    if isinstance(window, shapely.Geometry):
        if window.geom_type not in {"Polygon", "MultiPolygon", "GeometryCollection"} or window.area <= 0:
            raise DataModelError(
                f"a window polygon must be a Polygon or MultiPolygon with positive area, got "
                f"{window.geom_type} of area {window.area}"
            )
        return _rasterise(window, resolution_um, "polygon")
    if isinstance(window, Mapping):
        raise DataModelError("a mapping of windows must be keyed by image; pass one window per image")
    raise DataModelError(
        f"window must be a shapely polygon, a GeoDataFrame, an xarray mask, a Window or None, got "
        f"{type(window).__name__}"
    )
