"""``simulate_tissue``: a multiplexed tumour section with planted, stored ground truth."""

from __future__ import annotations

from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
import shapely
import shapely.affinity

from spatialpath.datasets import _profiles as P
from spatialpath.datasets._geometry import Geometry, build_geometry, draw_shape, sample_uniform
from spatialpath.datasets._tissue import BACKGROUND, NOISE_SD, SimulatedTissue, assemble, coarse_mask
from spatialpath.keys import Key
from spatialpath.model import ImageMetadata, set_image_metadata

__all__ = ["SimulatedTissue", "simulate_tissue"]

Mode = Literal["planted", "null"]
_PAD_UM = 50.0
_EXPRESSION_SD_LOG = 0.25


def _as_seed_sequence(seed: int | np.random.SeedSequence) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or a numpy SeedSequence, got {seed!r}")
    return np.random.SeedSequence(int(seed))


def _check_density(density: pd.DataFrame) -> pd.DataFrame:
    expected = (list(P.NEIGHBOURHOODS), list(P.CELL_TYPES))
    if list(density.index) != expected[0] or list(density.columns) != expected[1]:
        raise ValueError(
            f"density must be a DataFrame with index {expected[0]} and columns {expected[1]} "
            "(cells/mm²); start from spatialpath.datasets.density_table() and edit its values"
        )
    vals = density.to_numpy(dtype=float)
    if not np.isfinite(vals).all() or (vals < 0).any() or (vals.sum(1) <= 0).any():
        raise ValueError("density values must be finite, >= 0, and every neighbourhood must have cells")
    return density.astype(float)


def _solve_geometry(draw: Any, n_cells: int, lam_zone: np.ndarray, **geom_kw: Any) -> tuple[Geometry, float]:
    """Scale the drawn shape until the expected number of cells equals ``n_cells``."""
    radius = np.sqrt(n_cells / (lam_zone.mean() * np.pi))
    for _ in range(6):
        geom = build_geometry(draw, radius, **geom_kw)
        expected = float(geom.zone_areas_um2() @ lam_zone)
        if abs(expected / n_cells - 1) < 1e-3:
            break
        radius *= np.sqrt(n_cells / expected)
    geom = build_geometry(draw, radius, **geom_kw)
    return geom, float(geom.zone_areas_um2() @ lam_zone)


def _zone_of(xy: np.ndarray, geom: Geometry) -> np.ndarray:
    code = np.full(len(xy), -1, np.int64)
    for k, z in enumerate(P.NEIGHBOURHOODS):
        inside = shapely.contains_xy(geom.zones[z], xy[:, 0], xy[:, 1])
        code[(code < 0) & inside] = k
    missing = np.flatnonzero(code < 0)  # points on a shared edge: give them the nearest zone
    if len(missing):
        pts = shapely.points(xy[missing])
        dist = np.column_stack([shapely.distance(pts, geom.zones[z]) for z in P.NEIGHBOURHOODS])
        code[missing] = dist.argmin(1)
    return code


def _valid_wkt(geom) -> str:
    """WKT of the polygonal part of ``geom``, repaired and snapped to a 1e-6 µm grid (parses back valid)."""
    geom = shapely.make_valid(geom)
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        parts = shapely.get_parts(geom)
        geom = shapely.union_all([g for g in parts if g.geom_type in ("Polygon", "MultiPolygon")])
    return shapely.to_wkt(shapely.set_precision(geom, 1e-6), rounding_precision=6)


def simulate_tissue(
    seed: int | np.random.SeedSequence = 0,
    *,
    n_cells: int = 20_000,
    mode: Mode = "planted",
    cd8_exclusion: float | None = None,
    macrophage_border_enrichment: float | None = None,
    density: pd.DataFrame | None = None,
    tumour_fraction: float = 0.4,
    margin_width_um: float = 100.0,
    aggregate_radius_um: float = 100.0,
    n_aggregates: int | None = None,
    pixel_size_um: float = 0.5,
    chunk_px: int = 1024,
    image_id: str = "sim_0",
    sample_id: str | None = None,
    patient_id: str | None = None,
) -> SimulatedTissue:
    """Simulate a multiplexed tumour section with planted, known spatial structure.

    The tissue is a non-convex outline with holes; tumour nests cover about
    ``tumour_fraction`` of it. Around them lie four planted cellular neighbourhoods
    (:data:`NEIGHBOURHOODS`): ``tumour_nest``, ``invasive_margin`` (the stromal band of width
    ``margin_width_um`` along the tumour border), ``immune_aggregate`` (round B/T-cell
    aggregates of radius ``aggregate_radius_um``) and ``fibrotic_stroma`` (the rest).
    Cells follow an inhomogeneous marked Poisson process conditioned on ``n_cells``: in
    neighbourhood ``z`` cells of type ``t`` have the constant expected density
    ``density.loc[z, t]`` (cells/mm²), scaled by one factor so the tissue holds ``n_cells``.
    The planted effects are ratios of these densities: CD8 T cells excluded from tumour nests
    (``cd8_exclusion`` = density in nests / density in fibrotic stroma, default 0.2) and
    macrophages enriched at the tumour border (``macrophage_border_enrichment`` = density in
    the invasive margin / in fibrotic stroma, default 8).

    With ``mode="null"`` the same window holds complete spatial randomness: positions uniform
    in the tissue (a binomial process) and labels drawn independently of position with the
    planted tissue's overall type proportions.

    Parameters
    ----------
    seed
        Seed of every random step (shape, cells, expression, pixel noise).
    n_cells
        Exact number of cells.
    mode
        ``"planted"`` or ``"null"``.
    cd8_exclusion, macrophage_border_enrichment
        Override the two named planted effects (ratios >= 0).
    density
        Full override of the neighbourhood × cell-type density table
        (see :func:`density_table`).
    tumour_fraction
        Target fraction of the tissue area covered by tumour nests (reached approximately).
    margin_width_um, aggregate_radius_um
        Width of the invasive-margin band and radius of the immune aggregates, in µm.
    n_aggregates
        Number of immune aggregates; default one per 2 mm² of stroma (1 to 12). Fewer are
        placed when the stroma has no room; ``uns["simulation"]["n_aggregates"]`` says how many.
    pixel_size_um, chunk_px
        Grid of the lazy image and masks: pixel size in µm and dask chunk edge in pixels.
    image_id, sample_id, patient_id
        Identifiers written to ``obs`` and the image metadata; ``sample_id`` and ``patient_id``
        default to ``image_id``.

    Returns
    -------
    :class:`SimulatedTissue` with ``adata``, ``image``, ``labels``, ``region_mask`` and
    ``regions``. ``adata.uns["simulation"]`` holds the ground truth: ``mode``, ``seed``,
    ``effects`` (planted ratios), ``density_per_mm2`` (expected density per neighbourhood and
    type given ``n_cells``), ``composition`` (type probabilities per neighbourhood),
    ``zone_area_um2``, ``regions_wkt`` (every polygon, µm), ``profiles`` (median marker levels),
    ``cells`` (per-cell ``neighbourhood``, indexed by ``obs_names``) and noise parameters.

    Examples
    --------
    >>> tissue = simulate_tissue(seed=1, n_cells=2_000)
    >>> tissue.adata.n_obs, tissue.image.dims
    (2000, ('c', 'y', 'x'))
    >>> round(tissue.adata.uns["simulation"]["effects"]["cd8_exclusion"], 2)
    0.2
    """
    if isinstance(n_cells, bool) or not isinstance(n_cells, int | np.integer) or n_cells < 1:
        raise ValueError(f"n_cells must be a positive integer, got {n_cells!r}")
    if mode not in ("planted", "null"):
        raise ValueError(f"mode must be 'planted' or 'null', got {mode!r}")
    if not 0 < tumour_fraction < 0.9:
        raise ValueError(f"tumour_fraction must be in (0, 0.9), got {tumour_fraction}")
    for name, v in (
        ("margin_width_um", margin_width_um),
        ("aggregate_radius_um", aggregate_radius_um),
        ("pixel_size_um", pixel_size_um),
    ):
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive number of micrometres, got {v}")
    if int(chunk_px) < 16:
        raise ValueError(f"chunk_px must be an integer >= 16, got {chunk_px}")
    ss = _as_seed_sequence(seed)
    table = _check_density(density if density is not None else P.density_table())
    table = P.apply_effects(table, cd8_exclusion, macrophage_border_enrichment)

    s_shape, s_cells, s_expr, s_render = ss.spawn(4)
    rng = np.random.default_rng(s_cells)
    lam = table.to_numpy() * 1e-6  # cells per µm²
    lam_zone = lam.sum(1)
    draw = draw_shape(np.random.default_rng(s_shape), tumour_fraction)
    geom, expected = _solve_geometry(
        draw,
        int(n_cells),
        lam_zone,
        tumour_fraction=tumour_fraction,
        margin_width_um=margin_width_um,
        aggregate_radius_um=aggregate_radius_um,
        n_aggregates=n_aggregates,
    )
    areas = geom.zone_areas_um2()
    # Shift so the tissue starts _PAD_UM from the origin (all coordinates positive).
    x0, y0, _, _ = geom.tissue.bounds
    dx, dy = _PAD_UM - x0, _PAD_UM - y0
    geom = Geometry(
        tissue=shapely.affinity.translate(geom.tissue, dx, dy),
        tumour=shapely.affinity.translate(geom.tumour, dx, dy),
        zones={k: shapely.affinity.translate(v, dx, dy) for k, v in geom.zones.items()},
        n_aggregates=geom.n_aggregates,
    )

    n = int(n_cells)
    k_types = len(P.CELL_TYPES)
    if mode == "planted":
        counts = rng.multinomial(n, areas * lam_zone / expected)
        xy = np.concatenate(
            [sample_uniform(geom.zones[z], c, rng) for z, c in zip(P.NEIGHBOURHOODS, counts, strict=True)]
        )
        zone = np.repeat(np.arange(len(P.NEIGHBOURHOODS)), counts)
        types = np.concatenate(
            [rng.choice(k_types, size=c, p=lam[k] / lam_zone[k]) for k, c in enumerate(counts)]
        )
        order = rng.permutation(n)  # no spatial ordering of rows
        xy, zone, types = xy[order], zone[order], types[order]
    else:
        xy = sample_uniform(geom.tissue, n, rng)
        zone = _zone_of(xy, geom)
        p_global = areas @ lam / expected
        types = rng.choice(k_types, size=n, p=p_global / p_global.sum())

    adata = _build_adata(xy, types, np.random.default_rng(s_expr), image_id, sample_id, patient_id)
    scale = n / expected  # realised density / planted density, ~1 by construction
    effects = (
        {
            "cd8_exclusion": _ratio(table.loc["tumour_nest", "CD8 T"], table.loc["fibrotic_stroma", "CD8 T"]),
            "macrophage_border_enrichment": _ratio(
                table.loc["invasive_margin", "Macrophage"], table.loc["fibrotic_stroma", "Macrophage"]
            ),
        }
        if mode == "planted"
        else {"cd8_exclusion": 1.0, "macrophage_border_enrichment": 1.0}
    )
    dens = table * scale if mode == "planted" else _null_density(table, areas, lam, expected, scale)

    _, _, x1, y1 = geom.tissue.bounds
    shape = (
        int(np.ceil((y1 + _PAD_UM) / pixel_size_um)) + 1,
        int(np.ceil((x1 + _PAD_UM) / pixel_size_um)) + 1,
    )
    seed_render = int(s_render.generate_state(1)[0])
    set_image_metadata(
        adata,
        ImageMetadata(
            image_id=image_id,
            technology="simulated",
            pixel_size_um=pixel_size_um,
            patient_id=adata.obs[Key.obs.patient_id].iloc[0],
            sample_id=adata.obs[Key.obs.sample_id].iloc[0],
            shape_px=shape,
            channels=list(P.MARKERS),
            tissue_area_um2=float(geom.tissue.area),
            extra={"generator": "spatialpath.datasets.simulate_tissue", "mode": mode},
        ),
    )
    regions_wkt = {
        "tissue": geom.tissue,
        "tumour": geom.tumour,
        "stroma": geom.tissue.difference(geom.tumour),
        **geom.zones,
    }
    adata.uns[Key.uns.simulation] = {
        "mode": mode,
        "seed": _seed_repr(ss),
        "n_cells": n,
        "effects": effects,
        "density_per_mm2": dens,
        "planted_density_per_mm2": table,
        "composition": dens.div(dens.sum(1), axis=0),
        "zone_area_um2": dict(zip(P.NEIGHBOURHOODS, map(float, areas), strict=True)),
        "n_aggregates": geom.n_aggregates,
        "margin_width_um": float(margin_width_um),
        "aggregate_radius_um": float(aggregate_radius_um),
        "regions_wkt": {k: _valid_wkt(v) for k, v in regions_wkt.items()},
        "profiles": P.profile_table(),
        "expression_sd_log": _EXPRESSION_SD_LOG,
        "background": BACKGROUND,
        "noise_sd": NOISE_SD,
        "render_seed": seed_render,
        "region_mask": coarse_mask(geom, x1 + _PAD_UM, y1 + _PAD_UM),
        "cells": pd.DataFrame(
            {"neighbourhood": pd.Categorical.from_codes(zone, categories=list(P.NEIGHBOURHOODS))},
            index=adata.obs_names.copy(),
        ),
    }
    return assemble(adata, geom, regions_wkt, shape, pixel_size_um, chunk_px, seed_render, image_id)


def _null_density(
    table: pd.DataFrame, areas: np.ndarray, lam: np.ndarray, expected: float, scale: float
) -> pd.DataFrame:
    """Expected densities under the null: the tissue-wide mix, equal in every neighbourhood."""
    per_type = areas @ lam / areas.sum() * 1e6 * scale
    return pd.DataFrame(np.tile(per_type, (len(table), 1)), index=table.index, columns=table.columns)


def _ratio(num: float, den: float) -> float:
    """Return num / den, or NaN (not a crash or inf) when a user density table has a zero denominator."""
    return float(num / den) if den > 0 else float("nan")


def _seed_repr(ss: np.random.SeedSequence) -> dict[str, Any]:
    return {"entropy": str(ss.entropy), "spawn_key": list(map(int, ss.spawn_key))}


def _build_adata(
    xy: np.ndarray,
    types: np.ndarray,
    rng: np.random.Generator,
    image_id: str,
    sample_id: str | None,
    patient_id: str | None,
) -> ad.AnnData:
    n = len(xy)
    prof = P.profile_table().to_numpy()
    X = (prof[types] * np.exp(rng.normal(0.0, _EXPRESSION_SD_LOG, (n, prof.shape[1])))).astype(np.float32)
    r_nuc = np.array([P.NUCLEUS_RADIUS_UM[t] for t in P.CELL_TYPES])[types] * rng.uniform(0.85, 1.15, n)
    obs = pd.DataFrame(
        {
            Key.obs.cell_type: pd.Categorical.from_codes(types, categories=list(P.CELL_TYPES)),
            Key.obs.image_id: pd.Categorical([image_id] * n),
            Key.obs.sample_id: pd.Categorical([sample_id or image_id] * n),
            Key.obs.patient_id: pd.Categorical([patient_id or sample_id or image_id] * n),
            Key.obs.label: np.arange(1, n + 1, dtype=np.int32),
            Key.obs.area_um2: np.pi * r_nuc**2,
        },
        index=pd.Index([f"{image_id}_{i}" for i in range(n)], name=Key.obs.cell_id),
    )
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=list(P.MARKERS)))
    adata.obsm[Key.obsm.spatial] = xy.astype(np.float64)
    adata.uns[Key.uns.colors(Key.obs.cell_type)] = list(P.CELL_TYPE_COLORS)
    return adata
