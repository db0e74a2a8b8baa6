"""Fold-free displacement fields: the fold guard of non-rigid registration and a seeded random field.

A bilinear node field ``d`` is fold-free when det(I + ∇d) > 0 everywhere; the guard enforces
det(I + ∇d) ≥ ``_MIN_DET`` and ‖∇d‖₂ ≤ ``_MAX_GRAD`` by smoothing and then shrinking the node values.
:func:`random_displacement` draws a smooth field that passes the same guard (for tests and simulations).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from spatialpath.align._displacement import DisplacementField
from spatialpath.model import DataModelError

__all__ = ["random_displacement"]

#: the returned field satisfies det(I + ∇e) ≥ _MIN_DET and ‖∇e‖₂ ≤ _MAX_GRAD everywhere.
_MIN_DET = 0.2
_MAX_GRAD = 0.8


def _fold_stats(values: np.ndarray, hx: float, hy: float) -> tuple[float, float]:
    """Exact min det(I + ∇d) and max ‖∇d‖₂ of the bilinear field (edge-extended) on a grid.

    Within a bilinear cell the determinant is affine in each coordinate with no cross term and the
    norm is convex along each axis, so both extremes are reached at cell corners, where the one-sided
    cell differences are the derivatives.
    """
    ax = np.diff(values, axis=2) / hx  # (2, ny, nx-1): ∂/∂x along each node row
    ay = np.diff(values, axis=1) / hy  # (2, ny-1, nx): ∂/∂y along each node column
    dets, norms = [], []
    for gx in (ax[:, :-1, :], ax[:, 1:, :]):
        for gy in (ay[:, :, :-1], ay[:, :, 1:]):
            a, b, c, d = gx[0], gy[0], gx[1], gy[1]  # ∂dx/∂x, ∂dx/∂y, ∂dy/∂x, ∂dy/∂y
            dets.append((1 + a) * (1 + d) - b * c)
            s = a * a + b * b + c * c + d * d
            det_j = a * d - b * c
            norms.append(np.sqrt(0.5 * (s + np.sqrt(np.maximum(s * s - 4 * det_j * det_j, 0.0)))))
    edge = [1 + ax[0, 0], 1 + ax[0, -1], 1 + ay[1, :, 0], 1 + ay[1, :, -1]]  # edge-extended outside
    min_det = min(float(np.min(np.concatenate([x.ravel() for x in dets]))), *(float(e.min()) for e in edge))
    return min_det, float(np.max(np.concatenate([x.ravel() for x in norms])))


def _guard_folds(
    values: np.ndarray, hx: float, hy: float, *, smooth: bool
) -> tuple[np.ndarray, float, int, float, float]:
    """Smooth (optionally) then shrink ``values`` until min det ≥ _MIN_DET and max gradient ≤ _MAX_GRAD."""
    v, n_smooth = values, 0
    det, grad = _fold_stats(v, hx, hy)
    while smooth and (det < _MIN_DET or grad > _MAX_GRAD) and n_smooth < 3:
        v = np.stack([ndimage.gaussian_filter(c, 1.0, mode="nearest") for c in v])
        n_smooth += 1
        det, grad = _fold_stats(v, hx, hy)
    scale = 1.0
    while det < _MIN_DET or grad > _MAX_GRAD:  # terminates: scale → 0 gives det → 1, grad → 0
        scale *= 0.9
        det, grad = _fold_stats(v * scale, hx, hy)
    return v * scale, scale, n_smooth, det, grad


def random_displacement(
    extent_um: tuple[float, float],
    *,
    amplitude_um: float,
    length_scale_um: float,
    origin_um: tuple[float, float] = (0.0, 0.0),
    spacing_um: float | None = None,
    seed: int = 0,
) -> DisplacementField:
    """A seeded smooth random displacement field with no folds (for tests and simulations).

    White noise on a node grid is Gaussian filtered (σ = ``length_scale_um``) and rescaled so the
    largest displacement is ``amplitude_um``. If that would fold or be steeper than the fold guard
    of :func:`estimate_displacement` (det(I + ∇d) ≥ 0.2, ‖∇d‖₂ ≤ 0.8), the field is shrunk with a
    warning.

    Parameters
    ----------
    extent_um
        ``(width, height)`` of the region covered, from ``origin_um`` (µm).
    amplitude_um, length_scale_um
        Largest displacement and correlation length (µm).
    spacing_um
        Node spacing (default a quarter of the length scale).
    seed
        Seed of ``numpy.random.default_rng``.
    origin_um
        ``(x, y)`` of the region's first corner (µm): the field's first node.

    Examples
    --------
    >>> d = random_displacement((500.0, 400.0), amplitude_um=5.0, length_scale_um=100.0, seed=0)
    >>> round(d.max_norm(), 6), bool(d.jacobian_determinant().min() > 0)
    (5.0, True)
    """
    w, hgt = (float(v) for v in extent_um)
    if not (np.isfinite(w) and np.isfinite(hgt) and w > 0 and hgt > 0):
        raise DataModelError(f"extent_um must be a positive (width, height) in µm, got {extent_um!r}")
    for name, val in (("amplitude_um", amplitude_um), ("length_scale_um", length_scale_um)):
        if not (np.isfinite(val) and val > 0):
            raise DataModelError(f"{name} must be a positive number of µm, got {val!r}")
    step = float(spacing_um) if spacing_um is not None else length_scale_um / 4.0
    if not (np.isfinite(step) and step > 0):
        raise DataModelError(f"spacing_um must be a positive number of µm, got {spacing_um!r}")
    nx, ny = int(np.ceil(w / step)) + 1, int(np.ceil(hgt / step)) + 1
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((2, ny, nx))
    v = np.stack([ndimage.gaussian_filter(c, length_scale_um / step, mode="reflect") for c in noise])
    v *= amplitude_um / np.sqrt((v**2).sum(axis=0)).max()
    v, scale, _, _, _ = _guard_folds(v, step, step, smooth=False)
    if scale < 1.0:
        warnings.warn(
            f"random_displacement: amplitude {amplitude_um:g} µm over a length scale of "
            f"{length_scale_um:g} µm would fold or be too steep; shrunk to {amplitude_um * scale:.3g} µm",
            stacklevel=2,
        )
    return DisplacementField.from_spacing(v, step, origin_um)
