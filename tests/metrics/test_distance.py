"""Nearest-neighbour distances vs scipy cKDTree, and censoring at the field edge."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from scipy.spatial import cKDTree

import spatialpath.metrics as spm
from spatialpath.model import DataModelError

W, H = 724.0, 543.0  # a CODEX core


@pytest.fixture(scope="module")
def field():
    rng = np.random.default_rng(0)
    n = 1500
    xy = rng.uniform([0, 0], [W, H], size=(n, 2))
    types = rng.choice(["Tumour", "CD8", "Rare"], size=n, p=[0.6, 0.39, 0.01])
    regions = {"tissue": shapely.box(0, 0, W, H), "tumour": shapely.box(0, 0, W / 2, H)}
    return (
        xy,
        types,
        spm.ImageData.from_arrays(xy, types, regions, categories=["Tumour", "CD8", "Rare", "Absent"]),
    )


def _reference(xy, types, a, b, focal_mask):
    """Brute force with cKDTree: A cells of the focal mask -> nearest other B cell; box edge distance."""
    ia = np.flatnonzero((types == a) & focal_mask)
    tb = np.flatnonzero(types == b)
    d, j = cKDTree(xy[tb]).query(xy[ia], k=2)
    d = np.where(tb[j[:, 0]] == ia, d[:, 1], d[:, 0])
    x, y = xy[ia, 0], xy[ia, 1]
    edge = np.minimum.reduce([x, W - x, y, H - y])
    return d, edge


@pytest.mark.parametrize(("a", "b"), [("CD8", "Tumour"), ("Tumour", "CD8"), ("CD8", "CD8"), ("Rare", "CD8")])
def test_nn_distances_match_ckdtree_and_box_edge(field, a, b):
    xy, types, img = field
    got = spm.nn_distances(img, a, b)
    d, edge = _reference(xy, types, a, b, np.ones(len(xy), bool))
    np.testing.assert_allclose(got["distance_um"], d, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["edge_distance_um"], edge, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got["censored"], d > edge)


def test_summaries_use_uncensored_cells_only(field):
    xy, types, img = field
    d, edge = _reference(xy, types, "Rare", "Tumour", xy[:, 0] <= W / 2)  # focal cells in the tumour half
    keep = d <= edge
    by_pair = lambda rows: {(r["cell_type"], r["cell_type_b"]): r for r in rows}  # noqa: E731
    mean = by_pair(spm.nn_distance_mean(img, "tumour"))[("Rare", "Tumour")]
    assert mean["value"] == pytest.approx(d[keep].mean())
    assert mean["n_cells_a"] == len(d)
    med = by_pair(spm.nn_distance_median(img, "tumour"))[("Rare", "Tumour")]
    assert med["value"] == pytest.approx(np.median(d[keep]))
    q = by_pair(spm.nn_distance_quantile(img, "tumour", q=0.25))[("Rare", "Tumour")]
    assert q["value"] == pytest.approx(np.quantile(d[keep], 0.25))
    cens = by_pair(spm.nn_censored_fraction(img, "tumour"))[("Rare", "Tumour")]
    assert cens["value"] == pytest.approx((~keep).mean())
    everything = by_pair(spm.nn_distance_mean(img, "tumour", exclude_censored=False))[("Rare", "Tumour")]
    assert everything["value"] == pytest.approx(d.mean())


def test_censoring_matters_for_sparse_targets(field):
    """Distances to a rare type are long, so many focal cells are nearer the edge: censored."""
    _, _, img = field
    cens = {(r["cell_type"], r["cell_type_b"]): r["value"] for r in spm.nn_censored_fraction(img)}
    assert cens[("Tumour", "Rare")] > 0.2 > cens[("Tumour", "CD8")]


def test_fraction_within_radius_with_border_rule(field):
    xy, types, img = field
    r = 15.0
    d, edge = _reference(xy, types, "CD8", "Tumour", np.ones(len(xy), bool))
    known = (d <= r) | (edge >= r)
    rows = {(x["cell_type"], x["cell_type_b"]): x for x in spm.fraction_within_radius(img, radius_um=r)}
    assert rows[("CD8", "Tumour")]["value"] == pytest.approx((d[known] <= r).mean())
    assert 0 < rows[("CD8", "Tumour")]["value"] < 1


def test_absent_target_and_lonely_type_are_undefined(field):
    _, _, img = field
    rows = {(x["cell_type"], x["cell_type_b"]): x for x in spm.nn_distance_mean(img)}
    assert rows[("CD8", "Absent")]["status"] == "below_min_cells"
    assert np.isnan(rows[("CD8", "Absent")]["value"])
    assert rows[("Absent", "CD8")]["status"] == "below_min_cells"
    one = spm.ImageData.from_arrays([[10, 10], [20, 20]], ["A", "B"], {"tissue": shapely.box(0, 0, 30, 30)})
    rows = {(x["cell_type"], x["cell_type_b"]): x for x in spm.nn_distance_mean(one)}
    assert rows[("A", "A")]["status"] == "below_min_cells"  # a single A cell has no other A
    rows = {(x["cell_type"], x["cell_type_b"]): x for x in spm.nn_distance_mean(one, min_cells_a=2)}
    assert rows[("A", "B")]["status"] == "below_min_cells"


def test_all_censored_gives_censored_status():
    # the only B cell is 50 µm away while every A cell is 5 µm from the edge
    img = spm.ImageData.from_arrays([[5, 50], [5, 60], [60, 50]], ["A", "A", "B"],
                                    {"tissue": shapely.box(0, 0, 100, 100)})  # fmt: skip
    r = {(x["cell_type"], x["cell_type_b"]): x for x in spm.nn_distance_median(img)}[("A", "B")]
    assert r["status"] == "censored"
    assert np.isnan(r["value"])


def test_unknown_type_is_refused(field):
    _, _, img = field
    with pytest.raises(DataModelError, match=r"parameter a='CD4' is not a cell type; expected one of"):
        spm.nn_distances(img, "CD4", "CD8")
