"""Cells ↔ Visium spots: planted ground truth, a brute-force distance-matrix reference, real Visium spots."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from spatialpath.align import Transform, apply_transform
from spatialpath.align._transfer import VISIUM_SPOT_DIAMETER_UM, cells_to_spots, spots_to_cells
from spatialpath.keys import Key
from spatialpath.model import DataModelError, ImageMetadata, set_image_metadata

PITCH = 100.0
TYPES = ["T", "B", "Tumour", "Ghost"]  # "Ghost" has no cell: it must still be a column
MARKERS = ["CD3", "CD20", "panCK"]


def hex_spots(n_rows=4, n_cols=5, *, visium=True, sparse=True) -> ad.AnnData:
    """Spots on a hexagonal 100 µm array (odd rows shifted by half a pitch), genes g0..g5."""
    r, c = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    x = 1000.0 + c.ravel() * PITCH + (r.ravel() % 2) * PITCH / 2
    y = 2000.0 + r.ravel() * PITCH * np.sqrt(3) / 2
    n = len(x)
    expr = np.arange(n)[:, None] * 10.0 + np.arange(6)[None, :]  # row i = 10 i + gene index
    expr[::3, 2] = 0.0
    obs = pd.DataFrame({"image_id": "lib"}, index=[f"s{i}" for i in range(n)])
    spots = ad.AnnData(
        sp.csr_matrix(expr) if sparse else expr, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(6)])
    )
    spots.obsm["spatial"] = np.column_stack([x, y])
    if visium:
        set_image_metadata(spots, ImageMetadata(image_id="lib", technology="visium", pixel_size_um=4.0))
    return spots


def planted_cells(spots: ad.AnnData, seed: int = 0) -> tuple[ad.AnnData, pd.DataFrame]:
    """Cells at known offsets from each spot centre; truth says which lie in their spot's 55 µm disc."""
    rng = np.random.default_rng(seed)
    radii = [0.0, 10.0, 20.0, 27.0, 27.5, 27.6, 35.0, 45.0]  # disc radius 27.5: the first five are in
    rows = []
    for i, (sx, sy) in enumerate(spots.obsm["spatial"]):
        for k, rad in enumerate(radii):
            if i % 4 == 3 and rad <= 27.5:
                continue  # every 4th spot gets no cell inside: n_cells 0, NaN fractions and means
            angle = 0.0 if rad == 27.5 else rng.uniform(0, 2 * np.pi)  # on the circle exactly, along x
            rows.append(
                {
                    "cell": f"c{i}_{k}",
                    "x": sx + rad * np.cos(angle),
                    "y": sy + rad * np.sin(angle) if angle else sy,
                    "truth_spot": f"s{i}" if rad <= 27.5 else None,
                    "type": rng.choice(TYPES[:3]),
                }
            )
    truth = pd.DataFrame(rows).set_index("cell")
    truth = truth.iloc[rng.permutation(len(truth))]  # cells not in spot order
    x = rng.gamma(2.0, 1.5, size=(len(truth), len(MARKERS)))
    obs = pd.DataFrame({"cell_type": pd.Categorical(truth["type"], categories=TYPES)}, index=truth.index)
    cells = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=MARKERS))
    cells.obsm["spatial"] = truth[["x", "y"]].to_numpy()
    truth[MARKERS] = x
    return cells, truth


@pytest.fixture
def spots():
    return hex_spots()


@pytest.fixture
def planted(spots):
    return planted_cells(spots)


def off_the_rim(cells):
    """The planted cells without those exactly on a circle (a rotated frame moves them by an ulp)."""
    return cells[~cells.obs_names.str.endswith("_4")].copy()


def brute_force(cell_xy, spot_xy, diameter):
    """Nearest spot centre from a full numpy distance matrix; -1 when no centre lies within the radius."""
    d = np.sqrt(((cell_xy[:, None, :] - spot_xy[None, :, :]) ** 2).sum(-1))
    nearest = d.argmin(1)  # argmin: exact ties go to the first spot
    dmin = d[np.arange(len(d)), nearest]
    return np.where(dmin <= diameter / 2, nearest, -1), dmin, (d <= diameter / 2).sum(1)


# --------------------------------------------------------------------------- planted ground truth
def test_planted_counts_fractions_means_and_links(spots, planted):
    cells, truth = planted
    out = cells_to_spots(cells, spots, cluster_key="cell_type")
    inside = truth.dropna(subset=["truth_spot"])

    assert out.obs_names.tolist() == spots.obs_names.tolist()
    assert out.var_names.tolist() == TYPES
    expected = pd.crosstab(inside["truth_spot"], inside["type"]).reindex(
        index=spots.obs_names, columns=TYPES, fill_value=0
    )
    np.testing.assert_array_equal(out.X, expected.to_numpy())
    assert out.X[:, TYPES.index("Ghost")].sum() == 0
    np.testing.assert_array_equal(out.obs["n_cells"], expected.sum(1))
    assert (out.obs["n_cells"].to_numpy()[3::4] == 0).all()
    assert (out.obs["n_cells"].to_numpy()[:3] == 5).all()

    frac = out.layers["fraction"]
    empty = expected.sum(1).to_numpy() == 0
    assert np.isnan(frac[empty]).all()
    np.testing.assert_allclose(frac[~empty], (expected.T / expected.sum(1)).T.to_numpy()[~empty], rtol=1e-15)

    mean = out.obsm["marker_mean"]
    assert isinstance(mean, pd.DataFrame)
    assert mean.columns.tolist() == MARKERS
    ref = inside.groupby("truth_spot")[MARKERS].mean().reindex(spots.obs_names)
    np.testing.assert_allclose(mean.to_numpy(), ref.to_numpy(), rtol=1e-12)  # NaN where no cell
    assert np.isnan(mean.to_numpy()[empty]).all()
    np.testing.assert_array_equal(out.obsm["spatial"], spots.obsm["spatial"])

    rec = out.uns[Key.uns.transfer]
    links = rec["links"]
    assert links.columns.tolist() == ["cell", "spot", "distance_um"]
    ref_links = inside.loc[cells.obs_names.intersection(inside.index, sort=False)]
    assert links["cell"].tolist() == ref_links.index.tolist()  # cells' order
    assert links["spot"].tolist() == ref_links["truth_spot"].tolist()
    planted_r = np.hypot(
        ref_links["x"].to_numpy() - spots[ref_links["truth_spot"]].obsm["spatial"][:, 0],
        ref_links["y"].to_numpy() - spots[ref_links["truth_spot"]].obsm["spatial"][:, 1],
    )
    np.testing.assert_allclose(links["distance_um"], planted_r, atol=1e-9)
    outside = truth.index[truth["truth_spot"].isna()]
    assert sorted(rec["unassigned_cells"].tolist()) == sorted(outside)
    assert (rec["n_cells_assigned"], rec["n_cells_unassigned"]) == (len(inside), len(outside))
    assert rec["spot_diameter_um"] == VISIUM_SPOT_DIAMETER_UM == 55.0
    assert out.X.sum() == len(links) == len(inside)


def test_sparse_and_layer_intensities_give_the_same_means(spots, planted):
    cells = planted[0]
    dense = cells_to_spots(cells, spots, cluster_key="cell_type", markers=["panCK", "CD3"])
    assert dense.obsm["marker_mean"].columns.tolist() == ["panCK", "CD3"]
    c2 = cells.copy()
    c2.layers["raw"] = sp.csr_matrix(cells.X * 2.0)
    c2.X = np.zeros_like(cells.X)
    twice = cells_to_spots(c2, spots, cluster_key="cell_type", markers=["panCK", "CD3"], layer="raw")
    np.testing.assert_allclose(twice.obsm["marker_mean"].to_numpy(), 2 * dense.obsm["marker_mean"].to_numpy())
    assert twice.uns[Key.uns.transfer]["layer"] == "raw"


@pytest.mark.parametrize("diameter", [55.0, 65.0, 150.0])
def test_assignment_matches_a_brute_force_distance_matrix(spots, diameter):
    rng = np.random.default_rng(1)
    lo, hi = spots.obsm["spatial"].min(0) - 80, spots.obsm["spatial"].max(0) + 80
    n = 4000
    obs = pd.DataFrame({"t": pd.Categorical(rng.choice(["a", "b"], n))}, index=[f"c{i}" for i in range(n)])
    cells = ad.AnnData(rng.normal(size=(n, 2)), obs=obs)
    cells.obsm["spatial"] = rng.uniform(lo, hi, size=(n, 2))
    ref, dmin, n_discs = brute_force(cells.obsm["spatial"], spots.obsm["spatial"], diameter)
    if diameter > PITCH:  # overlapping discs: some cells are in two, and go to the nearest centre
        assert (n_discs > 1).sum() > 100
    else:
        assert n_discs.max() == 1

    out = cells_to_spots(cells, spots, cluster_key="t", spot_diameter_um=diameter)
    links = out.uns[Key.uns.transfer]["links"]
    assigned = ref >= 0
    assert links["cell"].tolist() == cells.obs_names[assigned].tolist()
    assert links["spot"].tolist() == spots.obs_names[ref[assigned]].tolist()
    np.testing.assert_allclose(links["distance_um"], dmin[assigned], rtol=1e-12)
    expected = pd.crosstab(ref[assigned], obs["t"].to_numpy()[assigned]).reindex(
        index=range(spots.n_obs), columns=["a", "b"], fill_value=0
    )
    np.testing.assert_array_equal(out.X, expected.to_numpy())
    for j, marker in enumerate(cells.var_names):
        ref_mean = pd.Series(cells.X[assigned, j]).groupby(ref[assigned]).mean().reindex(range(spots.n_obs))
        np.testing.assert_allclose(out.obsm["marker_mean"][marker], ref_mean, rtol=1e-12)

    back = spots_to_cells(spots, cells, spot_diameter_um=diameter)
    assert back.obs_names.tolist() == cells.obs_names[assigned].tolist()
    assert back.obs["spot"].tolist() == spots.obs_names[ref[assigned]].tolist()
    assert back.uns[Key.uns.transfer]["n_cells_unassigned"] == int((~assigned).sum())


def test_on_the_circle_is_inside_and_exact_ties_go_to_the_first_spot():
    spots = hex_spots(1, 2, visium=False)  # centres at x = 1000 and 1100, y = 2000
    obs = pd.DataFrame({"t": pd.Categorical(["a", "a", "a"])}, index=["rim", "tie", "out"])
    cells = ad.AnnData(np.ones((3, 1)), obs=obs)
    cells.obsm["spatial"] = np.array([[1027.5, 2000.0], [1050.0, 2000.0], [1027.5000001, 2000.0]])

    def links(s, d):
        return cells_to_spots(cells, s, cluster_key="t", spot_diameter_um=d).uns[Key.uns.transfer]["links"]

    rim = links(spots, 55.0)
    assert rim["cell"].tolist() == ["rim"]  # on the circle is in; 0.1 nm beyond is out
    assert rim["distance_um"].tolist() == [27.5]
    wide = links(spots, 120.0)  # discs overlap: "tie" is 50 µm from both centres
    assert dict(zip(wide["cell"], wide["spot"], strict=True)) == {"rim": "s0", "tie": "s0", "out": "s0"}
    flipped = links(spots[::-1].copy(), 120.0)
    assert flipped.set_index("cell").loc["tie", "spot"] == "s1"  # now first in obs order


# --------------------------------------------------------------------------- spots -> cells
@pytest.mark.parametrize("sparse", [True, False])
def test_spots_to_cells_copies_each_spots_row_and_lists_the_unassigned(planted, sparse):
    spots = hex_spots(sparse=sparse)
    cells, truth = planted
    out = spots_to_cells(spots, cells)
    inside = truth.loc[cells.obs_names].dropna(subset=["truth_spot"])
    assert out.obs_names.tolist() == inside.index.tolist()
    assert out.obs["spot"].tolist() == inside["truth_spot"].tolist()
    assert out.var_names.tolist() == spots.var_names.tolist()
    assert sp.issparse(out.X) == sparse
    if sparse:
        assert out.X.format == "csr"
    x = out.X.toarray() if sparse else out.X
    spot_idx = inside["truth_spot"].str[1:].astype(int).to_numpy()
    expected = spot_idx[:, None] * 10.0 + np.arange(
        6
    )  # hex_spots: row i = 10 i + gene, gene 2 of every 3rd is 0
    expected[spot_idx % 3 == 0, 2] = 0.0
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(out.obsm["spatial"], inside[["x", "y"]].to_numpy())
    assert out.obs["cell_type"].tolist() == inside["type"].tolist()
    rec = out.uns[Key.uns.transfer]
    assert sorted(rec["unassigned_cells"]) == sorted(truth.index[truth["truth_spot"].isna()])
    assert rec["n_cells_assigned"] + rec["n_cells_unassigned"] == cells.n_obs == rec["n_cells"]
    assert rec["direction"] == "spots_to_cells"


def test_spots_to_cells_takes_a_layer(spots, planted):
    cells = planted[0]
    spots = spots.copy()
    spots.layers["norm"] = sp.csr_matrix(np.ones(spots.shape) * np.arange(spots.n_obs)[:, None])
    out = spots_to_cells(spots, cells, layer="norm")
    idx = out.obs["spot"].str[1:].astype(int).to_numpy()
    np.testing.assert_array_equal(out.X.toarray(), np.repeat(idx[:, None], spots.n_vars, 1).astype(float))


# --------------------------------------------------------------------------- diameter, frames, storage
def test_default_diameter_follows_the_visium_record_and_recorded_scale(spots, planted):
    cells = off_the_rim(planted[0])
    default = cells_to_spots(cells, spots, cluster_key="cell_type").uns[Key.uns.transfer]
    assert default["spot_diameter_um"] == 55
    # 20 spots; 15 hold the planted radii 0, 10, 20, 27 µm (the rim cell dropped): 60 cells within 27.5 µm
    assert default["n_cells_assigned"] == 60
    double = Transform.from_params(scale=2.0, rotation_deg=30, source="visium", target="he")
    spots2 = apply_transform(spots, double)
    cells2 = apply_transform(cells, double)  # both recorded into "he": the same geometry, scaled ×2
    rec = cells_to_spots(cells2, spots2, cluster_key="cell_type").uns[Key.uns.transfer]
    assert rec["spot_diameter_um"] == pytest.approx(110.0, rel=1e-12)
    assert "× 2" in rec["spot_diameter_from"]
    assert rec["frame"] == "he"
    ref = cells_to_spots(cells, spots, cluster_key="cell_type").uns[Key.uns.transfer]["links"]
    pd.testing.assert_series_equal(rec["links"]["spot"], ref["spot"])  # scaled with the frame: same links
    np.testing.assert_allclose(rec["links"]["distance_um"], 2 * ref["distance_um"], atol=1e-9)
    over = cells_to_spots(cells, spots, cluster_key="cell_type", spot_diameter_um=65)
    assert over.uns[Key.uns.transfer]["spot_diameter_from"] == "spot_diameter_um"
    assert over.uns[Key.uns.transfer]["n_cells_assigned"] == 60 + 20  # + the 27.6 µm cell of every spot


def test_inputs_are_not_modified_and_results_survive_h5ad(spots, planted, tmp_path):
    cells, _ = planted
    before = (cells.copy(), spots.copy())
    a = cells_to_spots(cells, spots, cluster_key="cell_type")
    b = spots_to_cells(spots, cells)
    for orig, now in zip(before, (cells, spots), strict=True):
        assert set(now.uns) == set(orig.uns)
        assert set(now.obs.columns) == set(orig.obs.columns)
        np.testing.assert_array_equal(now.obsm["spatial"], orig.obsm["spatial"])
        x0, x1 = (m.toarray() if sp.issparse(m) else m for m in (orig.X, now.X))
        np.testing.assert_array_equal(x0, x1)
    for out in (a, b):
        out.write_h5ad(tmp_path / "x.h5ad")
        back = ad.read_h5ad(tmp_path / "x.h5ad")
        pd.testing.assert_frame_equal(
            back.uns[Key.uns.transfer]["links"].reset_index(drop=True),
            out.uns[Key.uns.transfer]["links"].reset_index(drop=True),
            check_index_type=False,
        )
        assert (
            back.uns[Key.uns.transfer]["unassigned_cells"].tolist()
            == out.uns[Key.uns.transfer]["unassigned_cells"].tolist()
        )
    assert ad.read_h5ad(tmp_path / "x.h5ad").obs["spot"].tolist() == b.obs["spot"].tolist()


def test_frames_that_agree_are_accepted(spots, planted):
    cells = off_the_rim(planted[0])
    t = Transform.from_params(rotation_deg=15, translation=(7, 3), source="visium", target="global")
    out = cells_to_spots(
        apply_transform(cells, t), apply_transform(spots, t), cluster_key="cell_type", spot_diameter_um=55
    )
    ref = cells_to_spots(cells, spots, cluster_key="cell_type")
    np.testing.assert_array_equal(out.X, ref.X)  # rigid motion of both: the same links
    assert out.uns[Key.uns.transfer]["frame"] == "global"


# --------------------------------------------------------------------------- bad input
def _drop_spatial(a):
    a = a.copy()
    del a.obsm["spatial"]
    return a


def _nan_coord(a):
    a = a.copy()
    a.obsm["spatial"] = a.obsm["spatial"].copy()
    a.obsm["spatial"][2, 1] = np.nan
    return a


def _two_images(a):
    a = a.copy()
    a.obs["image_id"] = ["im1", "im2"] * (a.n_obs // 2) + ["im1"] * (a.n_obs % 2)
    return a


@pytest.mark.parametrize(
    ("change", "kwargs", "match"),
    [
        (lambda c, s: (_drop_spatial(c), s), {}, r"cells\.obsm\['spatial'\] is missing"),
        (lambda c, s: (c, _drop_spatial(s)), {}, r"spots\.obsm\['spatial'\] is missing"),
        (lambda c, s: (_nan_coord(c), s), {}, r"cells\.obsm\['spatial'\] has 1 rows with NaN"),
        (lambda c, s: (c, _nan_coord(s)), {}, r"spots\.obsm\['spatial'\] has 1 rows with NaN"),
        (lambda c, s: (c, s), {"cluster_key": "nope"}, r"cells: adata\.obs\['nope'\] is missing"),
        (lambda c, s: (c, s), {"markers": ["CD3", "CD999"]}, r"unknown markers \['CD999'\]"),
        (lambda c, s: (c, s), {"layer": "raw"}, r"cells\.layers\['raw'\] is missing"),
        (lambda c, s: (c, s), {"spot_diameter_um": 0}, "spot_diameter_um must be a positive number"),
        (lambda c, s: (c, s), {"spot_diameter_um": -55.0}, "spot_diameter_um must be a positive number"),
        (lambda c, s: (c, s), {"spot_diameter_um": float("nan")}, "spot_diameter_um must be a positive"),
        (lambda c, s: (c, s), {"spot_diameter_um": True}, "spot_diameter_um must be a positive number"),
        (lambda c, s: (c, hex_spots(visium=False)), {}, "no spot diameter known: spots carry no Visium"),
        (lambda c, s: (_two_images(c), s), {}, r"cells\.obs\['image_id'\] holds several images"),
        (lambda c, s: (c, s[:0].copy()), {}, "spots has no rows"),
    ],
)
def test_bad_input_is_refused_with_a_named_fix(spots, planted, change, kwargs, match):
    cells, spots = change(planted[0], spots)
    with pytest.raises(DataModelError, match=match):
        cells_to_spots(cells, spots, **{"cluster_key": "cell_type", **kwargs})


def test_non_categorical_cluster_key_is_refused(spots, planted):
    cells = planted[0].copy()
    cells.obs["cell_type"] = cells.obs["cell_type"].astype(str)
    with pytest.raises(DataModelError, match=r"must be categorical.*astype\('category'\)"):
        cells_to_spots(cells, spots, cluster_key="cell_type")


def test_visium_hd_bins_need_an_explicit_diameter(planted):
    spots = hex_spots(visium=False)
    meta = ImageMetadata(image_id="lib", technology="visium", pixel_size_um=1.0, extra={"bin_size_um": 8.0})
    set_image_metadata(spots, meta)
    with pytest.raises(DataModelError, match="Visium HD bins"):
        spots_to_cells(spots, planted[0])
    assert spots_to_cells(spots, planted[0], spot_diameter_um=55).n_obs > 0


@pytest.mark.parametrize("direction", ["cells_to_spots", "spots_to_cells"])
def test_no_cell_inside_any_spot_is_an_error_naming_both_extents(spots, planted, direction):
    cells = planted[0].copy()
    cells.obsm["spatial"] = cells.obsm["spatial"] / 4.0  # e.g. µm read as 4 µm pixels
    run = {
        "cells_to_spots": lambda: cells_to_spots(cells, spots, cluster_key="cell_type"),
        "spots_to_cells": lambda: spots_to_cells(spots, cells),
    }[direction]
    with pytest.raises(DataModelError, match=r"no cell lies inside any spot .*cells span x .*spots x"):
        run()


def test_frames_that_disagree_are_refused(spots, planted):
    cells = apply_transform(planted[0], Transform.identity("he"))
    moved = apply_transform(spots, Transform(np.eye(3), "visium", "global"))
    with pytest.raises(DataModelError, match=r"different frames.*'he'.*'global'.*apply_transform"):
        cells_to_spots(cells, moved, cluster_key="cell_type")
    with pytest.raises(DataModelError, match="different frames"):
        spots_to_cells(moved, cells)
    with pytest.raises(DataModelError, match=r"spots\.layers\['nope'\] is missing"):
        spots_to_cells(spots, planted[0], layer="nope")


# --------------------------------------------------------------------------- real Visium spots
@pytest.mark.realdata
def test_simulated_cells_moved_onto_real_visium_spots(shared):
    """Real spot positions and counts (squidpy's V1 mouse-brain subset); cells simulated, moved in."""
    import scanpy as sc
    from scipy.spatial.distance import cdist

    from spatialpath.datasets import simulate_tissue
    from spatialpath.io import read_visium

    folder = shared("squidpy_testdata")
    spots = read_visium(folder)
    cells = simulate_tissue(seed=5, n_cells=60_000).adata
    centre = cells.obsm["spatial"].mean(0)
    rot = np.array([[np.cos(np.pi / 9), -np.sin(np.pi / 9)], [np.sin(np.pi / 9), np.cos(np.pi / 9)]])
    shift = np.array([5150.0, 5050.0]) - rot @ centre  # rotate 20° about the tissue centre, centre it
    to_spots = Transform.from_params(
        rotation_deg=20, translation=tuple(shift), source="sim_0", target="visium"
    )
    np.testing.assert_allclose(to_spots.apply_points([centre]), [[5150.0, 5050.0]])
    cells = apply_transform(cells, to_spots)  # spots carry no transform: their frame is the target

    out = cells_to_spots(cells, spots, cluster_key="cell_type")
    rec = out.uns[Key.uns.transfer]
    assert rec["spot_diameter_um"] == 55.0
    assert rec["frame"] == "visium"
    d = cdist(cells.obsm["spatial"], spots.obsm["spatial"])  # independent reference: 60k × 100 distances
    nearest = d.argmin(1)
    ref = np.where(d[np.arange(len(d)), nearest] <= 27.5, nearest, -1)
    assigned = ref >= 0
    assert rec["n_spots_with_cells"] >= 20  # measured 37 of 100 spots, 298 of 60,000 cells
    assert out.X.sum() == rec["n_cells_assigned"] == len(rec["links"]) == assigned.sum()
    assert rec["n_cells_assigned"] + rec["n_cells_unassigned"] == cells.n_obs
    np.testing.assert_array_equal(out.obs["n_cells"], np.bincount(ref[assigned], minlength=spots.n_obs))
    types = cells.obs["cell_type"].to_numpy()
    cats = cells.obs["cell_type"].cat.categories
    expected = pd.crosstab(ref[assigned], types[assigned]).reindex(
        index=range(spots.n_obs), columns=cats, fill_value=0
    )
    np.testing.assert_array_equal(out.X, expected.to_numpy())
    ref_mean = pd.DataFrame(cells.X[assigned], columns=cells.var_names).groupby(ref[assigned]).mean()
    np.testing.assert_allclose(out.obsm["marker_mean"].to_numpy()[ref_mean.index], ref_mean, rtol=1e-6)

    back = spots_to_cells(spots, cells)
    assert back.n_obs == assigned.sum()
    assert sp.issparse(back.X)
    raw = sc.read_10x_h5(folder / "filtered_feature_bc_matrix.h5")  # scanpy's own reader of the counts
    rows = raw.obs_names.get_indexer(back.obs["spot"])
    np.testing.assert_array_equal(back.X.toarray(), raw.X[rows].toarray())
    assert back.obs["spot"].tolist() == spots.obs_names[ref[assigned]].tolist()
