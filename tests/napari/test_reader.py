"""The reader on real data (read in place from ../shared/data) and on spatialpath output folders."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import shapely

napari = pytest.importorskip("napari")

from spatialpath.io import read_image, write_h5ad  # noqa: E402
from spatialpath.model import set_image_metadata  # noqa: E402
from spatialpath.napari import _keys  # noqa: E402
from spatialpath.napari._reader import get_reader  # noqa: E402
from spatialpath.napari._view import add_layers  # noqa: E402
from spatialpath.regions import make_regions, write_geojson  # noqa: E402

CODEX_PIXEL_SIZE_UM = 0.377
REGIONS = ["reg001_A", "reg001_B", "reg002_A"]


@pytest.fixture(scope="module")
def codex_cells(shared):
    """Three CODEX regions of Schürch et al. 2020 in µm (the published table is in pixels)."""
    df = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))
    df = df[df["imageID"].isin(REGIONS)].reset_index(drop=True)
    obs = pd.DataFrame(
        {
            "image_id": pd.Categorical(df["imageID"], categories=REGIONS),
            "patient_id": df["ID"].astype(str).to_numpy(),
            "cell_type": df["cellType"].astype("category").to_numpy(),
        },
        index=[f"cell{i}" for i in range(len(df))],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = df[["x", "y"]].to_numpy(float) * CODEX_PIXEL_SIZE_UM
    for r in REGIONS:
        set_image_metadata(
            adata,
            {
                "image_id": r,
                "technology": "codex",
                "pixel_size_um": CODEX_PIXEL_SIZE_UM,
                "shape_px": (1440, 1920),
            },
        )
    return adata


def test_reader_declines_files_that_are_not_spatialpaths(shared, tmp_path):
    assert get_reader(str(shared("squidpy_testdata", "test_data.h5ad"))) is None  # AnnData, not ours
    assert get_reader(str(shared("bodenmiller_imc_testdata", "steinbock", "cells.h5ad"))) is None
    assert get_reader(str(shared("stardist_sample_images", "img2d.tif"))) is None  # TIFF without pixel size
    (tmp_path / "fake.h5ad").write_text("not hdf5")
    assert get_reader(str(tmp_path / "fake.h5ad")) is None
    assert get_reader(str(tmp_path)) is None  # a folder that is no spatialpath output
    assert get_reader(str(tmp_path / "missing.ome.tif")) is None
    assert get_reader(object()) is None  # never raises


def test_reader_codex_h5ad_one_layer_per_image(codex_cells, tmp_path, make_napari_viewer_proxy):
    path = tmp_path / "codex.h5ad"
    write_h5ad(codex_cells, path)
    reader = get_reader(str(path))
    assert reader is not None
    layers = reader(str(path))
    assert [kw["name"] for _, kw, _ in layers] == [f"cells {r}" for r in REGIONS]
    assert [kw.get("visible", True) for _, kw, _ in layers] == [True, False, False]
    for (data, kw, _), r in zip(layers, REGIONS, strict=True):
        rows = codex_cells.obs["image_id"] == r
        np.testing.assert_allclose(data, codex_cells.obsm["spatial"][rows.to_numpy()][:, ::-1])
        assert kw["metadata"][_keys.IMAGE_ID] == r
        assert kw["metadata"][_keys.ADATA].n_obs == rows.sum()
    # one palette for every image: a type has the same colour in each layer
    first, second = layers[0][1], layers[1][1]
    ct = "tumor_cells"
    c1 = first["face_color"][(first["features"]["cell_type"] == ct).to_numpy()][0]
    c2 = second["face_color"][(second["features"]["cell_type"] == ct).to_numpy()][0]
    np.testing.assert_array_equal(c1, c2)
    viewer = make_napari_viewer_proxy()
    added = add_layers(viewer, layers)
    assert [ly.visible for ly in added] == [True, False, False]


def test_reader_vectra_component_image(shared, make_napari_viewer_proxy):
    path = shared("phenoptr_vectra_mif", "FIHC4_IM3_2", "FIHC4__0929309_HP_IM3_2_component_data.tif")
    reader = get_reader(str(path))
    assert reader is not None
    ((data, kw, kind),) = reader(str(path))
    ref = read_image(path)
    assert kind == "image"
    assert kw["name"] == [str(c) for c in ref.c.values]  # channel names from the inForm metadata
    ps = ref.attrs["pixel_size_um"]
    assert kw["scale"] == (ps, ps)
    viewer = make_napari_viewer_proxy()
    layers = add_layers(viewer, [(data, kw, kind)])
    assert len(layers) == ref.sizes["c"]
    world = layers[0].data_to_world((100, 200))
    np.testing.assert_allclose(world, [float(ref.y[100]), float(ref.x[200])])
    for layer, ch in zip(layers, ref.values, strict=True):  # explicit limits from the data, not the dtype
        assert layer.contrast_limits == pytest.approx(np.percentile(ch, [0.5, 99.9]), rel=1e-5)


def _pipeline_output(root, cells: ad.AnnData, with_regions: bool = True):
    """A ``spatialpath run`` output folder: per-image results in the store, sheet, manifest."""
    from spatialpath.pipeline._store import ImageStore

    inputs = root / "inputs"
    inputs.mkdir(parents=True)
    store = ImageStore(root / "results")
    rows = []
    for r in REGIONS:
        sub = cells[cells.obs["image_id"] == r]
        xy = sub.obsm["spatial"]
        table = pd.DataFrame(
            {
                "cell_id": sub.obs_names,
                "cell_type": sub.obs["cell_type"].astype(str),
                "x": xy[:, 0],
                "y": xy[:, 1],
            }
        )
        store.write_result(("S_" + r, r), "f" * 64, {"cells": table})
        row = {
            "patient_id": "P",
            "sample_id": "S_" + r,
            "image_id": r,
            "path": "x.h5ad",
            "technology": "codex",
        }
        if with_regions:
            box = shapely.box(*xy.min(0), *xy.max(0))
            write_geojson(make_regions(["tissue"], [box], image_id=r), inputs / f"{r}.geojson")
            row["regions_path"] = f"{r}.geojson"
        rows.append(row)
    pd.DataFrame(rows).to_csv(inputs / "samples.csv", index=False)
    manifest = {"command": "spatialpath run run.yaml", "config": {"samples": str(inputs / "samples.csv")}}
    (root / "results" / "manifest.json").write_text(json.dumps(manifest))
    return root / "results"


def test_reader_pipeline_output_folder(codex_cells, tmp_path, make_napari_viewer_proxy):
    results = _pipeline_output(tmp_path, codex_cells)
    for folder in (results, tmp_path):  # the output folder, or a demo folder holding it in results/
        reader = get_reader(str(folder))
        assert reader is not None
        layers = reader(str(folder))
        kinds = [(kind, kw["name"]) for _, kw, kind in layers]
        assert kinds[:2] == [("shapes", f"compartments {REGIONS[0]}"), ("points", f"cells {REGIONS[0]}")]
        assert len(layers) == 2 * len(REGIONS)
    points = [layer for layer in layers if layer[2] == "points"]
    for (data, kw, _), r in zip(points, REGIONS, strict=True):
        rows = (codex_cells.obs["image_id"] == r).to_numpy()
        np.testing.assert_allclose(data, codex_cells.obsm["spatial"][rows][:, ::-1])
        assert kw["features"]["cell_type"].tolist() == codex_cells.obs["cell_type"][rows].astype(str).tolist()
    shapes = [layer for layer in layers if layer[2] == "shapes"]
    regions = shapes[0][1]["metadata"][_keys.REGIONS]
    assert regions["image_id"].tolist() == [REGIONS[0]]
    viewer = make_napari_viewer_proxy()
    added = add_layers(viewer, layers)
    assert sum(ly.visible for ly in added) == 2


def test_reader_demo_input_folder(codex_cells, tmp_path):
    write_h5ad(codex_cells, tmp_path / "cells.h5ad")
    (tmp_path / "manifest.json").write_text(json.dumps({"command": "spatialpath demo --input x"}))
    layers = get_reader(str(tmp_path))(str(tmp_path))
    assert len(layers) == len(REGIONS)
