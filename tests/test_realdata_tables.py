"""The CODEX colorectal cohort end to end: tissue from cells -> metrics -> one wide row per core -> files.

Acceptance test of the biomarker-table issue: 140 cores of 35 patients, densities, proportions,
mixing score, NN distances and CN frequencies in one wide table, written to CSV, Parquet and Excel
and re-read value-identically. The data's patient groups are coded 1/2 (their mapping to CLR/DII
is unverified), so they are kept as published and never relabelled.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import shapely

from spatialpath.export import biomarker_table, read_tables, write_tables
from spatialpath.gr import cellular_neighborhoods
from spatialpath.regions import tissue_from_cells

#: CODEX tile pixel size from the original publication (SOURCE.md: ≈0.377 µm/px).
CODEX_PIXEL_SIZE_UM = 0.377
METRICS = [
    "count",
    "proportion",
    "density",
    "mixing_score",
    "nn_distance_median",
    "fraction_within_radius",
    "cn_frequency",
]

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def codex_tables(shared, tmp_path_factory):
    cells = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))
    obs = pd.DataFrame(
        {
            "patient_id": cells["ID"].astype(str).astype("category"),
            "sample_id": cells["imageID"].astype(str).astype("category"),  # one core per specimen
            "image_id": cells["imageID"].astype(str).astype("category"),
            "group": cells["Group"].astype(str).astype("category"),  # coded 1/2 as published
            "cell_type": cells["cellType"].astype("category"),
        }
    )
    obs.index = [f"c{i}" for i in range(len(cells))]
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = cells[["x", "y"]].to_numpy(float) * CODEX_PIXEL_SIZE_UM
    cellular_neighborhoods(adata, "cell_type")  # Schürch preset -> obs["cn"]
    regions = tissue_from_cells(adata)
    long, wide = biomarker_table(adata, regions, metrics=METRICS, metadata=("group",))
    out = tmp_path_factory.mktemp("codex_tables")
    write_tables(long, wide, out, formats=("csv", "parquet", "xlsx"))
    return adata, regions, long, wide, out


def test_one_wide_row_per_core_with_the_requested_metrics(codex_tables):
    adata, regions, long, wide, _ = codex_tables
    assert len(wide) == 140
    assert wide["image_id"].is_unique
    assert wide["patient_id"].nunique() == 35
    assert set(wide["group"].astype(str)) == {"1", "2"}  # never relabelled
    for metric in METRICS:
        assert any(c.startswith(f"{metric}__") for c in wide.columns), metric
    # densities equal the CD8 cells inside each core's tissue polygon over its area, computed here
    # with shapely alone (not spatialpath's membership or area helpers)
    xy = np.asarray(adata.obsm["spatial"], float)
    image_of = adata.obs["image_id"].astype(str).to_numpy()
    is_cd8 = (adata.obs["cell_type"] == "cd8_t_cells").to_numpy()
    ref = {}
    for image, sub in regions.groupby(regions["image_id"].astype(str)):
        tissue = shapely.union_all(sub.geometry.to_numpy())
        sel = (image_of == image) & is_cd8
        n = int(shapely.contains_xy(tissue, xy[sel, 0], xy[sel, 1]).sum())
        ref[image] = n / (shapely.area(tissue) / 1e6)
    ref = pd.Series(ref)
    col = [c for c in wide.columns if c == "density__tissue__cd8_t_cells"]
    assert len(col) == 1, col
    got = wide.set_index(wide["image_id"].astype(str))[col[0]]
    np.testing.assert_allclose(got.loc[ref.index].to_numpy(float), ref.to_numpy(), rtol=1e-12)
    # proportions of each core's cell types sum to 1
    prop = long[(long.metric == "proportion") & (long.compartment == "tissue")]
    np.testing.assert_allclose(prop.groupby("image_id", observed=True)["value"].sum(), 1.0, rtol=1e-12)
    # CN frequencies per core sum to 1 (every cell has a CN)
    cnf = long[(long.metric == "cn_frequency") & (long.compartment == "tissue")]
    np.testing.assert_allclose(cnf.groupby("image_id", observed=True)["value"].sum(), 1.0, rtol=1e-9)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_tables_reread_value_identically(codex_tables, fmt):
    *_, long, wide, out = codex_tables
    long2, wide2 = read_tables(out, fmt)
    pd.testing.assert_frame_equal(long2, long.reset_index(drop=True), check_exact=True)
    pd.testing.assert_frame_equal(wide2, wide.reset_index(drop=True), check_exact=True)
