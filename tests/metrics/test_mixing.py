"""Mixing score vs a hand count; the normalised form is about 1 under random labelling."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

import spatialpath.metrics as spm
from spatialpath.datasets import simulate_tissue


def test_mixing_score_on_a_tiny_graph_counted_by_hand():
    #  I0(0,0) -- I1(10,0) -- T2(20,0)      radius 10.5 µm: edges I0-I1, I1-T2, I0-T3, T2-T4, I1-T4?
    #  |                                     (I1-T4: (10,0)-(20,10) = 14.1 µm: no)
    #  T3(0,10)            T4(20,10)         so I–T edges = {I1-T2, I0-T3} = 2, I–I edges = {I0-I1} = 1
    xy = [[0, 0], [10, 0], [20, 0], [0, 10], [20, 10], [500, 500]]
    types = ["I", "I", "T", "T", "T", "I"]  # the last immune cell is isolated
    img = spm.ImageData.from_arrays(xy, types, {"tissue": shapely.box(-10, -10, 600, 600)})
    rows = {(r["cell_type"], r["cell_type_b"]): r for r in spm.mixing_score(img, radius_um=10.5, min_cells=1)}
    assert rows[("I", "T")]["value"] == 2 / 1
    assert rows[("T", "I")]["value"] == 2 / 1  # T-T edges: T2-T4 only
    assert ("I", "I") not in rows  # a type with itself is not a mixing score
    n = {
        (r["cell_type"], r["cell_type_b"]): r
        for r in spm.mixing_score_normalised(img, radius_um=10.5, min_cells=1)
    }
    assert n[("I", "T")]["value"] == pytest.approx(0.5 * 2.0 * (3 - 1) / 3)  # ½·MS·(n_I − 1)/n_T
    assert spm.interaction_counts(np.array(xy, float), np.array([0, 0, 1, 1, 1, 0]), 2, 10.5).tolist() == [
        [1, 2], [2, 1],
    ]  # fmt: skip


def test_zero_reference_pairs_and_min_cells():
    img = spm.ImageData.from_arrays(
        [[0, 0], [100, 0], [1, 0]], ["I", "I", "T"], {"tissue": shapely.box(-5, -5, 200, 5)}
    )
    r = spm.mixing_score(img, radius_um=5, min_cells=1)[0]
    assert r["status"] == "zero_denominator"
    assert np.isnan(r["value"])
    r = spm.mixing_score(img, radius_um=5)[0]  # default min_cells = 10
    assert r["status"] == "below_min_cells"
    assert r["n_cells_a"] == 2
    assert r["n_cells_b"] == 1


def test_normalised_mixing_score_is_one_under_random_labelling():
    values = []
    for seed in range(4):
        a = simulate_tissue(seed=seed, n_cells=5000, mode="null").adata
        tissue = shapely.from_wkt(a.uns["simulation"]["regions_wkt"]["tissue"])
        img = spm.ImageData.from_arrays(a.obsm["spatial"], a.obs["cell_type"], {"tissue": tissue})
        values += [r["value"] for r in spm.mixing_score_normalised(img, radius_um=30) if r["status"] == "ok"]
    assert len(values) > 100
    assert np.mean(values) == pytest.approx(1.0, abs=0.05)
