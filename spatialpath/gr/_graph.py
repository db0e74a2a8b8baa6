"""Spatial graphs of cells, per image: k nearest neighbours, radius, Delaunay, and n-hop neighbourhoods.

Each builder is one function with one algorithm; :func:`spatial_graph` only dispatches. Graphs are
built image by image (``library_key``, by default ``obs["image_id"]`` when present), so no edge
ever joins cells of different images, and are written in squidpy's layout (``squidpy.gr``
functions read them):

- ``obsp["{key_added}_connectivities"]``: CSR, float32, 1.0 per edge, sorted indices;
- ``obsp["{key_added}_distances"]``: CSR, float64 edge lengths in µm, the same sparsity pattern
  (cells at identical coordinates keep an explicit 0.0: never call ``eliminate_zeros`` on it);
- ``uns["{key_added}_neighbors"]``: ``{"connectivities_key", "distances_key", "params"}``.

Only x and y (``obsm["spatial"][:, :2]``) are used.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from anndata import AnnData
from scipy import sparse
from scipy.spatial import Delaunay, QhullError, cKDTree

from spatialpath.gr._utils import check_coordinates, default_library_key, get_graph, image_groups
from spatialpath.keys import Key

__all__ = ["delaunay_graph", "hop_graph", "knn_graph", "radius_graph", "spatial_graph"]

#: ``(connectivities, distances)``, both ``(n_cells, n_cells)`` CSR with one sparsity pattern.
Graph = tuple[sparse.csr_matrix, sparse.csr_matrix]
# One image's graph: CSR indptr, sorted local column indices, edge lengths (µm), a note to warn about.
_Local = tuple[np.ndarray, np.ndarray, np.ndarray, str | None]
_COLLINEAR_TOL = 1e-9  # collinear: 2nd singular value of the centred cells < this x the 1st
Method = Literal["knn", "radius", "delaunay"]
_PARAMS = {"method": None, "n_neighbors": None, "radius": None, "max_distance": None, "symmetric": True}


def _lengths(xy: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Euclidean length of every CSR edge, ``sqrt(dx² + dy²)`` (the arithmetic of ``cdist``)."""
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    x, y = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
    dx, dy = x[rows] - x[indices], y[rows] - y[indices]
    return np.sqrt(dx * dx + dy * dy)


def _pattern(rows: np.ndarray, cols: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical CSR pattern (sorted, duplicates merged) of the edges ``rows[e] -> cols[e]``."""
    a = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(m, m))
    a.sum_duplicates()
    return a.indptr, a.indices


def _knn_local(xy: np.ndarray, workers: int, p: dict) -> _Local:
    m, k = len(xy), p["n_neighbors"]
    kk = min(k, m - 1)
    note = f"{m} cells" if kk < k else None
    if kk <= 0:
        return np.zeros(m + 1, np.int64), np.zeros(0, np.int64), np.zeros(0), note
    tree = cKDTree(xy, balanced_tree=False, compact_nodes=False)
    perm = tree.indices  # query in the tree's spatial order: cache friendly, ~2x faster at 1e6 cells
    d, j = tree.query(xy[perm], kk + 1, workers=workers)
    if (j[:, 0] == perm).all():  # no coincident cells: self is the first hit
        j, d = j[:, 1:], d[:, 1:]
    else:  # coincident cells tie at 0; > k of them may push self out of the k + 1
        is_self = j == perm[:, None]
        is_self[~is_self.any(axis=1), -1] = True
        j, d = j[~is_self].reshape(m, kk), d[~is_self].reshape(m, kk)
    s = np.argsort(j, axis=1)
    cols, dist = np.empty_like(j), np.empty_like(d)
    cols[perm], dist[perm] = np.take_along_axis(j, s, 1), np.take_along_axis(d, s, 1)
    return np.arange(m + 1, dtype=np.int64) * kk, cols.ravel(), dist.ravel(), note


def _radius_local(xy: np.ndarray, workers: int, p: dict) -> _Local:
    tree = cKDTree(xy, balanced_tree=False, compact_nodes=False)
    pairs = tree.query_pairs(p["radius"] * (1 + 1e-9), output_type="ndarray")  # exact d <= r in _run
    indptr, indices = _pattern(np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]], len(xy))
    return indptr, indices, _lengths(xy, indptr, indices), None


def _line_edges(xy: np.ndarray, exc: Exception) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D Delaunay graph of collinear cells: consecutive distinct positions along the line."""
    uniq, first, inv = np.unique(xy, axis=0, return_index=True, return_inverse=True)
    rep = first[inv.ravel()]
    if len(uniq) < 2:
        return rep, np.zeros(0, np.int64), np.zeros(0, np.int64)
    c = uniq - uniq.mean(axis=0)
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    if s[1] > _COLLINEAR_TOL * s[0]:
        msg = str(exc).splitlines()[0]
        raise ValueError(f"Delaunay triangulation failed on {len(xy)} cells that are not collinear: {msg}")
    o = first[np.argsort(c @ vt[0], kind="stable")]
    return rep, np.r_[o[:-1], o[1:]], np.r_[o[1:], o[:-1]]


def _delaunay_local(xy: np.ndarray, workers: int, p: dict) -> _Local:
    m, note = len(xy), None
    try:
        tri = Delaunay(xy)  # QhullError for < 3 cells too
    except QhullError as exc:
        rep, rows, cols = _line_edges(xy, exc)
        note = f"{m} cells"
    else:
        ip, cols = tri.vertex_neighbor_vertices
        rows, rep = np.repeat(np.arange(m), np.diff(ip)), np.arange(m)
        rep[tri.coplanar[:, 0]] = tri.coplanar[:, 2]  # cells Qhull merged: duplicates (+ its precision)
    if (rep != np.arange(m)).any():  # each merged cell takes its kept twin's edges, twins are joined
        g = sparse.csr_matrix((np.ones(m, np.float32), (np.arange(m), rep)), shape=(m, m))
        a = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(m, m))
        a = (g @ a @ g.T + g @ g.T).tocoo()
        rows, cols = a.row[a.row != a.col], a.col[a.row != a.col]
    indptr, indices = _pattern(rows, cols, m)
    return indptr, indices, _lengths(xy, indptr, indices), note


def _run(
    adata: AnnData, local: Callable, p: dict, lib: str | None, key_added: str, copy: bool, note: str = ""
) -> Graph | None:
    """Build each image's graph (threads across images), assemble, prune, symmetrise, :func:`_finish`."""
    xy = check_coordinates(adata)
    p["library_key"] = lib = default_library_key(adata, lib)
    groups = image_groups(adata, lib)
    n, order, off = adata.n_obs, groups.order, groups.offsets
    blocks = [xy[order[a:b]] for a, b in itertools.pairwise(off)]
    if groups.n == 1:
        parts = [local(blocks[0], -1, p)]
    else:  # scipy's KD-tree and Qhull release the GIL
        with ThreadPoolExecutor(os.cpu_count()) as ex:
            parts = list(ex.map(lambda b: local(b, 1, p), blocks))
    if notes := [(name, q[3]) for name, q in zip(groups.names, parts, strict=True) if q[3]]:
        warnings.warn(f"{len(notes)} image(s) {note} (first: {notes[:5]})", UserWarning, stacklevel=3)
    deg = np.concatenate([np.diff(q[0]) for q in parts])
    dist = np.concatenate([q[2] for q in parts])
    cols = np.concatenate([o + q[1] for o, q in zip(off[:-1], parts, strict=True)])
    indptr = np.r_[0, np.cumsum(deg)]
    if not np.array_equal(order, np.arange(n)):  # scatter rows to their cells (order rises within
        gdeg = np.zeros(n, np.int64)  # an image, so column indices stay sorted)
        gdeg[order] = deg
        gptr = np.r_[0, np.cumsum(gdeg)]
        dest = gptr[np.repeat(order, deg)] + np.arange(len(dist)) - np.repeat(indptr[:-1], deg)
        cols[dest], dist[dest], indptr = order[cols], dist.copy(), gptr
    thresh = p["radius"] if p["radius"] is not None else p["max_distance"]
    if thresh is not None:  # inclusive, on the stored lengths
        keep = dist <= thresh
        indptr, cols, dist = np.r_[0, np.cumsum(keep)][indptr], cols[keep], dist[keep]
    if p["method"] == "knn" and p["symmetric"]:  # union A + Aᵀ, lengths recomputed on it
        a = sparse.csr_matrix((np.ones(len(cols), np.float32), cols, indptr), shape=(n, n))
        indptr, cols = _pattern(*(a + a.T).nonzero(), n)
        dist = _lengths(xy, indptr, cols)
    return _finish(adata, (indptr, cols, dist), key_added, p, copy, level=4)


def _finish(adata: AnnData, csr: tuple, key: str, params: dict, copy: bool, level: int) -> Graph | None:
    """Make the two CSR matrices, warn about coincident cells; return them or write them (squidpy)."""
    indptr, indices, dist = csr
    n, conn_key, dist_key = adata.n_obs, Key.obsp.connectivities(key), Key.obsp.distances(key)
    idx = np.int32 if max(n, len(indices)) < np.iinfo(np.int32).max else np.int64
    indptr, indices = indptr.astype(idx), indices.astype(idx)
    conn = sparse.csr_matrix((np.ones(len(indices), np.float32), indices.copy(), indptr.copy()), shape=(n, n))
    graph = conn, sparse.csr_matrix((dist.astype(np.float64), indices, indptr), shape=(n, n))
    if n0 := int(np.count_nonzero(dist == 0)):
        msg = f"{n0} edges join cells at identical coordinates: their distance 0.0 is stored explicitly"
        msg += f" in obsp[{dist_key!r}]; drop duplicated cells if they are double detections (squidpy #925)"
        warnings.warn(msg, UserWarning, stacklevel=level)
    if copy:
        return graph
    adata.obsp[conn_key], adata.obsp[dist_key] = graph
    params = {**params, "units": Key.unit, "coord_type": "generic"}
    uns = {"connectivities_key": conn_key, "distances_key": dist_key, "params": params}
    adata.uns[Key.uns.spatial_neighbors(key)] = uns
    return None


def _check(name: str, value: Any, *, integer: bool = False, allow_none: bool = False) -> None:
    """Refuse a k or hop count < 1 (``integer``) or a distance that is not finite and > 0."""
    kinds = (int, np.integer) if integer else (int, np.integer, float, np.floating)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and 0 < value < np.inf
    if not ok and not (value is None and allow_none):
        what = "an integer >= 1" if integer else "a distance > 0 (µm)"
        raise ValueError(f"{name} must be {what}, got {value!r}")


def knn_graph(
    adata: AnnData,
    n_neighbors: int = 6,
    *,
    symmetric: bool = False,
    max_distance: float | None = None,
    library_key: str | None = None,
    key_added: str = "spatial",
    copy: bool = False,
) -> Graph | None:
    """Join each cell to its ``n_neighbors`` nearest cells of the same image (directed kNN graph).

    Row ``i`` holds the edges ``i -> j`` to the k nearest ``j != i``: exactly k out-edges per cell,
    not symmetric, like ``squidpy.gr.spatial_neighbors(coord_type="generic", n_neighs=k)``; ties
    are broken arbitrarily. One ``scipy.spatial.cKDTree`` per image, queried on all cores.

    Parameters
    ----------
    adata
        Cells with ``obsm["spatial"]`` in µm.
    n_neighbors
        k >= 1. In an image of ``m <= k`` cells each cell is joined to the ``m - 1`` others, with a
        warning naming those images.
    symmetric
        Keep the union ``A + Aᵀ`` (an edge whenever either cell is among the other's k nearest).
    max_distance
        Drop edges longer than this (µm, inclusive): rows then have at most k edges.
    library_key
        Column of ``obs`` naming the image; default ``"image_id"`` when present, else one image.
    key_added
        Keys written: ``obsp["{key_added}_connectivities"]`` (float32 ones),
        ``obsp["{key_added}_distances"]`` (float64 µm, same pattern, sorted indices) and
        ``uns["{key_added}_neighbors"]`` (squidpy's layout; ``params``: method, n_neighbors,
        radius, max_distance, symmetric, library_key, units, coord_type).
    copy
        Return the matrices instead of writing them.

    Returns
    -------
    ``None`` (the keys above are written), or ``(connectivities, distances)`` with ``copy=True``.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> adata = simulate_tissue(n_cells=500).adata
    >>> knn_graph(adata, n_neighbors=6)
    >>> int(adata.obsp["spatial_connectivities"].getnnz(axis=1).min())
    6
    >>> adata.uns["spatial_neighbors"]["params"]["method"]
    'knn'
    """
    _check("n_neighbors", n_neighbors, integer=True)
    _check("max_distance", max_distance, allow_none=True)
    p = {**_PARAMS, "method": "knn", "n_neighbors": int(n_neighbors), "max_distance": max_distance}
    note = f"have <= n_neighbors={n_neighbors} cells: their cells are joined to all others of the image"
    return _run(adata, _knn_local, {**p, "symmetric": symmetric}, library_key, key_added, copy, note)


def radius_graph(
    adata: AnnData,
    radius: float,
    *,
    library_key: str | None = None,
    key_added: str = "spatial",
    copy: bool = False,
) -> Graph | None:
    """Join every two cells of the same image within ``radius`` µm (``d_ij <= radius``, inclusive).

    Symmetric, no self-loops. Pairs come from ``scipy.spatial.cKDTree.query_pairs``; the stored
    lengths are ``sqrt(dx² + dy²)`` and decide the threshold. At 1 cell/400 µm² a 30 µm radius
    gives a mean degree of about λπr² = 7.07 (7.03 with the image border).

    Parameters
    ----------
    adata
        Cells with ``obsm["spatial"]`` in µm.
    radius
        > 0, µm.
    library_key, key_added, copy
        As in :func:`knn_graph` (same keys written, same return).

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> adata = simulate_tissue(n_cells=500).adata
    >>> conn, dist = radius_graph(adata, radius=30.0, copy=True)
    >>> bool((dist.data <= 30.0).all()), (conn != conn.T).nnz
    (True, 0)
    """
    _check("radius", radius)
    p = {**_PARAMS, "method": "radius", "radius": float(radius)}
    return _run(adata, _radius_local, p, library_key, key_added, copy)


def delaunay_graph(
    adata: AnnData,
    *,
    max_distance: float | None = None,
    library_key: str | None = None,
    key_added: str = "spatial",
    copy: bool = False,
) -> Graph | None:
    """Join cells that share an edge of the Delaunay triangulation of their image.

    Symmetric, ``scipy.spatial.Delaunay`` (Qhull) per image; the mean degree is 6 in the interior.
    ``max_distance`` is honoured (squidpy ignores a scalar ``radius`` with ``delaunay=True``).
    Degenerate images, documented fallbacks:

    - cells at identical coordinates (or merged by Qhull at its precision): one is triangulated,
      its twins get its edges and are joined to it (distance 0.0, with a warning);
    - < 3 distinct cells, or all on one line: the 1-D Delaunay graph (consecutive distinct
      positions along the line), with a warning naming the images. Other Qhull failures raise.

    Parameters
    ----------
    adata
        Cells with ``obsm["spatial"]`` in µm.
    max_distance
        Drop edges longer than this (µm, inclusive).
    library_key, key_added, copy
        As in :func:`knn_graph` (same keys written, same return).

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> adata = simulate_tissue(n_cells=500).adata
    >>> delaunay_graph(adata, max_distance=50.0)
    >>> float(adata.obsp["spatial_distances"].max()) <= 50.0
    True
    """
    _check("max_distance", max_distance, allow_none=True)
    p = {**_PARAMS, "method": "delaunay", "max_distance": max_distance}
    note = "have < 3 distinct cells or all cells on a line: their graph joins consecutive cells on it"
    return _run(adata, _delaunay_local, p, library_key, key_added, copy, note)


_METHODS: dict[str, Callable[..., Graph | None]] = {"knn": knn_graph, "radius": radius_graph}
_METHODS["delaunay"] = delaunay_graph


def spatial_graph(adata: AnnData, method: Method = "knn", **kwargs: Any) -> Graph | None:
    """Build a spatial graph with one of :func:`knn_graph`, :func:`radius_graph`, :func:`delaunay_graph`.

    A thin dispatcher: each method is its own function with its own parameters (see them for the
    algorithm, the keys written and the degenerate cases); ``kwargs`` are passed on unchanged.

    Parameters
    ----------
    adata
        Cells with ``obsm["spatial"]`` in µm.
    method
        ``"knn"``, ``"radius"`` or ``"delaunay"``.
    **kwargs
        Parameters of the chosen function.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> adata = simulate_tissue(n_cells=500).adata
    >>> spatial_graph(adata, "radius", radius=25.0)
    >>> adata.uns["spatial_neighbors"]["params"]["radius"]
    25.0
    """
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {sorted(_METHODS)}")
    return _METHODS[method](adata, **kwargs)


def hop_graph(
    adata: AnnData,
    n_hops: int,
    *,
    key: str = "spatial",
    key_added: str | None = None,
    copy: bool = False,
) -> Graph | None:
    """Join each cell to every cell reachable in 1 to ``n_hops`` steps of a stored graph (no self).

    Edges follow the stored direction (on a directed kNN graph, ``i -> j -> l``); weights are
    ignored. Distances are Euclidean lengths in µm, not hop counts. Cost grows with the
    neighbourhood size (about 3·n_hops² cells on a planar graph).

    Parameters
    ----------
    adata
        Cells with a graph in ``obsp["{key}_connectivities"]`` (from this module or squidpy).
    n_hops
        >= 1; 1 returns the stored graph without self-loops.
    key
        ``key_added`` of the stored graph.
    key_added
        Prefix of the keys written (default ``"{key}_{n_hops}hop"``): ``obsp["{key_added}_connectivities"]``,
        ``obsp["{key_added}_distances"]`` and ``uns["{key_added}_neighbors"]`` (the stored graph's
        ``params`` plus ``n_hops`` and ``source_key``).
    copy
        As in :func:`knn_graph` (same return).

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> adata = simulate_tissue(n_cells=500).adata
    >>> delaunay_graph(adata)
    >>> hop_graph(adata, 2)
    >>> bool(adata.obsp["spatial_2hop_connectivities"].sum() > adata.obsp["spatial_connectivities"].sum())
    True
    """
    _check("n_hops", n_hops, integer=True)
    reach = a = (get_graph(adata, Key.obsp.connectivities(key)) != 0).astype(np.float32)
    for _ in range(n_hops - 1):
        reach = ((reach + reach @ a) != 0).astype(np.float32)
    rows, cols = reach.nonzero()
    indptr, indices = _pattern(rows[rows != cols], cols[rows != cols], adata.n_obs)
    csr = indptr, indices, _lengths(check_coordinates(adata), indptr, indices)
    base = adata.uns.get(Key.uns.spatial_neighbors(key), {}).get("params", {})
    params = {**base, "n_hops": int(n_hops), "source_key": key}
    return _finish(adata, csr, key_added or f"{key}_{n_hops}hop", params, copy, level=3)
