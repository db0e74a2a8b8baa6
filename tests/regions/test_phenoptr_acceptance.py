"""The issue's acceptance test on the real inForm (Vectra) field phenoptr ``sample_Set4``.

Independent references: inForm's own per-cell ``Distance from Tissue Category Edge (microns)`` and
``Tissue Category``, and pixel counting in the raw tissue map. The pixel size is derived here by
regressing the cells' µm positions on their nucleus-label centroids, not taken from spatialpath.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage

from spatialpath.regions import assign_cells, compartment_areas, from_mask, signed_distance

pytestmark = pytest.mark.realdata

FIELD = "Set4_1-6plex_[16142,55840]_binary_seg_maps.tif"
#: page 0 of the seg maps: value k is the k-th <Entry> of the page's TissueClassMap XML.
CATEGORIES = ["Tumor", "Stroma", "Background"]
PHENOTYPES = ["CD8+", "CD68+", "FoxP3+", "CK+"]


@pytest.fixture(scope="module")
def field(shared):
    folder = shared("phenoptr_vectra_mif", "sample_Set4")
    with tifffile.TiffFile(folder / FIELD) as tif:
        tissue_xml = tif.pages[0].description
        tissue, nuclei = tif.pages[0].asarray(), tif.pages[1].asarray()
    names = [s.split("</Name>")[0] for s in tissue_xml.split("<Name>")[1:]]
    assert names == CATEGORIES
    cells = pd.read_csv(folder / "sample_cell_seg_data.csv.gz")
    # pixel size: regress µm positions on nucleus-label centroids (pixels)
    centroids = np.array(ndimage.center_of_mass(np.ones_like(nuclei), nuclei, cells["Cell ID"].to_numpy()))
    sx, ix = np.polyfit(centroids[:, 1], cells["Cell X Position"], 1)
    sy, iy = np.polyfit(centroids[:, 0], cells["Cell Y Position"], 1)
    assert sx == pytest.approx(sy, rel=1e-3)
    pixel = round(float(np.mean([sx, sy])), 4)
    assert abs(ix) < 2 * pixel  # origin 0: positions are pixel centres
    assert abs(iy) < 2 * pixel
    xy = cells[["Cell X Position", "Cell Y Position"]].to_numpy(float)
    assert np.allclose(xy / pixel, np.rint(xy / pixel), atol=0.01)
    obs = pd.DataFrame({"phenotype": cells["Phenotype"].to_numpy()}, index=cells["Cell ID"].astype(str))
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = xy
    regions = from_mask(tissue, pixel_size_um=pixel, categories=CATEGORIES, background=2)
    return {"tissue": tissue, "cells": cells, "adata": adata, "pixel": pixel, "regions": regions}


def test_pixel_size_and_exact_areas(field):
    assert field["pixel"] == pytest.approx(0.5, abs=1e-3)
    regions, tissue, h = field["regions"], field["tissue"], field["pixel"]
    assert regions["compartment"].tolist() == ["Tumor", "Stroma"]
    counts = np.bincount(tissue.ravel(), minlength=3)
    np.testing.assert_allclose(regions.area.to_numpy(), counts[:2] * h * h, rtol=1e-3)
    np.testing.assert_allclose(regions.area.to_numpy(), counts[:2] * h * h, rtol=1e-12)  # exact in fact
    assert regions.geometry.is_valid.all()


@pytest.mark.parametrize("method", ["polygon", "raster"])
def test_signed_distance_matches_inform(field, method):
    adata, cells = field["adata"], field["cells"]
    d = signed_distance(adata, field["regions"], tumour="Tumor", method=method, key_added=None)
    inform = cells["Distance from Tissue Category Edge (microns)"].to_numpy()
    given = np.isfinite(inform)
    agree = np.mean(np.abs(np.abs(d[given]) - inform[given]) <= field["pixel"])
    assert agree >= 0.99, agree
    if method == "raster":  # inForm's EDT runs pixel centre to centre: half a pixel more
        centre = np.abs(np.abs(d[given]) + field["pixel"] / 2 - inform[given])
        assert np.mean(centre <= 0.05) >= 0.99
    sign_ok = np.where(cells["Tissue Category"].eq("Tumor"), d < 0, d > 0)
    assert np.mean(sign_ok) >= 0.98, np.mean(sign_ok)


def test_polygon_and_raster_distances_agree(field):
    a, r = field["adata"], field["regions"]
    poly = signed_distance(a, r, tumour="Tumor", method="polygon", key_added=None)
    rast = signed_distance(a, r, tumour="Tumor", method="raster", key_added=None)
    # cells on pixel centres of the native raster: the EDT runs centre to centre, the polygon distance
    # to the nearest pixel edge or corner; they differ by at most (√2 - 1/2 - 1/√2)·h ≈ 0.21 px
    assert np.abs(poly - rast).max() <= 0.21 * field["pixel"]


def test_densities_match_pixel_counting(field):
    adata, tissue, h = field["adata"], field["tissue"], field["pixel"]
    labels = assign_cells(adata, field["regions"], priority=["Tumor", "Stroma"])
    areas = compartment_areas(field["regions"])
    got = pd.crosstab(adata.obs["phenotype"], labels).reindex(PHENOTYPES)
    # independent: the class of each cell's pixel, and pixel counts x pixel area
    xy = adata.obsm["spatial"]
    value = tissue[np.rint(xy[:, 1] / h).astype(int), np.rint(xy[:, 0] / h).astype(int)]
    ref_area_mm2 = np.bincount(tissue.ravel(), minlength=3) * h * h / 1e6
    for k, name in enumerate(["Tumor", "Stroma"]):
        ref_counts = pd.Series(adata.obs["phenotype"].to_numpy()[value == k]).value_counts()
        ref_counts = ref_counts.reindex(PHENOTYPES, fill_value=0)
        np.testing.assert_array_equal(got[name].to_numpy(), ref_counts.to_numpy())
        np.testing.assert_allclose(
            got[name].to_numpy() / areas[name], ref_counts.to_numpy() / ref_area_mm2[k], rtol=1e-9
        )
