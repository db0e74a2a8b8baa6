"""The numerics of :mod:`spatialpath.gr._autocorr`: numba kernels, graph moments, null moments.

The numba kernels take the graph as CSR arrays (``indptr``, ``indices``, ``data``) and the image code
of each cell; the parallel sums reduce fixed row blocks in block order, so their results do not
depend on the number of threads. The per-image graphs of the permutation test put each image's cells
in a canonical order (by ``obs_names``) so that its null depends on the image alone.
"""

from __future__ import annotations

import numba
import numpy as np
from anndata import AnnData
from scipy import sparse, special

from spatialpath.gr._utils import Groups

__all__ = [
    "block_count",
    "column_sums",
    "cross_sums",
    "graph_moments",
    "image_graphs",
    "normal_p",
    "perm_kernel",
    "row_moments",
    "row_normalise",
    "variances",
    "zscore",
]


@numba.njit(nogil=True)
def perm_kernel(labels, args, out):
    """``out[g·F + k]``: scale × Σ w_ij z[π(i), k] z[π(j), k], or Σ w_ij (z[π(i), k] − z[π(j), k])²."""
    indptr, indices, data, codes, z, scale, geary = args
    f = z.shape[1]
    acc = np.empty(f)
    for i in range(indptr.shape[0] - 1):
        pi, base = labels[i], codes[i] * f
        acc[:] = 0.0
        for e in range(indptr[i], indptr[i + 1]):
            w, pj = data[e], labels[indices[e]]
            if geary:
                for k in range(f):
                    acc[k] += w * (z[pi, k] - z[pj, k]) ** 2
            else:
                for k in range(f):
                    acc[k] += w * z[pj, k]
        for k in range(f):
            out[base + k] += acc[k] if geary else z[pi, k] * acc[k]
    for s in range(out.shape[0]):
        out[s] *= scale[s]


def block_count(n: int, n_images: int, f: int) -> int:
    """Row blocks of the parallel sums: a function of the shape only, not of the thread count."""
    return int(max(1, min(64, n // 8192, 2**22 // max(1, n_images * f))))  # partial sums ≤ 128 MiB


@numba.njit(nogil=True)
def column_sums(x, codes, n_images, n_blocks):
    """Per image column sums ``(G, F)``; per block max |x| and count of non-finite values.

    Serial: one streaming pass, where a parallel region costs more than it saves on a busy machine.
    """
    n, f = x.shape
    part, top = np.zeros((n_blocks, n_images, f)), np.zeros((n_blocks, f))
    bad = np.zeros((n_blocks, f), np.int64)
    size = -(-n // n_blocks)
    for b in range(n_blocks):
        for i in range(b * size, min(n, (b + 1) * size)):
            p = part[b, codes[i]]
            for k in range(f):
                v = np.float64(x[i, k])
                if np.isfinite(v):
                    p[k] += v
                    top[b, k] = max(top[b, k], abs(v))
                else:
                    bad[b, k] += 1
    out = part[0].copy()
    for b in range(1, n_blocks):  # in block order: deterministic
        out += part[b]
    return out, top, bad


@numba.njit(parallel=True, nogil=True, fastmath=True)  # fastmath: values are finite (checked)
def cross_sums(x, means, codes, d, indptr, indices, data, n_blocks):
    """With ``z = x − means[image]``, per image ``(4, G, F)``: Σ z_i (Wz)_i, Σ z², Σ z⁴, Σ d_i z_i².

    Edges never leave an image (checked), so ``(Wz)_i`` uses the mean of i's image.
    """
    n, f = x.shape
    part = np.zeros((n_blocks, 4, means.shape[0], f))
    size = -(-n // n_blocks)
    for b in numba.prange(n_blocks):
        acc, zi = np.empty(f), np.empty(f)
        for i in range(b * size, min(n, (b + 1) * size)):
            g, di = codes[i], d[i]
            for k in range(f):
                acc[k] = 0.0
                zi[k] = x[i, k] - means[g, k]
            for e in range(indptr[i], indptr[i + 1]):
                w, j = data[e], indices[e]
                for k in range(f):
                    acc[k] += w * (x[j, k] - means[g, k])
            for k in range(f):
                z2 = zi[k] * zi[k]
                part[b, 0, g, k] += zi[k] * acc[k]
                part[b, 1, g, k] += z2
                part[b, 2, g, k] += z2 * z2
                part[b, 3, g, k] += z2 * di
    out = part[0].copy()
    for b in range(1, n_blocks):
        out += part[b]
    return out


@numba.njit(parallel=True, nogil=True)
def row_moments(indptr, indices, data):
    """Per row ``w_i·`` and ``Σ_j (w_ij² + w_ij w_ji)`` (their sums are S0 and S1; sorted indices)."""
    n = indptr.shape[0] - 1
    out = np.zeros((n, 2))
    for i in numba.prange(n):
        for e in range(indptr[i], indptr[i + 1]):
            j, w, back = indices[e], data[e], 0.0
            for t in range(indptr[j], indptr[j + 1]):  # w_ji: rows are short, a scan beats bisection
                if indices[t] >= i:
                    back = data[t] if indices[t] == i else 0.0
                    break
            out[i, 0] += w
            out[i, 1] += w * w + w * back
    return out


def row_normalise(w: sparse.csr_matrix) -> sparse.csr_matrix:
    """W with rows divided by their sum, in place, as squidpy (sklearn l1 normalize): 0 rows stay 0."""
    r = np.asarray(w.sum(axis=1)).ravel()
    w.data /= np.repeat(np.where(r > 0, r, 1.0), np.diff(w.indptr))
    return w


def image_graphs(adata: AnnData, raw: sparse.csr_matrix, groups: Groups, transformation: bool) -> list:
    """Per image: its cells in canonical order (by ``obs_names``) and its own weights among them.

    The permutation null of an image is computed from these alone, so it never depends on the other
    images nor on how the AnnData's rows are ordered (duplicated names keep their row order).
    """
    by_name = np.argsort(np.asarray(adata.obs_names, dtype=str), kind="stable")
    order = by_name[np.argsort(groups.codes[by_name], kind="stable")]
    pos = np.empty(len(order), np.int64)  # position of each cell among its image's cells
    pos[order] = np.arange(len(order)) - groups.offsets[groups.codes[order]]
    out = []
    for g in range(groups.n):
        rows = order[groups.offsets[g] : groups.offsets[g + 1]]
        sub = raw[rows]
        sub.eliminate_zeros()  # zero weights may join images: drop them before renumbering
        sub = sparse.csr_matrix((sub.data, pos[sub.indices], sub.indptr), shape=(len(rows), len(rows)))
        sub.sort_indices()
        out.append((rows, row_normalise(sub) if transformation else sub))
    return out


def graph_moments(w: sparse.csr_matrix, groups: Groups) -> tuple[np.ndarray, ...]:
    """``S0``, ``S1``, ``S2`` per image ``(G, 1)`` and ``d_i = w_i· + w_·i`` per cell."""
    rows = row_moments(w.indptr, w.indices, w.data)
    d = rows[:, 0] + np.bincount(w.indices, weights=w.data, minlength=w.shape[0])
    per_cell = np.column_stack([rows, d * d])
    s0, s1, s2 = column_sums(per_cell, groups.codes, groups.n, block_count(len(d), groups.n, 3))[0].T
    return s0[:, None], s1[:, None], s2[:, None], d


def variances(mode: str, n, s0, s1, s2, b2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expectation, normality and randomisation variances (Cliff & Ord; Geary's Var_R as esda)."""
    n2, s02 = n * n, s0 * s0
    if mode == "moran":
        e = -1.0 / (n - 1)
        var_n = (n2 * s1 - n * s2 + 3 * s02) / ((n2 - 1) * s02) - e * e
        num = n * ((n2 - 3 * n + 3) * s1 - n * s2 + 3 * s02) - b2 * ((n2 - n) * s1 - 2 * n * s2 + 6 * s02)
        return e, var_n, num / ((n - 1) * (n - 2) * (n - 3) * s02) - e * e
    var_n = ((2 * s1 + s2) * (n - 1) - 4 * s02) / (2 * (n + 1) * s02)
    a = (n - 1) * s1 * (n2 - 3 * n + 3 - (n - 1) * b2)
    b = 0.25 * (n - 1) * s2 * (n2 + 3 * n - 6 - (n2 - n + 2) * b2)
    c = s02 * (n2 - 3 - (n - 1) ** 2 * b2)
    return np.ones_like(n), var_n, (a - b + c) / (n * (n - 2) * (n - 3) * s02)


def normal_p(z: np.ndarray, alternative: str) -> np.ndarray:
    """Normal p-value of z for the alternative (NaN stays NaN)."""
    greater, less = special.ndtr(-z), special.ndtr(z)
    return {"greater": greater, "less": less}.get(alternative, np.minimum(1.0, 2 * np.minimum(greater, less)))


def zscore(stat: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``(stat − mean) / √var``; NaN where the variance is not positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, (stat - mean) / np.sqrt(np.maximum(var, 0.0)), np.nan)
