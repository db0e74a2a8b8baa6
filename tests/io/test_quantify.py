"""quantify() against independent references: regionprops, steinbock's and inForm's tables, the simulator."""

from __future__ import annotations

import re

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.measure import regionprops_table

from spatialpath.io import quantify
from spatialpath.model import DataModelError, get_image_metadata, make_image, make_labels

PANCREAS = ("E34", "G01", "J02")
STEINBOCK_IMAGES = [f"20210305_NE_mockData{m}_00{r}" for m in range(1, 6) for r in range(1, 4)]
FIHC4 = "FIHC4__0929309_HP_IM3_2"


def _max_rel(values: np.ndarray, ref: np.ndarray) -> float:
    """Largest relative difference; where the reference is 0 the value must be 0 too."""
    ref = np.asarray(ref, dtype=np.float64)
    diff = np.abs(np.asarray(values, dtype=np.float64) - ref)
    return float(np.max(diff / np.where(ref == 0, 1.0, np.abs(ref)), initial=0.0))


def _regionprops(mask: np.ndarray, img: np.ndarray) -> pd.DataFrame:
    """skimage's measurements; the image in float64 so the reference mean is not float32-rounded."""
    props = ("label", "area", "centroid", "intensity_mean")
    return pd.DataFrame(regionprops_table(mask, np.moveaxis(img, 0, -1).astype(np.float64), properties=props))


def _assert_matches_regionprops(cells, mask: np.ndarray, img: np.ndarray, ps: float) -> float:
    rp = _regionprops(mask, img)
    np.testing.assert_array_equal(cells.obs["label"].to_numpy(), rp["label"].to_numpy())
    np.testing.assert_array_equal(cells.obs["area_px"].to_numpy(), rp["area"].to_numpy())
    np.testing.assert_allclose(cells.obs["area_um2"].to_numpy(), rp["area"].to_numpy() * ps**2, rtol=1e-12)
    centroid_um = rp[["centroid-1", "centroid-0"]].to_numpy() * ps  # (x = column, y = row)
    np.testing.assert_allclose(cells.obsm["spatial"], centroid_um, rtol=1e-12, atol=1e-9)
    mean = rp[[f"intensity_mean-{c}" for c in range(img.shape[0])]].to_numpy()
    np.testing.assert_allclose(cells.X, mean, rtol=1e-6)
    return _max_rel(cells.X, mean)


# ---------------------------------------------------------------- real data: regionprops, steinbock, inForm


@pytest.mark.realdata
@pytest.mark.parametrize("name", PANCREAS)
def test_cytomapper_pancreas_equals_regionprops(shared, name):
    img = tifffile.imread(shared("cytomapper_pancreas_imc", f"{name}_imc.tiff"))
    mask = tifffile.imread(shared("cytomapper_pancreas_imc", f"{name}_mask.tiff"))
    channels = ["H3", "CD99", "PIN", "CD8a", "CDH"]  # SOURCE.md page order
    cells = quantify(
        make_image(img, channels=channels, pixel_size_um=1.0),
        make_labels(mask, pixel_size_um=1.0),
        statistics=("mean", "median", "sum"),
        image_id=name,
        technology="imc",
    )
    assert cells.n_obs == {"E34": 113, "G01": 122, "J02": 127}[name]
    assert cells.obs_names[0] == f"{name}_{cells.obs['label'].iloc[0]}"
    _assert_matches_regionprops(cells, mask, img, 1.0)
    # medians and sums against numpy, cell by cell (the reference may loop; quantify does not)
    for i, label in enumerate(cells.obs["label"].to_numpy()[:40]):
        pix = img[:, mask == label]
        np.testing.assert_allclose(cells.layers["median"][i], np.median(pix, axis=1), rtol=1e-6)
        np.testing.assert_allclose(cells.layers["sum"][i], pix.astype(np.float64).sum(axis=1), rtol=1e-6)


@pytest.fixture(scope="module")
def steinbock_channels(shared):
    panel = pd.read_csv(shared("bodenmiller_imc_testdata", "steinbock", "panel.csv"))
    return panel.loc[panel["keep"] == 1, "name"].tolist()


@pytest.mark.realdata
@pytest.mark.parametrize("name", STEINBOCK_IMAGES)
def test_steinbock_equals_regionprops_and_steinbock_tables(shared, steinbock_channels, name):
    base = shared("bodenmiller_imc_testdata", "steinbock")
    img = tifffile.imread(base / "img" / f"{name}.tiff")
    mask = tifffile.imread(base / "masks_deepcell" / f"{name}.tiff")
    cells = quantify(
        make_image(img, channels=steinbock_channels, pixel_size_um=1.0), make_labels(mask, pixel_size_um=1.0)
    )
    _assert_matches_regionprops(cells, mask, img, 1.0)

    # steinbock's own tables for this image and mask: `measure intensities` (channel means of the
    # panel's keep == 1 channels, in panel order) and `measure regionprops` (area, centroid in px)
    table = pd.read_csv(base / "intensities_deepcell" / f"{name}.csv")
    assert table.columns[1:].tolist() == cells.var_names.tolist()
    np.testing.assert_array_equal(table["Object"].to_numpy(), cells.obs["label"].to_numpy())
    ref = table[steinbock_channels].to_numpy()
    assert _max_rel(cells.X, ref) <= 1e-5
    props = pd.read_csv(base / "regionprops_deepcell" / f"{name}.csv")
    np.testing.assert_array_equal(props["area"].to_numpy(), cells.obs["area_px"].to_numpy())
    np.testing.assert_allclose(
        cells.obsm["spatial"], props[["centroid-1", "centroid-0"]].to_numpy(), rtol=1e-9
    )


@pytest.fixture(scope="module")
def fihc4(shared):
    """inForm component image (5 float32 pages named in their XML) and the nucleus label page."""
    folder = shared("phenoptr_vectra_mif", "FIHC4_IM3_2")
    with tifffile.TiffFile(folder / f"{FIHC4}_component_data.tif") as tif:
        pages = [p for p in tif.pages if p.dtype == np.float32 and p.ndim == 2]  # drops the RGB thumbnail
        img = np.stack([p.asarray() for p in pages])
        names = [re.search(r"<Name>(.*?)</Name>", p.description).group(1) for p in pages]
        num, den = pages[0].tags["XResolution"].value  # pixels per centimetre (ResolutionUnit 3)
        assert pages[0].tags["ResolutionUnit"].value == 3
    with tifffile.TiffFile(folder / f"{FIHC4}_binary_seg_maps.tif") as tif:
        # page 0: tissue classes; then Nucleus, Cytoplasm, Membrane label pages (CompartmentType in XML)
        kinds = [re.search(r"<CompartmentType>(.*?)</CompartmentType>", p.description) for p in tif.pages]
        page = [k.group(1) if k else None for k in kinds].index("Nucleus")
        nucleus = tif.pages[page].asarray()
    table = pd.read_csv(folder / f"{FIHC4}_cell_seg_data.txt", sep="\t")
    return img, names, 1e4 * den / num, nucleus, table


@pytest.mark.realdata
def test_phenoptr_fihc4_equals_regionprops_and_inform(fihc4):
    img, names, ps, nucleus, table = fihc4
    assert names == ["Alexa 594", "Cy3", "Cy5", "DAPI", "FITC"]
    assert ps == pytest.approx(0.497, abs=1e-3)
    cells = quantify(
        make_image(img, channels=names, pixel_size_um=ps),
        make_labels(nucleus, pixel_size_um=ps),
        image_id="FIHC4",
        technology="vectra",
    )
    assert cells.n_obs == 270
    _assert_matches_regionprops(cells, nucleus, img, ps)
    # inForm's own nucleus measurements (areas in px, means printed with 3 decimals)
    inform = table.set_index("Cell ID").loc[cells.obs["label"].to_numpy()]
    np.testing.assert_array_equal(inform["Nucleus Area (pixels)"].to_numpy(), cells.obs["area_px"].to_numpy())
    for j, name in enumerate(names):
        ref = inform[f"Nucleus {name} Mean (Normalized Counts, Total Weighting)"].to_numpy()
        np.testing.assert_allclose(cells.X[:, j], ref, atol=5e-4 + 1e-6)


# ---------------------------------------------------------------- simulator: planted truth, dask == numpy


@pytest.fixture(scope="module")
def tissue_chunked():
    from spatialpath.datasets import simulate_tissue

    return simulate_tissue(seed=3, n_cells=3000, chunk_px=256)


def test_simulated_means_recover_planted_expression(tissue_chunked):
    t = tissue_chunked
    crop = {"y": slice(0, 1024), "x": slice(0, 1024)}  # chunk-aligned (chunk_px = 256)
    cells = quantify(t.image.isel(crop), t.labels.isel(crop))
    assert cells.n_obs > 500
    rows = pd.Index(t.adata.obs["label"]).get_indexer(cells.obs["label"])
    assert (rows >= 0).all()
    planted = t.adata[rows].X + t.adata.uns["simulation"]["background"]
    for j, marker in enumerate(t.adata.var_names):
        assert cells.var_names[j] == marker
        r = np.corrcoef(planted[:, j], cells.X[:, j])[0, 1]
        assert r > 0.99, (marker, r)
        bright = planted[:, j] > 1.0
        if bright.sum() > 20:  # unbiased where the clipped noise floor does not matter
            assert np.median(cells.X[bright, j] / planted[bright, j]) == pytest.approx(1.0, abs=0.03)


def test_dask_path_equals_numpy_path(tissue_chunked):
    t = tissue_chunked
    crop = {"y": slice(100, 900), "x": slice(300, 1100)}  # 4 x 4 chunks, cells cut by chunk edges
    img, lab = t.image.isel(crop), t.labels.isel(crop)
    assert len(img.data.chunks[1]) > 1
    assert len(lab.data.chunks[1]) > 1
    lazy = quantify(img, lab, statistics=("mean", "sum"), image_id="sim")
    eager = quantify(img.compute(), lab.compute(), statistics=("mean", "sum"), image_id="sim")
    for other_chunks in (lab.chunk({"y": 300, "x": 170}), lab.compute()):  # misaligned / numpy mask
        again = quantify(img, other_chunks, statistics=("mean", "sum"), image_id="sim")
        np.testing.assert_array_equal(again.X, lazy.X)
    np.testing.assert_array_equal(lazy.obs_names, eager.obs_names)
    np.testing.assert_array_equal(lazy.obs["area_px"], eager.obs["area_px"])
    np.testing.assert_array_equal(lazy.obsm["spatial"], eager.obsm["spatial"])
    np.testing.assert_array_equal(lazy.X, eager.X)
    np.testing.assert_array_equal(lazy.layers["sum"], eager.layers["sum"])
    # origin: the crop's centroids are in the tissue's µm frame
    meta = get_image_metadata(lazy, "sim")
    assert meta.origin_um == (300 * 0.5, 100 * 0.5)


# ---------------------------------------------------------------- small hand-made cases


def _tiny(dask_chunks=None, origin=(0.0, 0.0)):
    pixels = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    mask = np.array([[0, 7, 7, 0, 3], [0, 7, 0, 0, 3], [9, 0, 0, 0, 3], [9, 9, 0, 0, 0]], dtype=np.int32)
    if dask_chunks is not None:
        pixels, mask = (
            da.from_array(pixels, chunks=(1, *dask_chunks)),
            da.from_array(mask, chunks=dask_chunks),
        )
    img = make_image(pixels, channels=["a", "b"], pixel_size_um=2.0, origin_um=origin)
    return img, make_labels(mask, pixel_size_um=2.0, origin_um=origin)


def test_tiny_values_by_hand():
    img, lab = _tiny(origin=(10.0, 20.0))
    cells = quantify(img, lab, statistics=("sum", "mean", "median"))
    assert cells.obs_names.tolist() == ["3", "7", "9"]
    assert cells.obs["area_px"].tolist() == [3, 3, 3]
    assert cells.obs["area_um2"].tolist() == [12.0, 12.0, 12.0]
    # label 7: pixels (0,1)=1, (0,2)=2, (1,1)=6 in channel a; centroid row 1/3, col 4/3
    np.testing.assert_allclose(cells.X[1], [9.0, 69.0])  # X holds the first statistic (sum)
    np.testing.assert_allclose(cells.layers["mean"][1], [3.0, 23.0])
    np.testing.assert_allclose(cells.layers["median"][1], [2.0, 22.0])
    np.testing.assert_allclose(cells.obsm["spatial"][1], [10.0 + 2.0 * 4 / 3, 20.0 + 2.0 / 3])
    assert "image_id" not in cells.obs


def test_tiny_dask_with_cells_spanning_chunks():
    eager = quantify(*_tiny())
    lazy = quantify(*_tiny(dask_chunks=(3, 2)))
    np.testing.assert_array_equal(lazy.X, eager.X)
    np.testing.assert_array_equal(lazy.obsm["spatial"], eager.obsm["spatial"])


def test_large_sparse_label_values_are_compacted():
    img, lab = _tiny()
    big = lab.copy(data=lab.values.astype(np.int64) * 1_000_000_007)
    cells, ref = quantify(img, big), quantify(img, lab)
    assert cells.obs["label"].tolist() == [v * 1_000_000_007 for v in (3, 7, 9)]
    np.testing.assert_array_equal(cells.X, ref.X)
    np.testing.assert_array_equal(cells.obsm["spatial"], ref.obsm["spatial"])


def test_channels_subset_and_metadata():
    img, lab = _tiny()
    cells = quantify(img, lab, channels=["b"], image_id="roi", technology="imc", patient_id="p1")
    assert cells.var_names.tolist() == ["b"]
    assert cells.obs_names.tolist() == ["roi_3", "roi_7", "roi_9"]
    assert cells.obs["image_id"].dtype == "category"
    assert cells.obs["patient_id"].unique().tolist() == ["p1"]
    meta = get_image_metadata(cells, "roi")
    assert (meta.pixel_size_um, meta.shape_px, meta.channels, meta.technology) == (2.0, (4, 5), ["b"], "imc")
    assert meta.extra["quantify"] == {"X": "mean", "layers": []}


def test_empty_mask_gives_no_cells():
    img, lab = _tiny()
    cells = quantify(img, lab.copy(data=np.zeros_like(lab.values)))
    assert cells.shape == (0, 2)


# ---------------------------------------------------------------- bad input, one case per test


def test_labels_on_another_grid_are_refused():
    img, lab = _tiny()
    with pytest.raises(DataModelError, match="different grids along 'y'"):
        quantify(img, lab.isel(y=slice(0, 3)))


def test_labels_with_another_pixel_size_are_refused():
    img, lab = _tiny()
    with pytest.raises(DataModelError, match="different grids"):
        quantify(img, make_labels(lab.values, pixel_size_um=1.0))


def test_float_labels_are_refused():
    img, lab = _tiny()
    with pytest.raises(DataModelError, match="integer dtype"):
        quantify(img, lab.astype(np.float32))


def test_negative_labels_are_refused():
    img, lab = _tiny()
    with pytest.raises(DataModelError, match="negative labels"):
        quantify(img, lab.copy(data=-lab.values))


def test_negative_labels_are_refused_on_dask():
    img, lab = _tiny(dask_chunks=(2, 2))
    with pytest.raises(DataModelError, match="negative labels"):
        quantify(img, lab.copy(data=-lab.data))


def test_unknown_statistic_is_refused():
    img, lab = _tiny()
    with pytest.raises(ValueError, match=r"unknown statistics \['max'\]"):
        quantify(img, lab, statistics=("mean", "max"))


def test_median_on_dask_is_refused():
    img, lab = _tiny(dask_chunks=(2, 2))
    with pytest.raises(ValueError, match="needs every pixel of a cell"):
        quantify(img, lab, statistics=("mean", "median"))


def test_unknown_channel_is_refused():
    img, lab = _tiny()
    with pytest.raises(ValueError, match=r"channels \['CD8'\] are not in the image"):
        quantify(img, lab, channels=["CD8"])


def test_image_must_be_a_dataarray():
    _, lab = _tiny()
    with pytest.raises(DataModelError, match=r"must be an xarray\.DataArray"):
        quantify(np.zeros((1, 4, 5)), lab)
