"""Spatial graphs (kNN, radius, Delaunay, n-hop) against independent references: brute-force
``cdist``, ``cKDTree.query_pairs``, ``scipy.spatial.Delaunay`` simplices, squidpy, closed forms."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.spatial import ConvexHull, Delaunay, cKDTree
from scipy.spatial.distance import cdist

from spatialpath.gr._graph import delaunay_graph, hop_graph, knn_graph, radius_graph, spatial_graph
from spatialpath.keys import Key
from spatialpath.model import DataModelError

#: CODEX 20x pixel size, Schürch et al. 2020 (the data's SOURCE.md asks to verify).
CODEX_PIXEL_SIZE_UM = 0.377


def _cells(xy: np.ndarray, images: np.ndarray | None = None) -> ad.AnnData:
    obs = pd.DataFrame(index=[f"c{i}" for i in range(len(xy))])
    if images is not None:
        obs["image_id"] = pd.Categorical(images)
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = np.asarray(xy, dtype=float)
    return a


def _uniform(n: int, seed: int = 0) -> np.ndarray:
    """n cells at 1 cell / 400 µm² on a √n·20 µm square."""
    return np.random.default_rng(seed).uniform(0, np.sqrt(n) * 20, (n, 2))


def _edges(m: sparse.spmatrix) -> set[tuple[int, int]]:
    r, c = sparse.csr_matrix(m).nonzero()
    return set(zip(r.tolist(), c.tolist(), strict=True))


def _brute_knn(xy: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = cdist(xy, xy)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1, kind="stable")[:, :k]
    return nn, np.take_along_axis(d, nn, 1)


def _delaunay_edges(xy: np.ndarray) -> set[tuple[int, int]]:
    s = Delaunay(xy).simplices
    e = np.r_[s[:, [0, 1]], s[:, [1, 2]], s[:, [0, 2]]]
    return {(int(i), int(j)) for a, b in e for i, j in ((a, b), (b, a))}


def _check_layout(a: ad.AnnData, key: str = "spatial") -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    conn, dist = a.obsp[Key.obsp.connectivities(key)], a.obsp[Key.obsp.distances(key)]
    for m in (conn, dist):
        assert sparse.issparse(m)
        assert m.format == "csr"
        assert m.shape == (a.n_obs, a.n_obs)
        assert m.has_sorted_indices
        assert m.has_canonical_format
    assert conn.dtype == np.float32
    assert dist.dtype == np.float64
    assert np.array_equal(conn.indptr, dist.indptr)
    assert np.array_equal(conn.indices, dist.indices)
    assert (conn.data == 1).all()
    assert conn.diagonal().sum() == 0
    uns = a.uns[Key.uns.spatial_neighbors(key)]
    assert uns["connectivities_key"] == Key.obsp.connectivities(key)
    assert uns["distances_key"] == Key.obsp.distances(key)
    assert {"method", "n_neighbors", "radius", "max_distance", "symmetric", "library_key"} <= set(
        uns["params"]
    )
    assert uns["params"]["units"] == "um"
    assert uns["params"]["coord_type"] == "generic"
    return conn, dist


# ---------------------------------------------------------------- kNN


@pytest.mark.parametrize("k", [1, 6, 10])
def test_knn_equals_bruteforce_cdist(k):
    xy = _uniform(400, seed=k)
    a = _cells(xy)
    knn_graph(a, k)
    conn, dist = _check_layout(a)
    nn, d = _brute_knn(xy, k)
    ref = sparse.csr_matrix((d.ravel(), nn.ravel(), np.arange(len(xy) + 1) * k), shape=conn.shape)
    ref.sort_indices()
    assert _edges(conn) == _edges(ref)
    np.testing.assert_allclose(dist.data, ref.data, rtol=1e-12)
    assert (np.diff(conn.indptr) == k).all()  # directed: exactly k out-edges per row
    assert a.uns["spatial_neighbors"]["params"]["n_neighbors"] == k


def test_knn_equals_squidpy_and_squidpy_reads_it():
    sq = pytest.importorskip("squidpy")
    xy = _uniform(3000, seed=1)
    types = np.random.default_rng(1).choice(list("ABCD"), len(xy))
    ours, theirs = _cells(xy), _cells(xy)
    for a in (ours, theirs):
        a.obs["cell_type"] = pd.Categorical(types)
    knn_graph(ours, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # spatial_neighbors is deprecated in 1.7
        sq.gr.spatial_neighbors(theirs, coord_type="generic", n_neighs=6)
    c1, d1 = ours.obsp["spatial_connectivities"], ours.obsp["spatial_distances"]
    c2, d2 = theirs.obsp["spatial_connectivities"], theirs.obsp["spatial_distances"]
    assert _edges(c1) == _edges(c2)
    assert c1.nnz == 6 * len(xy)
    np.testing.assert_allclose(d1.toarray(), d2.toarray(), rtol=1e-12, atol=0)
    # squidpy reads our keys and gets the same result as on its own graph
    m1 = sq.gr.interaction_matrix(ours, "cell_type", copy=True)
    m2 = sq.gr.interaction_matrix(theirs, "cell_type", copy=True)
    np.testing.assert_array_equal(m1, m2)
    assert m1.sum() == 6 * len(xy)


def test_knn_per_image_equals_bruteforce_no_cross_edges():
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 600, (1500, 2))  # images overlap in space: only the library key separates them
    images = rng.choice(["img_c", "img_a", "img_b"], len(xy))  # interleaved rows
    a = _cells(xy, images)  # default library_key: obs["image_id"]
    knn_graph(a, 5)
    conn, dist = _check_layout(a)
    r, c = conn.nonzero()
    assert (images[r] == images[c]).all()
    assert a.uns["spatial_neighbors"]["params"]["library_key"] == "image_id"
    for img in np.unique(images):
        idx = np.flatnonzero(images == img)
        nn, d = _brute_knn(xy[idx], 5)
        sub_c, sub_d = conn[idx][:, idx], dist[idx][:, idx].toarray()
        assert _edges(sub_c) == {(i, int(j)) for i, row in enumerate(nn) for j in row}
        np.testing.assert_allclose(np.take_along_axis(sub_d, nn, 1), d, rtol=1e-12)
    # one image (library_key=None is overridden by the image_id default, so drop the column)
    b = _cells(xy)
    knn_graph(b, 5)
    r, c = b.obsp["spatial_connectivities"].nonzero()
    assert (images[r] != images[c]).any()


def test_knn_symmetric_union_and_max_distance():
    xy = _uniform(500, seed=3)
    a = _cells(xy)
    directed, _ = knn_graph(a, 4, copy=True)
    assert "spatial_connectivities" not in a.obsp  # copy=True writes nothing
    conn, dist = knn_graph(a, 4, symmetric=True, copy=True)
    assert _edges(conn) == _edges(directed + directed.T)
    assert (conn != conn.T).nnz == 0
    assert (dist != dist.T).nnz == 0
    full = cdist(xy, xy)
    r, c = dist.nonzero()
    np.testing.assert_allclose(dist.data, full[r, c], rtol=1e-12)
    cap = float(np.median(dist.data))
    pruned_c, pruned_d = knn_graph(a, 4, max_distance=cap, copy=True)
    r, c = directed.nonzero()
    assert _edges(pruned_c) == {(i, j) for i, j in zip(r, c, strict=True) if full[i, j] <= cap}
    assert pruned_d.max() <= cap
    assert (np.diff(pruned_c.indptr) <= 4).all()


def test_knn_small_image_warns_and_uses_all_other_cells():
    xy = np.r_[_uniform(50, seed=4), [[0, 0], [10, 0], [0, 10]]]
    a = _cells(xy, ["big"] * 50 + ["tiny"] * 3)
    with pytest.warns(UserWarning, match=r"1 image\(s\) have <= n_neighbors=6 cells.*'tiny', '3 cells'"):
        knn_graph(a, 6)
    deg = np.diff(a.obsp["spatial_connectivities"].indptr)
    assert (deg[:50] == 6).all()
    assert (deg[50:] == 2).all()


def test_knn_coincident_cells_keep_explicit_zero_distances():
    base = _uniform(200, seed=5)
    xy = np.r_[base, base[:10], np.repeat(base[[20]], 9, axis=0)]  # 10 twins; one cell 10 times
    a = _cells(xy)
    with pytest.warns(UserWarning, match="identical coordinates"):
        knn_graph(a, 6)
    conn, dist = _check_layout(a)
    assert (np.diff(conn.indptr) == 6).all()  # self is never an edge, even among 10 copies
    # each twin has its copy at distance 0, stored explicitly; row distances equal brute force
    _nn, d = _brute_knn(xy, 6)
    got = np.sort(dist.data.reshape(-1, 6), axis=1)
    np.testing.assert_allclose(got, d, rtol=1e-12)
    assert dist[0, 200] == 0
    assert conn[0, 200] == 1


# ---------------------------------------------------------------- radius


def test_radius_equals_query_pairs_and_cdist():
    xy = _uniform(2000, seed=6)
    a = _cells(xy)
    radius_graph(a, 30.0)
    conn, dist = _check_layout(a)
    pairs = cKDTree(xy).query_pairs(30.0, output_type="ndarray")
    assert _edges(conn) == {(int(i), int(j)) for p, q in pairs for i, j in ((p, q), (q, p))}
    full = cdist(xy, xy)
    np.fill_diagonal(full, np.inf)
    assert conn.nnz == int((full <= 30.0).sum())
    r, c = dist.nonzero()
    np.testing.assert_allclose(dist.data, full[r, c], rtol=1e-12)
    assert a.uns["spatial_neighbors"]["params"]["radius"] == 30.0


def test_radius_threshold_is_inclusive():
    # exact distances: 30 along an axis and the 18-24-30 triangle; 30 + 1e-9 is out
    xy = np.array([[0.0, 0.0], [30.0, 0.0], [18.0, 24.0], [0.0, -30.000000001]])
    conn, dist = radius_graph(_cells(xy), 30.0, copy=True)
    assert _edges(conn) == {(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)}
    assert dist[0, 1] == 30.0
    assert dist[0, 2] == 30.0


# ---------------------------------------------------------------- Delaunay


def test_delaunay_equals_scipy_simplices_per_image():
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 500, (1200, 2))
    images = rng.choice(["b", "a"], len(xy))
    a = _cells(xy, images)
    delaunay_graph(a)
    conn, dist = _check_layout(a)
    assert (conn != conn.T).nnz == 0
    for img in ("a", "b"):
        idx = np.flatnonzero(images == img)
        assert _edges(conn[idx][:, idx]) == _delaunay_edges(xy[idx])
    r, c = dist.nonzero()
    np.testing.assert_allclose(dist.data, np.hypot(*(xy[r] - xy[c]).T), rtol=1e-12)


def test_delaunay_max_distance_prunes_like_squidpy_tuple_radius():
    sq = pytest.importorskip("squidpy")
    xy = _uniform(2000, seed=8)
    full_c, full_d = delaunay_graph(_cells(xy), copy=True)
    a = _cells(xy)
    delaunay_graph(a, max_distance=25.0)
    conn, dist = _check_layout(a)
    r, c = full_d.nonzero()
    assert _edges(conn) == {(i, j) for i, j, d in zip(r, c, full_d.data, strict=True) if d <= 25.0}
    assert 0 < conn.nnz < full_c.nnz
    assert dist.max() <= 25.0
    assert a.uns["spatial_neighbors"]["params"]["max_distance"] == 25.0
    b = _cells(xy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        sq.gr.spatial_neighbors(b, coord_type="generic", delaunay=True, radius=(0.0, 25.0))
    assert _edges(b.obsp["spatial_connectivities"]) == _edges(conn)
    np.testing.assert_allclose(b.obsp["spatial_distances"].toarray(), dist.toarray(), rtol=1e-12)


def test_delaunay_coincident_cells_share_their_twins_edges():
    base = _uniform(100, seed=9)
    xy = np.r_[base, base[[3, 3, 7]]]  # cell 3 three times, cell 7 twice
    with pytest.warns(UserWarning, match="identical coordinates"):
        conn, dist = delaunay_graph(_cells(xy), copy=True)
    ref = _delaunay_edges(base)
    groups = {3: [3, 100, 101], 7: [7, 102]}
    expect = set()
    for i, j in ref:
        for ii in groups.get(i, [i]):
            for jj in groups.get(j, [j]):
                expect.add((ii, jj))
    for g in groups.values():
        expect |= {(i, j) for i in g for j in g if i != j}
    assert _edges(conn) == expect
    assert dist[3, 100] == 0
    assert dist[100, 101] == 0
    assert (conn != conn.T).nnz == 0


@pytest.mark.parametrize(
    ("xy", "edges"),
    [
        ([[0, 0], [3, 4], [9, 12], [6, 8]], {(0, 1), (1, 3), (3, 2)}),  # on a line, unsorted
        ([[5, 5], [1, 1]], {(0, 1)}),
        ([[5, 5]], set()),
        ([[0, 0], [2, 0], [2, 0], [1, 0]], {(0, 3), (3, 1), (3, 2), (1, 2)}),  # line + twin
    ],
)
def test_delaunay_collinear_or_tiny_images_use_the_1d_graph(xy, edges):
    xy = np.asarray(xy, float)
    a = _cells(np.r_[_uniform(30, seed=10), xy], ["big"] * 30 + ["line"] * len(xy))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        conn, _ = delaunay_graph(a, copy=True)
    assert any("all cells on a line" in str(w.message) and "'line'" in str(w.message) for w in rec)
    got = {(i - 30, j - 30) for i, j in _edges(conn) if i >= 30}
    assert got == edges | {(j, i) for i, j in edges}
    assert _edges(conn[:30][:, :30]) == _delaunay_edges(a.obsm["spatial"][:30])


# ---------------------------------------------------------------- closed forms (statistics.md §1)


def test_mean_degrees_on_uniform_cells_match_closed_forms():
    n, r = 50_000, 30.0
    xy = _uniform(n, seed=11)
    side, lam = np.sqrt(n) * 20, 1 / 400
    conn, _ = radius_graph(_cells(xy), r, copy=True)
    deg = np.diff(conn.indptr)
    # λπr² in the interior; with the square's border: λ(πr² − 2·side·4r³/3 / side² + r⁴/(2 side²))
    interior = ((xy > r) & (xy < side - r)).all(axis=1)
    assert deg[interior].mean() == pytest.approx(lam * np.pi * r**2, abs=0.05)  # 7.07; sd of a mean ~0.017
    border = lam * (np.pi * r**2 - 8 * r**3 / (3 * side) + r**4 / (2 * side**2))
    assert deg.mean() == pytest.approx(border, abs=0.05)
    assert deg.mean() == pytest.approx(7.03, abs=0.05)  # statistics.md §1, measured with squidpy
    conn, _ = delaunay_graph(_cells(xy), copy=True)
    h = len(ConvexHull(xy).vertices)
    assert conn.nnz // 2 == 3 * n - 3 - h  # Euler: edges of a triangulation
    assert conn.nnz / n == pytest.approx(6.00, abs=0.01)


# ---------------------------------------------------------------- n hops


@pytest.mark.parametrize(("build", "n_hops"), [("knn", 1), ("knn", 3), ("delaunay", 2)])
def test_hop_graph_equals_dense_matrix_powers(build, n_hops):
    xy = _uniform(300, seed=12)
    a = _cells(xy, np.where(xy[:, 0] < xy[:, 0].mean(), "left", "right"))
    spatial_graph(a, build, **({"n_neighbors": 3} if build == "knn" else {}))
    hop_graph(a, n_hops)
    conn, dist = _check_layout(a, f"spatial_{n_hops}hop")
    g = a.obsp["spatial_connectivities"].toarray() > 0
    reach, step = g.copy(), g.copy()
    for _ in range(n_hops - 1):
        step = (step.astype(int) @ g.astype(int)) > 0
        reach |= step
    np.fill_diagonal(reach, False)
    assert np.array_equal(conn.toarray() > 0, reach)
    r, c = dist.nonzero()
    np.testing.assert_allclose(dist.data, cdist(xy, xy)[r, c], rtol=1e-12)
    p = a.uns[f"spatial_{n_hops}hop_neighbors"]["params"]
    assert p["n_hops"] == n_hops
    assert p["source_key"] == "spatial"
    assert p["method"] == build


def test_hop_graph_copy_and_key_added():
    a = _cells(_uniform(200, seed=13))
    knn_graph(a, 4, key_added="k4")
    conn, _ = hop_graph(a, 2, key="k4", copy=True)
    assert "k4_2hop_connectivities" not in a.obsp
    hop_graph(a, 2, key="k4", key_added="two")
    assert (a.obsp["two_connectivities"] != conn).nnz == 0
    assert "two_neighbors" in a.uns


# ---------------------------------------------------------------- dispatcher, keys, I/O


def test_spatial_graph_dispatches_and_key_added(tmp_path):
    a = _cells(_uniform(300, seed=14))
    for method, kw, direct in [
        ("knn", {"n_neighbors": 5}, knn_graph),
        ("radius", {"radius": 25.0}, radius_graph),
        ("delaunay", {"max_distance": 40.0}, delaunay_graph),
    ]:
        spatial_graph(a, method, key_added=method, **kw)
        conn, _ = _check_layout(a, method)
        assert _edges(conn) == _edges(direct(a, **kw, copy=True)[0])
        assert a.uns[f"{method}_neighbors"]["params"]["method"] == method
    a.write_h5ad(tmp_path / "g.h5ad")
    back = ad.read_h5ad(tmp_path / "g.h5ad")
    assert back.uns["knn_neighbors"]["params"]["radius"] is None
    assert (back.obsp["delaunay_distances"] != a.obsp["delaunay_distances"]).nnz == 0


def test_simulated_tissue_graph(tissue_small):
    a = tissue_small.adata.copy()
    knn_graph(a, 6)
    conn, _ = _check_layout(a)
    assert a.uns["spatial_neighbors"]["params"]["library_key"] == "image_id"
    assert (np.diff(conn.indptr) == 6).all()


# ---------------------------------------------------------------- errors


def test_nan_coordinates_are_refused():
    xy = _uniform(20)
    xy[3] = np.nan
    with pytest.raises(DataModelError, match=r"1 cells with NaN or infinite coordinates.*drop them"):
        knn_graph(_cells(xy))


def test_unknown_method_is_refused():
    with pytest.raises(
        ValueError, match=r"unknown method 'voronoi': use one of \['delaunay', 'knn', 'radius'\]"
    ):
        spatial_graph(_cells(_uniform(20)), "voronoi")


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_n_neighbors_is_refused(k):
    with pytest.raises(ValueError, match=r"n_neighbors must be an integer >= 1"):
        knn_graph(_cells(_uniform(20)), k)


@pytest.mark.parametrize("r", [0, -5.0, np.nan, np.inf])
def test_bad_radius_is_refused(r):
    with pytest.raises(ValueError, match=r"radius must be a distance > 0 \(µm\)"):
        radius_graph(_cells(_uniform(20)), r)


def test_bad_max_distance_and_n_hops_are_refused():
    a = _cells(_uniform(20))
    with pytest.raises(ValueError, match=r"max_distance must be a distance > 0"):
        delaunay_graph(a, max_distance=0.0)
    with pytest.raises(DataModelError, match=r"obsp\['spatial_connectivities'\] is missing: run"):
        hop_graph(a, 2)
    knn_graph(a, 3)
    with pytest.raises(ValueError, match=r"n_hops must be an integer >= 1"):
        hop_graph(a, 0)


def test_missing_library_key_is_refused():
    with pytest.raises(DataModelError, match=r"adata.obs\['roi'\] is missing.*library_key=None"):
        knn_graph(_cells(_uniform(20)), library_key="roi")


# ---------------------------------------------------------------- real data


@pytest.mark.realdata
def test_codex_crc_graphs_stay_within_images(shared):
    cells = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))
    a = _cells(cells[["x", "y"]].to_numpy(float) * CODEX_PIXEL_SIZE_UM, cells["imageID"].astype(str))
    images = a.obs["image_id"].to_numpy()
    assert len(np.unique(images)) == 140
    knn_graph(a, 6)
    conn, dist = _check_layout(a)
    r, c = conn.nonzero()
    assert (images[r] == images[c]).all()
    assert (np.diff(conn.indptr) == 6).all()
    # per-cell sorted neighbour distances equal brute force (tie-proof: pixel grids have ties)
    for img in np.unique(images)[::35]:
        idx = np.flatnonzero(images == img)
        _, d = _brute_knn(a.obsm["spatial"][idx], 6)
        got = np.sort(dist[idx].data.reshape(-1, 6), axis=1)
        np.testing.assert_allclose(got, d, rtol=1e-12)
    conn, _ = delaunay_graph(a, max_distance=50.0, copy=True)
    r, c = conn.nonzero()
    assert (images[r] == images[c]).all()
    assert (conn != conn.T).nnz == 0
    idx = np.flatnonzero(images == images[0])
    full = _delaunay_edges(a.obsm["spatial"][idx])
    d = cdist(a.obsm["spatial"][idx], a.obsm["spatial"][idx])
    assert _edges(conn[idx][:, idx]) == {(i, j) for i, j in full if d[i, j] <= 50.0}
