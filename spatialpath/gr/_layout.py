"""Cache-friendly cell order for graph kernels: cells sorted by image, then along a Morton curve.

A permutation kernel reads the labels of every cell's neighbours; with cells in acquisition or
random order those reads are cache misses (at 10^6 cells a 6-NN edge-count pass takes about twice
as long). Sorting the cells of each image along a Z-order (Morton) curve makes neighbours nearby
rows. The null distribution of a within-image label permutation does not depend on how cells are
numbered, so nothing changes but the speed; and since the order is a function of the
coordinates, a fixed seed gives results that do not depend on the row order of the input.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["renumber_graph", "spatial_order"]


@numba.njit(parallel=True, nogil=True)
def renumber_graph(indptr, indices, new_to_old, old_to_new, codes):
    """CSR arrays of the graph with cell ``new_to_old[r]`` renamed ``r``, without edges between images.

    ``codes`` are the image codes in the old numbering; the new ``indices`` are int32 and keep
    each row's original order (and parallel edges). Returns ``(indptr, indices)``.
    """
    n = len(new_to_old)
    deg = np.zeros(n + 1, np.int64)
    for r in numba.prange(n):
        o = new_to_old[r]
        for e in range(indptr[o], indptr[o + 1]):
            deg[r + 1] += codes[indices[e]] == codes[o]
    new_indptr = np.cumsum(deg)
    new_indices = np.empty(new_indptr[n], np.int32)
    for r in numba.prange(n):
        o = new_to_old[r]
        d = new_indptr[r]
        for e in range(indptr[o], indptr[o + 1]):
            j = indices[e]
            if codes[j] == codes[o]:
                new_indices[d] = old_to_new[j]
                d += 1
    return new_indptr, new_indices


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Move bit ``k`` of the low 21 bits of ``v`` (uint64) to bit ``2k``, for a 2-D Morton code."""
    v = v & np.uint64(0x1FFFFF)
    for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F),
                        (2, 0x3333333333333333), (1, 0x5555555555555555)):  # fmt: skip
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def spatial_order(xy: np.ndarray, image_codes: np.ndarray) -> np.ndarray:
    """Cells sorted by image, then along a Morton (Z-order) curve: neighbours get nearby rows.

    Coordinates are quantised to 21 bits per axis over the common bounding box; ties keep the
    input order. Returns ``new_to_old`` (int64).

    Examples
    --------
    >>> xy = np.array([[10.0, 10.0], [0.0, 0.0], [9.0, 0.0], [0.0, 9.0]])
    >>> spatial_order(xy, np.array([0, 0, 0, 1])).tolist()
    [1, 2, 0, 3]
    """
    span = np.ptp(xy, axis=0).max() if len(xy) else 0.0
    q = ((xy - xy.min(axis=0)) * ((2**21 - 1) / span if span > 0 else 0.0)).astype(np.uint64)
    key = _spread_bits(q[:, 0]) | (_spread_bits(q[:, 1]) << np.uint64(1))
    if image_codes.max(initial=0) < 2**21:
        return np.argsort(key | (image_codes.astype(np.uint64) << np.uint64(42)), kind="stable")
    return np.lexsort((key, image_codes))
