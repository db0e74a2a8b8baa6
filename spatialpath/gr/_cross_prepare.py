"""Preparation of :func:`spatialpath.gr.cross_function`: distances, supports, kernel arguments, CSR draws."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from spatialpath.gr import _pp_kernels as kern
from spatialpath.gr._pp_passes import build_grid
from spatialpath.gr._progress import report
from spatialpath.gr._window import Window
from spatialpath.model import DataModelError

__all__ = ["check_r", "csr_samples", "default_r_max", "kernel_args", "support"]


def support(win: Window, correction: str, reach: float) -> float:
    if correction in ("border", "hanisch"):
        return win.inscribed_radius_um
    if correction == "translation":
        return win.translation_support_um(reach)
    return np.inf


def check_r(r: np.ndarray | Sequence[float] | None) -> np.ndarray | None:
    if r is None:
        return None
    arr = np.asarray(r, np.float64)
    if (
        arr.ndim != 1
        or len(arr) < 2
        or not np.all(np.isfinite(arr))
        or arr[0] < 0
        or np.any(np.diff(arr) <= 0)
    ):
        raise DataModelError("r must be a 1-D increasing array of at least 2 finite distances ≥ 0 (µm)")
    return arr


def default_r_max(win: Window, n: int) -> float:
    """Spatstat's rule: a quarter of the window's shorter side, at most √(1000/(πλ))."""
    h, w = win.mask.shape
    side = min(h, w) * win.pixel_size_um
    lam = n / win.area_um2
    return float(min(0.25 * side, np.sqrt(1000.0 / (np.pi * lam))))


def kernel_args(xy, codes, win, r, stat, mode, n_types, reach, need_f):
    bd = win.boundary_distance(xy)
    grid = build_grid(xy, bd, r, reach)
    if mode == kern.TRANSLATION and stat in (kern.STAT_K, kern.STAT_G_PCF):
        tw, radius = win.covariogram(reach)
        # g reaches a kernel half-width beyond r_max: offsets the window cannot hold weigh nothing there
        tw = np.where(np.isfinite(tw), tw, 0.0)
    else:
        tw, radius = np.ones((1, 1)), 0
    n_per = np.bincount(codes, minlength=n_types).astype(float)
    lam = np.maximum(n_per, 1) / win.area_um2
    bw = np.broadcast_to(0.15 / np.sqrt(lam)[None, :], (n_types, n_types)).copy()
    if need_f:
        qxy, qbd = win.test_points()
        qkend = np.searchsorted(r, qbd, side="right").astype(np.int64)
        fmode = kern.NONE if mode == kern.NONE else kern.BORDER
        fcount = (
            np.full(len(r), float(len(qxy)))
            if fmode == kern.NONE
            else np.array([(qkend > k).sum() for k in range(len(r))], float)
        )
    else:
        qxy, qbd, qkend, fcount = np.zeros((0, 2)), np.zeros(0), np.zeros(0, np.int64), np.zeros(len(r))
    er_step = max(win.pixel_size_um / 4, float(r[-1]) / 4096)
    eroded = win.eroded_area(np.arange(0, r[-1] + 2 * er_step, er_step))
    return (
        *grid,
        r,
        float(reach),
        int(stat),
        int(mode),
        tw,
        int(radius),
        1.0 / win.pixel_size_um,
        bw,
        float(win.area_um2),
        int(n_types),
        np.ascontiguousarray(qxy[:, 0]),
        np.ascontiguousarray(qxy[:, 1]),
        qkend,
        np.asarray(qbd, np.float64),
        np.maximum(eroded, 1e-300),
        float(er_step),
        fcount,
    )


def csr_samples(codes, win, r, stat, mode, n_types, reach, need_f, n_sim, seed, progress, desc):
    rng_seeds = np.random.SeedSequence(seed).spawn(n_sim)
    out = []
    report(0, n_sim, desc)
    for i, ss in enumerate(tqdm(rng_seeds, desc=desc, disable=not progress, leave=False)):
        rng = np.random.default_rng(ss)
        xy = win.sample_uniform(len(codes), rng)
        out.append(
            kern.evaluate_parallel(codes, kernel_args(xy, codes, win, r, stat, mode, n_types, reach, need_f))
        )
        report(i + 1, n_sim, desc)
    return np.stack(out)
