"""``tissue_from_cells`` on the real CODEX colorectal TMA cores (Schürch et al. 2020)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import shapely

from spatialpath.regions import cell_membership, compartment_areas, tissue_from_cells

pytestmark = pytest.mark.realdata

#: CODEX 20x pixel size, as in tests/test_realdata_core.py (Schürch et al. 2020).
CODEX_PIXEL_SIZE_UM = 0.377


@pytest.fixture(scope="module")
def codex(shared):
    cells = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))
    obs = pd.DataFrame({"image_id": cells["imageID"].astype(str).to_numpy()})
    obs.index = obs.index.astype(str)
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = cells[["x", "y"]].to_numpy(float) * CODEX_PIXEL_SIZE_UM
    return a


def test_one_tissue_polygon_per_core_inside_the_hull(codex):
    regions = tissue_from_cells(codex, resolution_um=20, closing_radius_um=50)
    assert regions["image_id"].tolist() == list(dict.fromkeys(codex.obs["image_id"]))
    assert len(regions) == 140
    assert regions.attrs["spatialpath"]["tissue_from_cells"] == {
        "resolution_um": 20.0,
        "closing_radius_um": 50.0,
        "fill_holes": True,
        "min_area_um2": pytest.approx(np.pi * 50**2),
    }
    xy = codex.obsm["spatial"]
    images = codex.obs["image_id"].to_numpy()
    hulls = [shapely.MultiPoint(xy[images == i]).convex_hull for i in regions["image_id"]]
    ratio = regions.area.to_numpy() / np.array([h.area for h in hulls])
    # closing stays in the hull of the occupied pixels' centres (each within h/√2 of a cell), whose
    # squares reach h/√2 further: tissue ⊂ hull(cells) + √2·h
    assert all(g.within(h.buffer(20 * 1.415)) for g, h in zip(regions.geometry, hulls, strict=True))
    # most cores fill their tile (tissue ≈ hull plus the half-pixel rim); some are far from convex
    assert np.median(ratio) < 1.1
    assert (ratio < 0.9).sum() >= 10
    area_mm2 = compartment_areas(regions)
    assert (area_mm2 > 0).all()
    assert area_mm2.median() < (1920 * 1440 * CODEX_PIXEL_SIZE_UM**2) / 1e6  # within one tile
    inside = cell_membership(codex, regions)["tissue"].mean()
    assert inside >= 0.99
    print(
        f"CODEX tissue/convex hull area: median {np.median(ratio):.3f} "
        f"(5-95%: {np.percentile(ratio, 5):.3f}-{np.percentile(ratio, 95):.3f}); "
        f"{(ratio < 0.9).sum()} cores below 0.9; tissue median {area_mm2.median():.3f} mm²; "
        f"cells inside {inside:.4f}"
    )


def test_no_closing_is_the_occupied_pixels(codex):
    one = codex[codex.obs["image_id"] == "reg001_A"]
    xy, h = one.obsm["spatial"], 20.0
    r = tissue_from_cells(one, resolution_um=h, closing_radius_um=0, fill_holes=False, min_area_um2=0)
    occupied = {tuple(p) for p in np.rint((xy - np.floor(xy.min(0) / h) * h) / h).astype(int)}
    assert r.area.iloc[0] == pytest.approx(len(occupied) * h * h)
    closed = tissue_from_cells(one, resolution_um=h, closing_radius_um=50, min_area_um2=0)
    assert closed.geometry.iloc[0].contains(r.geometry.iloc[0])  # closing is extensive
