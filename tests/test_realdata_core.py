"""The data model on real data: the CODEX colorectal table (pixels) and the IMC diabetes table (µm)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from spatialpath.export import cell_counts
from spatialpath.model import DataModelError, set_image_metadata, validate_cells

pytestmark = pytest.mark.realdata

#: CODEX 20x pixel size, per Schürch et al. 2020 (SOURCE.md asks to verify); tile 1920 x 1440 px.
CODEX_PIXEL_SIZE_UM = 0.377
CODEX_TILE_SHAPE_PX = (1440, 1920)


@pytest.fixture(scope="module")
def codex(shared):
    cells = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))
    obs = pd.DataFrame(
        {
            "patient_id": cells["ID"].astype(str).astype("category"),
            "image_id": cells["imageID"].astype(str).astype("category"),
            "cell_type": cells["cellType"].astype("category"),
        }
    )
    obs.index = obs.index.astype(str)
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = cells[["x", "y"]].to_numpy(dtype=float)  # pixels, as published
    for image_id in a.obs["image_id"].cat.categories:
        set_image_metadata(
            a,
            {
                "image_id": image_id,
                "technology": "codex",
                "pixel_size_um": CODEX_PIXEL_SIZE_UM,
                "shape_px": CODEX_TILE_SHAPE_PX,
            },
        )
    return a


def test_codex_pixel_coordinates_are_refused_then_accepted_in_um(codex):
    with pytest.raises(DataModelError, match=r"look like pixels.*pixel_size_um \(0\.377\)"):
        validate_cells(codex, cluster_key="cell_type", library_key="image_id")
    um = codex.copy()
    um.obsm["spatial"] = codex.obsm["spatial"] * CODEX_PIXEL_SIZE_UM
    validate_cells(um, cluster_key="cell_type", library_key="image_id")


def test_codex_counts_per_patient_match_groupby(codex):
    t = cell_counts(codex, level="patient_id")
    assert t["n_cells"].sum() == 258_385
    assert t["patient_id"].nunique() == 35
    assert t["cell_type"].nunique() == 11
    ref = codex.obs.groupby(["patient_id", "cell_type"], observed=True).size()
    got = t.set_index(["patient_id", "cell_type"])["n_cells"]
    assert (got.loc[ref.index].to_numpy() == ref.to_numpy()).all()
    assert got.drop(ref.index).eq(0).all()  # the rest are structural zeros


def test_imc_table_in_um_passes(shared):
    cells = pd.read_csv(shared("spicyR_damond_t1d_imc", "diabetesData_cells.csv.gz"))
    xcol = next(c for c in cells.columns if c.lower() in ("x", "cell_x", "x_um"))
    ycol = next(c for c in cells.columns if c.lower() in ("y", "cell_y", "y_um"))
    obs = pd.DataFrame({"cell_type": cells["cellType"].astype("category")})
    obs.index = obs.index.astype(str)
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = cells[[xcol, ycol]].to_numpy(dtype=float)
    validate_cells(a, cluster_key="cell_type")
    assert np.isfinite(a.obsm["spatial"]).all()
    assert a.n_obs > 250_000
