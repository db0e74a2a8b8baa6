"""Estimators behind :func:`~spatialpath.align.register_landmarks`: closed-form fits, RANSAC, LOO TRE.

All functions work on ``(n, 2)`` float arrays of x, y in µm (``moving`` maps onto ``fixed``) and
return 3×3 affine matrices in the convention of :class:`~spatialpath.align.Transform`.

- rigid / similarity: Umeyama (1991) in closed form, written with complex numbers
  (``w = a·z + b``; ``a = c/|c|`` for rigid, ``a = c/Σ|z_c|²`` for similarity with
  ``c = Σ conj(z_c)·w_c`` on centred points). A mirrored fit mirrors x first (``z → −conj(z)``),
  fits the proper model, then composes with the mirror, as ``Transform.from_params(flip=True)``.
- affine: ordinary least squares of the six parameters (minimises the squared residuals in µm).
- RANSAC: minimal sets (2 points for rigid/similarity, 3 for affine), drawn without replacement
  by a seeded generator, scored by inlier count (ties: truncated squared residuals, MSAC), trials
  adaptive ``N = log(1 − p)/log(1 − wᵐ)`` with ``p = 0.999``; the consensus set is refitted by
  least squares until the inliers (residual ≤ τ under the refit) no longer change.
- Default τ: least median of squares (LMedS) over minimal sets; see :func:`lmeds_threshold`.
- Leave-one-out TRE: exact closed forms (deleted sums for rigid/similarity, the hat matrix for
  affine), no refitting loop.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from spatialpath.model import DataModelError

Model = Literal["rigid", "similarity", "affine"]

#: size of a minimal set.
MINIMAL = {"rigid": 2, "similarity": 2, "affine": 3}
#: success probability of the adaptive RANSAC trial count.
CONFIDENCE = 0.999
#: landmarks whose centred singular-value ratio is below this are collinear.
COLLINEAR_TOL = 1e-3
#: floor of the default threshold, relative to the RMS radius of the fixed landmarks.
THRESHOLD_FLOOR = 1e-6
#: trials evaluated at once (bounds memory to BATCH × n residuals).
BATCH = 256
_MIRROR = np.diag([-1.0, 1.0, 1.0])


def spread(points: np.ndarray) -> float:
    """RMS distance of the points to their centroid (µm)."""
    return float(np.sqrt(np.mean(np.sum((points - points.mean(0)) ** 2, axis=1))))


def flatness(points: np.ndarray) -> float:
    """Smaller over larger singular value of the centred points (0 when collinear)."""
    s = np.linalg.svd(points - points.mean(0), compute_uv=False)
    return float(s[1] / s[0]) if s[0] > 0 else 0.0


def _complex(points: np.ndarray, mirror: bool) -> np.ndarray:
    z = points[..., 0] + 1j * points[..., 1]
    return -np.conj(z) if mirror else z


def _matrix(a: np.ndarray, b: np.ndarray, mirror: bool) -> np.ndarray:
    """Stack complex ``a``, ``b`` (any shape) into ``(..., 3, 3)`` matrices of ``w = a·z + b``."""
    m = np.zeros((*np.shape(a), 3, 3))
    m[..., 0, 0], m[..., 0, 1], m[..., 0, 2] = a.real, -a.imag, b.real
    m[..., 1, 0], m[..., 1, 1], m[..., 1, 2] = a.imag, a.real, b.imag
    m[..., 2, 2] = 1.0
    return m @ _MIRROR if mirror else m


def fit(model: Model, moving: np.ndarray, fixed: np.ndarray, mirror: bool) -> np.ndarray:
    """Least-squares fit of ``model`` mapping ``moving`` onto ``fixed`` (3×3 matrix).

    ``mirror`` is ignored for the affine model, whose determinant sign is free.
    """
    if model == "affine":
        design = np.column_stack([moving, np.ones(len(moving))])
        coef = np.linalg.lstsq(design, fixed, rcond=None)[0]  # (3, 2)
        return np.vstack([coef.T, [0.0, 0.0, 1.0]])
    z, w = _complex(moving, mirror), _complex(fixed, False)
    mz, mw = z.mean(), w.mean()
    c = np.sum(np.conj(z - mz) * (w - mw))
    a = c / abs(c) if model == "rigid" else c / np.sum(np.abs(z - mz) ** 2)
    return _matrix(np.asarray(a), np.asarray(mw - a * mz), mirror)


def residuals(matrices: np.ndarray, moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Distances ``‖M·moving − fixed‖`` (µm) for one ``(3, 3)`` or ``(k, 3, 3)`` stack of matrices."""
    mapped = np.einsum("...ij,nj->...ni", matrices[..., :2, :2], moving) + matrices[..., None, :2, 2]
    return np.linalg.norm(mapped - fixed, axis=-1)


def draw(rng: np.random.Generator, n: int, m: int, k: int) -> np.ndarray:
    """``k`` uniform draws of ``m`` (2 or 3) distinct indices out of ``n``, shape ``(k, m)``."""
    i = rng.integers(0, n, k)
    j = rng.integers(0, n - 1, k)
    j = j + (j >= i)
    if m == 2:
        return np.column_stack([i, j])
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    h = rng.integers(0, n - 2, k)
    h = h + (h >= lo)
    h = h + (h >= hi)
    return np.column_stack([i, j, h])


def minimal_fits(
    model: Model, moving: np.ndarray, fixed: np.ndarray, mirror: bool, samples: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact fits through each minimal set: ``(k, 3, 3)`` matrices and a mask of usable sets."""
    tiny = 1e-9 * max(spread(moving), np.finfo(float).tiny)
    if model == "affine":
        design = np.concatenate([moving[samples], np.ones((*samples.shape, 1))], axis=-1)  # (k, 3, 3)
        det = np.linalg.det(design)
        valid = np.abs(det) > tiny**2
        design[~valid] = np.eye(3)
        coef = np.linalg.solve(design, fixed[samples])  # (k, 3, 2)
        mats = np.zeros((len(samples), 3, 3))
        mats[:, :2, :] = coef.transpose(0, 2, 1)
        mats[:, 2, 2] = 1.0
        return mats, valid
    z, w = _complex(moving[samples], mirror), _complex(fixed[samples], False)  # (k, 2)
    dz, dw = z[:, 1] - z[:, 0], w[:, 1] - w[:, 0]
    valid = np.abs(dz) > tiny
    a = dw / np.where(valid, dz, 1.0)
    if model == "rigid":
        a = a / np.where(np.abs(a) > 0, np.abs(a), 1.0)
    b = w.mean(1) - a * z.mean(1)
    return _matrix(a, b, mirror), valid


def _trials_needed(n_inliers: int, n: int, m: int) -> float:
    w = n_inliers / n
    if w >= 1.0:
        return 0.0
    if w <= 0.0:
        return np.inf
    return float(np.ceil(np.log(1.0 - CONFIDENCE) / np.log1p(-(w**m))))


def lmeds_threshold(
    model: Model,
    moving: np.ndarray,
    fixed: np.ndarray,
    mirrors: list[bool],
    rng: np.random.Generator,
    max_trials: int,
) -> float:
    """The default inlier threshold τ (µm), from a least-median-of-squares search.

    For each minimal set, the median residual ``r_med`` of the landmarks *outside* the set is
    computed; the smallest over sets (and mirror hypotheses) gives the noise scale
    ``σ̂ = (1 + 5/(n − m)) · r_med / √(2 ln 2)`` (for isotropic Gaussian noise of σ per axis the
    residual distance is Rayleigh with median ``σ√(2 ln 2)``; ``1 + 5/(n − m)`` is Rousseeuw &
    Leroy's small-sample correction). ``τ = max(3σ̂, 10⁻⁶ · RMS radius of the fixed landmarks)``:
    a Rayleigh residual exceeds 3σ with probability ``e^{−4.5}`` ≈ 1.1 %. The number of sets is the
    RANSAC count for half of the landmarks being outliers (capped by ``max_trials``), so the rule
    breaks down above 50 % outliers: pass ``residual_threshold_um`` then.
    """
    n, m = len(moving), MINIMAL[model]
    floor = THRESHOLD_FLOOR * spread(fixed)
    if n <= m:
        return floor
    k = int(min(max_trials, _trials_needed(n - n // 2, n, m)))
    best = np.inf
    for mirror in mirrors:
        samples = draw(rng, n, m, k)
        mats, valid = minimal_fits(model, moving, fixed, mirror, samples)
        r = residuals(mats, moving, fixed)
        r[np.arange(k)[:, None], samples] = np.nan  # out-of-set residuals only
        med = np.nanmedian(r, axis=1)
        if valid.any():
            best = min(best, float(med[valid].min()))
    if not np.isfinite(best):
        return floor
    sigma = (1.0 + 5.0 / (n - m)) * best / np.sqrt(2.0 * np.log(2.0))
    return float(max(3.0 * sigma, floor))


def ransac(
    model: Model,
    moving: np.ndarray,
    fixed: np.ndarray,
    mirror: bool,
    threshold: float,
    rng: np.random.Generator,
    max_trials: int,
) -> tuple[np.ndarray, int]:
    """The largest consensus set of minimal fits (boolean mask) and the number of trials drawn."""
    n, m = len(moving), MINIMAL[model]
    best_count, best_cost, best = -1, np.inf, np.zeros(n, bool)
    needed, done = max_trials, 0
    while done < needed:
        k = min(BATCH, needed - done, max(16, done))  # growing batches: stop early when w is high
        samples = draw(rng, n, m, k)
        mats, valid = minimal_fits(model, moving, fixed, mirror, samples)
        r = residuals(mats, moving, fixed)
        inl = r <= threshold
        count = np.where(valid, inl.sum(1), -1)
        cost = np.where(inl, r**2, threshold**2).sum(1)
        order = np.lexsort((cost, -count))[0]
        if count[order] > best_count or (count[order] == best_count and cost[order] < best_cost):
            best_count, best_cost, best = int(count[order]), float(cost[order]), inl[order]
        done += k
        needed = int(min(max_trials, max(done, _trials_needed(max(best_count, 0), n, m))))
    return best, done


def refine(
    model: Model, moving: np.ndarray, fixed: np.ndarray, mirror: bool, inliers: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Refit on the inliers until ``inlier ⇔ residual ≤ threshold`` under the refit (≤ 20 rounds)."""
    for _ in range(20):
        check_inliers(model, moving, fixed, inliers, threshold)
        matrix = fit(model, moving[inliers], fixed[inliers], mirror)
        new = residuals(matrix, moving, fixed) <= threshold
        if np.array_equal(new, inliers):
            break
        inliers = new
    check_inliers(model, moving, fixed, inliers, threshold)
    return fit(model, moving[inliers], fixed[inliers], mirror), inliers


def check_inliers(
    model: Model, moving: np.ndarray, fixed: np.ndarray, inliers: np.ndarray, threshold: float
) -> None:
    """Refuse a consensus set that cannot define the model: fewer than 3 or collinear landmarks."""
    k, n = int(inliers.sum()), len(inliers)
    fix = (
        "raise residual_threshold_um, check that row i of `fixed` pairs with row i of `moving`, or "
        "pass ransac=False"
    )
    if k < 3:
        raise DataModelError(
            f"RANSAC kept only {k} of {n} landmarks within residual_threshold_um={threshold:.4g} µm; a "
            f"{model} fit needs at least 3 non-collinear inliers: {fix}"
        )
    for name, pts in (("fixed", fixed), ("moving", moving)):
        if flatness(pts[inliers]) < COLLINEAR_TOL:
            raise DataModelError(
                f"the {k} RANSAC inliers are collinear in `{name}` (the mirror and shear are "
                f"undetermined); a {model} fit needs inliers spread in 2-D: {fix}"
            )


def loo_errors(model: Model, moving: np.ndarray, fixed: np.ndarray, mirror: bool) -> np.ndarray:
    """Leave-one-out TRE of each landmark: refit without it, distance of its prediction (µm).

    Exact closed forms: deleted sums for rigid/similarity, ``eᵢ/(1 − hᵢᵢ)`` with the hat matrix of
    the affine design. ``NaN`` where the remaining landmarks cannot define the model (affine with
    3 landmarks, similarity with 2).
    """
    n = len(moving)
    if model == "affine":
        if n <= 3:
            return np.full(n, np.nan)
        design = np.column_stack([moving, np.ones(n)])
        q = np.linalg.qr(design)[0]
        lever = np.sum(q**2, axis=1)
        resid = residuals(fit(model, moving, fixed, mirror), moving, fixed)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = resid / (1.0 - lever)
        return np.where(lever < 1.0 - 1e-9, out, np.nan)
    if n <= 2:
        return np.full(n, np.nan)
    z, w = _complex(moving, mirror), _complex(fixed, False)
    z, w = z - z.mean(), w - w.mean()  # centring first keeps the deleted sums accurate
    k = n - 1
    mz, mw = (z.sum() - z) / k, (w.sum() - w) / k
    c = (np.sum(np.conj(z) * w) - np.conj(z) * w) - k * np.conj(mz) * mw
    var = (np.sum(np.abs(z) ** 2) - np.abs(z) ** 2) - k * np.abs(mz) ** 2
    a = c / np.abs(c) if model == "rigid" else c / var
    return np.abs(a * (z - mz) + mw - w)
