"""cell_counts against an independent pandas crosstab and the stored tissue areas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spatialpath.datasets import CELL_TYPES, simulate_cohort
from spatialpath.export import cell_counts


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(
        n_patients=3, samples_per_patient=2, images_per_sample=2, n_cells=600, progress=False
    )


def test_counts_match_crosstab(cohort):
    t = cell_counts(cohort, level="sample_id", metadata=["arm"])
    ref = pd.crosstab(cohort.obs["sample_id"].astype(str), cohort.obs["cell_type"].astype(str))
    got = t.pivot(index="sample_id", columns="cell_type", values="n_cells")
    got.columns = got.columns.astype(str)
    pd.testing.assert_frame_equal(
        got.loc[ref.index, ref.columns], ref, check_names=False, check_dtype=False, check_index_type=False
    )
    assert len(t) == 6 * len(CELL_TYPES)  # every type in every sample, zeros included
    assert t.groupby("sample_id")["proportion"].sum().to_numpy() == pytest.approx(1.0)
    assert (t.groupby("sample_id")["arm"].nunique() == 1).all()
    assert list(t.columns[:3]) == ["patient_id", "sample_id", "cell_type"]


def test_area_is_sum_of_image_areas(cohort):
    t = cell_counts(cohort, level="sample_id")
    images = cohort.uns["spatialpath"]["images"]
    s = "P001_S1"
    expected = (images["P001_S1_I1"]["tissue_area_um2"] + images["P001_S1_I2"]["tissue_area_um2"]) * 1e-6
    row = t[(t["sample_id"] == s) & (t["cell_type"] == "Tumour")].iloc[0]
    assert row["tissue_area_mm2"] == pytest.approx(expected)
    n = ((cohort.obs["sample_id"] == s) & (cohort.obs["cell_type"] == "Tumour")).sum()
    assert row["density_per_mm2"] == pytest.approx(n / expected)


def test_structural_zero_and_missing_area(cohort):
    sub = cohort[cohort.obs["cell_type"] != "B cell"].copy()
    del sub.uns["spatialpath"]["images"]["P002_S1_I1"]["tissue_area_um2"]
    t = cell_counts(sub, level="image_id")
    b = t[t["cell_type"] == "B cell"]
    assert (b["n_cells"] == 0).all()
    assert (b["proportion"] == 0).all()
    assert (b.loc[b["image_id"] != "P002_S1_I1", "density_per_mm2"] == 0).all()
    assert t.loc[t["image_id"] == "P002_S1_I1", "density_per_mm2"].isna().all()


def test_patient_level(cohort):
    t = cell_counts(cohort, level="patient_id")
    assert list(t.columns[:2]) == ["patient_id", "cell_type"]
    assert t["n_cells"].sum() == cohort.n_obs
    assert t.groupby("patient_id")["n_cells_total"].first().tolist() == [2400, 2400, 2400]


def test_errors(cohort):
    with pytest.raises(ValueError, match="level must be one of"):
        cell_counts(cohort, level="region")
    with pytest.raises(ValueError, match=r"metadata columns \['label'\] vary within a sample_id"):
        cell_counts(cohort, metadata=["label"])
    with pytest.raises(ValueError, match=r"metadata columns \['nope'\] are not in adata.obs"):
        cell_counts(cohort, metadata=["nope"])
    bad = cohort.copy()
    bad.obs["cell_type"] = bad.obs["cell_type"].astype(str)
    with pytest.raises(ValueError, match="must be categorical"):
        cell_counts(bad)
    assert np.isfinite(cell_counts(cohort)["density_per_mm2"]).all()
