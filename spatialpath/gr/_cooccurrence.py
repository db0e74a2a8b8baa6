"""Co-occurrence of cell types across distance thresholds: squidpy's statistic, per image, at scale.

squidpy's ``co_occurrence`` compares every cell with every other cell (O(n²) time) and keeps an
int32 buffer of ``n × (L − 1) × K²`` counts, so it needs 3 GiB at 10^5 cells and fails at 10^6.
Here only pairs closer than the largest threshold are visited: cells are sorted into a uniform
grid of square bins (edge about a third of the largest threshold) and each cell is compared with
the cells of the bins within reach, each unordered pair once. Counts go to one ``K × K × L``
int64 accumulator per part of an image in a parallel task (summed at the end), so memory does not
grow with the number of pairs and, the counts being integers, results are identical whatever the
number of threads. All images run in one parallel region, cut into tasks of equal estimated work.

Distances are computed exactly as squidpy 1.8.2 computes them — float32 coordinates,
``d² = dx·dx + dy·dy`` in float32 with the same numba fast-math flags, compared inclusively with
the float32 squared thresholds — so pairs lying on a threshold fall on the same side.
"""

from __future__ import annotations

import numba
import numpy as np
from anndata import AnnData

from spatialpath.gr._utils import (
    Groups,
    check_coordinates,
    check_min_cells,
    default_library_key,
    image_groups,
    label_codes,
)
from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["DEFAULT_INTERVAL_UM", "co_occurrence"]

#: ``interval=None`` means ``np.linspace(*DEFAULT_INTERVAL_UM)``: 50 values from 10 to 250 µm.
DEFAULT_INTERVAL_UM: tuple[float, float, int] = (10.0, 250.0, 50)
#: bins per largest threshold: bin edge = t_max / 3, so a cell scans 3 bins in each direction.
_BINS_PER_TMAX = 3
#: buckets of d² in [0, t_max²] whose first candidate threshold is tabulated (search start).
_N_BUCKETS = 4096
#: pairs per block of the inner loop (distances first, vectorised; then the counts).
_BLOCK = 256
#: bins are widened by this relative margin so float32 rounding never loses a pair at t_max.
_BIN_MARGIN = 1e-5
#: at most this many bins per cell (plus a constant): bounds memory when t_max is tiny.
_MAX_BINS_PER_CELL = 4
#: parallel tasks per thread (load balance); each image part in a task owns a K × K × L accumulator.
_TASKS_PER_THREAD = 4
#: fewer tasks when their accumulators would take more than this many bytes (never < 1 per thread).
_MAX_ACC_BYTES = 256 * 2**20
#: coordinates beyond this (µm) are refused: float32 squared distances must stay finite.
_MAX_COORD_UM = 1e15
#: the largest distance must be at least this (µm), so that its float32 square is a normal number.
_MIN_TMAX_UM = 1e-6


@numba.njit(inline="always", fastmath=True)
def _scan(x, y, lab, xi, yi, li, j0, j1, thr2, start, inv_w, top, acc, r_buf, d2_buf):
    """Add pairs (i, j), j in [j0, j1), to ``acc[li, lab[j], r]``, r = first index with d² ≤ thr2[r].

    ``thr2`` ends with a sentinel (float32 max): pairs beyond every threshold land in that last,
    discarded slot, so there is no data-dependent branch but the short search. The search starts
    at ``start[b]`` for the bucket ``b = ⌊d² · inv_w⌋`` (a lower bound of the answer) and steps up
    while ``thr2[r] < d²``: the comparison squidpy makes, on the same float32 values. Blocks of
    ``r_buf.size`` pairs: a first, vectorised loop computes d² and the first step of the search,
    a second one finishes the search and adds the counts.
    """
    block = r_buf.shape[0]
    for b0 in range(j0, j1, block):
        m = min(block, j1 - b0)
        for t in range(m):
            j = b0 + t
            # the very expression and flags of squidpy's _occur_count: same float32 rounding
            # (and the same fused multiply-add where the CPU has one), hence the same ties.
            dx = xi - x[j]
            dy = yi - y[j]
            d2 = dx * dx + dy * dy
            r = start[int(min(np.float64(d2) * inv_w, top))]
            r_buf[t] = r + (thr2[r] < d2)
            d2_buf[t] = d2
        for t in range(m):
            r = r_buf[t]
            d2 = d2_buf[t]
            while thr2[r] < d2:
                r += 1
            acc[li, lab[b0 + t], r] += 1


@numba.njit(parallel=True, fastmath=True)
def _count_pairs(x, y, lab, bin_start, grids, units, task_units, thr2, start, inv_w, n_types):
    """Unordered pair counts by (type of i, type of j, first threshold reached), i before j.

    Cells are sorted by bin. Image ``g``'s grid is ``grids[g] = (first bin, nbx, nby, reach)``,
    its bins numbered ``first + bx * nby + by``. Cell ``i`` of bin ``(bx, by)`` is paired with
    the later cells of bins ``(bx, by..by + reach)`` and with all cells of bins
    ``(bx + 1..bx + reach, by − reach..by + reach)``: each range is contiguous in the sort.
    Unit ``u = (image, first bin, end bin)`` has its own accumulator; task ``t`` (one parallel
    iteration) runs units ``task_units[t]..task_units[t + 1] − 1``.
    """
    n_tasks = task_units.shape[0] - 1
    n_slots = thr2.shape[0]  # thresholds + the sentinel
    top = np.float64(start.shape[0] - 1)
    acc = np.zeros((units.shape[0], n_types, n_types, n_slots), np.int64)
    for t in numba.prange(n_tasks):
        r_buf = np.empty(_BLOCK, np.int32)
        d2_buf = np.empty(_BLOCK, np.float32)
        for u in range(task_units[t], task_units[t + 1]):
            a = acc[u]
            g = units[u, 0]
            first_bin, nbx, nby, reach = grids[g, 0], grids[g, 1], grids[g, 2], grids[g, 3]
            for b in range(units[u, 1], units[u, 2]):
                bx = (b - first_bin) // nby
                by = b - first_bin - bx * nby
                ylo = first_bin + max(by - reach, 0)
                yhi = first_bin + min(by + reach, nby - 1)
                same_end = bin_start[bx * nby + yhi + 1]
                for i in range(bin_start[b], bin_start[b + 1]):
                    xi = x[i]
                    yi = y[i]
                    li = lab[i]
                    _scan(x, y, lab, xi, yi, li, i + 1, same_end, thr2, start, inv_w, top, a, r_buf, d2_buf)
                    for cx in range(bx + 1, min(bx + reach, nbx - 1) + 1):
                        first = bin_start[cx * nby + ylo]
                        end = bin_start[cx * nby + yhi + 1]
                        _scan(x, y, lab, xi, yi, li, first, end, thr2, start, inv_w, top, a, r_buf, d2_buf)
    return acc


def _check_interval(interval: int | np.ndarray | list[float] | None) -> np.ndarray:
    """The float32 interval (L,): default, ``linspace(10, 250, L)`` for an int, or the values given."""
    lo, hi, num = DEFAULT_INTERVAL_UM
    if interval is None:
        return np.linspace(lo, hi, num).astype(np.float32)
    if isinstance(interval, bool):
        raise ValueError(
            f"interval must be None, an int or an increasing array of distances in µm, got {interval!r}"
        )
    if isinstance(interval, int | np.integer):
        if interval < 2:
            raise ValueError(f"interval={interval}: need at least 2 values (the first is never a threshold)")
        return np.linspace(lo, hi, int(interval)).astype(np.float32)
    raw = np.asarray(interval)
    if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.number):
        raise ValueError(
            f"interval must be a 1-D array of distances in µm, got shape {raw.shape}, dtype {raw.dtype}"
        )
    if raw.shape[0] < 2:
        raise ValueError(
            f"interval has {raw.shape[0]} value(s); need at least 2 (the first is never a threshold, "
            "as in squidpy), e.g. np.linspace(10, 250, 50)"
        )
    values = raw.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError("interval has NaN or infinite values (or values beyond float32's range)")
    if values[0] < 0:
        raise ValueError(f"interval has negative distances (first value {values[0]}); distances are ≥ 0 µm")
    if values[-1] < _MIN_TMAX_UM:
        raise ValueError(
            f"the largest distance of interval is {values[-1]} µm; it must be at least {_MIN_TMAX_UM} µm"
        )
    if np.any(np.diff(values) <= 0):
        bad = int(np.argmax(np.diff(values) <= 0))
        raise ValueError(
            f"interval must be strictly increasing (in float32), but value {bad + 1} ({values[bad + 1]}) "
            f"≤ value {bad} ({values[bad]}); pass np.unique(interval) to sort it"
        )
    return values


def _grid(xy: np.ndarray, t_max: float) -> tuple[np.ndarray, int, int, int]:
    """Bin index of each cell (row-major, ``bx * nby + by``), grid shape and reach in bins."""
    n = xy.shape[0]
    reach_um = t_max * (1.0 + _BIN_MARGIN)
    origin = xy.min(axis=0)
    extent = xy.max(axis=0) - origin
    h = reach_um / _BINS_PER_TMAX
    max_bins = _MAX_BINS_PER_CELL * n + 64
    while (extent[0] // h + 1) * (extent[1] // h + 1) > max_bins:
        h *= 1.5  # t_max is small compared with the spacing of cells: fewer, larger bins
    nbx, nby = int(extent[0] // h) + 1, int(extent[1] // h) + 1
    cell = np.minimum(((xy - origin) // h).astype(np.int64), [nbx - 1, nby - 1])
    reach = max(1, int(np.ceil(reach_um / h)))
    return cell[:, 0] * nby + cell[:, 1], nbx, nby, reach


def _bin_work(counts: np.ndarray, nbx: int, nby: int, reach: int) -> np.ndarray:
    """Estimated work of each bin of one image: its cells times the cells each of them scans."""
    n_b = counts.astype(np.float64)
    cum = np.concatenate([[0.0], np.cumsum(n_b)])  # cells before bin b
    b = np.arange(n_b.shape[0])
    bx, by = b // nby, b % nby
    ylo, yhi = np.maximum(by - reach, 0), np.minimum(by + reach, nby - 1)
    scanned = cum[bx * nby + yhi + 1] - cum[b]  # its column up to by + reach
    for dx in range(1, reach + 1):  # the next columns' band
        ok = bx + dx < nbx
        col = np.where(ok, bx + dx, 0) * nby
        scanned += np.where(ok, cum[col + yhi + 1] - cum[col + ylo], 0.0)
    return n_b * (scanned + 1.0)


def _pair_counts(
    xy32: np.ndarray, lab: np.ndarray, groups: Groups, thr2: np.ndarray, n_types: int
) -> np.ndarray:
    """Ordered pair counts ``C[g, a, b, r]`` (same image g, i ≠ j, d² ≤ thr2[r]), int64 (G, K, K, L − 1).

    One parallel region for all images: each image gets a grid; the bins of all images, in
    order, are cut into tasks of equal estimated work, and into units where an image ends.
    """
    t_max = float(np.sqrt(np.float64(thr2[-1])))
    xy = xy32.astype(np.float64)
    n_images = groups.n
    grids = np.zeros((n_images, 4), np.int64)
    codes = np.empty(xy.shape[0], np.int64)
    work = []
    for g in range(n_images):
        rows = groups.order[groups.offsets[g] : groups.offsets[g + 1]]
        local, nbx, nby, reach = _grid(xy[rows], t_max)
        grids[g] = (grids[g - 1, 0] + grids[g - 1, 1] * grids[g - 1, 2] if g else 0, nbx, nby, reach)
        codes[rows] = grids[g, 0] + local
        work.append(_bin_work(np.bincount(local, minlength=nbx * nby), nbx, nby, reach))
    n_bins = int(grids[-1, 0] + grids[-1, 1] * grids[-1, 2])
    order = np.argsort(codes, kind="stable")
    bin_start = np.zeros(n_bins + 1, np.int64)
    np.cumsum(np.bincount(codes, minlength=n_bins), out=bin_start[1:])

    # tasks of equal work; units = tasks cut where an image ends
    acc_bytes = n_types * n_types * (thr2.shape[0] + 1) * 8
    threads = numba.get_num_threads()
    n_tasks = max(threads, min(_TASKS_PER_THREAD * threads, _MAX_ACC_BYTES // acc_bytes))
    cum = np.cumsum(np.concatenate(work))
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, n_tasks) / n_tasks, side="left")
    task_bounds = np.unique(np.concatenate([[0], cuts, [n_bins]]))
    bounds = np.unique(np.concatenate([task_bounds, grids[:, 0], [n_bins]]))
    units = np.stack(
        [np.searchsorted(grids[:, 0], bounds[:-1], side="right") - 1, bounds[:-1], bounds[1:]], 1
    )
    task_units = np.searchsorted(bounds, task_bounds).astype(np.int64)

    # search starts: bucket b holds d² in [b·w, (b+1)·w) up to rounding, so start from the
    # thresholds below (b − 1)·w, all certainly < d²; the last bucket takes every larger d²
    width = float(thr2[-1]) / _N_BUCKETS
    lower = np.maximum(np.arange(_N_BUCKETS + 2) - 1, 0) * width
    start = np.searchsorted(thr2.astype(np.float64), lower, side="left").astype(np.int32)
    thr2_sentinel = np.append(thr2, np.finfo(np.float32).max).astype(np.float32)
    x = np.ascontiguousarray(xy32[order, 0])
    y = np.ascontiguousarray(xy32[order, 1])
    acc = _count_pairs(
        x,
        y,
        lab[order],
        bin_start,
        grids,
        units.astype(np.int64),
        task_units,
        thr2_sentinel,
        start,
        1.0 / width,
        n_types,
    )
    half = np.zeros((n_images, n_types, n_types, thr2.shape[0]), np.int64)
    np.add.at(half, units[:, 0], acc[:, :, :, :-1])
    counts = half + half.transpose(0, 2, 1, 3)  # both orders of each pair
    return np.cumsum(counts, axis=3)  # first threshold reached -> all thresholds reached (discs)


def _occ_from_counts(counts: np.ndarray) -> np.ndarray:
    """The ratio ``occ[i, c, r] = (C[c, i, r] / R[c, r]) / P[i, r]``; 0 where a denominator is 0.

    ``R[b, r] = Σ_a C[a, b, r]`` and ``P[b, r] = R[b, r] / Σ_b R[b, r]``, with squidpy's order of
    floating-point operations.
    """
    counts = counts.astype(np.float64)
    row_sums = counts.sum(axis=0)  # (K, L-1)
    totals = row_sums.sum(axis=0)  # (L-1,)
    probs = np.divide(row_sums, totals, out=np.zeros_like(row_sums), where=totals > 0)
    cond = np.divide(counts, row_sums[:, None, :], out=np.zeros_like(counts), where=row_sums[:, None, :] != 0)
    occ = np.divide(
        cond.transpose(1, 0, 2), probs[:, None, :], out=np.zeros_like(counts), where=probs[:, None, :] != 0
    )
    return occ


def co_occurrence(
    adata: AnnData,
    cluster_key: str = Key.obs.cell_type,
    *,
    interval: int | np.ndarray | list[float] | None = None,
    library_key: str | None = None,
    copy: bool = False,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Co-occurrence ratio of cell types within distance thresholds, per image (squidpy's statistic).

    For each threshold ``t`` (``interval[1:]``; the first value is never used, as in squidpy) and
    cell types ``c`` (centre) and ``i``::

        occ[i, c, r] = P(j has type i | i has type c, d_ij ≤ t_r) / P(j has type i | d_ij ≤ t_r)

    computed from ``C_r[a, b]``, the number of ordered pairs of distinct cells ``(i, j)`` of types
    ``(a, b)`` with ``d_ij² ≤ t_r²`` (cumulative discs, inclusive): ``R_r[b] = Σ_a C_r[a, b]``,
    ``P_r(b) = R_r[b] / Σ R_r`` and ``occ[i, c, r] = (C_r[c, i] / R_r[c]) / P_r(i)``, 0 where a
    denominator is 0. This is squidpy 1.8.2's definition and float32 distance arithmetic: on one
    image the result equals ``squidpy.gr.co_occurrence`` given the same interval (pair counts
    identical, ``occ`` to rounding, ~1e-15).

    Pairs never cross images (squidpy has no ``library_key``). The pooled ``occ`` is computed from
    the pair counts summed over images; each image's own ``occ`` is stored as well. A type absent
    from an image gets 0 in that image's ``occ`` (squidpy's convention for a zero denominator).

    Only pairs closer than the largest threshold are visited (a grid of bins, numba, parallel):
    time grows with the number of such pairs, memory with the number of cells only.

    Parameters
    ----------
    adata
        Cells with ``obsm["spatial"]`` in µm.
    cluster_key
        Categorical column of ``adata.obs`` with the cell types (K categories, all of which are
        rows and columns of the result, empty ones included).
    interval
        Distances in µm, strictly increasing, ≥ 0; the first value is never used as a threshold.
        ``None`` (default): ``np.linspace(10, 250, 50)``, independent of the data. An int ``L``:
        ``np.linspace(10, 250, L)``. Unlike squidpy, an int does **not** mean squidpy's
        data-dependent default (from the smallest gap to half the tissue's diagonal); to reproduce
        it, pass the interval squidpy returns. Values are cast to float32, as in squidpy.
    library_key
        Column of ``adata.obs`` naming the image of each cell; default ``"image_id"`` when that
        column exists, else all cells form one image.
    copy
        Return ``(occ, interval)`` instead of writing to ``adata.uns``.

    Returns
    -------
    With ``copy=True``, the pooled ``occ`` (K, K, L − 1) float64 and the ``interval`` (L,) float32.
    Otherwise ``None``, and ``adata.uns["{cluster_key}_co_occurrence"]`` is a dict with

    - ``"occ"``: (K, K, L − 1) float64, pooled over images (squidpy's key and layout);
    - ``"interval"``: (L,) float32, the distances (squidpy's key);
    - ``"occ_per_image"``: (G, K, K, L − 1) float64, one ``occ`` per image;
    - ``"image_ids"``: (G,) str, the images in that order (``["all"]`` without ``library_key``).

    Raises
    ------
    spatialpath.model.DataModelError
        If ``cluster_key`` is missing, not categorical, has missing values or fewer than 2
        categories; if coordinates are missing, not finite or beyond 1e15 µm; if an image has
        fewer than 2 cells.
    ValueError
        If ``interval`` has fewer than 2 values, is not finite, not strictly increasing, negative,
        or its largest value is below 1e-6 µm.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialpath.datasets import simulate_tissue
    >>> adata = simulate_tissue(n_cells=500).adata
    >>> co_occurrence(adata, "cell_type")
    >>> res = adata.uns["cell_type_co_occurrence"]
    >>> res["occ"].shape, res["interval"].dtype, res["occ_per_image"].shape
    ((8, 8, 49), dtype('float32'), (1, 8, 8, 49))
    >>> occ, interval = co_occurrence(adata, "cell_type", interval=np.array([0, 50, 100]), copy=True)
    >>> occ.shape, interval.tolist()
    ((8, 8, 2), [0.0, 50.0, 100.0])
    """
    labels, cats = label_codes(adata, cluster_key, min_types=2)
    xy = check_coordinates(adata).astype(np.float32)  # squidpy's precision
    if xy.size and np.abs(xy).max() > _MAX_COORD_UM:
        raise DataModelError(
            f"obsm['spatial'] reaches {np.abs(xy).max():.3g}; coordinates must be in µm and below "
            f"{_MAX_COORD_UM:g} in absolute value"
        )
    values = _check_interval(interval)
    groups = image_groups(adata, default_library_key(adata, library_key))
    check_min_cells(groups, minimum=2)

    thr2 = values[1:] * values[1:]  # float32, as squidpy's `v_radium[1:] ** 2`
    per_image = _pair_counts(xy, labels, groups, thr2, len(cats))

    occ = _occ_from_counts(per_image.sum(axis=0))
    if copy:
        return occ, values
    adata.uns[Key.uns.co_occurrence(cluster_key)] = {
        "occ": occ,
        "interval": values,
        "occ_per_image": np.stack([_occ_from_counts(c) for c in per_image]),
        "image_ids": np.array(groups.names, dtype=str),
    }
    return None
