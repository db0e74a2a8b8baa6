"""The point-pattern statistic of one labelling: passes (:mod:`._pp_passes`), then normalisation.

Modes (``mode``): 0 none, 1 translation, 2 border (K and g); for G: 0 none, 2 border,
3 Hanisch. ``stat``: 0 K, 1 g, 2 G, 3 J. Kernels fill the final statistic into ``out`` in the
layout ``out[(a·K + b)·m + k]`` so the permutation engine streams and stores it directly.
"""

from __future__ import annotations

import numba
import numpy as np

from spatialpath.gr._pp_passes import (
    BORDER,
    HANISCH,
    NONE,
    STAT_G,
    STAT_G_PCF,
    STAT_J,
    STAT_K,
    TRANSLATION,
    _nn_pass,
    _pair_pass,
    distance_table,
)

__all__ = ["BORDER", "HANISCH", "NONE", "STAT_G", "STAT_G_PCF", "STAT_J", "STAT_K", "TRANSLATION", "evaluate",
           "evaluate_parallel"]  # fmt: skip


@numba.njit(nogil=True)
def _focal_counts(lab, kend, n_types, m):
    """``n[a]`` cells per type and ``nb[a, k]`` of them with ``r[k]`` ≤ boundary distance."""
    n = np.zeros(n_types, np.float64)
    hist = np.zeros((n_types, m + 1), np.float64)
    for k in range(lab.shape[0]):
        n[lab[k]] += 1.0
        hist[lab[k], kend[k]] += 1.0
    nb = np.zeros((n_types, m), np.float64)
    for a in range(n_types):
        run = 0.0
        for k in range(m, 0, -1):
            run += hist[a, k]
            nb[a, k - 1] = run
    return n, nb


@numba.njit(nogil=True)
def _finish(acc, facc, n, nb, r, stat, mode, area, fmode_counts, out):
    """Turn accumulated sums into the statistic, written to ``out[(a·K + b)·m + k]``."""
    n_types = n.shape[0]
    m = r.shape[0]
    nan = np.nan
    for a in range(n_types):
        for b in range(n_types):
            run = 0.0
            frun = 0.0
            for k in range(m):
                if stat == STAT_G_PCF:
                    run = acc[a, b, k]
                else:
                    run += acc[a, b, k]
                nbb = n[b] - (1.0 if a == b else 0.0)
                val = nan
                if stat in (STAT_K, STAT_G_PCF):
                    if mode == BORDER:
                        if nb[a, k] > 0 and nbb > 0:
                            val = run * area / (nbb * nb[a, k])
                    elif n[a] > 0 and nbb > 0:
                        val = run * area / (n[a] * nbb)
                    if stat == STAT_G_PCF and val == val:
                        val = val / (2.0 * np.pi * r[k]) if r[k] > 0 else nan
                else:
                    if nbb <= 0:
                        val = nan
                    elif mode == BORDER:
                        if nb[a, k] > 0:
                            val = run / nb[a, k]
                    elif mode == HANISCH:
                        if n[a] > 0:
                            val = run * area / n[a]
                    elif n[a] > 0:
                        val = run / n[a]
                    if stat == STAT_J and val == val:
                        frun += facc[b, k]
                        f = frun / fmode_counts[k] if fmode_counts[k] > 0 else nan
                        val = (1.0 - val) / (1.0 - f) if f < 1.0 else nan
                    elif stat == STAT_J:
                        frun += facc[b, k]
                out[(a * n_types + b) * m + k] = val


@numba.njit(nogil=True)
def evaluate(labels, args, out):
    """The statistic for one labelling (``labels`` in the image's row order): the engine's kernel."""
    (
        src,
        x,
        y,
        kend,
        cbd,
        start,
        geo,
        r,
        reach,
        stat,
        mode,
        tw,
        radius,
        inv_h,
        bw,
        area,
        n_types,
        qx,
        qy,
        qkend,
        qbd,
        eroded,
        er_step,
        fcount,
    ) = args
    n = src.shape[0]
    m = r.shape[0]
    lab = np.empty(n, np.int64)
    for k in range(n):
        lab[k] = labels[src[k]]
    acc = np.zeros((n_types, n_types, m + 1), np.float64)
    facc = np.zeros((n_types, m + 1), np.float64)
    if stat in (STAT_K, STAT_G_PCF):
        thr2, lut, inv_w = distance_table(r, reach)
        _pair_pass(
            lab,
            x,
            y,
            kend,
            start,
            geo,
            r,
            reach,
            mode,
            stat == STAT_G_PCF,
            tw,
            radius,
            inv_h,
            bw,
            acc,
            0,
            n,
            thr2,
            lut,
            inv_w,
        )
    else:
        _nn_pass(
            lab, x, y, kend, start, geo, r, reach, x, y, lab, kend, cbd, mode, eroded, er_step, acc, n_types
        )
        if stat == STAT_J:
            tl = np.full(qx.shape[0], -1, np.int64)
            facc3 = np.zeros((1, n_types, m + 1), np.float64)
            _nn_pass(
                lab,
                x,
                y,
                kend,
                start,
                geo,
                r,
                reach,
                qx,
                qy,
                tl,
                qkend,
                qbd,
                BORDER if mode != NONE else NONE,
                eroded,
                er_step,
                facc3,
                n_types,
            )
            facc[:, :] = facc3[0]
    n_a, nb = _focal_counts(lab, kend, n_types, m)
    _finish(acc, facc, n_a, nb, r, stat, mode, area, fcount, out)


@numba.njit(parallel=True, nogil=True)
def _pair_pass_parallel(
    lab, x, y, kend, start, geo, r, reach, mode, pcf, tw, radius, inv_h, bw, n_types, n_chunks
):
    n = x.shape[0]
    m = r.shape[0]
    thr2, lut, inv_w = distance_table(r, reach)
    accs = np.zeros((n_chunks, n_types, n_types, m + 1), np.float64)
    step = (n + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        k0 = c * step
        k1 = min(n, k0 + step)
        if k0 < k1:
            _pair_pass(
                lab,
                x,
                y,
                kend,
                start,
                geo,
                r,
                reach,
                mode,
                pcf,
                tw,
                radius,
                inv_h,
                bw,
                accs[c],
                k0,
                k1,
                thr2,
                lut,
                inv_w,
            )
    total = accs[0].copy()
    for c in range(1, n_chunks):
        total += accs[c]
    return total


def evaluate_parallel(labels: np.ndarray, args: tuple) -> np.ndarray:
    """:func:`evaluate` with the pair pass split over threads (for one labelling of many cells)."""
    (
        src,
        x,
        y,
        kend,
        _cbd,
        start,
        geo,
        r,
        reach,
        stat,
        mode,
        tw,
        radius,
        inv_h,
        bw,
        area,
        n_types,
        _qx,
        _qy,
        _qkend,
        _qbd,
        _eroded,
        _er_step,
        fcount,
    ) = args
    m = len(r)
    out = np.zeros(n_types * n_types * m)
    if stat not in (STAT_K, STAT_G_PCF):
        evaluate(labels, args, out)
        return out
    lab = np.asarray(labels, np.int64)[src]
    n_chunks = max(1, min(256, len(src) // 2048))
    acc = _pair_pass_parallel(
        lab,
        x,
        y,
        kend,
        start,
        geo,
        r,
        reach,
        mode,
        stat == STAT_G_PCF,
        tw,
        radius,
        inv_h,
        bw,
        n_types,
        n_chunks,
    )
    n_a, nb = _focal_counts(lab, kend, n_types, m)
    _finish(acc, np.zeros((n_types, m + 1)), n_a, nb, r, stat, mode, area, fcount, out)
    return out
