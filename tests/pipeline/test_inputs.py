"""Reading one image of the sample sheet: cells in µm, ids, cell types and compartments, on real data.

Independent references: pandas on the raw CSV files (cells per image, raw pixels × pixel size),
tifffile + numpy pixel counting for the mask areas, log1p of the raw means for the gating.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
import tifffile

from spatialpath.pipeline._inputs import InputError, input_files, read_image_cells, read_image_regions
from spatialpath.pipeline._validate import load_config

pytestmark = pytest.mark.realdata

CODEX_PX = 0.377  # Schürch et al. 2020, as in tests/test_realdata_core.py
CODEX_IMAGES = ["reg001_A", "reg001_B", "reg010_A"]


def config(tmp_path, sheet: str, yaml: str = ""):
    (tmp_path / "samples.csv").write_text(sheet.lstrip("\n"), encoding="utf-8")
    (tmp_path / "run.yaml").write_text(
        f"version: 1\nsamples: samples.csv\noutput: out\n{yaml}", encoding="utf-8"
    )
    return load_config(tmp_path / "run.yaml")


@pytest.fixture(scope="module")
def codex_raw(shared):
    return pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))


def test_codex_images_of_one_big_table(shared, tmp_path, codex_raw):
    path = shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz")
    raw = codex_raw[codex_raw["imageID"].isin(CODEX_IMAGES)]
    patient = raw.groupby("imageID")["ID"].first()
    rows = "\n".join(
        f"{patient[i]},{i[:6]},{i},{path},codex,{CODEX_PX},imageID,arm{k}" for k, i in enumerate(CODEX_IMAGES)
    )
    cfg = config(
        tmp_path, "patient_id,sample_id,image_id,path,technology,pixel_size_um,image_column,arm\n" + rows
    )
    expected_n = raw.groupby("imageID").size()
    for k, (line, row) in enumerate(cfg.sample_sheet.iterrows()):
        image = CODEX_IMAGES[k]
        cells = read_image_cells(cfg, row)
        ref = raw[raw["imageID"] == image]
        assert cells.n_obs == expected_n[image] == len(ref)
        np.testing.assert_allclose(
            cells.obsm["spatial"], ref[["x", "y"]].to_numpy(float) * CODEX_PX, rtol=1e-12
        )
        assert cells.obs["cell_type"].astype(str).tolist() == ref["cellType"].tolist()
        obs = cells.obs.iloc[0]
        assert (obs["patient_id"], obs["sample_id"], obs["image_id"], obs["arm"]) == (
            str(patient[image]),
            image[:6],
            image,
            f"arm{k}",
        )
        assert cells.obs["image_id"].dtype == "category"
        meta = cells.uns["spatialpath"]["images"][image]
        assert (meta["pixel_size_um"], meta["technology"], meta["patient_id"]) == (
            CODEX_PX,
            "codex",
            str(patient[image]),
        )
        assert meta["source_files"] == [str(path)]
        assert input_files(row) == {"cells": path}
        regions = read_image_regions(cfg, row, cells)
        assert regions["image_id"].tolist() == [image]
        assert regions["compartment"].tolist() == ["tissue"]
        inside = shapely.contains_xy(regions.geometry.iloc[0], *cells.obsm["spatial"].T).mean()
        assert inside >= 0.99
        assert regions.area.iloc[0] <= 1920 * 1440 * CODEX_PX**2 * 1.05  # within one CODEX tile
        print(
            f"{image}: {cells.n_obs} cells (line {line}), "
            f"tissue {regions.area.iloc[0] / 1e6:.3f} mm², inside {inside:.4f}"
        )


def test_imc_image_ids_from_the_sheet_rule(shared, tmp_path):
    path = shared("spicyR_damond_t1d_imc", "diabetesData_cells.csv.gz")
    raw = pd.read_csv(path)
    ref = raw[raw["imageID"] == "A09"]
    cfg = config(
        tmp_path,
        f"patient_id,sample_id,image_id,path,technology,pixel_size_um,image_column,stage\n"
        f"donor6362,slideA,A09,{path},imc,1.0,imageID,Onset\n",
        "phenotype: {column: cellType}\n",
    )
    cells = read_image_cells(cfg, cfg.sample_sheet.iloc[0])
    assert cells.n_obs == len(ref) == 2124
    np.testing.assert_array_equal(cells.obsm["spatial"], ref[["x", "y"]].to_numpy(float))  # 1 µm per pixel
    assert set(cells.obs["patient_id"]) == {"donor6362"}  # the sheet's id, not the file's `case`
    assert cells.obs["case"].astype(str).unique().tolist() == ["6362"]  # kept under its own name
    assert cells.obs["cell_type"].astype(str).tolist() == ref["cellType"].tolist()


def test_vectra_masks_margins_and_phenotype_column(shared, tmp_path):
    folder = shared("phenoptr_vectra_mif", "sample_Set4")
    mask = folder / "Set4_1-6plex_[16142,55840]_binary_seg_maps.tif"
    table = folder / "sample_cell_seg_data.csv.gz"
    cfg = config(
        tmp_path,
        f'patient_id,sample_id,image_id,path,technology,pixel_size_um,mask_path\nP1,S1,set4,{table},vectra,0.5,"{mask}"\n',
        "phenotype: {column: Phenotype}\n"
        "compartments:\n  source: masks\n  categories: [Tumor, Stroma, Background]\n  background: 2\n"
        "  margins: {tumour: Tumor, widths_um: [25, 25]}\n",
    )
    row = cfg.sample_sheet.iloc[0]
    raw = pd.read_csv(table)
    cells = read_image_cells(cfg, row)
    assert cells.n_obs == len(raw) == 6072
    np.testing.assert_allclose(
        cells.obsm["spatial"], raw[["Cell X Position", "Cell Y Position"]].to_numpy(float)
    )
    assert cells.obs["cell_type"].value_counts().to_dict() == raw["Phenotype"].value_counts().to_dict()
    regions = read_image_regions(cfg, row, cells)
    comps = regions["compartment"].tolist()
    assert comps[:2] == ["Tumor", "Stroma"]
    assert {"margin_inner", "margin_outer", "margin", "tumour_core"} <= set(comps)
    pixels = np.bincount(tifffile.imread(mask, key=0).ravel(), minlength=3)
    by_name = regions.set_index("compartment").area
    np.testing.assert_allclose([by_name["Tumor"], by_name["Stroma"]], pixels[:2] * 0.25, rtol=1e-12)
    assert by_name["margin_inner"] + by_name["tumour_core"] == pytest.approx(by_name["Tumor"], rel=1e-6)
    assert input_files(row) == {"cells": table, "mask": mask}


def test_gates_and_workflow_on_raw_cycif(shared, tmp_path):
    folder = shared("scimap_exemplar001", "scimapExampleData")
    table = folder / "exemplar-001--unmicst_cell.csv"
    cfg = config(
        tmp_path,
        f"patient_id,sample_id,image_id,path,technology,pixel_size_um\nP1,S1,ex1,{table},cycif,0.65\n",
        f"phenotype:\n  gates: {folder / 'manual_gates.csv'}\n"
        f"  workflow: {folder / 'phenotype_workflow.csv'}\n  log: true\n",
    )
    cells = read_image_cells(cfg, cfg.sample_sheet.iloc[0])
    raw = pd.read_csv(table)
    assert cells.n_obs == len(raw) == 11_201
    np.testing.assert_allclose(cells.obsm["spatial"], raw[["X_centroid", "Y_centroid"]].to_numpy() * 0.65)
    labels = cells.obs["cell_type"].astype(str).to_numpy()
    gates = pd.read_csv(folder / "manual_gates.csv").set_index("markers").iloc[:, 0]
    for name, marker in {"ECAD+": "ECAD", "Immune": "CD45", "SMA+": "SMA"}.items():
        v = np.log1p(raw[marker].to_numpy(float))
        closest = v[np.argmin(np.abs(v - gates[marker]))]  # scimap: positive from the value nearest the gate
        assert (v[labels == name] >= closest).all(), name
        assert (labels == name).sum() > 50, name


def test_read_errors_name_the_sheet_line(shared, tmp_path):
    table = shared("scimap_exemplar001", "scimapExampleData", "exemplar-001--unmicst_cell.csv")
    cfg = config(
        tmp_path,
        f"patient_id,sample_id,image_id,path,technology,pixel_size_um\nP1,S1,ex1,{table},cycif,0.65\n",
    )
    with pytest.raises(
        InputError, match=r"^samples.csv:2 \(image 'ex1'\): no cell-type column in the cells; set phenotype"
    ):
        read_image_cells(cfg, cfg.sample_sheet.iloc[0])
