"""read_cell_table on real MCMICRO, steinbock, inForm and plain x/y tables, checked against references.

Every expected value is computed here from the files with plain pandas / tifffile / scipy,
never from the reader's internals.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi

from spatialpath.io import ReaderError, read_cell_table
from spatialpath.model import get_image_metadata, validate_cells

#: CODEX 20x pixel size, Schürch et al. 2020 (Cell 182:1341); SOURCE.md asks to verify.
CODEX_PIXEL_SIZE_UM = 0.377
#: IMC ablation step, 1 µm per pixel (Damond et al. 2019; spicyR_damond_t1d_imc/SOURCE.md).
IMC_PIXEL_SIZE_UM = 1.0
#: arbitrary: the exemplar-001 table states no pixel size and its image is not in ../shared/data;
#: the tests only check that pixels are scaled by the value given.
TEST_PIXEL_SIZE_UM = 0.5

STEINBOCK = ("bodenmiller_imc_testdata", "steinbock")
SET4 = ("phenoptr_vectra_mif", "sample_Set4")
SET4_SEG = "Set4_1-6plex_[16142,55840]_binary_seg_maps.tif"
FIHC4 = ("phenoptr_vectra_mif", "FIHC4_IM3_2")
FIHC4_STEM = "FIHC4__0929309_HP_IM3_2"


def _hit_rate(labels: np.ndarray, xy_um: np.ndarray, ids: np.ndarray, ps: float, origin=(0.0, 0.0)) -> float:
    """Fraction of cells whose µm position falls on their own label (data-model pixel centres)."""
    col = np.round((xy_um[:, 0] - origin[0]) / ps).astype(int)
    row = np.round((xy_um[:, 1] - origin[1]) / ps).astype(int)
    inside = (row >= 0) & (row < labels.shape[0]) & (col >= 0) & (col < labels.shape[1])
    hit = np.zeros(len(ids), bool)
    hit[inside] = labels[row[inside], col[inside]] == ids[inside]
    return float(hit.mean())


# --- plain x/y tables ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def codex_path(shared):
    return shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz")


@pytest.fixture(scope="module")
def codex(codex_path):
    start = time.perf_counter()
    a = read_cell_table(
        codex_path, pixel_size_um=CODEX_PIXEL_SIZE_UM, columns={"patient_id": "ID"}, technology="codex"
    )
    a.uns["_read_seconds"] = time.perf_counter() - start
    return a


@pytest.mark.realdata
def test_codex_table_in_pixels_scaled_to_um(codex, codex_path):
    ref = pd.read_csv(codex_path)
    assert codex.n_obs == 258_385 == len(ref)
    assert codex.obs["image_id"].nunique() == 140
    assert codex.obs["patient_id"].nunique() == 35
    assert codex.obs["cell_type"].nunique() == 11
    assert codex.obs["cell_type"].dtype == "category"
    np.testing.assert_array_equal(codex.obsm["spatial"][:, 0], ref["x"].to_numpy() * CODEX_PIXEL_SIZE_UM)
    np.testing.assert_array_equal(codex.obsm["spatial"][:, 1], ref["y"].to_numpy() * CODEX_PIXEL_SIZE_UM)
    assert (codex.obs["image_id"].astype(str).to_numpy() == ref["imageID"].to_numpy()).all()
    assert (codex.obs["Group"].to_numpy() == ref["Group"].to_numpy()).all()  # other columns kept
    assert codex.obs_names.is_unique
    assert len(codex.uns["spatialpath"]["images"]) == 140
    meta = get_image_metadata(codex, "reg001_A")
    assert meta.technology == "codex"
    assert meta.pixel_size_um == CODEX_PIXEL_SIZE_UM
    assert meta.patient_id == str(ref.loc[ref["imageID"] == "reg001_A", "ID"].iloc[0])
    assert meta.source_files == [str(codex_path)]
    validate_cells(codex, cluster_key="cell_type", library_key="image_id")
    assert codex.uns["_read_seconds"] < 10, f"258k-row table took {codex.uns['_read_seconds']:.1f} s"


@pytest.mark.realdata
def test_plain_table_in_pixels_without_pixel_size_is_refused(codex_path):
    with pytest.raises(ValueError, match=r"pixel_size_um=<micrometres per pixel>"):
        read_cell_table(codex_path, columns={"patient_id": "ID"})
    with pytest.raises(ValueError, match=r"pass pixel_size_um="):
        read_cell_table(codex_path, units="px")


@pytest.mark.realdata
def test_imc_diabetes_table_in_um_kept_as_is(shared):
    path = shared("spicyR_damond_t1d_imc", "diabetesData_cells.csv.gz")
    ref = pd.read_csv(path)
    a = read_cell_table(path, units="um", pixel_size_um=IMC_PIXEL_SIZE_UM, technology="imc")
    assert a.n_obs == 253_777
    np.testing.assert_array_equal(a.obsm["spatial"], ref[["x", "y"]].to_numpy(dtype=float))
    assert a.obs["image_id"].nunique() == 120
    assert a.obs["patient_id"].nunique() == 12  # `case` = donor
    assert a.obs["sample_id"].nunique() == ref["slide"].nunique()
    assert a.obs["cell_type"].nunique() == 16
    assert a.obs["cell_id"].tolist()[:2] == ref["cellID"].tolist()[:2]
    assert list(a.obs_names[:2]) == ref["cellID"].tolist()[:2]
    assert a.obs["stage"].dtype == "category"
    meta = get_image_metadata(a, "A09")
    assert (meta.pixel_size_um, meta.technology) == (IMC_PIXEL_SIZE_UM, "imc")
    assert meta.extra["columns"] == {
        "x": "x",
        "y": "y",
        "cell_type": "cellType",
        "image_id": "imageID",
        "sample_id": "slide",
        "patient_id": "case",
        "cell_id": "cellID",
    }


def test_columns_override_and_units_from_column_name(tmp_path):
    df = pd.DataFrame({"pos_a": [1.0, 2.0], "pos_b": [3.0, 4.0], "kind": ["T", "B"], "who": ["p1", "p1"]})
    df.to_csv(tmp_path / "t.csv", index=False)
    a = read_cell_table(
        tmp_path / "t.csv",
        units="um",
        columns={"x": "pos_a", "y": "pos_b", "cell_type": "kind", "patient_id": "who"},
        image_id="roi7",
    )
    assert a.obsm["spatial"].tolist() == [[1.0, 3.0], [2.0, 4.0]]
    assert a.obs["cell_type"].tolist() == ["T", "B"]
    assert get_image_metadata(a, "roi7").patient_id == "p1"
    pd.DataFrame({"X_um": [1.5], "Y_um": [2.5]}).to_csv(tmp_path / "u.csv", index=False)
    assert read_cell_table(tmp_path / "u.csv").obsm["spatial"].tolist() == [[1.5, 2.5]]
    with pytest.raises(ReaderError, match=r"units='px', but the column names"):
        read_cell_table(tmp_path / "u.csv", units="px", pixel_size_um=0.5)


def test_dataframe_input_with_markers(tmp_path):
    df = pd.DataFrame({"x": [0.0, 4.0], "y": [2.0, 6.0], "CD3": [1.0, 2.0], "CD8": [0.0, 5.0]})
    a = read_cell_table(df, pixel_size_um=0.5, image_id="f1", columns={"markers": ["CD3", "CD8"]})
    assert a.obsm["spatial"].tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert a.var_names.tolist() == ["CD3", "CD8"]
    assert a.X.dtype == np.float32
    np.testing.assert_array_equal(a.X, df[["CD3", "CD8"]].to_numpy(np.float32))
    with pytest.raises(ValueError, match="pass image_id="):
        read_cell_table(df, units="um")


# --- MCMICRO / scimap ---------------------------------------------------------------------------


@pytest.mark.realdata
def test_mcmicro_exemplar001(shared):
    path = shared("scimap_exemplar001", "scimapExampleData", "exemplar-001--unmicst_cell.csv")
    ref = pd.read_csv(path)
    a = read_cell_table(path, pixel_size_um=TEST_PIXEL_SIZE_UM)
    markers = [
        "DNA_6",
        "ELANE",
        "CD57",
        "CD45",
        "DNA_7",
        "CD11B",
        "SMA",
        "CD16",
        "DNA_8",
        "ECAD",
        "FOXP3",
        "NCAM",
    ]
    assert a.shape == (11_201, 12)
    assert a.var_names.tolist() == markers
    np.testing.assert_array_equal(a.X, ref[markers].to_numpy(np.float32))
    np.testing.assert_allclose(
        a.obsm["spatial"], ref[["X_centroid", "Y_centroid"]].to_numpy() * TEST_PIXEL_SIZE_UM
    )
    for morph in ("Area", "MajorAxisLength", "Eccentricity", "Solidity", "Extent", "Orientation"):
        np.testing.assert_array_equal(a.obs[morph].to_numpy(), ref[morph].to_numpy())
    np.testing.assert_allclose(a.obs["area_um2"], ref["Area"] * TEST_PIXEL_SIZE_UM**2)
    assert (a.obs["cell_id"].to_numpy() == ref["CellID"].to_numpy()).all()
    meta = get_image_metadata(a, "exemplar-001")  # MCMICRO name: <sample>--<segmentation>_<mask>.csv
    assert (meta.technology, meta.pixel_size_um, meta.channels) == ("other", TEST_PIXEL_SIZE_UM, markers)
    with pytest.raises(ValueError, match="pixel_size_um"):
        read_cell_table(path)


@pytest.mark.realdata
def test_scimap_example_data_with_position_columns(shared):
    path = shared("scimap_exemplar001", "_data", "example_data.csv")
    ref = pd.read_csv(path)
    a = read_cell_table(path, pixel_size_um=TEST_PIXEL_SIZE_UM, technology="cycif")
    assert a.shape == (3_029, 48)
    assert "X_position" not in a.obs
    assert "Area" in a.obs
    np.testing.assert_allclose(
        a.obsm["spatial"], ref[["X_position", "Y_position"]].to_numpy() * TEST_PIXEL_SIZE_UM
    )
    np.testing.assert_array_equal(a[:, "CD30"].X.ravel(), ref["CD30"].to_numpy(np.float32))


# --- steinbock ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def steinbock_dir(shared):
    return shared(*STEINBOCK)


@pytest.fixture(scope="module")
def steinbock(steinbock_dir):
    return read_cell_table(steinbock_dir)


@pytest.mark.realdata
def test_steinbock_positions_are_mask_centroids(steinbock, steinbock_dir):
    images = pd.read_csv(steinbock_dir / "images.csv")
    assert steinbock.n_obs == 404
    assert steinbock.obs["image_id"].nunique() == len(images) == 15
    hits = []
    for name in images["image"]:
        image = name.removesuffix(".tiff")
        mask = tifffile.imread(steinbock_dir / "masks_deepcell" / name)
        sub = steinbock[steinbock.obs["image_id"] == image]
        ids = sub.obs["cell_id"].to_numpy()
        assert set(ids) == set(np.unique(mask)) - {0}
        ps = float(images.loc[images["image"] == name, "acquisition_width_um"].iloc[0]) / mask.shape[1]
        row_col = np.array(ndi.center_of_mass(np.ones_like(mask), mask, ids))
        np.testing.assert_allclose(sub.obsm["spatial"], row_col[:, ::-1] * ps, atol=1e-9)
        hits.append(_hit_rate(mask, sub.obsm["spatial"], ids, ps))
        meta = get_image_metadata(steinbock, image)
        assert meta.shape_px == mask.shape
        assert meta.pixel_size_um == pytest.approx(ps) == IMC_PIXEL_SIZE_UM
        assert meta.technology == "imc"
    assert np.mean(hits) >= 0.99
    validate_cells(steinbock, library_key="image_id")  # also checks the µm extent of every image


@pytest.mark.realdata
def test_steinbock_inputs_agree(steinbock, steinbock_dir):
    intens = pd.read_csv(steinbock_dir / "intensities_deepcell" / "20210305_NE_mockData2_001.csv")
    sub = steinbock[steinbock.obs["image_id"] == "20210305_NE_mockData2_001"]
    np.testing.assert_allclose(sub.X, intens.drop(columns="Object").to_numpy(np.float32))
    assert steinbock.var_names.tolist() == ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]
    assert steinbock.var["channel"].tolist() == ["Ag107", "Pr141", "Sm147", "Eu153", "Yb172"]
    for other in (
        steinbock_dir / "intensities_deepcell",
        steinbock_dir / "cells.csv",
        steinbock_dir / "cells.h5ad",
    ):
        b = read_cell_table(other)
        b = b[steinbock.obs_names]
        np.testing.assert_allclose(b.obsm["spatial"], steinbock.obsm["spatial"], err_msg=str(other))
        np.testing.assert_allclose(b.X, steinbock.X, rtol=1e-6, err_msg=str(other))
        assert b.uns["spatialpath"]["images"].keys() == steinbock.uns["spatialpath"]["images"].keys()
    one = read_cell_table(steinbock_dir / "regionprops_deepcell" / "20210305_NE_mockData2_001.csv")
    assert one.n_obs == len(intens)
    assert one.n_vars == 5
    np.testing.assert_allclose(one.obsm["spatial"], sub.obsm["spatial"])
    assert get_image_metadata(one, "20210305_NE_mockData2_001").shape_px == (87, 103)


def _steinbock_folder(root, *, images_csv: bool):
    (root / "intensities").mkdir(parents=True)
    (root / "regionprops").mkdir()
    pd.DataFrame({"Object": [1, 2], "CD3": [1.0, 2.0]}).to_csv(root / "intensities" / "img1.csv", index=False)
    pd.DataFrame(
        {"Object": [1, 2], "area": [4, 9], "centroid-0": [1.0, 3.0], "centroid-1": [2.0, 5.0]}
    ).to_csv(root / "regionprops" / "img1.csv", index=False)
    if images_csv:
        pd.DataFrame(
            {
                "image": ["img1.tiff"],
                "width_px": [10],
                "height_px": [8],
                "acquisition_width_um": [20.0],
                "acquisition_height_um": [16.0],
            }
        ).to_csv(root / "images.csv", index=False)
    return root


def test_steinbock_pixel_size_from_images_csv_or_refused(tmp_path):
    with_info = read_cell_table(_steinbock_folder(tmp_path / "a", images_csv=True))
    assert with_info.obsm["spatial"].tolist() == [[4.0, 2.0], [10.0, 6.0]]  # x = col, y = row, 2 µm/px
    assert with_info.obs["area_um2"].tolist() == [16.0, 36.0]
    assert get_image_metadata(with_info, "img1").pixel_size_um == 2.0
    bare = _steinbock_folder(tmp_path / "b", images_csv=False)
    with pytest.raises(ValueError, match="pixel_size_um"):
        read_cell_table(bare)
    assert read_cell_table(bare, pixel_size_um=1.0).obsm["spatial"].tolist() == [[2.0, 1.0], [5.0, 3.0]]
    with pytest.warns(UserWarning, match="differs from"):
        read_cell_table(tmp_path / "a", pixel_size_um=1.0)


# --- inForm / Vectra ----------------------------------------------------------------------------


def _nucleus_page(tif: tifffile.TiffFile) -> int:
    """Index of the page whose ImageDescription XML says CompartmentType = Nucleus."""
    for i, page in enumerate(tif.pages):
        root = ET.fromstring(page.description.encode("utf-16") if page.description else b"<x/>")
        if root.findtext("CompartmentType") == "Nucleus":
            return i
    raise AssertionError("no nucleus page")


@pytest.mark.realdata
def test_inform_set4_positions_hit_own_nucleus_label(shared):
    """Acceptance test of the coordinate convention (x/y order, pixel centres, pixel size)."""
    table = shared(*SET4, "sample_cell_seg_data.csv.gz")
    ref = pd.read_csv(table)
    with tifffile.TiffFile(shared(*SET4, SET4_SEG)) as tif:
        page = _nucleus_page(tif)
        assert page == 1
        assert "XResolution" not in tif.pages[page].tags  # no pixel size in the TIFF: derive it below
        labels = tif.pages[page].asarray()
    ids = ref["Cell ID"].to_numpy()
    # pixel size from the table's nucleus areas (µm²) over the label's pixel counts: 0.25 µm² -> 0.5 µm
    px_per_label = np.bincount(labels.ravel(), minlength=ids.max() + 1)[ids]
    ps = float(np.sqrt(np.median(ref["Nucleus Area (sq microns)"].to_numpy() / px_per_label)))
    assert ps == pytest.approx(0.5)
    a = read_cell_table(table)
    # positions are relative to the field (its centre [16142,55840] µm is in the name, not added)
    assert a.obsm["spatial"].max(axis=0).tolist() <= [labels.shape[1] * ps, labels.shape[0] * ps]
    np.testing.assert_array_equal(a.obsm["spatial"], ref[["Cell X Position", "Cell Y Position"]].to_numpy())
    np.testing.assert_array_equal(a.obs["cell_id"].to_numpy(), ids)
    hit = _hit_rate(labels, a.obsm["spatial"], a.obs["cell_id"].to_numpy(), ps)
    assert hit >= 0.99, f"hit rate {hit:.4f}"
    assert _hit_rate(labels, a.obsm["spatial"][:, ::-1], ids, ps) < 0.1
    meta = get_image_metadata(a, "Set4_1-6plex_[16142,55840]")
    assert meta.technology == "vectra"
    assert meta.extra["field_centre_um"] == [16142.0, 55840.0]
    assert meta.extra["position_frame"] == "field"


@pytest.mark.realdata
def test_inform_set4_columns(shared):
    ref = pd.read_csv(shared(*SET4, "sample_cell_seg_data.csv.gz"))
    a = read_cell_table(shared(*SET4, "sample_cell_seg_data.csv.gz"))
    assert a.shape == (6_072, 32)  # 8 markers x 4 compartments, Mean in X
    assert a.obs["cell_type"].value_counts().to_dict() == ref["Phenotype"].value_counts().to_dict()
    assert a.obs["compartment"].value_counts().to_dict() == {"Stroma": 3512, "Tumor": 2560}
    assert a.obs["sample_id"].unique().tolist() == ["Set4_1-6plex"]
    cd8 = ref["Entire Cell CD8 (Opal 540) Mean"].to_numpy(np.float32)
    np.testing.assert_array_equal(a[:, "Entire Cell CD8 (Opal 540)"].X.ravel(), cd8)
    pdl1_max = ref["Membrane PDL1 (Opal 520) Max"].to_numpy(np.float32)
    np.testing.assert_array_equal(a[:, "Membrane PDL1 (Opal 520)"].layers["max"].ravel(), pdl1_max)
    assert set(a.layers) == {"min", "max", "std_dev", "total"}
    assert a.var.loc["Nucleus DAPI", "marker"] == "DAPI"
    np.testing.assert_array_equal(a.obs["area_um2"], ref["Entire Cell Area (sq microns)"])


@pytest.mark.realdata
def test_inform_pixel_tables_tab_and_decimal_comma(shared):
    with tifffile.TiffFile(shared(*FIHC4, f"{FIHC4_STEM}_component_data.tif")) as tif:
        tags = tif.pages[0].tags
        assert tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
        num, den = tags["XResolution"].value
        ps = 1e4 * den / num  # pixels per cm -> µm per pixel (0.4971)
    with tifffile.TiffFile(shared(*FIHC4, f"{FIHC4_STEM}_binary_seg_maps.tif")) as tif:
        labels = tif.pages[_nucleus_page(tif)].asarray()
    tab = shared(*FIHC4, f"{FIHC4_STEM}_cell_seg_data.txt")
    ref = pd.read_csv(tab, sep="\t")
    with pytest.raises(ValueError, match=r"pixels.*pixel_size_um"):
        read_cell_table(tab)
    a = read_cell_table(tab, pixel_size_um=ps)
    b = read_cell_table(shared(*FIHC4, f"{FIHC4_STEM}_comma_cell_seg_data.txt"), pixel_size_um=ps)
    np.testing.assert_allclose(a.obsm["spatial"], ref[["Cell X Position", "Cell Y Position"]].to_numpy() * ps)
    np.testing.assert_array_equal(b.obsm["spatial"], a.obsm["spatial"])
    np.testing.assert_array_equal(b.X, a.X)
    assert a.var_names[0] == "Nucleus Alexa 594"
    assert a.var["unit"].iloc[0] == "Normalized Counts, Total Weighting"
    assert a.obs["cell_type"].value_counts().to_dict() == {"B": 249, "Helper T": 15, "Cytotoxic T": 6}
    assert a.obs["Confidence"].iloc[0] == b.obs["Confidence"].iloc[0] == 97.57  # "97,57 %" -> 97.57
    for x in (a, b):
        meta = get_image_metadata(x, FIHC4_STEM)
        assert (meta.sample_id, meta.extra["inform_version"]) == ("0929309", "2.3.6267.15036")
    # inForm's positions sit ~1.3 px right of the label centroid in this field: most still hit
    assert _hit_rate(labels, a.obsm["spatial"], a.obs["cell_id"].to_numpy(), ps) >= 0.95


def test_inform_slide_coordinates_are_recognised(tmp_path):
    df = pd.DataFrame(
        {
            "Sample Name": ["s_[1000,2000].im3"] * 2,
            "Cell ID": [1, 2],
            "Cell X Position": [990.0, 1010.0],
            "Cell Y Position": [1995.0, 2003.0],
            "Phenotype": ["CD8+", "other"],
            "Distance from Tissue Category Edge (microns)": [1.0, 2.0],
        }
    )
    a = read_cell_table(df)
    meta = get_image_metadata(a, "s_[1000,2000]")
    assert meta.extra["position_frame"] == "slide"
    assert a.obsm["spatial"].tolist() == [[990.0, 1995.0], [1010.0, 2003.0]]  # kept, not shifted


def test_h5ad_round_trip(tmp_path):
    df = pd.DataFrame(
        {
            "Sample Name": ["f1.im3", "f1.im3", "f2.im3"],
            "Cell ID": [1, 2, 1],
            "Cell X Position": [1.0, 2.0, 3.0],
            "Cell Y Position": [4.0, 5.0, 6.0],
            "Phenotype": ["CD8+", "other", "CD8+"],
            "Tissue Category": ["Tumor", "Stroma", "Tumor"],
            "Entire Cell CD8 Mean": [0.5, 0.1, 0.7],
            "Entire Cell CD8 Max": [0.9, 0.2, 1.0],
            "Cell Area (microns)": [10.0, 12.0, 11.0],
        }
    )
    a = read_cell_table(df)
    assert a.obs_names.tolist() == ["f1_1", "f1_2", "f2_1"]  # Cell IDs repeat across fields
    a.write_h5ad(tmp_path / "cells.h5ad")
    b = ad.read_h5ad(tmp_path / "cells.h5ad")
    assert get_image_metadata(b, "f2") == get_image_metadata(a, "f2")
    np.testing.assert_array_equal(b.layers["max"], a.layers["max"])
    assert b.obs["compartment"].tolist() == ["Tumor", "Stroma", "Tumor"]


# --- bad inputs ---------------------------------------------------------------------------------


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="cell table not found"):
        read_cell_table(tmp_path / "nope.csv")


def test_table_without_coordinates_is_refused(tmp_path):
    pd.DataFrame({"cell": [1, 2], "CD3": [0.1, 0.2]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(
        ReaderError, match=r"unrecognised cell table.*Columns found: 'cell', 'CD3'.*mcmicro: "
    ):
        read_cell_table(tmp_path / "t.csv")
    with pytest.raises(ReaderError, match=r"xy table has no x position column"):
        read_cell_table(tmp_path / "t.csv", schema="xy", units="um")


def test_nan_coordinates_are_refused(tmp_path):
    pd.DataFrame({"x": [1.0, np.nan, 3.0], "y": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(
        ReaderError, match=r"1 of 3 cells have missing or infinite positions.*rows, 0-based: \[1\]"
    ):
        read_cell_table(tmp_path / "t.csv", units="um")


def test_pixel_table_without_pixel_size_is_refused(tmp_path):
    pd.DataFrame({"x": [1.0], "y": [1.0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match=r"units='um'.*pixel_size_um="):
        read_cell_table(tmp_path / "t.csv")
    with pytest.raises(ValueError, match=r"pixel_size_um=<micrometres per pixel>"):
        read_cell_table(tmp_path / "t.csv", units="px")
    with pytest.raises(ValueError, match="pixel_size_um must be a positive number"):
        read_cell_table(tmp_path / "t.csv", pixel_size_um=-1)


def test_unknown_arguments_are_refused(tmp_path):
    pd.DataFrame({"x": [1.0], "y": [1.0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match=r"unknown schema 'qupath'; choose one of: auto, mcmicro, steinbock"):
        read_cell_table(tmp_path / "t.csv", schema="qupath")
    with pytest.raises(ValueError, match="unknown units 'mm'"):
        read_cell_table(tmp_path / "t.csv", units="mm")
    with pytest.raises(ValueError, match=r"unknown columns= keys \['celltype'\]"):
        read_cell_table(tmp_path / "t.csv", units="um", columns={"celltype": "x"})
    with pytest.raises(ValueError, match="unknown technology 'codexx'"):
        read_cell_table(tmp_path / "t.csv", units="um", technology="codexx")
    with pytest.raises(ReaderError, match=r"columns=\{'cell_type': 'kind'\}: no such column"):
        read_cell_table(tmp_path / "t.csv", units="um", columns={"cell_type": "kind"})


def test_ambiguous_tables_are_refused(tmp_path):
    both = pd.DataFrame(
        {
            "CellID": [1],
            "X_centroid": [1.0],
            "Y_centroid": [1.0],
            "Cell X Position": [1.0],
            "Cell Y Position": [1],
        }
    )
    with pytest.raises(ReaderError, match=r"matches several schemas \(inform, mcmicro\).*Columns found"):
        read_cell_table(both, image_id="i")
    two_x = pd.DataFrame({"x": [1.0], "x_um": [1.0], "y": [1.0]})
    with pytest.raises(ReaderError, match=r"ambiguous position columns: x could be \['x', 'x_um'\]"):
        read_cell_table(two_x, image_id="i", units="um")
    two_types = pd.DataFrame({"x": [1.0], "y": [1.0], "phenotype": ["a"], "cell_type": ["b"]})
    with pytest.raises(ReaderError, match=r"several columns could be 'cell_type'"):
        read_cell_table(two_types, image_id="i", units="um")


@pytest.mark.realdata
def test_image_id_on_multi_image_table_is_refused(shared):
    with pytest.raises(ValueError, match=r"image_id='x' is for tables of one image.*120 images"):
        read_cell_table(
            shared("spicyR_damond_t1d_imc", "diabetesData_cells.csv.gz"), units="um", image_id="x"
        )


def test_wrong_schema_for_file_is_refused(tmp_path):
    pd.DataFrame({"CellID": [1], "X_centroid": [1.0], "Y_centroid": [2.0]}).to_csv(
        tmp_path / "t.csv", index=False
    )
    with pytest.raises(ReaderError, match=r"inform table has no x position column.*'Cell X Position'"):
        read_cell_table(tmp_path / "t.csv", schema="inform")
    with pytest.raises(ReaderError, match="not a steinbock folder"):
        read_cell_table(tmp_path)


def test_header_only_table_is_refused(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("x,y,cell_type\n")
    with pytest.raises(ReaderError, match=r"empty\.csv has no cells: the table has a header but no rows"):
        read_cell_table(p, units="um")


# --- separators, QuPath and HALO exports (small files written here) --------------------------------


def test_semicolon_file_with_commas_in_column_names(tmp_path):
    """inForm exports in European locales: ';' separator, decimal commas, ',' inside column names."""
    header = [
        "Cell ID",
        "Cell X Position",
        "Cell Y Position",
        "Nucleus CD8 (Opal 520) Mean (Normalized Counts, Total Weighting)",
        "Entire Cell Area (pixels)",
    ]
    rows = [(1, "10,5", "20,5", "0,3", 40), (2, "12,25", "3", "1,75", 52), (3, "7", "8,5", "0", 33)]
    p = tmp_path / "cell_seg_data.txt"
    p.write_text(";".join(header) + "\n" + "".join(";".join(map(str, r)) + "\n" for r in rows))
    ps = 0.5
    a = read_cell_table(p, pixel_size_um=ps)  # was: one column named 'Cell ID;Cell X Position;...'
    xy = np.array([[float(str(r[1]).replace(",", ".")), float(str(r[2]).replace(",", "."))] for r in rows])
    np.testing.assert_allclose(a.obsm["spatial"], xy * ps)
    assert a.var_names.tolist() == ["Nucleus CD8 (Opal 520)"]
    assert a.var["unit"].tolist() == ["Normalized Counts, Total Weighting"]
    np.testing.assert_allclose(a.X.ravel(), [0.3, 1.75, 0.0], rtol=1e-6)
    np.testing.assert_allclose(a.obs["area_um2"], np.array([40, 52, 33]) * ps**2)
    # a comma file whose quoted names hold ';' stays a comma file
    q = tmp_path / "comma.csv"
    q.write_text('x,y,"CD3; CD8 ratio"\n1.5,2.5,0.25\n3.0,4.0,0.5\n')
    b = read_cell_table(q, units="um")
    assert b.obsm["spatial"].tolist() == [[1.5, 2.5], [3.0, 4.0]]
    assert b.obs["CD3; CD8 ratio"].tolist() == [0.25, 0.5]


def test_qupath_export_class_image_and_micrometre_centroids(tmp_path):
    p = tmp_path / "measurements.tsv"
    df = pd.DataFrame(
        {
            "Image": ["s1.svs", "s1.svs", "s2.svs"],
            "Object ID": ["a1", "b2", "c3"],
            "Name": ["", "", ""],
            "Class": ["Tumor", "Stroma", "Tumor"],
            "Parent": ["Annotation"] * 3,
            "ROI": ["Polygon"] * 3,  # QuPath: the shape type, not an image or region
            "Centroid X µm": [10.25, 20.5, 30.0],
            "Centroid Y µm": [5.0, 6.5, 7.75],
            "Nucleus: Area": [20.0, 30.0, 40.0],
            "Cell: CD8: Mean": [1.0, 2.0, 3.0],
        }
    )
    df.to_csv(p, sep="\t", index=False)
    a = read_cell_table(p)  # was: "several columns could be 'image_id': ['Image', 'ROI']"
    validate_cells(a, library_key="image_id")
    np.testing.assert_array_equal(a.obsm["spatial"], df[["Centroid X µm", "Centroid Y µm"]].to_numpy())
    assert a.obs["cell_type"].tolist() == ["Tumor", "Stroma", "Tumor"]
    assert a.obs["image_id"].tolist() == ["s1.svs", "s1.svs", "s2.svs"]
    assert a.obs["ROI"].tolist() == ["Polygon"] * 3
    assert a.obs_names.tolist() == ["a1", "b2", "c3"]
    meta = get_image_metadata(a, "s1.svs")
    assert meta.extra["units_in_file"] == "um"
    assert meta.extra["columns"] == {
        "x": "Centroid X µm",
        "y": "Centroid Y µm",
        "cell_type": "Class",
        "image_id": "Image",
        "cell_id": "Object ID",
    }


def test_halo_positions_are_bounding_box_midpoints(tmp_path):
    p = tmp_path / "halo_objects.csv"
    df = pd.DataFrame(
        {
            "Image Location": ["slide.svs"] * 3,
            "Object Id": [1, 2, 3],
            "XMin": [0, 10, 101],
            "XMax": [4, 14, 110],
            "YMin": [0, 0, 50],
            "YMax": [4, 5, 57],
            "CD8 Positive Classification": [1, 0, 1],
        }
    )
    df.to_csv(p, index=False)
    mid = np.column_stack([(df["XMin"] + df["XMax"]) / 2, (df["YMin"] + df["YMax"]) / 2])
    np.testing.assert_array_equal(mid, [[2.0, 2.0], [12.0, 2.5], [105.5, 53.5]])
    ps = 0.4962
    a = read_cell_table(p, pixel_size_um=ps)  # was: "unrecognised cell table"
    np.testing.assert_allclose(a.obsm["spatial"], mid * ps, rtol=1e-15)
    assert a.obs_names.tolist() == ["1", "2", "3"]
    assert a.obs["XMin"].tolist() == [0, 10, 101]  # the box stays in obs
    assert get_image_metadata(a, "halo_objects").extra["columns"]["x"] == "x_bbox_centre"
    # pixels unless stated: no pixel size and no units is refused; units="um" takes them as µm
    with pytest.raises(ValueError, match=r"pixel_size_um="):
        read_cell_table(p)
    np.testing.assert_array_equal(read_cell_table(p, units="um").obsm["spatial"], mid)
    # box columns that state µm are µm
    um = df.rename(columns={c: f"{c} (µm)" for c in ("XMin", "XMax", "YMin", "YMax")})
    b = read_cell_table(um, image_id="halo")
    np.testing.assert_array_equal(b.obsm["spatial"], mid)
    assert get_image_metadata(b, "halo").extra["units_in_file"] == "um"
