"""CSR plumbing shared by the graph statistics: keys, the undirected pattern, a cache-friendly order.

The kernels work on the pattern (``indptr``, ``indices``) of ``obsp["spatial_connectivities"]``,
never on its values, and accept read-only arrays (no explicit signatures).
"""

from __future__ import annotations

import warnings

import numba
import numpy as np

from spatialpath.gr._utils import Groups

__all__ = [
    "count_cross_edges",
    "locality_order",
    "undirected",
    "warn_cross_image_edges",
]


def warn_cross_image_edges(n_cross: int, groups: Groups, library_key: str | None, what: str) -> None:
    """Warn that the graph joins cells of different images (built without ``library_key``)."""
    if n_cross:
        warnings.warn(
            f"{n_cross} edges of the spatial graph join cells of different images "
            f"(adata.obs[{library_key!r}], {groups.n} images): {what}. Rebuild the graph per image, e.g. "
            f"spatialpath.gr.spatial_graph(adata, library_key={library_key!r})",
            UserWarning,
            stacklevel=3,
        )


@numba.njit(cache=True, nogil=True)
def count_cross_edges(indptr, indices, img):
    """Number of stored edges between cells of different images."""
    count = 0
    for i in range(indptr.shape[0] - 1):
        for p in range(indptr[i], indptr[i + 1]):
            count += img[indices[p]] != img[i]
    return count


@numba.njit(cache=True, nogil=True)
def _transpose(indptr, indices, n):
    """CSR pattern of Aᵀ (rows come out sorted: sources are visited in increasing order)."""
    t_indptr = np.zeros(n + 1, np.int64)
    for p in range(indices.shape[0]):
        t_indptr[indices[p] + 1] += 1
    for i in range(n):
        t_indptr[i + 1] += t_indptr[i]
    fill = t_indptr[:-1].copy()
    t_indices = np.empty(indices.shape[0], indices.dtype)
    for i in range(n):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            t_indices[fill[j]] = i
            fill[j] += 1
    return t_indptr, t_indices


@numba.njit(cache=True, nogil=True)
def _union_rows(indptr, indices, t_indptr, t_indices, img, within, out_indptr, out_indices, fill):
    """Row ``i`` of A + Aᵀ without ``i`` (and without other images when ``within``): count or fill."""
    n = indptr.shape[0] - 1
    for i in range(n):
        p, p_end = indptr[i], indptr[i + 1]
        q, q_end = t_indptr[i], t_indptr[i + 1]
        pos = out_indptr[i] if fill else 0
        last = -1
        count = 0
        while p < p_end or q < q_end:
            if q >= q_end or (p < p_end and indices[p] <= t_indices[q]):
                j = indices[p]
                p += 1
            else:
                j = t_indices[q]
                q += 1
            if j == last or j == i:  # noqa: SIM109 (numba: scalar compares)
                continue
            if within and img[j] != img[i]:
                continue
            last = j
            if fill:
                out_indices[pos + count] = j
            count += 1
        if not fill:
            out_indptr[i + 1] = count


def undirected(
    indptr: np.ndarray, indices: np.ndarray, img: np.ndarray, *, within: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted CSR pattern of ``A + Aᵀ`` without self-loops; ``within`` drops edges between images.

    Every stored entry is an edge, explicit zeros included (as ``networkx.Graph(A)``). Two
    passes: count each row of the union, then fill it.
    """
    n = indptr.shape[0] - 1
    t_indptr, t_indices = _transpose(indptr, indices, n)
    out_indptr = np.zeros(n + 1, np.int64)
    dummy = np.empty(0, indices.dtype)
    _union_rows(indptr, indices, t_indptr, t_indices, img, within, out_indptr, dummy, False)
    np.cumsum(out_indptr, out=out_indptr)
    out_indices = np.empty(out_indptr[-1], indices.dtype)
    _union_rows(indptr, indices, t_indptr, t_indices, img, within, out_indptr, out_indices, True)
    return out_indptr, out_indices


@numba.njit(cache=True, nogil=True)
def _bfs_order(indptr, indices):
    """Cells in breadth-first order, component after component (a Cuthill–McKee-like numbering)."""
    n = indptr.shape[0] - 1
    order = np.empty(n, indices.dtype)
    seen = np.zeros(n, np.bool_)
    head = tail = 0
    for start in range(n):
        if seen[start]:
            continue
        seen[start] = True
        order[tail] = start
        tail += 1
        while head < tail:
            u = order[head]
            head += 1
            for p in range(indptr[u], indptr[u + 1]):
                w = indices[p]
                if not seen[w]:
                    seen[w] = True
                    order[tail] = w
                    tail += 1
    return order


@numba.njit(cache=True, nogil=True)
def _permute(indptr, indices, order, rank):
    """The graph with cell ``order[i]`` renumbered ``i`` (rows sorted again by insertion)."""
    n = indptr.shape[0] - 1
    new_indptr = np.zeros(n + 1, np.int64)
    for i in range(n):
        new_indptr[i + 1] = new_indptr[i] + indptr[order[i] + 1] - indptr[order[i]]
    new_indices = np.empty_like(indices)
    for i in range(n):
        old, start = order[i], new_indptr[i]
        for p in range(indptr[old], indptr[old + 1]):
            x = rank[indices[p]]
            q = start + p - indptr[old]
            while q > start and new_indices[q - 1] > x:
                new_indices[q] = new_indices[q - 1]
                q -= 1
            new_indices[q] = x
    return new_indptr, new_indices


def locality_order(indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renumber cells in breadth-first order so that neighbours sit close in memory.

    Returns ``(order, new_indptr, new_indices)``: cell ``order[i]`` becomes cell ``i``; rows stay
    sorted. Breadth-first searches and list intersections on a 10^6-cell graph in arbitrary order
    are memory bound; in this order they run several times faster.
    """
    order = _bfs_order(indptr, indices)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0], dtype=order.dtype)
    new_indptr, new_indices = _permute(indptr, indices, order, rank)
    return order, new_indptr, new_indices
