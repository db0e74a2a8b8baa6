"""Inflamed / excluded / desert on planted configurations of the simulator."""

from __future__ import annotations

import pytest

import spatialpath.metrics as spm
from spatialpath.datasets import density_table, simulate_tissue


def _call(tissue, make_regions, **params):
    t = spm.compute(tissue.adata, make_regions(tissue.adata), ["immune_phenotype", "density_ratio"],
                    params={"immune_phenotype": params} if params else None)  # fmt: skip
    call = t.query("metric == 'immune_phenotype'").iloc[0]
    ratio = t.query("metric == 'density_ratio' and cell_type == 'CD8 T'").iloc[0]["value"]
    return spm.PHENOTYPES[int(call["value"])], ratio, call


def test_planted_exclusion_reads_excluded(sim20k, make_regions):
    label, ratio, row = _call(sim20k, make_regions)
    assert label == "excluded"
    assert ratio < 0.2  # nests 25 vs stroma ~275 CD8/mm² (margin 1000, fibrotic 125)
    assert row["cell_type"] == "CD8 T"
    assert row["unit"] == "category"
    assert row["compartment"] == "tissue"


def test_no_exclusion_is_still_excluded_because_the_margin_is_rich(make_regions):
    """cd8_exclusion=1 makes nests equal to *fibrotic* stroma (125/mm²), but the stromal compartment
    also holds the CD8-rich invasive margin (1000/mm²), so tumour/stroma ≈ 0.3-0.45 (depending on the
    margin's share of the stroma) < 0.5: excluded. The call reads the compartments, not the zones."""
    label, ratio, _ = _call(simulate_tissue(seed=5, n_cells=20_000, cd8_exclusion=1.0), make_regions)
    assert 0.2 < ratio < 0.5  # measured 0.285 (seed 5)
    assert label == "excluded"


def test_infiltrated_tumour_reads_inflamed(make_regions):
    label, ratio, _ = _call(simulate_tissue(seed=5, n_cells=20_000, cd8_exclusion=4.0), make_regions)
    assert ratio > 1
    assert label == "inflamed"


def test_few_cd8_reads_desert(make_regions):
    d = density_table()
    d["CD8 T"] *= 0.03  # < 50 CD8/mm² everywhere
    label, _, row = _call(simulate_tissue(seed=5, n_cells=20_000, density=d), make_regions)
    assert label == "desert"
    assert row["n_cells_a"] + row["n_cells_b"] > 0


def test_thresholds_are_parameters(sim20k, make_regions):
    label, _, row = _call(sim20k, make_regions, excluded_ratio=0.01)
    assert label == "inflamed"
    assert '"excluded_ratio":0.01' in row["parameters"]
    label, _, _ = _call(sim20k, make_regions, desert_density=10_000.0)
    assert label == "desert"


def test_call_function_boundaries():
    assert spm.phenotype_call(49.9, 49.9) == 0
    assert spm.phenotype_call(50, 100) == 2  # ratio exactly 0.5 is not excluded
    assert spm.phenotype_call(49, 100) == 1
    with pytest.raises(KeyError):
        spm.PHENOTYPES[3]
