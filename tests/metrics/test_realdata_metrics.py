"""compute() on the 140 CODEX colorectal cores (Schürch et al. 2020) with a cell-derived tissue per core."""

from __future__ import annotations

import time

import anndata as ad
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

import spatialpath.metrics as spm
from spatialpath.gr import cellular_neighborhoods

pytestmark = pytest.mark.realdata

CODEX_PIXEL_SIZE_UM = 0.377  # as tests/test_realdata_core.py
TILE_UM = (1920 * CODEX_PIXEL_SIZE_UM, 1440 * CODEX_PIXEL_SIZE_UM)  # ~724 x 543 µm
METRICS = ["count", "proportion", "density", "mixing_score", "mixing_score_normalised", "nn_distance_median",
           "nn_censored_fraction", "cn_frequency"]  # fmt: skip


def _tissue(xy: np.ndarray) -> shapely.Geometry:
    """Cell-derived tissue (the regions constructors come later): a concave hull of the cells
    (GEOS, ratio 0.05) dilated by 10 µm, clipped to the tile; ~7 ms per core (a buffered union of
    the cells gives about the same area in ~0.7 s per core)."""
    hull = shapely.concave_hull(shapely.MultiPoint(xy), ratio=0.05).buffer(10.0, quad_segs=4)
    return hull.intersection(shapely.box(0, 0, *TILE_UM))


@pytest.fixture(scope="module")
def codex(shared):
    cells = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))
    obs = pd.DataFrame(
        {
            "image_id": cells["imageID"].astype(str).astype("category"),
            "cell_type": cells["cellType"].astype("category"),
        }
    )
    obs.index = obs.index.astype(str)
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = cells[["x", "y"]].to_numpy(dtype=float) * CODEX_PIXEL_SIZE_UM
    t0 = time.perf_counter()
    xy = a.obsm["spatial"]
    groups = a.obs.groupby("image_id", observed=True).indices
    regions = gpd.GeoDataFrame(
        {"image_id": list(groups), "compartment": "tissue"},
        geometry=[_tissue(xy[rows]) for rows in groups.values()],
    )
    t_regions = time.perf_counter() - t0
    t0 = time.perf_counter()
    cellular_neighborhoods(a, "cell_type", n_clusters=10)  # Schürch preset: 10-NN windows, k = 10
    t_cn = time.perf_counter() - t0
    return a, regions, {"regions": t_regions, "cn": t_cn}


def test_compute_on_all_140_cores(codex):
    a, regions, times = codex
    t0 = time.perf_counter()
    t = spm.compute(a, regions, METRICS)
    elapsed = time.perf_counter() - t0
    print(f"\nCODEX 140 cores, {a.n_obs:,} cells: tissue polygons {times['regions']:.1f} s, "
          f"CNs {times['cn']:.1f} s, compute({len(METRICS)} metrics) {elapsed:.1f} s "
          f"-> {len(t):,} rows")  # fmt: skip
    assert elapsed < 120
    assert list(t.columns) == list(spm.COLUMNS)
    assert t["image_id"].nunique() == 140
    assert set(t["compartment"]) == {"tissue"}
    assert (t["value"].isna() == (t["status"] != "ok")).all()

    counts = t.query("metric == 'count'")
    assert len(counts) == 140 * 11
    in_tissue = counts["value"].sum()
    assert in_tissue >= 0.999 * a.n_obs  # the dilated hull holds (nearly) every cell
    prop = t.query("metric == 'proportion'").groupby("image_id")["value"].sum()
    assert np.allclose(prop, 1.0)
    dens = t.query("metric == 'density'").set_index(["image_id", "cell_type"])
    cnt = counts.set_index(["image_id", "cell_type"])["value"]
    np.testing.assert_allclose(dens["value"], cnt.loc[dens.index] / dens["area_mm2"], rtol=1e-12)
    areas = dens.groupby("image_id")["area_mm2"].first()
    assert (areas > 0.01).all()
    assert (areas <= TILE_UM[0] * TILE_UM[1] / 1e6 + 1e-9).all()
    # total density in a CODEX core: a few thousand cells per mm²
    total = dens.groupby("image_id")["value"].sum()
    assert 500 < total.median() < 10_000

    cn = t.query("metric == 'cn_frequency'")
    assert cn["cell_type"].nunique() == 10
    assert np.allclose(cn.groupby("image_id")["value"].sum(), 1.0)

    nn = t.query(
        "metric == 'nn_distance_median' and cell_type == 'cd8_t_cells' and cell_type_b == 'tumor_cells'"
    )
    ok = nn.query("status == 'ok'")["value"]
    assert len(ok) > 100
    assert 5 < ok.median() < 200
    assert set(nn["status"]) <= {"ok", "below_min_cells", "censored"}
    cens = t.query("metric == 'nn_censored_fraction' and status == 'ok'")
    pair = cens.query("cell_type == 'cd8_t_cells' and cell_type_b == 'tumor_cells'")["value"]
    print(f"censored NN fraction: mean over all pairs {cens['value'].mean():.2f}, "
          f"CD8 -> tumour median over cores {pair.median():.2f}")  # fmt: skip
    # ~724 x 543 µm fields: censoring is substantial (measured 0.59 over all pairs, most from rare targets)
    assert 0 < pair.median() < cens["value"].mean() < 0.9

    nms = t.query("metric == 'mixing_score_normalised' and status == 'ok'")
    assert len(nms) > 1000
    assert np.isfinite(nms["value"]).all()
    ms = t.query("metric == 'mixing_score' and cell_type == 'cd8_t_cells' and cell_type_b == 'tumor_cells'")
    assert {"ok", "below_min_cells"} <= set(ms["status"])
    print(t.groupby(["metric", "status"]).size().to_string())
