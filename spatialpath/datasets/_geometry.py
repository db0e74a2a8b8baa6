"""Geometry of a simulated tissue section, in micrometres.

A non-convex tissue outline with holes (lumens), tumour nests inside it, an invasive-margin band
of fixed width on the stromal side of the tumour border, round immune aggregates in the stroma,
and the remaining fibrotic stroma. The shape parameters are drawn once and relative to the
tissue radius, so the same draw can be rebuilt at any scale (see :func:`build_geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry

from spatialpath.datasets._profiles import NEIGHBOURHOODS

_N_VERTICES = 256


@dataclass(frozen=True)
class ShapeDraw:
    """Random shape parameters of one tissue, relative to its radius (drawn once per seed)."""

    outline_harmonics: np.ndarray  # (k, 2): amplitude, phase for k = 2..
    aspect: float
    rotation: float
    holes: np.ndarray  # (h, 4): centre (relative polar r, theta), semi-axes (relative)
    nests: np.ndarray  # (m, 3 + 2 * 3): centre (rel. x, y), radius (rel.), 3 harmonics
    aggregate_seed: int


@dataclass(frozen=True)
class Geometry:
    """Polygons of one simulated tissue (µm) and its neighbourhood zones."""

    tissue: BaseGeometry
    tumour: BaseGeometry
    zones: dict[str, BaseGeometry]
    n_aggregates: int

    def zone_areas_um2(self) -> np.ndarray:
        """Areas of the zones in :data:`NEIGHBOURHOODS` order."""
        return np.array([self.zones[z].area for z in NEIGHBOURHOODS])


def draw_shape(rng: np.random.Generator, tumour_fraction: float) -> ShapeDraw:
    """Draw the random shape parameters of one tissue."""
    ks = np.arange(2, 6)
    harmonics = np.column_stack(
        [rng.uniform(0.05, 0.14, len(ks)) / np.sqrt(ks / 2), rng.uniform(0, 2 * np.pi, len(ks))]
    )
    n_holes = int(rng.integers(2, 4))
    holes = np.column_stack(
        [
            rng.uniform(0.0, 0.55, n_holes),
            rng.uniform(0, 2 * np.pi, n_holes),
            rng.uniform(0.05, 0.12, n_holes),
            rng.uniform(0.03, 0.08, n_holes),
        ]
    )
    # Enough candidate nests to reach the target tumour fraction; they are added in order.
    n_nests = 40
    radius = rng.uniform(0.12, 0.28, n_nests) * np.sqrt(tumour_fraction / 0.4)
    nests = np.column_stack(
        [
            rng.uniform(-0.85, 0.85, (n_nests, 2)),
            radius,
            rng.uniform(0.0, 0.18, (n_nests, 3)),
            rng.uniform(0, 2 * np.pi, (n_nests, 3)),
        ]
    )
    return ShapeDraw(
        outline_harmonics=harmonics,
        aspect=float(rng.uniform(1.0, 1.35)),
        rotation=float(rng.uniform(0, np.pi)),
        holes=holes,
        nests=nests,
        aggregate_seed=int(rng.integers(2**31)),
    )


def _star(cx: float, cy: float, r: float, amps: np.ndarray, phases: np.ndarray, ks: np.ndarray) -> Polygon:
    theta = np.linspace(0, 2 * np.pi, _N_VERTICES, endpoint=False)
    rad = r * (1 + (amps[:, None] * np.cos(ks[:, None] * theta[None] + phases[:, None])).sum(0))
    return Polygon(np.column_stack([cx + rad * np.cos(theta), cy + rad * np.sin(theta)]))


def build_geometry(
    draw: ShapeDraw,
    radius_um: float,
    *,
    tumour_fraction: float,
    margin_width_um: float,
    aggregate_radius_um: float,
    n_aggregates: int | None,
) -> Geometry:
    """Build the polygons of ``draw`` for a tissue of radius ``radius_um`` (centred at 0, 0)."""
    R = radius_um
    h = draw.outline_harmonics
    outline = _star(0, 0, R, h[:, 0], h[:, 1], np.arange(2, 2 + len(h)))
    outline = shapely.affinity.rotate(
        shapely.affinity.scale(outline, draw.aspect, 1 / draw.aspect), draw.rotation, use_radians=True
    )
    tissue = outline
    for r_rel, th, a, b in draw.holes:
        hole = shapely.affinity.scale(Point(0, 0).buffer(1.0, quad_segs=16), a * R, b * R)
        hole = shapely.affinity.translate(hole, r_rel * R * np.cos(th), r_rel * R * np.sin(th))
        tissue = tissue.difference(hole)
    tissue = shapely.make_valid(tissue)

    target = tumour_fraction * tissue.area
    tumour: BaseGeometry = Polygon()
    for row in draw.nests:
        cx, cy = row[0] * R * draw.aspect, row[1] * R
        if not shapely.contains_xy(tissue, cx, cy):
            continue
        nest = _star(cx, cy, row[2] * R, row[3:6], row[6:9], np.array([2, 3, 4]))
        tumour = tumour.union(nest)
        if tumour.intersection(tissue).area >= target:
            break
    tumour = shapely.make_valid(tumour.intersection(tissue))

    margin = shapely.make_valid(tumour.buffer(margin_width_um).intersection(tissue).difference(tumour))
    aggregates = _place_aggregates(
        draw.aggregate_seed, tissue, tumour, margin_width_um, aggregate_radius_um, n_aggregates
    )
    agg_union = shapely.union_all(aggregates) if aggregates else Polygon()
    agg_union = shapely.make_valid(agg_union.intersection(tissue))
    stroma = shapely.make_valid(tissue.difference(tumour).difference(margin).difference(agg_union))
    zones = {
        "tumour_nest": tumour,
        "invasive_margin": margin,
        "immune_aggregate": agg_union,
        "fibrotic_stroma": stroma,
    }
    return Geometry(tissue=tissue, tumour=tumour, zones=zones, n_aggregates=len(aggregates))


def _place_aggregates(
    seed: int,
    tissue: BaseGeometry,
    tumour: BaseGeometry,
    margin_width_um: float,
    radius_um: float,
    n_aggregates: int | None,
) -> list[Polygon]:
    """Place round aggregates fully inside the stroma, clear of the margin and of each other."""
    rng = np.random.default_rng(seed)
    allowed = tissue.buffer(-radius_um).difference(tumour.buffer(margin_width_um + radius_um + 5.0))
    if allowed.is_empty:
        return []
    if n_aggregates is None:  # one per 2 mm² of stroma, at least one, at most 12
        n_aggregates = int(np.clip(round(tissue.difference(tumour).area / 2e6), 1, 12))
    x0, y0, x1, y1 = allowed.bounds
    centres: list[tuple[float, float]] = []
    for _ in range(200):
        if len(centres) >= n_aggregates:
            break
        xs, ys = rng.uniform(x0, x1, 64), rng.uniform(y0, y1, 64)
        ok = shapely.contains_xy(allowed, xs, ys)
        for x, y in zip(xs[ok], ys[ok], strict=True):
            if all((x - a) ** 2 + (y - b) ** 2 > (2.5 * radius_um) ** 2 for a, b in centres):
                centres.append((float(x), float(y)))
                break
    return [Point(x, y).buffer(radius_um, quad_segs=16) for x, y in centres]


def sample_uniform(geom: BaseGeometry, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` points drawn uniformly inside ``geom`` (rejection from its bounding box)."""
    if n == 0:
        return np.empty((0, 2))
    if geom.is_empty or geom.area <= 0:
        raise ValueError("cannot place cells in an empty region")
    x0, y0, x1, y1 = geom.bounds
    shapely.prepare(geom)
    accept = geom.area / ((x1 - x0) * (y1 - y0))
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        m = int((n - have) / accept * 1.1) + 16
        pts = np.column_stack([rng.uniform(x0, x1, m), rng.uniform(y0, y1, m)])
        pts = pts[shapely.contains_xy(geom, pts[:, 0], pts[:, 1])]
        out.append(pts)
        have += len(pts)
    return np.concatenate(out)[:n]
