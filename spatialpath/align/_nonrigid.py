"""Non-rigid refinement: a smooth, fold-free displacement field from coarse-to-fine block matching.

:func:`estimate_displacement` returns the pull-back field ``e`` with ``fixed(y) ≈ moving(y + e(y))``
for two images on the same pixel grid (after an affine registration). The fold guard and
:func:`random_displacement` (a seeded smooth field for tests and simulations) live in
:mod:`._nonrigid_folds` and are re-exported here; block matching in :mod:`._blockmatch`. See
``docs/nonrigid-registration.md``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from spatialpath.align._blockmatch import local_linear, match_blocks, median_outliers
from spatialpath.align._displacement import DisplacementField
from spatialpath.align._nonrigid_folds import (  # noqa: F401  (re-exported)
    _fold_stats,
    _guard_folds,
    random_displacement,
)
from spatialpath.model import DataModelError

__all__ = ["LowConfidenceWarning", "NonrigidReport", "estimate_displacement", "random_displacement"]

#: default node spacing (µm): about five nuclei; capped so the image holds at least 4 nodes per axis.
DEFAULT_GRID_SPACING_UM = 50.0
#: a grid finer than this (pixels) has too little texture per patch to match.
_MIN_SPACING_PX = 8.0
#: at most this many coarser levels (spacing doubling each) before the requested spacing.
_MAX_EXTRA_LEVELS = 3
#: patches are downsampled until their half-width is at most this (pixels): speed and noise.
_WORK_HALF_PX = 40
#: node estimates below this peak NCC are unreliable.
_MIN_NCC = 0.3
#: below this fraction of reliable nodes at the coarsest level the images are deemed unrelated.
_MIN_RELIABLE = 0.3
#: local-linear smoothing bandwidth (in nodes) of the node estimates, and its fallback for gaps.
_SMOOTH_NODES = 1.0
_FILL_NODES = 3.0
#: tolerance of the normalised median test, as a fraction of the node spacing (cross-modal scatter).
_OUTLIER_EPS = 0.02
#: patch half-width in node spacings, and the number of extra passes at the final spacing.
_PATCH_FACTOR = 0.5
_POLISH = 1


class LowConfidenceWarning(UserWarning):
    """The images could not be matched reliably; the returned field is zero."""


@dataclass(frozen=True)
class NonrigidReport:
    """Diagnostics of :func:`estimate_displacement` (``return_info=True``).

    ``levels`` holds one dict per pyramid level (spacing_um, downsample, search_um, nodes, reliable,
    median_ncc, applied); ``min_jacobian`` and ``max_gradient`` are the exact extremes of
    det(I + ∇e) and ‖∇e‖₂ of the returned (bilinear) field; ``scale`` < 1 and ``extra_smoothing`` > 0
    record what the fold guard had to do.
    """

    levels: list[dict[str, Any]] = field(default_factory=list)
    min_jacobian: float = 1.0
    max_gradient: float = 0.0
    scale: float = 1.0
    extra_smoothing: int = 0
    low_confidence: bool = False


# ---------------------------------------------------------------------- validation
def _check_image(name: str, image: Any) -> np.ndarray:
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim != 2:
        raise DataModelError(
            f"{name} must be a 2-D image (y, x) on the fixed pixel grid, got shape {arr.shape}; pass one "
            "channel (e.g. a nuclear stain) or a preprocessed single-channel image"
        )
    if not np.all(np.isfinite(arr)):
        raise DataModelError(
            f"{name} has NaN or infinite pixels; replace them (e.g. with 0) and pass mask= to mark the "
            "valid region"
        )
    if min(arr.shape) < 32:
        raise DataModelError(
            f"{name} is too small for non-rigid refinement ({arr.shape}); need ≥ 32 px per axis"
        )
    return arr


def _spacing_px(grid_spacing_um: float | None, pixel_size_um: float, shape: tuple[int, int]) -> float:
    span = min(shape) - 1
    if grid_spacing_um is None:
        return max(min(DEFAULT_GRID_SPACING_UM / pixel_size_um, span / 4), _MIN_SPACING_PX)
    s = float(grid_spacing_um)
    if not np.isfinite(s) or s <= 0:
        raise DataModelError(f"grid_spacing_um must be a positive number of µm, got {grid_spacing_um!r}")
    s_px = s / pixel_size_um
    if s_px < _MIN_SPACING_PX:
        raise DataModelError(
            f"grid_spacing_um={s:g} is too small: {s_px:.3g} px between nodes at {pixel_size_um:g} µm/px; "
            f"use at least {_MIN_SPACING_PX * pixel_size_um:.3g} µm (patches need texture)"
        )
    if s_px > span / 2:
        raise DataModelError(
            f"grid_spacing_um={s:g} is too large for a {shape[1]}×{shape[0]} px image: fewer than 3 nodes "
            f"per axis; use at most {span / 2 * pixel_size_um:.3g} µm (or no non-rigid step)"
        )
    return s_px


# ---------------------------------------------------------------------- helpers
def _downsample(image: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return image
    ny, nx = (image.shape[0] // f) * f, (image.shape[1] // f) * f
    return image[:ny, :nx].reshape(ny // f, f, nx // f, f).mean(axis=(1, 3))


def _lattice(shape: tuple[int, int], spacing: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Node x and y positions (px) covering the image, with the exact per-axis spacing."""
    out = []
    for n in (shape[1], shape[0]):
        k = max(int(np.ceil((n - 1) / spacing)), 2)
        out.append(np.linspace(0.0, n - 1.0, k + 1))
    return out[0], out[1], out[0][1] - out[0][0], out[1][1] - out[1][0]


def _evaluate(values: np.ndarray, hx: float, hy: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear, edge-extended evaluation of lattice values at points (px) → ``(2, *x.shape)``."""
    coords = [np.asarray(y) / hy, np.asarray(x) / hx]
    return np.stack([ndimage.map_coordinates(v, coords, order=1, mode="nearest") for v in values])


def _schedule(
    shape: tuple[int, int], s_final: float, max_disp_px: float | None
) -> list[tuple[float, int, float]]:
    """Pyramid levels, coarse to fine: (spacing px, downsample factor, search radius px)."""
    span = min(shape) - 1
    k = 0
    while k < _MAX_EXTRA_LEVELS and s_final * 2 ** (k + 1) <= span / 3:
        k += 1
    levels = []
    for lvl in range(k, -1, -1):
        s = s_final * 2**lvl
        f = max(1, int(s * _PATCH_FACTOR // _WORK_HALF_PX))
        radius = (max_disp_px if max_disp_px is not None else s / 2) if lvl == k else s / 4
        levels.append((s, f, max(radius, 2.0 * f)))
    for _ in range(_POLISH):  # refine at the final spacing with a finer working resolution
        s, f, _r = levels[-1]
        levels.append((s, max(1, f // 2), max(s / 8, 2.0)))
    return levels


def _clip_centres(c: np.ndarray, margin: int, n: int) -> np.ndarray:
    """Patch centres (downsampled px) moved at least ``margin`` px inside an axis of ``n`` px."""
    margin = min(margin, (n - 1) // 2)
    return np.clip(np.round(c), margin, n - 1 - margin).astype(int)


def _match_level(
    fixed: np.ndarray,
    moving: np.ndarray,
    mask: np.ndarray | None,
    values: np.ndarray | None,
    prev_h: tuple[float, float],
    level: tuple[float, int, float],
    min_ncc: float,
    progress: bool,
) -> dict[str, Any]:
    """Block-match one level against ``moving`` warped by the current field; node increments + weights."""
    s, f, radius = level
    xs_nodes, ys_nodes, hx, hy = _lattice(fixed.shape, s)
    fd, md = _downsample(fixed, f), _downsample(moving, f)
    kd = None if mask is None else _downsample(mask.astype(np.float64), f) >= 0.5
    off = (f - 1) / 2.0  # full-resolution position of the first downsampled pixel centre
    if values is not None:
        yy, xx = np.mgrid[0 : md.shape[0], 0 : md.shape[1]].astype(np.float64) * f + off
        e = _evaluate(values, *prev_h, xx, yy)
        coords = [(yy + e[1] - off) / f, (xx + e[0] - off) / f]
        md = ndimage.map_coordinates(md, coords, order=1, mode="nearest")
    half = int(min(round(_PATCH_FACTOR * s / f), (min(fd.shape) - 1) // 2 - 1))
    r_ds = int(np.ceil(radius / f)) + 1
    xn, yn = np.meshgrid(xs_nodes, ys_nodes)
    # leave room for the patch and for (part of) the search, so border nodes can move both ways
    margin = half + min(r_ds, round(0.5 * s / f))
    cx = _clip_centres((xn - off) / f, margin, fd.shape[1])
    cy = _clip_centres((yn - off) / f, margin, fd.shape[0])
    # nodes clipped onto the same patch would count one measurement several times: keep the nearest
    dist = np.hypot(cx * f + off - xn, cy * f + off - yn).ravel()
    key = (cy * fd.shape[1] + cx).ravel()
    order = np.lexsort((dist, key))
    first = np.ones(key.size, dtype=bool)
    first[order[1:]] = key[order[1:]] != key[order[:-1]]
    unique = np.flatnonzero(first)
    centres = np.stack([cx.ravel(), cy.ravel()], axis=1)[unique]
    chunks = [centres[i : i + 64] for i in range(0, len(centres), 64)]
    parts = [
        match_blocks(fd, md, c, half=half, radius=r_ds, mask=kd)
        for c in tqdm(chunks, desc=f"non-rigid {s:.0f} px", disable=not progress, leave=False)
    ]
    shape = xn.shape
    shift = np.zeros((2, xn.size))
    peak = np.full(xn.size, np.nan)
    valid = np.zeros(xn.size, dtype=bool)
    shift[:, unique] = np.concatenate([p.shift for p in parts]).T * f
    peak[unique] = np.concatenate([p.peak for p in parts])
    valid[unique] = np.concatenate([p.valid for p in parts])
    shift, peak, valid = shift.reshape(2, *shape), peak.reshape(shape), valid.reshape(shape)
    tried = np.isfinite(peak)
    ok = valid & (peak >= min_ncc)
    keep = median_outliers(shift, ok, eps=max(0.2 * f, _OUTLIER_EPS * s)) if ok.any() else ok
    return {
        "shift": shift,
        "weight": np.where(keep, np.clip(peak, 0.0, 1.0), 0.0),
        "xs": (cx * f + off) / hx,
        "ys": (cy * f + off) / hy,
        "nodes": (xn, yn),
        "h": (hx, hy),
        "tried": int(tried.sum()),
        "reliable": int(keep.sum()),
        "median_ncc": float(np.median(peak[keep])) if keep.any() else float("nan"),
    }


def _fit_nodes(m: dict[str, Any]) -> np.ndarray:
    """Regularised node values from the reliable measurements; gaps filled by a wider fit, then the mean."""
    d, w = m["shift"], m["weight"]
    fit, s0 = local_linear(m["xs"], m["ys"], d, w, _SMOOTH_NODES)
    gap = s0 < 0.02
    if gap.any():
        wide, s0w = local_linear(m["xs"], m["ys"], d, w, _FILL_NODES)
        fit[:, gap] = wide[:, gap]
        empty = gap & (s0w < 1e-3)
        if empty.any():
            fit[:, empty] = (np.sum(d * w, axis=(1, 2)) / w.sum())[:, None]
    return fit


def estimate_displacement(
    fixed: np.ndarray,
    moving: np.ndarray,
    *,
    pixel_size_um: float,
    origin_um: tuple[float, float] = (0.0, 0.0),
    grid_spacing_um: float | None = None,
    mask: np.ndarray | None = None,
    seed: int = 0,
    progress: bool = False,
    max_displacement_um: float | None = None,
    min_ncc: float = _MIN_NCC,
    return_info: bool = False,
) -> DisplacementField | tuple[DisplacementField, NonrigidReport]:
    """Smooth fold-free displacement ``e`` (µm) with ``fixed(y) ≈ moving(y + e(y))``.

    Coarse-to-fine block matching: at the nodes of a grid a patch of ``fixed`` (half-width one node
    spacing) is matched against ``moving`` by normalised cross-correlation (sub-pixel parabola fit);
    unreliable nodes (peak NCC < ``min_ncc``, no texture, outside ``mask``, peak on the search border,
    normalised-median outliers) are dropped; a Gaussian-weighted local linear fit fills and smooths
    the rest; ``moving`` is warped by the field so far and the next level (half the spacing) refines
    it. Finally the field is smoothed, then shrunk, until det(I + ∇e) ≥ 0.2 and ‖∇e‖₂ ≤ 0.8 hold
    everywhere (exactly, for the bilinear field), so it has no folds and ``e.inverse()`` converges.

    Parameters
    ----------
    fixed, moving
        2-D images on the same pixel grid, finite (fill invalid pixels and pass ``mask``). Cross-modal
        pairs should first be made alike (e.g. both nuclear-like); NCC is contrast invariant.
    pixel_size_um, origin_um
        The grid: pixel ``(row, col)`` has its centre at ``origin + (col, row) · pixel_size`` µm.
    grid_spacing_um
        Final node spacing; default 50 µm (≈ 5 nuclei), capped at a quarter of the shorter side.
    mask
        Boolean ``fixed``-grid mask of valid pixels (tissue, overlap); patches less than half inside
        are not matched.
    seed
        Accepted for API symmetry; the method is deterministic.
    progress
        Show a tqdm bar per level.
    max_displacement_um
        Search radius at the coarsest level (default half its spacing).
    min_ncc
        Peak NCC below which a node is unreliable.
    return_info
        Also return a :class:`NonrigidReport`.

    Returns
    -------
    DisplacementField
        On a node grid over the fixed frame (µm). If fewer than 30 % of the textured nodes of the
        coarsest level match reliably (unrelated images, noise), the field is zero and a
        :class:`LowConfidenceWarning` is emitted.

    Examples
    --------
    >>> from scipy import ndimage
    >>> rng = np.random.default_rng(1)
    >>> img = ndimage.gaussian_filter(rng.normal(size=(256, 256)), 3)
    >>> moving = np.roll(img, (2, 3), axis=(0, 1))  # fixed(y) = moving(y + (3, 2) px)
    >>> e = estimate_displacement(img, moving, pixel_size_um=0.5)
    >>> e([[64.0, 64.0]]).round(2).tolist()
    [[1.5, 1.0]]
    """
    del seed
    fixed, moving = _check_image("fixed", fixed), _check_image("moving", moving)
    if fixed.shape != moving.shape:
        raise DataModelError(
            f"fixed and moving must be on the same pixel grid: shapes {fixed.shape} and {moving.shape} "
            "differ; resample moving into the fixed grid first (register_images does this)"
        )
    ps = float(pixel_size_um) if np.isscalar(pixel_size_um) else np.nan
    if not np.isfinite(ps) or ps <= 0:
        raise DataModelError(f"pixel_size_um must be a positive number (µm per pixel), got {pixel_size_um!r}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != fixed.shape:
            raise DataModelError(f"mask must have the images' shape {fixed.shape}, got {mask.shape}")
        mask = mask.astype(bool)
    s_final = _spacing_px(grid_spacing_um, ps, fixed.shape)
    max_disp = None if max_displacement_um is None else float(max_displacement_um) / ps
    if max_disp is not None and not (np.isfinite(max_disp) and max_disp > 0):
        raise DataModelError(f"max_displacement_um must be positive, got {max_displacement_um!r}")
    levels = _schedule(fixed.shape, s_final, max_disp)

    values: np.ndarray | None = None
    h = (1.0, 1.0)
    records: list[dict[str, Any]] = []
    for i, level in enumerate(levels):
        m = _match_level(fixed, moving, mask, values, h, level, min_ncc, progress)
        frac = m["reliable"] / max(m["tried"], 1)
        records.append(
            {
                "spacing_um": level[0] * ps,
                "downsample": level[1],
                "search_um": level[2] * ps,
                "nodes": int(m["weight"].size),
                "reliable": m["reliable"],
                "median_ncc": m["median_ncc"],
                "applied": frac >= _MIN_RELIABLE,
            }
        )
        if frac < _MIN_RELIABLE and i == 0:
            warnings.warn(
                f"non-rigid refinement: only {m['reliable']} of {m['tried']} textured nodes matched reliably "
                f"(NCC ≥ {min_ncc:g}, consistent with their neighbours); the images look unrelated or too "
                "noisy, so a zero displacement is returned. Check the affine step and the preprocessing.",
                LowConfidenceWarning,
                stacklevel=2,
            )
            xs_nodes, ys_nodes, hx, hy = _lattice(fixed.shape, s_final)
            zero = DisplacementField.from_spacing(
                np.zeros((2, len(ys_nodes), len(xs_nodes))), (hx * ps, hy * ps), origin_um
            )
            report = NonrigidReport(levels=records, low_confidence=True)
            return (zero, report) if return_info else zero
        if frac < _MIN_RELIABLE:
            continue  # keep the coarser field; this level could not refine it reliably
        delta = _fit_nodes(m)
        xn, yn = m["nodes"]
        new = delta.copy()
        if values is not None:
            new += _evaluate(values, *h, xn + delta[0], yn + delta[1])
        values, h = new, m["h"]

    xs_nodes, ys_nodes, hx, hy = _lattice(fixed.shape, s_final)
    if h != (hx, hy):  # the finest level was skipped: resample onto the final grid
        xn, yn = np.meshgrid(xs_nodes, ys_nodes)
        values = _evaluate(values, *h, xn, yn)
    values, scale, n_smooth, det, grad = _guard_folds(values, hx, hy, smooth=True)
    result = DisplacementField.from_spacing(values * ps, (hx * ps, hy * ps), origin_um)
    if not return_info:
        return result
    return result, NonrigidReport(records, det, grad, scale, n_smooth, False)
