"""histoCAT / imcRtools interaction test: hand-computed counts, exhaustive enumeration, imcRtools'
p-value formula on the engine's own permutations, squidpy parity, planted effects, threads."""

from __future__ import annotations

import itertools

import anndata as ad
import numba
import numpy as np
import pandas as pd
import pytest
import squidpy as sq
from scipy import sparse

from spatialpath.datasets import simulate_tissue
from spatialpath.gr._counts import pair_counts_args
from spatialpath.gr._interaction_test import (
    DEFAULT_TOLERANCE,
    interaction_summary,
    interaction_test,
    interaction_test_key,
)
from spatialpath.gr._neighbour_kernels import CLASSIC, HISTOCAT, PATCH, permute_statistic
from spatialpath.gr._permutation import _GOLDEN, permutation_seeds, shuffle_within
from spatialpath.gr._utils import image_groups
from spatialpath.model import DataModelError

pytestmark = pytest.mark.filterwarnings("ignore:with n_perms=:UserWarning")

TYPES = ["A", "B", "C"]
# The worked example: 8 cells, one image, directed edges i -> j (row i of the graph).
LABELS = ["A", "A", "A", "B", "B", "C", "C", "C"]
EDGES = {0: [1, 3, 4], 1: [0, 3], 2: [5, 6, 7], 3: [0, 1, 4], 4: [3, 5], 5: [2, 6], 6: [5, 7, 2], 7: [6]}
# Neighbour types per cell, n_X(cell):   A  B  C
#   cell 0 (A) -> 1 A, 3 B, 4 B           1  2  0
#   cell 1 (A) -> 0 A, 3 B                1  1  0
#   cell 2 (A) -> 5 C, 6 C, 7 C           0  0  3
#   cell 3 (B) -> 0 A, 1 A, 4 B           2  1  0
#   cell 4 (B) -> 3 B, 5 C                0  1  1
#   cell 5 (C) -> 2 A, 6 C                1  0  1
#   cell 6 (C) -> 5 C, 7 C, 2 A           1  0  2
#   cell 7 (C) -> 6 C                     0  0  1
# n_A = 3, n_B = 2, n_C = 3. Rows are the "from" type A, B, C; columns the "to" type.
EXPECTED_CT = {
    # classic = sum of n_X over the from-cells / n_from
    #   A: (1+1+0)/3, (2+1+0)/3, (0+0+3)/3;  B: (2+0)/2, (1+1)/2, (0+1)/2;  C: (1+1+0)/3, 0/3, (1+2+1)/3
    "classic": [[2 / 3, 1, 1], [1, 1, 1 / 2], [2 / 3, 0, 4 / 3]],
    # histocat = the same sums / number of from-cells with n_X >= 1 (0 when none)
    #   A: 2/2, 3/2, 3/1;  B: 2/1, 2/2, 1/1;  C: 2/2, 0, 4/3
    "histocat": [[1, 3 / 2, 3], [2, 1, 1], [1, 0, 4 / 3]],
    # patch (patch_size = 2) = #{from-cells with n_X >= 2} / n_from
    #   A: 0/3, 1/3 (cell 0), 1/3 (cell 2);  B: 1/2 (cell 3), 0, 0;  C: 0, 0, 1/3 (cell 6)
    "patch": [[0, 1 / 3, 1 / 3], [1 / 2, 0, 0], [0, 0, 1 / 3]],
}
# COZI conditional ratio = #{from-cells with n_X >= 1} / n_from
EXPECTED_COND = [[2 / 3, 2 / 3, 1 / 3], [1 / 2, 1, 1 / 2], [2 / 3, 0, 1]]
PATCH_SIZE = {"classic": None, "histocat": None, "patch": 2}


def _graph(edges: dict[int, list[int]], n: int) -> sparse.csr_matrix:
    rows = [i for i, js in edges.items() for _ in js]
    cols = [j for js in edges.values() for j in js]
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))


def _adata(labels, edges, images=None) -> ad.AnnData:
    n = len(labels)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(labels, categories=TYPES)}, index=[f"c{i}" for i in range(n)]
    )
    if images is not None:
        obs["image_id"] = pd.Categorical(images)
    adata = ad.AnnData(obs=obs)
    adata.obsp["spatial_connectivities"] = _graph(edges, n)
    return adata


def _brute_ct(codes, edges, images, n_types, method, patch_size=None):
    """ct by definition, looping over cells; ``codes`` (n,) or (P, n) -> (n_images, K, K) or (P, ...).

    Empty denominators give 0 (imcRtools' value when nothing interacts).
    """
    codes = np.atleast_2d(codes)
    n_perm, n_img = codes.shape[0], int(images.max()) + 1
    s = np.zeros((n_perm, n_img, n_types, n_types))
    c1, p = np.zeros_like(s), np.zeros_like(s)
    n_from = np.zeros((n_perm, n_img, n_types, 1))
    rows = np.arange(n_perm)
    for i, js in edges.items():
        n_x = (codes[:, js, None] == np.arange(n_types)).sum(1)  # (P, K): n_X of cell i
        g, a = images[i], codes[:, i]
        n_from[rows, g, a] += 1
        s[rows, g, a] += n_x
        c1[rows, g, a] += n_x >= 1
        if patch_size is not None:
            p[rows, g, a] += n_x >= patch_size
    num, den = {"classic": (s, n_from), "histocat": (s, c1), "patch": (p, n_from)}[method]
    den = np.broadcast_to(den, s.shape)
    out = np.divide(num, den, out=np.zeros_like(s), where=den > 0)
    return out[0] if n_perm == 1 else out


def _imcrtools_p(ct_obs, ct_perm, tol):
    """imcRtools' .calc_p_vals (with tolerance) on stored permuted statistics (iter, ...)."""
    it = ct_perm.shape[0]
    d = ct_perm - ct_obs
    p_gt = np.where(ct_obs == 0, 1.0, ((d > -tol).sum(0) + 1) / (it + 1))
    p_lt = (it - (d > tol).sum(0) + 1) / (it + 1)
    return p_gt, p_lt


@pytest.mark.parametrize("method", ["classic", "histocat", "patch"])
def test_worked_example_counts_by_hand(method):
    res = interaction_test(_adata(LABELS, EDGES), "cell_type", method=method, patch_size=PATCH_SIZE[method],
                           n_perms=10, progress=False, copy=True)  # fmt: skip
    np.testing.assert_allclose(res["ct"].to_numpy().reshape(3, 3), EXPECTED_CT[method], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res["conditional_ratio"].to_numpy().reshape(3, 3), EXPECTED_COND, atol=1e-15)
    assert res["n_from"].tolist() == [3] * 3 + [2] * 3 + [3] * 3
    assert res["n_to"].tolist() == [3, 2, 3] * 3
    assert list(res.columns) == [
        "image_id", "from_label", "to_label", "ct", "p_gt", "p_lt", "interaction", "p", "sig", "sigval",
        "zscore", "conditional_ratio", "n_from", "n_to",
    ]  # fmt: skip
    # imcRtools: p_gt = 1 whenever ct = 0 (e.g. C -> B in every method)
    assert res.loc[res["ct"] == 0, "p_gt"].eq(1.0).all()


@pytest.mark.parametrize("method", ["classic", "histocat", "patch"])
def test_p_values_match_exhaustive_enumeration(method):
    """All 8! within-image permutations as imcRtools "iterations" vs the engine's 20,000 draws."""
    codes = pd.Categorical(LABELS, categories=TYPES).codes.astype(np.int64)
    images = np.zeros(8, np.int64)
    ps = PATCH_SIZE[method]
    obs = _brute_ct(codes, EDGES, images, 3, method, ps)
    perms = np.array(list(itertools.permutations(range(8))))
    every = _brute_ct(codes[perms], EDGES, images, 3, method, ps)
    exact_gt, exact_lt = _imcrtools_p(obs, every, DEFAULT_TOLERANCE)
    n = 20_000
    res = interaction_test(_adata(LABELS, EDGES), "cell_type", method=method, patch_size=ps, n_perms=n,
                           seed=11, progress=False, copy=True)  # fmt: skip
    for got, exact in ((res["p_gt"], exact_gt), (res["p_lt"], exact_lt)):
        got = got.to_numpy().reshape(obs.shape)
        sd = np.sqrt(exact * (1 - exact) / n)
        assert np.all(np.abs(got - exact) <= 4.5 * sd + 2 / n), (method, got, exact)
    mean, sd = every.mean(0), every.std(0)
    z = res["zscore"].to_numpy().reshape(obs.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        z_exact = np.where(sd > 0, (obs - mean) / sd, np.nan)
    np.testing.assert_allclose(z, z_exact, atol=0.05, rtol=0.03)


@pytest.mark.parametrize(
    ("method", "tolerance"),
    [("classic", DEFAULT_TOLERANCE), ("classic", 0.0), ("classic", 0.2), ("histocat", DEFAULT_TOLERANCE),
     ("histocat", 0.0), ("histocat", 0.3), ("patch", DEFAULT_TOLERANCE), ("patch", 0.0), ("patch", 0.2)],
)  # fmt: skip
def test_imcrtools_formula_on_the_engines_own_permutations(method, tolerance):
    """Regenerate the engine's permutations, compute ct by definition and apply imcRtools' formula
    literally: p_gt, p_lt, interaction, p, sig and sigval must agree exactly (ties included).

    Routes of permute_statistic exercised (n_A <= 3): classic/patch "integer" at tolerance 0 and
    sqrt(eps), "indicator" at 0.2; histocat "ratio" at 0 and sqrt(eps), "indicator" at 0.3."""
    labels = [*LABELS, "C", "A", "B", "A", "C", "C"]
    edges = dict(EDGES) | {8: [9, 10], 9: [8, 11, 12], 10: [9], 11: [12, 13], 12: [11], 13: [8, 9, 12]}
    images = np.array([0] * 8 + [1] * 6)
    shuffled = np.random.default_rng(0).permutation(14)  # images interleaved in row order
    inv = np.argsort(shuffled)
    edges_s = {int(inv[i]): [int(inv[j]) for j in js] for i, js in edges.items()}
    labels_s, images_s = [labels[i] for i in shuffled], images[shuffled]
    adata = _adata(labels_s, edges_s, [f"img{g}" for g in images_s])
    ps, n_perms, seed = PATCH_SIZE[method], 300, 5
    res = interaction_test(adata, "cell_type", method=method, patch_size=ps, n_perms=n_perms, seed=seed,
                           tolerance=tolerance, p_threshold=0.05, progress=False, copy=True)  # fmt: skip

    codes = adata.obs["cell_type"].cat.codes.to_numpy().astype(np.int8)
    groups = image_groups(adata, "image_id")
    seeds = permutation_seeds(seed, n_perms)
    states = seeds[:, 0] ^ (seeds[:, 1] * _GOLDEN)
    perms = np.empty((n_perms, len(codes)), np.int64)
    for p in range(n_perms):
        work = codes[groups.order].copy()
        shuffle_within(work, groups.offsets, np.array([states[p]], np.uint64))
        perms[p, groups.order] = work
    obs = _brute_ct(codes.astype(np.int64), edges_s, images_s, 3, method, ps)
    p_gt, p_lt = _imcrtools_p(obs, _brute_ct(perms, edges_s, images_s, 3, method, ps), tolerance)
    interaction = p_gt < p_lt
    p = np.where(interaction, p_gt, p_lt)
    sigval = np.where(p < 0.05, np.where(interaction, 1, -1), 0)
    np.testing.assert_array_equal(res["ct"].to_numpy(), obs.ravel())
    np.testing.assert_array_equal(res["p_gt"].to_numpy(), p_gt.ravel())
    np.testing.assert_array_equal(res["p_lt"].to_numpy(), p_lt.ravel())
    np.testing.assert_array_equal(res["interaction"].to_numpy(bool), interaction.ravel())
    np.testing.assert_array_equal(res["p"].to_numpy(), p.ravel())
    np.testing.assert_array_equal(res["sigval"].to_numpy(np.int64), sigval.ravel())
    if tolerance > 0:  # ties exist (e.g. classic A -> A), so the two paths really differ from tol = 0
        assert (p_gt + p_lt > 1 + 1 / (n_perms + 1)).any()


def test_missing_types_give_na_and_summary_counts_tested_images():
    # image i1: the worked example; image i2: only A and C cells (B absent -> every pair with B is NA)
    labels = [*LABELS, "A", "C", "A", "C"]
    edges = dict(EDGES) | {8: [9, 10], 9: [8], 10: [11], 11: [10, 8]}
    adata = _adata(labels, edges, ["i1"] * 8 + ["i2"] * 4)
    interaction_test(adata, "cell_type", n_perms=50, progress=False)
    stored = adata.uns[interaction_test_key("cell_type")]
    table = stored["table"]
    assert stored["params"]["method"] == "classic"
    assert stored["params"]["library_key"] == "image_id"
    with_b = (table["image_id"] == "i2") & ((table["from_label"] == "B") | (table["to_label"] == "B"))
    assert with_b.sum() == 5
    na_cols = ["ct", "p_gt", "p_lt", "interaction", "p", "sig", "sigval", "zscore", "conditional_ratio"]
    assert table.loc[with_b, na_cols].isna().all().all()
    assert table.loc[~with_b, na_cols].notna().all().all()
    summary = interaction_summary(stored)
    assert len(summary) == 9
    n_images = summary.set_index(["from_label", "to_label"])["n_images"]
    assert (n_images[("A", "A")], n_images[("A", "B")], n_images[("B", "B")]) == (2, 1, 1)
    # the summary by definition, from the table
    tested = table.dropna(subset=["sigval"])
    expected = tested.groupby(["from_label", "to_label"], observed=False)["sigval"].apply(
        lambda s: (s == 1).mean() if len(s) else np.nan
    )
    np.testing.assert_array_equal(summary["frac_attraction"].to_numpy(), expected.to_numpy(float))


def test_classic_equals_squidpy_edge_counts_per_image():
    a = simulate_tissue(seed=2, n_cells=1500, image_id="im1").adata
    b = simulate_tissue(seed=3, n_cells=1200, image_id="im2").adata
    adata = ad.concat([a, b], merge="same")
    adata.obs["image_id"] = adata.obs["image_id"].astype("category")
    sq.gr.spatial_neighbors_knn(adata, n_neighs=6, library_key="image_id")
    res = interaction_test(adata, "cell_type", n_perms=20, progress=False, copy=True)
    for name, sub in ((n, adata[adata.obs["image_id"] == n].copy()) for n in ("im1", "im2")):
        counts = sq.gr.interaction_matrix(sub, "cell_type", normalized=False, copy=True)
        n_a = sub.obs["cell_type"].value_counts(sort=False).to_numpy()
        ours = res.loc[res["image_id"] == name, "ct"].to_numpy().reshape(counts.shape)
        np.testing.assert_allclose(ours, counts / n_a[:, None], rtol=1e-15)


@pytest.fixture(scope="module")
def planted() -> ad.AnnData:
    adata = simulate_tissue(seed=3, n_cells=8000).adata
    sq.gr.spatial_neighbors_knn(adata, n_neighs=6)
    return adata


@pytest.mark.parametrize("method", ["classic", "histocat", "patch"])
def test_planted_effects_recovered_with_the_right_sign(planted, method):
    res = interaction_test(planted, "cell_type", method=method, patch_size=PATCH_SIZE[method], n_perms=199,
                           progress=False, copy=True)  # fmt: skip
    sigval = res.set_index(["from_label", "to_label"])["sigval"]
    expected = {
        ("Tumour", "Tumour"): 1,  # tumour nests
        ("CD8 T", "Tumour"): -1,  # CD8 T cells excluded from the nests
        ("Tumour", "CD8 T"): -1,
        ("Tumour", "Macrophage"): -1,  # macrophages sit at the margin, outside the nests...
        ("Macrophage", "Macrophage"): 1,  # ... concentrated in the margin band
        ("Macrophage", "CD8 T"): 1,  # both enriched in the margin
        ("B cell", "CD4 T"): 1,  # B/CD4 T aggregates
        ("CD4 T", "B cell"): 1,
        ("B cell", "B cell"): 1,
    }
    assert {k: int(sigval[k]) for k in expected} == expected


def test_the_three_routes_agree(planted):
    """The shortcuts (integer numerator; ratio without indicator) give the indicator route's counts."""
    codes = planted.obs["cell_type"].cat.codes.to_numpy().astype(np.int8)
    groups = image_groups(planted, None)
    graph = planted.obsp["spatial_connectivities"].tocsr()
    args = pair_counts_args(graph, groups, 8)
    n_from = np.broadcast_to(np.bincount(codes, minlength=8)[:, None], (8, 8)).ravel()
    assert n_from.max() < 5_000  # histocat's ratio shortcut applies (see separated())
    kw = {"n_perms": 64, "seed": 1, "progress": False}
    for rule, routes in (
        (CLASSIC, ("integer", "ratio")),
        (PATCH, ("integer", "ratio")),
        (HISTOCAT, ("ratio",)),
    ):
        for tol in (DEFAULT_TOLERANCE, 0.0):
            ref = permute_statistic(
                rule, codes, groups, args, n_from, 2, 6, tolerance=tol, route="indicator", **kw
            )
            for route in routes:
                out = permute_statistic(
                    rule, codes, groups, args, n_from, 2, 6, tolerance=tol, route=route, **kw
                )
                for k in range(3):  # ct, #{d > -tol}, #{d <= tol}
                    np.testing.assert_array_equal(out[k], ref[k], err_msg=f"{rule} {route} {tol}")
                np.testing.assert_allclose(out[3], ref[3], rtol=1e-9)


def test_bit_identical_with_one_or_two_threads(planted):
    runs = []
    for threads in (1, 2):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        runs.append(
            [
                interaction_test(
                    planted,
                    "cell_type",
                    method=m,
                    patch_size=PATCH_SIZE[m],
                    n_perms=40,
                    seed=9,
                    progress=False,
                    copy=True,
                )
                for m in ("classic", "histocat", "patch")
            ]
        )
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for one, two in zip(*runs, strict=True):
        pd.testing.assert_frame_equal(one, two, check_exact=True)
    other = interaction_test(planted, "cell_type", n_perms=40, seed=10, progress=False, copy=True)
    assert not np.array_equal(other["zscore"].to_numpy(), runs[0][0]["zscore"].to_numpy(), equal_nan=True)


def test_result_survives_h5ad(tmp_path):
    adata = _adata(LABELS, EDGES)
    interaction_test(adata, "cell_type", method="patch", patch_size=2, n_perms=20, progress=False)
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns["cell_type_interaction_test"]
    pd.testing.assert_frame_equal(back["table"], adata.uns["cell_type_interaction_test"]["table"])
    assert (back["params"]["patch_size"], back["params"]["method"]) == (2, "patch")


def test_histocat_alias_conditional():
    adata = _adata(LABELS, EDGES)
    a = interaction_test(adata, "cell_type", method="conditional", n_perms=20, progress=False, copy=True)
    b = interaction_test(adata, "cell_type", method="histocat", n_perms=20, progress=False, copy=True)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["params"]["method"] == "histocat"


# --- bad input: one test each -------------------------------------------------------------------


def test_rejects_non_categorical_labels():
    adata = _adata(LABELS, EDGES)
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str)
    with pytest.raises(DataModelError, match="must be categorical"):
        interaction_test(adata, "cell_type", n_perms=5, progress=False)


def test_rejects_missing_labels():
    adata = _adata(LABELS, EDGES)
    adata.obs.loc["c3", "cell_type"] = np.nan
    with pytest.raises(DataModelError, match="1 missing values"):
        interaction_test(adata, "cell_type", n_perms=5, progress=False)


def test_rejects_a_single_cell_type():
    adata = _adata(["A"] * 8, EDGES)
    with pytest.raises(DataModelError, match="single type"):
        interaction_test(adata, "cell_type", n_perms=5, progress=False)


def test_rejects_images_with_fewer_than_three_cells():
    adata = _adata(LABELS, EDGES, ["i1"] * 6 + ["i2"] * 2)
    with pytest.raises(DataModelError, match="fewer than 3 cells"):
        interaction_test(adata, "cell_type", n_perms=5, progress=False)


def test_rejects_a_missing_graph():
    adata = _adata(LABELS, EDGES)
    del adata.obsp["spatial_connectivities"]
    with pytest.raises(DataModelError, match=r"spatial_connectivities.*is missing"):
        interaction_test(adata, "cell_type", n_perms=5, progress=False)


class _StaleGraph:
    """AnnData-like cells whose graph was built for other cells (AnnData itself refuses to hold one,
    but an object assembled by hand or a stale reference can)."""

    def __init__(self, adata: ad.AnnData, graph: sparse.csr_matrix) -> None:
        self.obs, self.n_obs, self.uns = adata.obs, adata.n_obs, {}
        self.obsp = {"spatial_connectivities": graph}


def test_rejects_a_graph_built_for_other_cells():
    stale = _StaleGraph(_adata(LABELS, EDGES), _graph({0: [1]}, 6))
    with pytest.raises(DataModelError, match="built for other cells"):
        interaction_test(stale, "cell_type", n_perms=5, progress=False)


def test_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="method must be 'classic', 'histocat'"):
        interaction_test(_adata(LABELS, EDGES), "cell_type", method="squidpy", n_perms=5, progress=False)


def test_warns_when_no_pair_can_be_significant():
    with pytest.warns(UserWarning, match="smallest p-value is 1/\\(n_perms \\+ 1\\) = 0.01 >= p_threshold"):
        interaction_test(_adata(LABELS, EDGES), "cell_type", n_perms=99, progress=False)


def test_rejects_patch_without_patch_size():
    with pytest.raises(ValueError, match="method='patch' needs patch_size"):
        interaction_test(_adata(LABELS, EDGES), "cell_type", method="patch", n_perms=5, progress=False)
