"""Coarse registration on thumbnails, tolerant to any rotation, a mirror and a scale change.

Method: an exhaustive search over rotation (every ``angle_step`` degrees over 360°), mirror and a few
scales on small thumbnails. Each hypothesis warps the moving thumbnail about its centre; its translation and
score come from one masked normalised cross-correlation over all shifts (Padfield 2012, by FFT), which
ignores pixels outside the rotated moving image and refuses overlaps below a minimum; the NCC is weighted by
√(overlap fraction) so that chance correlations of small partial overlaps lose. The best distinct
hypotheses are each refined by ECC (:mod:`._refine`) on the thumbnails and ranked by the correlation they
reach, which separates the true pose from partial-overlap look-alikes far better than the grid score alone
(cross-modal thumbnails correlate weakly: 0.3–0.5 at the true pose). Fourier–Mellin (log-polar FFT
magnitude) was tried first and rejected: the magnitude spectrum of nuclear texture is nearly isotropic and
featureless, so its rotation and scale peaks were wrong on the real pairs (see the docs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft

from spatialpath.align._quality import warp
from spatialpath.align._refine import ecc_affine

__all__ = ["Candidate", "coarse_search", "masked_ncc", "overlap_fraction"]

#: scales (moving → fixed, µm) tried by the exhaustive search: 0.8–1.25 in 9 ratios of ≈ 1.057.
DEFAULT_SCALES = tuple(float(s) for s in np.round(np.exp(np.linspace(np.log(0.8), np.log(1.25), 9)), 4))
#: rotation step (degrees) of the exhaustive search.
ANGLE_STEP = 6.0
#: hypotheses closer than this in log scale (and same mirror, rotation < 2 steps) are one pose.
SCALE_DEDUP = 0.08
#: exponent of the overlap fraction that multiplies the grid NCC (0: plain masked NCC).
OVERLAP_POWER = 0.5


@dataclass
class Candidate:
    """One coarse hypothesis: thumbnail-pixel map moving → fixed and its masked NCC."""

    matrix: np.ndarray  # 3×3: moving → fixed (thumbnail pixels while searching, µm once refined)
    score: float  # masked NCC of the search, then the correlation after ECC
    rotation_deg: float
    scale: float
    flip: bool

    def to_dict(self) -> dict[str, float | bool]:
        return {
            "rotation_deg": self.rotation_deg,
            "scale": self.scale,
            "flip": self.flip,
            "score": self.score,
        }


def _linear(rotation_deg: float, scale: float, flip: bool) -> np.ndarray:
    t = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return scale * rot @ np.diag([-1.0 if flip else 1.0, 1.0])


def masked_ncc(
    fixed: np.ndarray,
    moving: np.ndarray,
    mmask: np.ndarray,
    min_overlap: int,
    cache: dict | None = None,
    *,
    overlap_power: float = 0.0,
) -> tuple[float, tuple[int, int]]:
    """Best masked NCC over all integer shifts and its shift ``(drow, dcol)``: fixed(p) ≈ moving(p − d).

    ``cache`` (a dict) keeps the fixed image's spectra between calls with the same moving shape.
    ``overlap_power`` > 0 scores ``max(NCC, 0) · (overlap / min(fixed size, mask size)) ** overlap_power``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.random((40, 50))
    >>> score, shift = masked_ncc(f, f[5:30, 10:40], np.ones((25, 30), bool), 100)
    >>> round(score, 4), shift
    (1.0, (5, 10))
    """
    pairs = zip(fixed.shape, moving.shape, strict=True)
    shape = tuple(fft.next_fast_len(a + b - 1, real=True) for a, b in pairs)

    def spec(x: np.ndarray) -> np.ndarray:
        return fft.rfft2(x.astype(np.float32), shape)

    def corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # Σ_p X(p) Y(p − d), d over the padded range
        return fft.irfft2(x * np.conj(y), shape)

    cache = {} if cache is None else cache
    if shape not in cache:
        f = fixed.astype(np.float32)
        cache[shape] = (spec(np.ones_like(f)), spec(f), spec(f * f))
    fa, ff, fff = cache[shape]
    g = np.where(mmask, moving, 0.0).astype(np.float32)
    gb, gg, ggg = spec(mmask), spec(g), spec(g * g)
    n = np.round(corr(fa, gb))
    sf, sg = corr(ff, gb), corr(fa, gg)
    n_safe = np.maximum(n, 1.0)
    num = corr(ff, gg) - sf * sg / n_safe
    den = (corr(fff, gb) - sf**2 / n_safe) * (corr(fa, ggg) - sg**2 / n_safe)
    valid = (n >= min_overlap) & (den > 1e-6 * n_safe**2)
    score = np.where(valid, num / np.sqrt(np.where(valid, den, 1.0)), -np.inf)
    if overlap_power:
        # favour large overlaps: small partial overlaps of blurry thumbnails correlate by chance
        full = max(1.0, min(float(fixed.size), float(mmask.sum())))
        score = np.where(valid, np.maximum(score, 0.0) * (n_safe / full) ** overlap_power, -np.inf)
    k = int(np.argmax(score))
    dr, dc = np.unravel_index(k, score.shape)
    dr = dr - shape[0] if dr > shape[0] - moving.shape[0] else dr
    dc = dc - shape[1] if dc > shape[1] - moving.shape[1] else dc
    return float(score.flat[k]), (int(dr), int(dc))


def overlap_fraction(fixed_shape: tuple[int, int], moving_shape: tuple[int, int], pull: np.ndarray) -> float:
    """Overlap of the moving image pulled by ``pull`` (fixed px → moving px) over the smaller image's area.

    Examples
    --------
    >>> shift = np.array([[1.0, 0, 50], [0, 1, 0], [0, 0, 1]])  # half of a 100-px wide moving image
    >>> round(overlap_fraction((100, 100), (100, 100), shift), 2)
    0.5
    """
    _, valid = warp(np.zeros(moving_shape, np.float32), pull, fixed_shape, order=0)
    area_m = moving_shape[0] * moving_shape[1] / max(abs(np.linalg.det(pull[:2, :2])), 1e-12)
    return float(min(1.0, valid.sum() / max(1.0, min(fixed_shape[0] * fixed_shape[1], area_m))))


def _place(moving: np.ndarray, lin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp ``moving`` by ``lin`` about its centre into a canvas that holds it; canvas ← moving map."""
    h, w = moving.shape
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], float) - [(w - 1) / 2, (h - 1) / 2]
    radius = np.linalg.norm(corners, axis=1).max() * np.sqrt(abs(np.linalg.det(lin)))
    cw = ch = int(np.ceil(2 * radius)) + 1  # one canvas for every angle: the fixed spectra are reused
    fwd = np.eye(3)
    fwd[:2, :2] = lin
    fwd[:2, 2] = [(cw - 1) / 2, (ch - 1) / 2] - lin @ [(w - 1) / 2, (h - 1) / 2]
    out, valid = warp(moving, np.linalg.inv(fwd), (ch, cw))
    return out, valid, fwd


def _evaluate(
    fixed: np.ndarray, moving: np.ndarray, rot: float, scale: float, flip: bool, min_frac: float, cache: dict
) -> Candidate:
    out, valid, fwd = _place(moving, _linear(rot, scale, flip))
    min_overlap = int(min_frac * min(fixed.size, valid.sum()))
    score, (dr, dc) = masked_ncc(fixed, out, valid, max(min_overlap, 16), cache, overlap_power=OVERLAP_POWER)
    shift = np.array([[1.0, 0, dc], [0, 1.0, dr], [0, 0, 1.0]])
    return Candidate(shift @ fwd, score, float(rot), float(scale), bool(flip))


def coarse_search(
    fixed: list[tuple[np.ndarray, np.ndarray]],
    moving: list[tuple[np.ndarray, np.ndarray]],
    *,
    angle_step: float = ANGLE_STEP,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    allow_flip: bool = True,
    model: str = "affine",
    min_overlap: float = 0.5,
    n_keep: int = 6,
) -> list[Candidate]:
    """Rank rotation/mirror/scale hypotheses; best first.

    ``fixed``/``moving`` are lists of ``(image, grid)`` thumbnails from coarse to fine, both images at the
    same pixel size per entry (``grid`` maps pixel ``[col, row, 1]`` to µm). Every ``angle_step`` over
    360°, each scale of ``scales`` (moving → fixed) and both mirror states are scored on the first
    thumbnails; the ``n_keep`` best distinct hypotheses are then refined by ECC through the thumbnails, and
    ranked by their correlation on the last one. Returned matrices map moving µm to fixed µm.
    """
    (fc, gfc), (mc, gmc) = fixed[0], moving[0]
    flips = (False, True) if allow_flip else (False,)
    cache: dict = {}
    coarse = [
        _evaluate(fc, mc, rot, sc, fl, min_overlap, cache)
        for fl in flips
        for sc in scales
        for rot in np.arange(0.0, 360.0, angle_step)
    ]
    coarse.sort(key=lambda c: -c.score)
    seen: list[Candidate] = []
    for cand in coarse:
        if len(seen) == n_keep:
            break
        if not any(
            c.flip == cand.flip
            and abs(np.log(c.scale / cand.scale)) < SCALE_DEDUP
            and abs((c.rotation_deg - cand.rotation_deg + 180) % 360 - 180) < 2 * angle_step
            for c in seen
        ):
            seen.append(cand)
    # the input placement (moving µm = fixed µm) competes too, when the thumbnails overlap
    ident = np.linalg.inv(gfc) @ gmc
    _, valid = warp(mc, np.linalg.inv(ident), fc.shape)
    if valid.mean() > 0.25:
        seen.append(Candidate(ident, float("nan"), 0.0, 1.0, False))
    out = []
    levels = list(zip(fixed[1:], moving[1:], strict=True)) or [(fixed[0], moving[0])]
    for cand in seen:
        m = gfc @ cand.matrix @ np.linalg.inv(gmc)
        rho = cand.score
        for (f, gf), (mv, gm) in levels:
            pull = np.linalg.inv(gm) @ np.linalg.inv(m) @ gf
            pull, rho = ecc_affine(f, mv, pull, model=model, max_iter=30, n_samples=20_000)
            m = gf @ np.linalg.inv(pull) @ np.linalg.inv(gm)
        # the same overlap weighting as the grid: ECC can slide a look-alike towards a small partial overlap
        score = float(rho) * overlap_fraction(f.shape, mv.shape, pull) ** OVERLAP_POWER
        out.append(
            Candidate(m, score if np.isfinite(score) else -1.0, cand.rotation_deg, cand.scale, cand.flip)
        )
    out.sort(key=lambda c: -c.score)
    return out
