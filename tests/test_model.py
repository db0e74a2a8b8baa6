"""Data model: metadata record, image/label constructors and every validator error path."""

from __future__ import annotations

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from spatialpath.model import (
    DataModelError,
    get_image_metadata,
    make_image,
    make_labels,
    set_image_metadata,
    validate_categorical,
    validate_cells,
    validate_image,
    validate_labels,
)


def _cells(n=20, spatial=True, seed=0):
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(rng.choice(["T", "B"], n), categories=["T", "B"]),
            "image_id": "img1",
        },
        index=[f"c{i}" for i in range(n)],
    )
    a = ad.AnnData(np.zeros((n, 2), np.float32), obs=obs)
    if spatial:
        a.obsm["spatial"] = rng.uniform(0, 100, (n, 2))
    return a


# --- metadata ---------------------------------------------------------------------------------


def test_metadata_round_trip_through_h5ad(tmp_path):
    a = _cells()
    meta = set_image_metadata(
        a,
        {
            "image_id": "img1",
            "technology": "codex",
            "pixel_size_um": 0.377,
            "shape_px": (300, 400),
            "channels": ["DAPI", "CD8"],
            "extra": {"stain_batch": 3},
        },
    )
    a.write_h5ad(tmp_path / "a.h5ad")
    back = get_image_metadata(ad.read_h5ad(tmp_path / "a.h5ad"), "img1")
    assert back == meta
    assert back.extent_um() == pytest.approx((-0.1885, -0.1885, 399.5 * 0.377, 299.5 * 0.377))


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"image_id": "a", "technology": "codex", "pixel_size": 0.5}, "field 'pixel_size': Extra inputs"),
        ({"image_id": "a", "technology": "confocal"}, "field 'technology'"),
        ({"image_id": "a", "technology": "imc", "pixel_size_um": -1}, "field 'pixel_size_um'"),
        ({"image_id": "a", "technology": "imc", "units": "px"}, "field 'units'"),
        ({"image_id": "", "technology": "imc"}, "field 'image_id'"),
        ({"image_id": "a", "technology": "imc", "shape_px": (0, 5)}, "field 'shape_px'"),
    ],
)
def test_metadata_errors_name_the_field(record, match):
    with pytest.raises(ValueError, match=match):
        set_image_metadata(_cells(), record)


def test_missing_metadata_lists_known_images():
    a = _cells()
    set_image_metadata(a, {"image_id": "img1", "technology": "imc"})
    with pytest.raises(KeyError, match="images with metadata: 'img1'"):
        get_image_metadata(a, "other")


def test_corrupt_stored_metadata_is_reported():
    a = _cells()
    a.uns["spatialpath"] = {"images": {"img1": {"image_id": "img1", "technology": "imc", "units": "mm"}}}
    with pytest.raises(ValueError, match=r"metadata of image 'img1': .*field 'units'"):
        get_image_metadata(a, "img1")


# --- images and labels ------------------------------------------------------------------------


def test_make_image_grid_and_laziness():
    data = da.zeros((3, 40, 50), chunks=(3, 20, 20))
    img = make_image(data, channels=["a", "b", "c"], pixel_size_um=0.65, origin_um=(10.0, 5.0))
    assert img.dims == ("c", "y", "x")
    assert isinstance(img.data, da.Array)
    assert img.x.values[0] == 10.0
    assert img.y.values[0] == 5.0
    assert img.x.values[7] == pytest.approx(10.0 + 7 * 0.65)
    validate_image(img)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"data": np.zeros((2, 4, 4)), "channels": ["a"]},
            "got 1 channel names for an image with 2 channels",
        ),
        ({"data": np.zeros((2, 4, 4)), "channels": ["a", "a"]}, "channel names must be unique"),
        ({"data": np.zeros((1, 2, 4, 4)), "channels": ["a"]}, r"must have shape \(c, y, x\)"),
        (
            {"data": np.zeros((1, 4, 4)), "channels": ["a"], "pixel_size_um": -0.5},
            "pixel_size_um must be a positive",
        ),
        (
            {"data": np.zeros((1, 4, 4)), "channels": ["a"], "pixel_size_um": "big"},
            "pixel_size_um must be a positive",
        ),
    ],
)
def test_make_image_errors(kwargs, match):
    kwargs = {"pixel_size_um": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_image(**kwargs)


def test_make_labels_errors():
    with pytest.raises(ValueError, match="integer dtype"):
        make_labels(np.zeros((4, 4), np.float32), pixel_size_um=1)
    with pytest.raises(ValueError, match="must be 2-D"):
        make_labels(np.zeros((1, 4, 4), np.int32), pixel_size_um=1)


def test_validate_image_errors():
    good = make_image(np.zeros((1, 4, 5)), channels=["a"], pixel_size_um=0.5)
    with pytest.raises(DataModelError, match=r"must be an xarray\.DataArray"):
        validate_image(good.values)
    with pytest.raises(DataModelError, match="image dims must be"):
        validate_image(good.transpose("y", "x", "c"))
    with pytest.raises(DataModelError, match="attrs\\['units'\\] must be 'um'"):
        validate_image(good.assign_attrs(units="px"))
    with pytest.raises(DataModelError, match="attrs\\['pixel_size_um'\\] must be a positive"):
        validate_image(good.assign_attrs(pixel_size_um=None))
    with pytest.raises(DataModelError, match=r"steps by 1 µm but attrs\['pixel_size_um'\] is 0\.5"):
        validate_image(good.assign_coords(x=np.arange(5.0)))


def test_validate_labels_errors():
    img = make_image(np.zeros((1, 4, 5)), channels=["a"], pixel_size_um=0.5)
    lab = make_labels(np.zeros((4, 5), np.int32), pixel_size_um=0.5)
    validate_labels(lab, like=img)
    with pytest.raises(DataModelError, match="integer dtype"):
        validate_labels(lab.astype(float))
    with pytest.raises(DataModelError, match="label mask dims must be"):
        validate_labels(lab.transpose())
    other = make_labels(np.zeros((4, 6), np.int32), pixel_size_um=0.5)
    with pytest.raises(DataModelError, match="different grids along 'x'"):
        validate_labels(other, like=img)
    with pytest.raises(DataModelError, match=r"must be an xarray\.DataArray"):
        validate_labels(np.zeros((4, 5), np.int32))


# --- cells ------------------------------------------------------------------------------------


def test_validate_cells_accepts_good_input():
    validate_cells(_cells(), cluster_key="cell_type", library_key="image_id")


def test_missing_spatial():
    with pytest.raises(
        DataModelError, match=r"obsm\['spatial'\] is missing: store cell centroids in micrometres"
    ):
        validate_cells(_cells(spatial=False))


def test_wrong_spatial_shape_and_dtype():
    a = _cells()
    a.obsm["spatial"] = np.zeros((a.n_obs, 4))
    with pytest.raises(DataModelError, match=r"must have shape \(n_cells, 2\) or \(n_cells, 3\)"):
        validate_cells(a)
    a.obsm["spatial"] = np.full((a.n_obs, 2), "x", dtype=object)
    with pytest.raises(DataModelError, match="must be numeric"):
        validate_cells(a)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_coordinates(bad):
    a = _cells()
    a.obsm["spatial"][3, 1] = bad
    with pytest.raises(DataModelError, match=r"1 cells with NaN or infinite coordinates \(first: \['c3'\]\)"):
        validate_cells(a)


def test_non_categorical_labels():
    a = _cells()
    a.obs["cell_type"] = a.obs["cell_type"].astype(str)
    with pytest.raises(DataModelError, match=r"must be categorical, got dtype object; convert it with"):
        validate_cells(a, cluster_key="cell_type")


def test_missing_label_column_and_missing_values():
    a = _cells()
    with pytest.raises(DataModelError, match=r"obs\['phenotype'\] is missing \(obs columns: 'cell_type'"):
        validate_categorical(a, "phenotype")
    a.obs.loc["c1", "cell_type"] = np.nan
    with pytest.raises(DataModelError, match="has 1 missing values"):
        validate_categorical(a, "cell_type")


def test_empty_categories():
    a = _cells()
    a.obs["cell_type"] = a.obs["cell_type"].cat.add_categories(["NK"])
    with pytest.raises(DataModelError, match=r"categories with no cells: \['NK'\].*remove_unused_categories"):
        validate_cells(a, cluster_key="cell_type")
    validate_categorical(a, "cell_type", allow_empty_categories=True)


def test_library_key_errors():
    a = _cells()
    with pytest.raises(DataModelError, match=r"obs\['roi'\] is missing: it names the image"):
        validate_cells(a, library_key="roi")
    a.obs["image_id"] = a.obs["image_id"].astype(object)
    a.obs.iloc[0, a.obs.columns.get_loc("image_id")] = None
    with pytest.raises(DataModelError, match="has missing values: every cell needs an image"):
        validate_cells(a, library_key="image_id")


def test_pixel_coordinates_are_caught():
    """Coordinates in pixels (x 1/0.377) overshoot the image's µm extent and are refused."""
    a = _cells(n=200)
    shape = (1000, 1400)  # a 20x CODEX tile
    px = np.column_stack([np.linspace(0, shape[1] - 1, 200), np.linspace(0, shape[0] - 1, 200)])
    set_image_metadata(
        a, {"image_id": "img1", "technology": "codex", "pixel_size_um": 0.377, "shape_px": shape}
    )
    a.obsm["spatial"] = px * 0.377
    validate_cells(a, library_key="image_id")  # µm: fine
    a.obsm["spatial"] = px
    with pytest.raises(
        DataModelError, match=r"look like pixels.*Multiply pixel coordinates by pixel_size_um \(0.377\)"
    ):
        validate_cells(a, library_key="image_id")
    validate_cells(a, library_key="image_id", check_extent=False)


def test_unknown_units_in_stored_metadata():
    a = _cells()
    a.uns["spatialpath"] = {"images": {"img1": {"image_id": "img1", "technology": "imc", "units": "px"}}}
    with pytest.raises(ValueError, match="field 'units'"):
        validate_cells(a, library_key="image_id")


def test_image_dataarray_is_plain_xarray():
    img = make_image(np.ones((2, 3, 3), np.uint16), channels=["a", "b"], pixel_size_um=1.0, image_id="x")
    assert isinstance(img, xr.DataArray)
    assert img.attrs == {"pixel_size_um": 1.0, "units": "um", "image_id": "x"}
    assert img.sel(c="b").shape == (3, 3)
