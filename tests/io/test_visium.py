"""Visium reader on real Space Ranger outputs: µm geometry, scanpy/squidpy overlays, H&E frame, bad input."""

from __future__ import annotations

import json
import warnings

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
import xarray as xr
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist
from scipy.stats import mannwhitneyu

from spatialpath.io import read_visium, read_visium_positions, visium_image
from spatialpath.io._common import ReaderError
from spatialpath.io._st_common import read_10x_counts
from spatialpath.model import get_image_metadata, validate_cells, validate_image

pytestmark = pytest.mark.realdata

POSITION_NAMES = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row", "pxl_col"]
#: 10x: spot_diameter_fullres spans 65 µm; spot centres are 100 µm apart on the hexagonal array.
SPOT_65_UM, PITCH_UM = 65.0, 100.0


def raw_positions(folder):
    return pd.read_csv(
        folder / "spatial" / "tissue_positions_list.csv", header=None, names=POSITION_NAMES
    ).set_index("barcode")


def raw_scalefactors(folder):
    return json.loads((folder / "spatial" / "scalefactors_json.json").read_text())


def hex_distances_um(pos):
    """Centre-to-centre distances implied by array_row/array_col at 100 µm pitch, all pairs."""
    dcol = pdist(pos[["array_col"]].to_numpy(float))
    drow = pdist(pos[["array_row"]].to_numpy(float))
    return PITCH_UM * np.sqrt((dcol / 2) ** 2 + (drow * np.sqrt(3) / 2) ** 2)


@pytest.fixture(scope="module")
def v1(shared):
    return shared("scanpy_visium_testdata", "1.0.0")


@pytest.fixture(scope="module")
def v1_adata(v1):
    return read_visium(v1)


def test_full_array_nearest_neighbour_spacing_is_100_um(v1):
    pos = read_visium_positions(v1)
    assert len(pos) == 4992
    assert int(pos["in_tissue"].sum()) == 4235
    xy = pos[["x_um", "y_um"]].to_numpy()
    d, _ = cKDTree(xy).query(xy, k=2)
    median = float(np.median(d[:, 1]))
    assert median == pytest.approx(PITCH_UM, abs=1.0)  # measured 99.58 µm
    # the conversion itself: file pixels × 65 / spot_diameter_fullres, x = column
    raw, sf = raw_positions(v1), raw_scalefactors(v1)
    um_per_px = SPOT_65_UM / sf["spot_diameter_fullres"]
    np.testing.assert_allclose(xy, raw.loc[pos.index, ["pxl_col", "pxl_row"]].to_numpy() * um_per_px)
    # every pair of the full array matches the hexagonal geometry within 1 % (integer-pixel rounding)
    rel = np.abs(pdist(xy) - hex_distances_um(pos)) / hex_distances_um(pos)
    assert rel.max() < 0.01


@pytest.mark.parametrize(
    ("folder", "n_spots"),
    [
        (("squidpy_testdata",), 100),
        (("spatialexperiment_visium_subset", "10xVisium", "section1"), 50),
        (("spatialexperiment_visium_subset", "10xVisium", "section2"), 49),
    ],
)
def test_subsets_match_hexagonal_geometry_all_pairs(shared, folder, n_spots):
    path = shared(*folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # section2: one matrix barcode has no position
        a = read_visium(path)
    assert a.n_obs == n_spots
    validate_cells(a, library_key="image_id")
    expected = hex_distances_um(a.obs)
    rel = np.abs(pdist(a.obsm["spatial"]) - expected) / expected
    assert rel.max() < 0.01  # measured 0.72 % (squidpy), 0.55 % (SpatialExperiment sections)


def test_section2_drops_the_barcode_without_position(shared):
    path = shared("spatialexperiment_visium_subset", "10xVisium", "section2")
    with pytest.warns(
        UserWarning, match=r"1 of 50 barcodes .* have no position in tissue_positions_list.csv"
    ):
        a = read_visium(path)
    pos = pd.read_csv(path / "outs/spatial/tissue_positions_list.csv", header=None, index_col=0)
    assert set(a.obs_names) == set(pos.index)


def test_counts_obs_and_uns_against_independent_readers(v1, v1_adata):
    a = v1_adata
    with h5py.File(v1 / "filtered_feature_bc_matrix.h5") as f:
        g = f["matrix"]
        ref = sp.csc_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=tuple(g["shape"][:])).T
        barcodes = [b.decode() for b in g["barcodes"][:]]
        genes = [b.decode() for b in g["features/id"][:]]
    assert a.obs_names.tolist() == barcodes
    assert a.var["gene_ids"].tolist() == genes
    assert (ref != a.X).nnz == 0
    raw = raw_positions(v1).loc[barcodes]
    for col in ("in_tissue", "array_row", "array_col"):
        assert a.obs[col].tolist() == raw[col].tolist()
    sf = raw_scalefactors(v1)
    um_per_px = SPOT_65_UM / sf["spot_diameter_fullres"]
    np.testing.assert_allclose(a.obsm["spatial"], raw[["pxl_col", "pxl_row"]].to_numpy() * um_per_px)
    lib = a.uns["spatial"]["custom"]
    assert set(lib["images"]) == {"hires", "lowres"}
    assert lib["images"]["lowres"].shape == (600, 600, 3)
    # scale factors consistent with µm: obsm (µm) × scalef = image pixel, spot diameter = 65 µm
    assert lib["scalefactors"]["spot_diameter_fullres"] == SPOT_65_UM
    for res in ("hires", "lowres"):
        np.testing.assert_allclose(
            a.obsm["spatial"] * lib["scalefactors"][f"tissue_{res}_scalef"],
            raw[["pxl_col", "pxl_row"]].to_numpy() * sf[f"tissue_{res}_scalef"],
        )
    meta = get_image_metadata(a, "custom")
    assert meta.technology == "visium"
    assert meta.shape_px == (2000, 2000)
    assert meta.pixel_size_um == pytest.approx(um_per_px / sf["tissue_hires_scalef"])


def test_visium_adata_survives_h5ad(v1_adata, tmp_path):
    import anndata as ad

    v1_adata.write_h5ad(tmp_path / "v.h5ad")
    back = ad.read_h5ad(tmp_path / "v.h5ad")
    assert get_image_metadata(back, "custom") == get_image_metadata(v1_adata, "custom")
    lowres = visium_image(back, "lowres")
    np.testing.assert_array_equal(lowres.values, visium_image(v1_adata, "lowres").values)


def _circles(fig):
    ax = fig.axes[0]
    verts = [p.vertices for p in ax.collections[0].get_paths()]
    centres = np.array([(v.min(0) + v.max(0)) / 2 for v in verts])
    radii = np.array([(v.max(0) - v.min(0))[0] / 2 for v in verts])
    return centres, radii, ax.images[0].get_extent(), ax.get_xlim(), ax.get_ylim(), ax.images[0].get_array()


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::PendingDeprecationWarning")
@pytest.mark.parametrize("folder", ["scanpy_visium_testdata/1.0.0", "squidpy_testdata"])
@pytest.mark.parametrize("res", ["hires", "lowres"])
def test_scanpy_and_squidpy_draw_ours_exactly_as_their_own_reader(shared, folder, res):
    import scanpy as sc
    import squidpy as sq

    path = shared(*folder.split("/"))
    refs = {"scanpy": sc.read_visium(path), "squidpy": sq.read.visium(path)}  # sc.read_visium: deprecated
    ours = read_visium(path)
    assert ours.obs_names.tolist() == refs["scanpy"].obs_names.tolist()
    for tool, ref in refs.items():
        drawn = []
        for a in (ref, ours):
            if tool == "scanpy":
                sc.pl.spatial(a, img_key=res, show=False)
            else:
                sq.pl.spatial_scatter(a, img_res_key=res)
            drawn.append(_circles(plt.gcf()))
            plt.close("all")
        (c0, r0, e0, x0, y0, im0), (c1, r1, e1, x1, y1, im1) = drawn
        assert len(c1) == ours.n_obs
        np.testing.assert_allclose(c1, c0, atol=1e-6)  # spot centres in image pixels
        np.testing.assert_allclose(r1, r0, atol=1e-6)  # spot radii
        assert e1 == e0
        np.testing.assert_allclose([x1, y1], [x0, y0], atol=1e-6)
        scale = 255.0 if im0.dtype.kind == "f" and im1.dtype.kind == "u" else 1.0
        np.testing.assert_allclose(np.asarray(im1, float), np.asarray(im0, float) * scale, atol=0.51)


@pytest.mark.parametrize("res", ["hires", "lowres"])
def test_he_image_frame_puts_spots_where_the_scale_factors_do(v1, v1_adata, res):
    img = visium_image(v1_adata, res)
    validate_image(img)
    sf = raw_scalefactors(v1)
    ps = (SPOT_65_UM / sf["spot_diameter_fullres"]) / sf[f"tissue_{res}_scalef"]
    assert img.attrs["pixel_size_um"] == pytest.approx(ps)
    assert img.c.values.tolist()[:3] == ["R", "G", "B"]
    raw = raw_positions(v1).loc[v1_adata.obs_names]
    x, y = v1_adata.obsm["spatial"].T
    col = np.abs(img.x.values[None, :] - x[:, None]).argmin(1)
    row = np.abs(img.y.values[None, :] - y[:, None]).argmin(1)
    np.testing.assert_array_equal(col, np.round(raw["pxl_col"] * sf[f"tissue_{res}_scalef"]))
    np.testing.assert_array_equal(row, np.round(raw["pxl_row"] * sf[f"tissue_{res}_scalef"]))


def test_in_tissue_spots_sit_on_darker_he_than_the_others(v1, v1_adata):
    """The real lowres H&E: tissue is darker than glass at the spot centres; not so with x and y swapped."""
    img = visium_image(v1_adata, "lowres").sel(c=["R", "G", "B"]).astype(float).mean("c")
    pos = read_visium_positions(v1)
    tissue = pos["in_tissue"].to_numpy() == 1

    def auc_glass_brighter(x, y):
        v = img.sel(x=xr.DataArray(x, dims="spot"), y=xr.DataArray(y, dims="spot"), method="nearest").values
        return mannwhitneyu(v[~tissue], v[tissue]).statistic / (tissue.sum() * (~tissue).sum())

    x, y = pos["x_um"].to_numpy(), pos["y_um"].to_numpy()
    assert auc_glass_brighter(x, y) > 0.95  # measured 0.967
    assert auc_glass_brighter(y, x) < 0.8  # x and y swapped: 0.70


def test_probe_matrix_counts_match_scanpy(shared):
    import scanpy as sc

    f = shared("scanpy_visium_testdata", "2.1.0", "raw_probe_bc_matrix.h5")
    counts = read_10x_counts(f)
    ref = sc.read_10x_h5(f, gex_only=False)
    assert counts.X.shape == (4987, 1000)
    assert counts.barcodes.tolist() == ref.obs_names.tolist()
    assert (counts.X != ref.X).nnz == 0
    assert counts.var["probe_region"].iloc[0] == "none"
    assert counts.var.index[0] == "Itgb2l|2ef1e7b"


# --- Space Ranger >= 2.0 layout and bad input (small files written under tmp_path) -------------


def write_spaceranger(folder, *, positions=True, scalefactors=True, counts=True):
    (folder / "spatial").mkdir(parents=True)
    if positions:  # Space Ranger >= 2.0: tissue_positions.csv with a header
        (folder / "spatial" / "tissue_positions.csv").write_text(
            "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres\n"
            "AAAC-1,1,0,0,1000,1000\nAAAG-1,1,0,2,1000,1140\nAAAT-1,0,1,1,1121,1070\n"
        )
    if scalefactors:
        sf = {"spot_diameter_fullres": 91.0, "tissue_hires_scalef": 0.2, "tissue_lowres_scalef": 0.06}
        (folder / "spatial" / "scalefactors_json.json").write_text(json.dumps(sf))
    if counts:
        mex = folder / "filtered_feature_bc_matrix"
        mex.mkdir()
        scipy.io.mmwrite(mex / "matrix.mtx", sp.coo_matrix(np.array([[1, 0, 4], [0, 2, 0]])))
        (mex / "barcodes.tsv").write_text("AAAT-1\nAAAC-1\nAAAG-1\n")
        (mex / "features.tsv").write_text("ENSG1\tCD3E\tGene Expression\nENSG2\tKRT8\tGene Expression\n")
    return folder


def test_spaceranger2_header_positions_and_mex(tmp_path):
    a = read_visium(write_spaceranger(tmp_path / "run"), load_images=False)
    assert a.obs_names.tolist() == ["AAAT-1", "AAAC-1", "AAAG-1"]
    assert a.obs["image_id"].iloc[0] == "run"  # no HDF5 library id: the folder name
    np.testing.assert_allclose(
        a.obsm["spatial"], np.array([[1070, 1121], [1000, 1000], [1140, 1000]]) * 65 / 91
    )
    assert a.X.toarray().tolist() == [[1, 0], [0, 2], [4, 0]]
    assert a.var_names.tolist() == ["CD3E", "KRT8"]
    assert a.var["gene_ids"].tolist() == ["ENSG1", "ENSG2"]


def test_missing_scalefactors_names_file_and_purpose(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"scalefactors_json\.json not found.*micrometres.*65 µm"):
        read_visium(write_spaceranger(tmp_path / "run", scalefactors=False))


def test_missing_positions_names_both_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tissue_positions\.csv.*tissue_positions_list\.csv"):
        read_visium(write_spaceranger(tmp_path / "run", positions=False))


def test_missing_counts_matrix_lists_what_was_looked_for(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"no counts matrix.*filtered_feature_bc_matrix\.h5.*counts_file="
    ):
        read_visium(write_spaceranger(tmp_path / "run", counts=False))


# --- Visium HD binned outputs (files written in Space Ranger 3's layout) -------------------------

HD_MPP = 0.2738242950835738  # microns_per_pixel of a Visium HD full-resolution image
HD_BIN_UM = 8.0


def write_visium_hd(outs, *, bin_um=HD_BIN_UM, keys=("microns_per_pixel", "bin_size_um"), mpp=HD_MPP):
    """``outs/binned_outputs/square_XXXum``: a 4 x 5 grid of bins, slightly rotated in the image."""
    folder = outs / "binned_outputs" / f"square_{int(bin_um):03d}um"
    (folder / "spatial").mkdir(parents=True)
    rows, cols = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    a = np.deg2rad(2.0)
    step_px = bin_um / HD_MPP
    pxl_col = 1500.0 + step_px * (np.cos(a) * cols - np.sin(a) * rows)
    pxl_row = 900.0 + step_px * (np.sin(a) * cols + np.cos(a) * rows)
    barcodes = [f"s_{int(bin_um):03d}um_{r:05d}_{c:05d}-1" for r, c in zip(rows, cols, strict=True)]
    pd.DataFrame(
        {
            "barcode": barcodes,
            "in_tissue": 1,
            "array_row": rows,
            "array_col": cols,
            "pxl_row_in_fullres": pxl_row,
            "pxl_col_in_fullres": pxl_col,
        }
    ).to_parquet(folder / "spatial" / "tissue_positions.parquet", index=False)
    sf = {
        "spot_diameter_fullres": bin_um / HD_MPP,  # HD: the bin size in full-resolution pixels
        "bin_size_um": bin_um,
        "microns_per_pixel": mpp,
        "tissue_hires_scalef": 0.2505533,
        "tissue_lowres_scalef": 0.02505533,
        "fiducial_diameter_fullres": 1205.0,
        "regist_target_img_scalef": 0.2505533,
    }
    sf = {k: v for k, v in sf.items() if k in keys or k not in ("microns_per_pixel", "bin_size_um")}
    (folder / "spatial" / "scalefactors_json.json").write_text(json.dumps(sf))
    from PIL import Image

    Image.fromarray(np.zeros((700, 600, 3), np.uint8)).save(folder / "spatial" / "tissue_hires_image.png")
    mex = folder / "filtered_feature_bc_matrix"
    mex.mkdir()
    counts = np.arange(2 * len(barcodes)).reshape(2, -1)  # genes × bins
    scipy.io.mmwrite(mex / "matrix.mtx", sp.coo_matrix(counts))
    (mex / "barcodes.tsv").write_text("\n".join(barcodes) + "\n")
    (mex / "features.tsv").write_text("ENSG1\tCD3E\tGene Expression\nENSG2\tKRT8\tGene Expression\n")
    return folder, np.column_stack([pxl_col, pxl_row]), sf


@pytest.mark.parametrize(
    "keys",
    [("microns_per_pixel", "bin_size_um"), ("bin_size_um",), ()],
    ids=["microns_per_pixel", "bin_size_um_only", "bin_size_from_barcodes"],
)
def test_visium_hd_bins_are_bin_size_apart_in_um(tmp_path, keys):
    folder, pxl, sf = write_visium_hd(tmp_path / "outs", keys=keys)
    a = read_visium(folder, library_id="hd")
    # µm = full-resolution pixel × microns_per_pixel (= bin size / spot_diameter_fullres in HD)
    np.testing.assert_allclose(a.obsm["spatial"], pxl * HD_MPP, rtol=1e-12)
    d, _ = cKDTree(a.obsm["spatial"]).query(a.obsm["spatial"], k=2)
    np.testing.assert_allclose(d[:, 1], HD_BIN_UM, rtol=1e-9)  # was 65 µm with 65 / spot_diameter_fullres
    meta = get_image_metadata(a, "hd")
    assert meta.extra["median_neighbour_spacing_um"] == pytest.approx(HD_BIN_UM)
    assert meta.extra["bin_size_um"] == HD_BIN_UM
    assert meta.pixel_size_um == pytest.approx(HD_MPP / sf["tissue_hires_scalef"])
    lib = a.uns["spatial"]["hd"]["scalefactors"]
    assert lib["spot_diameter_fullres"] == pytest.approx(HD_BIN_UM)  # the bin, in µm
    np.testing.assert_allclose(
        a.obsm["spatial"] * lib["tissue_hires_scalef"], pxl * sf["tissue_hires_scalef"]
    )
    img = visium_image(a, "hires")
    assert img.attrs["pixel_size_um"] == pytest.approx(HD_MPP / sf["tissue_hires_scalef"])
    pos = read_visium_positions(folder)
    np.testing.assert_allclose(pos[["x_um", "y_um"]].to_numpy(), pxl * HD_MPP, rtol=1e-12)


def test_visium_hd_wrong_microns_per_pixel_is_refused(tmp_path):
    folder, _, _ = write_visium_hd(tmp_path / "outs", mpp=2 * HD_MPP)  # bins would be 16 µm apart
    with pytest.raises(
        ReaderError, match=r"microns_per_pixel.*median spacing of 16 µm.*8 µm bins are 8 µm apart"
    ):
        read_visium(folder)


def test_visium_sd_scale_factors_not_matching_the_positions_are_refused(tmp_path):
    run = write_spaceranger(tmp_path / "run")
    sf = {"spot_diameter_fullres": 65.0, "tissue_hires_scalef": 0.2}  # 1 µm/px: spots 140 µm apart
    (run / "spatial" / "scalefactors_json.json").write_text(json.dumps(sf))
    with pytest.raises(ReaderError, match=r"spot_diameter_fullres.*median spacing of 1[34]\d(\.\d+)? µm"):
        read_visium(run)


def test_visium_hd_outs_folder_asks_for_one_bin_size(tmp_path):
    write_visium_hd(tmp_path / "outs", bin_um=8.0)
    write_visium_hd(tmp_path / "outs", bin_um=16.0)
    (tmp_path / "outs" / "spatial").mkdir()
    with pytest.raises(FileNotFoundError, match=r"Visium HD.*square_008um, square_016um"):
        read_visium(tmp_path / "outs")
