"""Exact mean and variance of directed join counts under within-image label permutation.

For one image with ``n`` cells, ``n_c`` of type ``c``, and a directed multigraph of stored edges,
``X[a, b]`` counts the edges ``i -> j`` with ``label(i) = a`` and ``label(j) = b``. Under a uniformly
random permutation of the labels, the probability that ``k`` given distinct cells carry given
labels is a ratio of falling factorials, e.g. ``P(a, b) = n_a (n_b − [a = b]) / (n (n − 1))``.
``E[X²]`` is a sum over ordered pairs of edges, grouped by how the two edges overlap; the sizes
of these groups are computed from the graph alone (:func:`graph_summary`), the probabilities from
the label counts alone (:func:`join_count_moments`). The derivation is in
``docs/nhood-enrichment.md``; the tests check it against enumeration of every permutation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy import sparse, special

from spatialpath.gr._counts import pair_counts
from spatialpath.gr._utils import Groups

__all__ = [
    "NORMAL_MIN_EXPECTED",
    "GraphSummary",
    "analytic_levels",
    "cells_per_image",
    "graph_summary",
    "join_count_moments",
    "normal_pvalue",
    "sum_by",
]

#: the normal p-value is claimed only where the expected count is at least this (docs/nhood-enrichment.md).
NORMAL_MIN_EXPECTED = 5.0

#: columns of the per-image summary produced by the numba kernel.
_M, _SAME, _RECIP, _LOOPS, _LOOPS2, _OUT2, _IN2, _INOUT, _LOOP_TOUCH = range(9)


@numba.njit(nogil=True)
def _summary_kernel(indptr, indices, tptr, tind, codes, n_images, check_images):
    """Per-image edge-pair counts from the sorted CSR of a graph and of its transpose.

    Row ``i`` of the transpose lists the sources of the edges into ``i``, so the reciprocal
    multiplicity ``μ(j, i)`` of each out-edge ``i -> j`` is found by merging two sorted rows:
    sequential reads only (a binary search in row ``j`` costs a chain of cache misses per edge).
    Duplicate entries are parallel edges. Edges between images are skipped and counted.
    """
    n = len(indptr) - 1
    s = np.zeros((n_images, 9), np.int64)
    n_cross = 0
    for i in range(n):
        g = codes[i]
        indeg = 0
        for f in range(tptr[i], tptr[i + 1]):
            j = tind[f]
            if j != i and (not check_images or codes[j] == g):
                indeg += 1
        outdeg = 0
        loop = 0
        e, end = indptr[i], indptr[i + 1]
        f, fend = tptr[i], tptr[i + 1]
        while e < end:
            j = indices[e]
            mu = 1
            while e + mu < end and indices[e + mu] == j:
                mu += 1
            e += mu
            if check_images and codes[j] != g:
                n_cross += mu
            elif j == i:
                loop += mu
            else:
                outdeg += mu
                s[g, _M] += mu
                s[g, _SAME] += mu * mu
                while f < fend and tind[f] < j:
                    f += 1
                nu = 0
                while f + nu < fend and tind[f + nu] == j:
                    nu += 1
                s[g, _RECIP] += mu * nu
        s[g, _LOOPS] += loop
        s[g, _LOOPS2] += loop * loop
        s[g, _OUT2] += outdeg * outdeg
        s[g, _IN2] += indeg * indeg
        s[g, _INOUT] += indeg * outdeg
        s[g, _LOOP_TOUCH] += loop * (outdeg + indeg)
    return s, n_cross


@dataclass(frozen=True)
class GraphSummary:
    """Counts of ordered pairs of edges by overlap type, per image (each an int64 ``(G,)`` array).

    With ``μ(i, j)`` the multiplicity of the stored edge ``i -> j`` (``i ≠ j``), ``out_v`` /
    ``in_v`` the out/in-degrees without self-loops and ``λ_v`` the self-loops at ``v``:

    - ``m = Σ μ(i, j)``: edges between two cells;
    - ``same = Σ μ(i, j)²``: ordered pairs of edges with the same ends (``m`` for a simple graph);
    - ``reciprocal = Σ μ(i, j) μ(j, i)``: pairs ``(i -> j, j -> i)``;
    - ``shared_source = Σ_v out_v² − same``, ``shared_target = Σ_v in_v² − same``;
    - ``chain = Σ_v in_v out_v − reciprocal``: pairs ``(i -> v, v -> l)`` with ``l ≠ i``;
    - ``disjoint = m² − same − reciprocal − shared_source − shared_target − 2 chain``;
    - ``loops = Σ λ_v``, ``loops2 = Σ λ_v²``, ``loop_touch = Σ_v λ_v (out_v + in_v)``.

    ``n_cross`` counts stored edges between cells of different images, which are ignored.
    """

    m: np.ndarray
    same: np.ndarray
    reciprocal: np.ndarray
    shared_source: np.ndarray
    shared_target: np.ndarray
    chain: np.ndarray
    disjoint: np.ndarray
    loops: np.ndarray
    loops2: np.ndarray
    loop_touch: np.ndarray
    n_cross: int


def graph_summary(graph: sparse.csr_matrix, image_codes: np.ndarray, n_images: int) -> GraphSummary:
    """Summarise the stored edges of each image for :func:`join_count_moments`.

    Parameters
    ----------
    graph
        CSR adjacency with sorted indices (duplicate entries count as parallel edges, edge values
        are ignored).
    image_codes
        Image index of each cell, in ``0..n_images-1``.
    n_images
        Number of images.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import sparse
    >>> g = sparse.csr_matrix(np.array([[0, 1, 1], [1, 0, 0], [0, 1, 0]]))
    >>> s = graph_summary(g, np.zeros(3, np.int32), 1)
    >>> int(s.m[0]), int(s.reciprocal[0]), int(s.shared_source[0]), int(s.chain[0]), int(s.disjoint[0])
    (4, 2, 2, 3, 0)
    """
    pattern = sparse.csr_matrix((np.ones(graph.nnz, np.int8), graph.indices, graph.indptr), shape=graph.shape)
    transposed = pattern.T.tocsr()  # scipy's counting sort: rows of the transpose come out sorted
    raw, n_cross = _summary_kernel(
        *_csr_arrays(pattern),
        *_csr_arrays(transposed),
        np.ascontiguousarray(image_codes, dtype=np.int64),
        int(n_images),
        bool(n_images > 1),
    )
    m, same, recip = raw[:, _M], raw[:, _SAME], raw[:, _RECIP]
    shared_source = raw[:, _OUT2] - same
    shared_target = raw[:, _IN2] - same
    chain = raw[:, _INOUT] - recip
    disjoint = m * m - same - recip - shared_source - shared_target - 2 * chain
    return GraphSummary(
        m=m,
        same=same,
        reciprocal=recip,
        shared_source=shared_source,
        shared_target=shared_target,
        chain=chain,
        disjoint=disjoint,
        loops=raw[:, _LOOPS],
        loops2=raw[:, _LOOPS2],
        loop_touch=raw[:, _LOOP_TOUCH],
        n_cross=int(n_cross),
    )


def _csr_arrays(m: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    if not m.has_sorted_indices:
        m = m.sorted_indices()
    return np.ascontiguousarray(m.indptr, dtype=np.int64), np.ascontiguousarray(m.indices)


def _falling(x: np.ndarray, k: int) -> np.ndarray:
    """Falling factorial ``x (x − 1) … (x − k + 1)`` in float64 (0 when ``x < k``)."""
    x = np.asarray(x, np.float64)
    out = np.ones_like(x)
    for j in range(k):
        out = out * np.maximum(x - j, 0.0)
    return out


def join_count_moments(n_per_type: np.ndarray, summary: GraphSummary) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and variance of the directed join counts of every image.

    Parameters
    ----------
    n_per_type
        ``(G, K)`` number of cells of each type in each image.
    summary
        :func:`graph_summary` of the same images.

    Returns
    -------
    ``(mean, var)``, each ``(G, K, K)`` float64: moments of ``X[g, a, b]`` (edges ``a -> b`` in
    image ``g``) under a uniform permutation of the labels within image ``g``.

    Examples
    --------
    Three cells labelled (0, 1, 1) and the edges 0→1, 0→2, 1→0, 2→1: ``X[0, 1]`` is the
    out-degree of the type-0 cell (2, 1 or 1 with probability 1/3 each), mean 4/3, variance 2/9.

    >>> import numpy as np
    >>> from scipy import sparse
    >>> g = sparse.csr_matrix(np.array([[0, 1, 1], [1, 0, 0], [0, 1, 0]]))
    >>> mean, var = join_count_moments(np.array([[1, 2]]), graph_summary(g, np.zeros(3, np.int32), 1))
    >>> round(float(mean[0, 0, 1]), 6), round(float(var[0, 0, 1]), 6)
    (1.333333, 0.222222)
    """
    na = np.asarray(n_per_type, np.float64)  # (G, K)
    n = na.sum(axis=1)  # (G,)
    col = lambda v: np.asarray(v, np.float64)[:, None, None]  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = [np.where(_falling(n, k) > 0, 1.0 / _falling(n, k), 0.0)[:, None, None] for k in range(5)]
        a1, a2 = na[:, :, None], _falling(na, 2)[:, :, None]  # source type a
        b1, b2 = na[:, None, :], _falling(na, 2)[:, None, :]  # target type b
        # a ≠ b: the four overlap types where both ends keep distinct labels
        p2 = a1 * b1 * inv[2]
        mean = col(summary.m) * p2
        second = (
            col(summary.same) * p2
            + col(summary.shared_source) * a1 * b2 * inv[3]
            + col(summary.shared_target) * a2 * b1 * inv[3]
            + col(summary.disjoint) * a2 * b2 * inv[4]
        )
        # a = b: every vertex of the pair of edges has label a; group pairs by #distinct vertices
        q = [_falling(na, k) * inv[k][:, :, 0] for k in range(5)]  # (G, K)
        m, loops = np.asarray(summary.m, np.float64), np.asarray(summary.loops, np.float64)
        n1 = summary.loops2
        n2 = summary.same + summary.reciprocal + 2 * summary.loop_touch + (loops**2 - summary.loops2)
        n3 = (
            summary.shared_source
            + summary.shared_target
            + 2 * summary.chain
            + 2 * (loops * m - summary.loop_touch)
        )
        n4 = summary.disjoint
        diag_mean = m[:, None] * q[2] + loops[:, None] * q[1]
        diag_second = sum(
            np.asarray(c, np.float64)[:, None] * q[k] for k, c in ((1, n1), (2, n2), (3, n3), (4, n4))
        )
    idx = np.arange(na.shape[1])
    mean[:, idx, idx] = diag_mean
    second[:, idx, idx] = diag_second
    var = second - mean**2
    # exact zero variance (a type filling its image, an empty type) comes out as ± round-off
    var = np.where(var <= 1e-12 * second, 0.0, var)
    return mean, var


def normal_pvalue(observed: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Two-sided normal p-value of a count with exact mean and variance.

    Where ``var`` is 0 the count cannot vary (it equals its mean) and p is 1, as a permutation
    test would give.

    Where ``mean < NORMAL_MIN_EXPECTED`` the deviation is shrunk by 0.5 (continuity correction):
    the p-value is then conservative, not claimed calibrated.

    Examples
    --------
    >>> normal_pvalue(np.array([10.0, 2.0]), np.array([6.0, 1.0]), np.array([4.0, 1.0])).round(4).tolist()
    [0.0455, 0.6171]
    """
    cc = np.where(mean < NORMAL_MIN_EXPECTED, 0.5, 0.0)
    dev = np.maximum(np.abs(observed - mean) - cc, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, special.erfc(dev / np.sqrt(2.0 * var)), 1.0)


def cells_per_image(labels: np.ndarray, groups: Groups, n_types: int) -> np.ndarray:
    """``(G, K)`` number of cells of each type in each image."""
    flat = groups.codes.astype(np.int64) * n_types + labels
    return np.bincount(flat, minlength=groups.n * n_types).reshape(groups.n, n_types)


def sum_by(values: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """Sum the rows of ``values`` into ``n`` groups given by ``index``."""
    out = np.zeros((n, *values.shape[1:]), values.dtype)
    np.add.at(out, index, values)
    return out


def analytic_levels(
    labels: np.ndarray,
    graph: sparse.csr_matrix,
    groups: Groups,
    n_types: int,
    image_patient: np.ndarray | None,
    n_patients: int,
) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Observed counts, exact moments and normal p per image, pooled, and per patient.

    Images are permuted independently, so the moments of a sum over images are the sums of
    their moments. Edges between images are dropped. Returns the levels and the number of
    dropped edges.
    """
    summary = graph_summary(graph, groups.codes, groups.n)
    if summary.n_cross:
        rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
        keep = groups.codes[rows] == groups.codes[graph.indices]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=graph.shape[0]))])
        indices = graph.indices[keep]  # CSR order kept: parallel edges stay separate entries
        graph = sparse.csr_matrix((np.ones(len(indices), np.int8), indices, indptr), shape=graph.shape)
    observed = pair_counts(labels, graph, groups, n_types).astype(np.float64)
    mean, var = join_count_moments(cells_per_image(labels, groups, n_types), summary)
    out = {"image": {"observed": observed, "mean": mean, "var": var}}
    out["cohort"] = {k: v.sum(axis=0) for k, v in out["image"].items()}
    if image_patient is not None:
        out["patient"] = {k: sum_by(v, image_patient, n_patients) for k, v in out["image"].items()}
    for level in out.values():
        level["p"] = normal_pvalue(level["observed"], level["mean"], level["var"])
    return out, summary.n_cross
