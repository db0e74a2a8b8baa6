"""numba passes of the point-pattern functions over binned cells: pairs (K, g) and nearest neighbours (G, F).

Cells of one image are sorted into square bins (``BINS_PER_REACH`` bins per reach). The pair pass
visits each unordered pair closer than the reach once; the nearest-neighbour pass scans, for each
cell (or empty-space test location), the bins within reach. Accumulators are per type pair and
per distance ``r[k]`` (``K × K × (m + 1)``); the extra slot takes the "end" marks of
border-corrected sums (stored as differences, cumulated at the end) and, in the pair pass, the
pairs beyond the reach.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["BINS_PER_REACH", "Grid", "build_grid", "distance_table"]

NONE, TRANSLATION, BORDER, HANISCH = 0, 1, 2, 3
STAT_K, STAT_G_PCF, STAT_G, STAT_J = 0, 1, 2, 3


#: bins per reach: narrower bins fit the disc of candidates better (about 75 % of them in reach).
BINS_PER_REACH = 3


class Grid(tuple):
    """``(src, x, y, kend, bd, start, geo)``: cells sorted by bin, and the bin layout.

    ``src[k]`` is the row (in the image) of sorted cell ``k``; ``kend[k]`` the number of distances
    ``r`` not exceeding its boundary distance ``bd[k]``; ``start`` the first sorted cell of each bin;
    ``geo = (ox, oy, s, nbx, nby, q)`` as float64.
    """


def build_grid(xy: np.ndarray, bdist: np.ndarray, r: np.ndarray, reach: float) -> Grid:
    """Sort cells into bins for pair searches up to ``reach`` µm."""
    n = len(xy)
    ox, oy = xy.min(axis=0) - 1e-9
    ext_x, ext_y = np.ptp(xy, axis=0) + 2e-9
    s = max(reach / BINS_PER_REACH, np.sqrt(max(ext_x * ext_y, 1e-12) / (4.0 * n + 1.0)), 1e-9)
    q = int(np.ceil(reach / s))
    nbx, nby = int(ext_x // s) + 1, int(ext_y // s) + 1
    bx = np.minimum(((xy[:, 0] - ox) // s).astype(np.int64), nbx - 1)
    by = np.minimum(((xy[:, 1] - oy) // s).astype(np.int64), nby - 1)
    bins = by * nbx + bx
    src = np.argsort(bins, kind="stable").astype(np.int64)
    start = np.zeros(nbx * nby + 1, np.int64)
    start[1:] = np.cumsum(np.bincount(bins, minlength=nbx * nby))
    kend = np.searchsorted(r, bdist, side="right").astype(np.int64)
    geo = np.array([ox, oy, s, nbx, nby, q], np.float64)
    return Grid(
        (
            src,
            np.ascontiguousarray(xy[src, 0]),
            np.ascontiguousarray(xy[src, 1]),
            np.ascontiguousarray(kend[src]),
            np.ascontiguousarray(bdist[src], dtype=np.float64),
            start,
            geo,
        )
    )


@numba.njit(inline="always")
def _first_ge(r, d):
    """Index of the first ``r[k] ≥ d`` (``len(r)`` if none): binary search."""
    lo, hi = 0, r.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if r[mid] < d:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(inline="always")
def _first_gt(r, d):
    lo, hi = 0, r.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if r[mid] <= d:
            lo = mid + 1
        else:
            hi = mid
    return lo


#: pairs per block of the inner loop (squared distances first, vectorised; then the counts).
_BLOCK = 256
#: buckets of d² in [0, reach²] whose first candidate distance index is tabulated.
_N_BUCKETS = 4096


@numba.njit
def distance_table(r, reach):
    """``(thr2, lut, inv_w)``: squared distances with a +inf sentinel, and the bucket start table.

    For ``d²`` in bucket ``u = ⌊d² · inv_w⌋``, ``lut[u]`` is the first ``k`` with ``r[k]² ≥ u / inv_w``,
    a lower bound of the first ``k`` with ``r[k] ≥ d``; the kernels step up from there.
    """
    m = r.shape[0]
    thr2 = np.empty(m + 1, np.float64)
    thr2[:m] = r * r
    thr2[m] = np.inf
    inv_w = _N_BUCKETS / max(reach * reach, 1e-300)
    lut = np.empty(_N_BUCKETS + 1, np.int64)
    k = 0
    for u in range(_N_BUCKETS + 1):
        lo = u / inv_w
        while thr2[k] < lo:
            k += 1
        lut[u] = k
    return thr2, lut, inv_w


@numba.njit(inline="always")
def _bin_of(d2, thr2, lut, inv_w):
    k = lut[int(min(d2 * inv_w, lut.shape[0] - 1.0))]
    while thr2[k] < d2:
        k += 1
    return k


@numba.njit(nogil=True)
def _pair_pass(
    lab, x, y, kend, start, geo, r, reach, mode, pcf, tw, radius, inv_h, bw, acc, k0, k1, thr2, lut, inv_w
):
    """Add the pairs with focal sorted cells ``k0..k1-1`` (each unordered pair once) to ``acc``.

    The bins of one row within reach hold consecutive sorted cells, so each row is one range of
    candidates, handled in blocks: squared distances first (vectorised), then the distance index
    by table lookup; pairs beyond the reach land in the discarded slot ``m`` of ``acc``.
    """
    ox, oy, s, nbx, nby, q = geo[0], geo[1], geo[2], int(geo[3]), int(geo[4]), int(geo[5])
    reach2 = reach * reach
    m = r.shape[0]
    top = 2 * radius
    d2b = np.empty(_BLOCK, np.float64)
    for k in range(k0, k1):
        xi, yi, la = x[k], y[k], lab[k]
        min(int((xi - ox) / s), nbx - 1)
        by = min(int((yi - oy) / s), nby - 1)
        for dyb in range(0, q + 1):
            yb = by + dyb
            if yb >= nby:
                break
            # only the bins of this row that the disc of radius reach around the cell can reach
            dymin = max(oy + yb * s - yi, 0.0)
            hx = np.sqrt(max(reach2 - dymin * dymin, 0.0))
            xb0 = max(int((xi - hx - ox) / s), 0)
            xb1 = min(int((xi + hx - ox) / s), nbx - 1)
            j0 = k + 1 if dyb == 0 else start[yb * nbx + xb0]
            j1 = start[yb * nbx + xb1 + 1]
            for b0 in range(j0, j1, _BLOCK):
                nb = min(_BLOCK, j1 - b0)
                for t in range(nb):
                    dx = x[b0 + t] - xi
                    dy = y[b0 + t] - yi
                    d2b[t] = dx * dx + dy * dy
                for t in range(nb):
                    d2 = d2b[t]
                    j = b0 + t
                    lb = lab[j]
                    if not pcf:
                        kb = _bin_of(d2, thr2, lut, inv_w)
                        if mode == BORDER:
                            if kb < kend[k]:
                                acc[la, lb, kb] += 1.0
                                acc[la, lb, kend[k]] -= 1.0
                            if kb < kend[j]:
                                acc[lb, la, kb] += 1.0
                                acc[lb, la, kend[j]] -= 1.0
                        else:
                            w = 1.0
                            if mode == TRANSLATION:
                                iy = min(max(int(np.rint((y[j] - yi) * inv_h)) + radius, 0), top)
                                ix = min(max(int(np.rint((x[j] - xi) * inv_h)) + radius, 0), top)
                                w = tw[iy, ix]
                            acc[la, lb, kb] += w
                            acc[lb, la, kb] += w
                    elif d2 <= reach2:
                        d = np.sqrt(d2)
                        w = 1.0
                        if mode == TRANSLATION:
                            w = tw[
                                int(np.rint((y[j] - yi) * inv_h)) + radius,
                                int(np.rint((x[j] - xi) * inv_h)) + radius,
                            ]
                        h_ab = bw[la, lb]
                        h_ba = bw[lb, la]
                        hmax = max(h_ab, h_ba)
                        for kk in range(_first_gt(r, d - hmax), _first_ge(r, d + hmax)):
                            u = r[kk] - d
                            if abs(u) < h_ab and (mode != BORDER or kk < kend[k]):
                                acc[la, lb, kk] += w * 0.75 / h_ab * (1.0 - (u / h_ab) ** 2)
                            if abs(u) < h_ba and (mode != BORDER or kk < kend[j]):
                                acc[lb, la, kk] += w * 0.75 / h_ba * (1.0 - (u / h_ba) ** 2)
    for a in range(acc.shape[0]):  # the discarded slot of pairs beyond the reach
        for b in range(acc.shape[1]):
            if mode != BORDER and not pcf:
                acc[a, b, m] = 0.0


@numba.njit(nogil=True)
def _nn_pass(
    lab, x, y, kend, start, geo, r, reach, qx, qy, qlab, qkend, qbd, mode, eroded, er_step, acc, n_types
):
    """Nearest neighbour of each type within ``reach`` for query points ``(qx, qy)``.

    A query point with label ``qlab[i] ≥ 0`` is the sorted cell ``i`` itself (excluded from its own
    search); ``-1`` marks an empty-space test location. Adds to ``acc[qlab or 0, type, k]``.
    """
    ox, oy, s, nbx, nby, q = geo[0], geo[1], geo[2], int(geo[3]), int(geo[4]), int(geo[5])
    reach2 = reach * reach
    m = r.shape[0]
    dmin = np.empty(n_types, np.float64)
    for i in range(qx.shape[0]):
        xi, yi = qx[i], qy[i]
        self_k = i if qlab[i] >= 0 else -1
        row = max(qlab[i], 0)
        dmin[:] = np.inf
        bx = min(max(int((xi - ox) / s), 0), nbx - 1)
        by = min(max(int((yi - oy) / s), 0), nby - 1)
        for yb in range(max(by - q - 1, 0), min(by + q + 2, nby)):
            for xb in range(max(bx - q - 1, 0), min(bx + q + 2, nbx)):
                b = yb * nbx + xb
                for j in range(start[b], start[b + 1]):
                    if j == self_k:
                        continue
                    dx = x[j] - xi
                    dy = y[j] - yi
                    d2 = dx * dx + dy * dy
                    if d2 <= reach2 and d2 < dmin[lab[j]]:
                        dmin[lab[j]] = d2
        for t in range(n_types):
            if dmin[t] == np.inf:
                continue
            d = np.sqrt(dmin[t])
            kb = _first_ge(r, d)
            if kb >= m:
                continue
            if mode == BORDER:
                if kb < qkend[i]:
                    acc[row, t, kb] += 1.0
                    acc[row, t, qkend[i]] -= 1.0
            elif mode == HANISCH:
                if d <= qbd[i]:
                    acc[row, t, kb] += 1.0 / eroded[min(int(d / er_step), eroded.shape[0] - 1)]
            else:
                acc[row, t, kb] += 1.0
