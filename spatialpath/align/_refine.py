"""Intensity-based affine refinement: ECC (enhanced correlation coefficient) on an image pyramid.

ECC (Evangelidis & Psarakis 2008, OpenCV's ``findTransformECC``) maximises the correlation coefficient
between the fixed image and the warped moving image by Gauss–Newton steps with a closed-form photometric
term, so it is invariant to a gain and offset between the two modalities. It is evaluated on a regular
sample of at most ``n_samples`` fixed pixels per level, so each iteration costs a few interpolations
whatever the image size. Levels go from the coarse working size up to ``max_size`` pixels; larger images
get one more step at full resolution from patches (:func:`refine_patches`), which reads only those
windows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

__all__ = ["ecc_affine", "project", "refine_patches"]


def project(linear: np.ndarray, model: str) -> np.ndarray:
    """Nearest linear map of the ``model`` class (rigid/similarity keep the mirror if there is one)."""
    if model == "affine":
        return linear
    u, s, vt = np.linalg.svd(linear)
    rot = u @ vt
    scale = float(s.mean()) if model == "similarity" else 1.0
    return scale * rot


def _sample_points(shape: tuple[int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    step = max(1, int(np.ceil(np.sqrt(shape[0] * shape[1] / n))))
    rows, cols = np.mgrid[step // 2 : shape[0] : step, step // 2 : shape[1] : step]
    return cols.ravel().astype(np.float64), rows.ravel().astype(np.float64)


def ecc_affine(
    fixed: np.ndarray,
    moving: np.ndarray,
    pull: np.ndarray,
    *,
    model: str = "affine",
    n_samples: int = 60_000,
    max_iter: int = 40,
    tol_px: float = 0.01,
    scale_to_fixed: float = 1.0,
) -> tuple[np.ndarray, float]:
    """Refine ``pull`` (fixed pixel ``[col, row, 1]`` → moving pixel) to maximise the correlation.

    ``model`` constrains the linear part of the *moving → fixed* map; ``scale_to_fixed`` is the ratio of the
    moving to the fixed pixel size (so that rigid means rigid in µm). Returns the new ``pull`` and the
    correlation coefficient over the sampled overlap.
    """
    gy, gx = np.gradient(moving.astype(np.float32))
    cols, rows = _sample_points(fixed.shape, n_samples)
    fv = ndimage.map_coordinates(fixed, [rows, cols], order=1).astype(np.float64)
    cx, cy, norm = cols.mean(), rows.mean(), max(fixed.shape) / 2.0
    u, v = (cols - cx) / norm, (rows - cy) / norm
    # parameters: pull in the centred, normalised coordinates (u, v) of the fixed sample
    centre = np.array([[norm, 0.0, cx], [0.0, norm, cy], [0.0, 0.0, 1.0]])
    p = pull @ centre
    h, w = moving.shape
    rho = float("nan")
    for _ in range(max_iter):
        mc = p[0, 0] * u + p[0, 1] * v + p[0, 2]
        mr = p[1, 0] * u + p[1, 1] * v + p[1, 2]
        inside = (mc >= 0) & (mr >= 0) & (mc <= w - 1) & (mr <= h - 1)
        if inside.sum() < 64:
            break
        coords = [mr[inside], mc[inside]]
        iw = ndimage.map_coordinates(moving, coords, order=1).astype(np.float64)
        dx = ndimage.map_coordinates(gx, coords, order=1).astype(np.float64)
        dy = ndimage.map_coordinates(gy, coords, order=1).astype(np.float64)
        uu, vv, f = u[inside], v[inside], fv[inside]
        jac = np.stack([uu * dx, vv * dx, dx, uu * dy, vv * dy, dy], axis=1)
        f0, i0 = f - f.mean(), iw - iw.mean()
        j0 = jac - jac.mean(axis=0)
        nf, ni = np.linalg.norm(f0), np.linalg.norm(i0)
        if nf == 0 or ni == 0:
            break
        rho = float(f0 @ i0 / (nf * ni))
        hess = j0.T @ j0 + 1e-9 * np.eye(6)
        pf, pi = j0.T @ f0, j0.T @ i0
        hinv_pi = np.linalg.solve(hess, pi)
        den = f0 @ i0 - pf @ hinv_pi
        lam = (ni**2 - pi @ hinv_pi) / den if den > 0 else ni / nf  # ECC closed-form photometric factor
        delta = np.linalg.solve(hess, lam * pf - pi)
        p[:2] += delta.reshape(2, 3)
        if model != "affine":  # constrain the forward (moving → fixed) linear part in µm
            fwd = np.linalg.inv(p @ np.linalg.inv(centre))
            fwd[:2, :2] = project(fwd[:2, :2] * scale_to_fixed, model) / scale_to_fixed
            p = np.linalg.inv(fwd) @ centre
        step = np.abs(delta.reshape(2, 3)[:, :2]).sum(axis=1) * 1.0 + np.abs(delta.reshape(2, 3)[:, 2])
        if float(step.max()) < tol_px:
            break
    return p @ np.linalg.inv(centre), rho


def refine_patches(
    fixed_patch: Callable[[int, int, int, int], np.ndarray],
    moving_patch: Callable[[int, int, int, int], np.ndarray],
    fixed_shape: tuple[int, int],
    moving_shape: tuple[int, int],
    pull: np.ndarray,
    *,
    centres: np.ndarray,
    size: int = 256,
    model: str = "affine",
    scale_to_fixed: float = 1.0,
) -> tuple[np.ndarray, int]:
    """One full-resolution correction from block matching: ``pull`` in full-resolution pixels.

    Each fixed window at ``centres`` (``(n, 2)`` col, row) is matched to the moving image warped by ``pull``
    (upsampled phase correlation, 1/20 px); the residual shifts give point pairs, and an affine is fitted
    to them by iteratively reweighted least squares (Tukey weights, 3 MAD scale). Returns the new pull and
    the number of windows kept.
    """
    half = size // 2
    src, dst = [], []
    for c, r in centres:
        c0, r0 = int(c) - half, int(r) - half
        fp = fixed_patch(r0, c0, size, size)
        if fp.shape != (size, size) or fp.std() < 1e-3:
            continue
        corners = np.array([[c0, r0, 1], [c0 + size, r0, 1], [c0, r0 + size, 1], [c0 + size, r0 + size, 1.0]])
        mc = corners @ pull.T
        lo = np.floor(mc[:, :2].min(axis=0)).astype(int) - 2
        hi = np.ceil(mc[:, :2].max(axis=0)).astype(int) + 2
        if lo[0] < 0 or lo[1] < 0 or hi[0] >= moving_shape[1] or hi[1] >= moving_shape[0]:
            continue
        mp = moving_patch(lo[1], lo[0], hi[1] - lo[1], hi[0] - lo[0])
        rows, cols = np.mgrid[r0 : r0 + size, c0 : c0 + size]
        mcol = pull[0, 0] * cols + pull[0, 1] * rows + pull[0, 2] - lo[0]
        mrow = pull[1, 0] * cols + pull[1, 1] * rows + pull[1, 2] - lo[1]
        warped = ndimage.map_coordinates(mp, [mrow, mcol], order=1)
        if warped.std() < 1e-3:
            continue
        shift, _, _ = phase_cross_correlation(fp, warped, upsample_factor=20, normalization=None)
        # fixed(p) ≈ warped(p − shift): the fixed point p ↔ moving point pull(p − shift)
        p = np.array([c, r, 1.0])
        q = pull @ (p - [shift[1], shift[0], 0.0])
        if np.abs(shift).max() < half / 2:
            src.append(p[:2])
            dst.append(q[:2])
    n = len(src)
    if n < 6:
        return pull, n
    src_a, dst_a = np.asarray(src), np.asarray(dst)
    design = np.column_stack([src_a, np.ones(n)])
    weights = np.ones(n)
    for _ in range(10):
        sol = np.linalg.lstsq(design * weights[:, None], dst_a * weights[:, None], rcond=None)[0]
        res = np.linalg.norm(design @ sol - dst_a, axis=1)
        scale = max(1.4826 * np.median(res), 0.05)
        t = res / (3.0 * scale)
        weights = np.where(t < 1, (1 - t**2) ** 2, 0.0)
    new = np.eye(3)
    new[:2] = sol.T
    if model != "affine":
        fwd = np.linalg.inv(new)
        fwd[:2, :2] = project(fwd[:2, :2] * scale_to_fixed, model) / scale_to_fixed
        new = np.linalg.inv(fwd)
    return new, int((weights > 0).sum())
