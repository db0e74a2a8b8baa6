"""simulate_cohort: design, planted arm effect, patient random effects and order-free seeds."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from spatialpath.datasets import NEIGHBOURHOODS, density_table, simulate_cohort


def _cd8_log2_excess(cohort):
    """log2(observed CD8 T count / count expected from the base density table), per image.

    Cells are assigned to neighbourhoods by point-in-polygon here; the expectation uses the
    documented base densities (no arm or random effect), so the result estimates the image's
    log2 multiplier.
    """
    base = density_table()["CD8 T"]
    out = {}
    for image_id, truth in cohort.uns["simulation"]["images"].items():
        sel = (cohort.obs["image_id"] == image_id).to_numpy() & (
            cohort.obs["cell_type"] == "CD8 T"
        ).to_numpy()
        xy = cohort.obsm["spatial"][sel]
        observed = expected = 0.0
        for zone in NEIGHBOURHOODS:
            poly = shapely.from_wkt(truth["regions_wkt"][zone])
            observed += shapely.contains_xy(poly, xy[:, 0], xy[:, 1]).sum()
            expected += base[zone] * poly.area * 1e-6
        out[image_id] = np.log2(observed / expected)
    return out


def _arm_difference(cohort):
    excess = _cd8_log2_excess(cohort)
    arm = cohort.uns["simulation"]["design"].set_index("image_id")["arm"]
    treated = np.mean([v for k, v in excess.items() if arm[k] == "treatment"])
    control = np.mean([v for k, v in excess.items() if arm[k] == "control"])
    return treated - control


def test_design_and_ids():
    c = simulate_cohort(n_patients=5, samples_per_patient=2, images_per_sample=2, n_cells=300, progress=False)
    design = c.uns["simulation"]["design"]
    assert len(design) == 20
    assert design["image_id"].is_unique
    assert design.groupby("patient_id")["arm"].nunique().eq(1).all()
    assert design.drop_duplicates("patient_id")["arm"].tolist() == ["control", "treatment"] * 2 + ["control"]
    assert c.obs.groupby("image_id", observed=True).size().eq(300).all()
    assert set(c.uns["spatialpath"]["images"]) == set(design["image_id"])
    # a patient's samples share the patient effect; a sample's images share everything
    assert design.groupby("patient_id")["patient_effect_log2"].nunique().eq(1).all()
    assert design.groupby("sample_id")["log2_multiplier"].nunique().eq(1).all()
    assert c.obs_names.is_unique
    assert c.uns["simulation"]["cells"].index.equals(c.obs_names)


def test_planted_arm_effect_recovered():
    """No random effects: log2(treated / control) CD8 density equals the planted effect within 20 %."""
    c = simulate_cohort(
        n_patients=6, effect=1.0, patient_sd=0, sample_sd=0, n_cells=8_000, seed=1, progress=False
    )
    assert _arm_difference(c) == pytest.approx(1.0, rel=0.2)


def test_negative_effect_has_negative_sign():
    c = simulate_cohort(
        n_patients=4, effect=-1.0, patient_sd=0, sample_sd=0, n_cells=8_000, seed=2, progress=False
    )
    assert _arm_difference(c) == pytest.approx(-1.0, rel=0.2)


def test_patient_random_effects_follow_the_truth():
    c = simulate_cohort(
        n_patients=12, effect=0.0, patient_sd=0.6, sample_sd=0.0, n_cells=6_000, seed=3, progress=False
    )
    design = c.uns["simulation"]["design"].set_index("image_id")
    excess = _cd8_log2_excess(c)
    observed = np.array([excess[k] for k in design.index])
    assert np.corrcoef(observed, design["patient_effect_log2"])[0, 1] > 0.9
    np.testing.assert_allclose(observed, design["log2_multiplier"], atol=0.25)
    # the realised patient effects have the requested spread (12 draws: loose bounds)
    assert 0.3 < design["patient_effect_log2"].std() < 1.0


def test_adding_patients_changes_no_existing_image():
    small = simulate_cohort(n_patients=2, n_cells=400, seed=9, progress=False)
    big = simulate_cohort(n_patients=3, n_cells=400, seed=9, progress=False)
    for image_id in small.obs["image_id"].cat.categories:
        a = small[small.obs["image_id"] == image_id]
        b = big[big.obs["image_id"] == image_id]
        np.testing.assert_array_equal(a.obsm["spatial"], b.obsm["spatial"])
        np.testing.assert_array_equal(a.X, b.X)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_patients": 0}, "must all be >= 1"),
        ({"arms": ("a", "a")}, "arms must be one or more distinct names"),
        ({"effect_cell_type": "NK"}, "effect_cell_type must be one of"),
        ({"patient_sd": -1}, "patient_sd and sample_sd must be >= 0"),
    ],
)
def test_bad_design(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_cohort(**{"n_cells": 200, "progress": False, **kwargs})


def test_cohort_image_can_be_rebuilt_with_its_image():
    """An image of a cohort is reproduced, with pixels, from its stored seed and density."""
    from spatialpath.datasets import simulate_tissue

    c = simulate_cohort(n_patients=2, n_cells=500, seed=4, progress=False)
    truth = c.uns["simulation"]["images"]["P002_S1_I1"]
    ss = np.random.SeedSequence(int(truth["seed"]["entropy"]), spawn_key=tuple(truth["seed"]["spawn_key"]))
    t = simulate_tissue(ss, n_cells=500, density=truth["planted_density_per_mm2"], image_id="P002_S1_I1")
    original = c[c.obs["image_id"] == "P002_S1_I1"]
    np.testing.assert_array_equal(t.adata.obsm["spatial"], original.obsm["spatial"])
    assert t.image.sizes["c"] == 12
