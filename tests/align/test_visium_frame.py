"""Visium: spot centres land on the H&E where Space Ranger's scale factors put them (real test data).

References read here directly, independently of spatialpath: the positions CSV and
``scalefactors_json.json`` with pandas/json, the PNGs with PIL, and scanpy's ``read_visium``.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.spatial import cKDTree

from spatialpath.io import read_visium, read_visium_positions, visium_image

pytestmark = pytest.mark.realdata

FOLDERS = [("squidpy_testdata",), ("scanpy_visium_testdata", "1.0.0")]
POSITION_NAMES = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row", "pxl_col"]


@pytest.fixture(scope="module", params=FOLDERS, ids=lambda f: f[0])
def visium(request):
    folder = request.getfixturevalue("shared")(*request.param)
    raw = pd.read_csv(folder / "spatial" / "tissue_positions_list.csv", header=None, names=POSITION_NAMES)
    sf = json.loads((folder / "spatial" / "scalefactors_json.json").read_text())
    return folder, read_visium(folder), raw.set_index("barcode"), sf


@pytest.mark.parametrize("res", ["hires", "lowres"])
def test_every_spot_falls_in_the_pixel_the_scale_factors_give(visium, res):
    folder, spots, raw, sf = visium
    img = visium_image(spots, res)
    png = np.asarray(Image.open(folder / "spatial" / f"tissue_{res}_image.png"))
    assert img.shape == (png.shape[2], *png.shape[:2])
    np.testing.assert_array_equal(img.sel(c="R").values, png[..., 0])  # same pixels, not transposed

    # every spot of the slide (in and out of tissue), and the spots of the counts matrix
    pos = read_visium_positions(folder)
    for xy, barcodes in (
        (pos[["x_um", "y_um"]].to_numpy(), pos.index),
        (spots.obsm["spatial"], spots.obs_names),
    ):
        ref_col = raw.loc[barcodes, "pxl_col"].to_numpy() * sf[f"tissue_{res}_scalef"]
        ref_row = raw.loc[barcodes, "pxl_row"].to_numpy() * sf[f"tissue_{res}_scalef"]
        col = np.abs(img.x.values[None, :] - xy[:, 0:1]).argmin(1)  # nearest pixel centre in µm
        row = np.abs(img.y.values[None, :] - xy[:, 1:2]).argmin(1)
        assert np.abs(col - ref_col).max() <= 0.5
        assert np.abs(row - ref_row).max() <= 0.5
        # and the continuous position: µm → pixel of this image agrees with the reference to 1e-9 px
        ps = img.attrs["pixel_size_um"]
        np.testing.assert_allclose((xy[:, 0] - float(img.x[0])) / ps, ref_col, atol=1e-9)
        np.testing.assert_allclose((xy[:, 1] - float(img.y[0])) / ps, ref_row, atol=1e-9)
    assert len(pos) == len(raw)  # 100 (squidpy) or 4,992 (scanpy) spots checked


@pytest.mark.parametrize("res", ["hires", "lowres"])
def test_scanpy_puts_its_spots_on_the_same_pixels(visium, res):
    import scanpy as sc

    folder, spots, _, _ = visium
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scanpy's read_visium deprecation notice
        theirs = sc.read_visium(folder, count_file="filtered_feature_bc_matrix.h5")
    lib = next(iter(theirs.uns["spatial"]))
    their_sf = theirs.uns["spatial"][lib]["scalefactors"]
    # sc.pl.spatial draws spot i at obsm["spatial"][i] × tissue_{res}_scalef image pixels
    their_px = theirs.obsm["spatial"].astype(float) * their_sf[f"tissue_{res}_scalef"]
    img = visium_image(spots, res)
    ours = spots.obsm["spatial"] / img.attrs["pixel_size_um"]
    order = theirs.obs_names.get_indexer(spots.obs_names)
    assert (order >= 0).all()
    np.testing.assert_allclose(ours, their_px[order], atol=1e-9)
    # scanpy's circle (spot_diameter_fullres × scalef px) is our 65 µm spot in this image's pixels
    ours_d = spots.uns["spatial"][next(iter(spots.uns["spatial"]))]["scalefactors"]["spot_diameter_fullres"]
    assert ours_d / img.attrs["pixel_size_um"] == pytest.approx(
        their_sf["spot_diameter_fullres"] * their_sf[f"tissue_{res}_scalef"], rel=1e-12
    )


def test_spot_diameter_in_um_matches_the_array_pitch(visium):
    """``spot_diameter_fullres`` px × µm per px, with µm per px measured from the 100 µm array pitch."""
    _, spots, raw, sf = visium
    px = raw[["pxl_col", "pxl_row"]].to_numpy(float)
    dist, nn = cKDTree(px).query(px, k=2)
    grid = raw[["array_col", "array_row"]].to_numpy(float)
    dcol, drow = np.abs(grid[nn[:, 1]] - grid).T
    pitch_um = 100.0 * np.hypot(dcol / 2, drow * np.sqrt(3) / 2)  # hexagonal array, 100 µm centre to centre
    um_per_px = float(np.median(pitch_um / dist[:, 1]))
    measured = sf["spot_diameter_fullres"] * um_per_px
    stored = spots.uns["spatial"][next(iter(spots.uns["spatial"]))]["scalefactors"]["spot_diameter_fullres"]
    assert stored == 65.0  # 10x: spot_diameter_fullres spans a 65 µm spot
    assert measured == pytest.approx(stored, rel=0.01)  # measured 64.85 (squidpy) and 65.28 (scanpy) µm
    # the pixel size of the H&E agrees with the measured pitch too
    assert visium_image(spots, "hires").attrs["pixel_size_um"] == pytest.approx(
        um_per_px / sf["tissue_hires_scalef"], rel=0.01
    )
