"""Acceptance check of a non-rigid refinement: keep the displacement field only if it helps.

Block matching (:mod:`._blockmatch`) maximises the NCC of small patches, so any field it returns looks
better by its own criterion, also when the patches matched noise (cell masks against nuclei on CosMx made
the p90 error worse, ``docs/nonrigid-registration.md``). :func:`nonrigid_check` therefore judges the field
by a similarity the block matching did not optimise: the normalised mutual information of the fixed image
and the **raw** moving image (not the intensity-remapped one the matching saw) over the whole overlap,
with quantile bins, before and after the field. The field is accepted when NMI rises by at least
:data:`NONRIGID_MIN_GAIN`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from spatialpath.align._displacement import DisplacementField
from spatialpath.align._mutual_info import quantile_nmi

__all__ = ["NONRIGID_MIN_GAIN", "nonrigid_check"]

#: minimum rise of the overlap's quantile NMI (16 bins, σ = 1 px) for the field to be kept.
NONRIGID_MIN_GAIN = 0.002
_BINS = 16
_SIGMA = 1.0


def nonrigid_check(
    fixed: np.ndarray,
    moved: np.ndarray,
    valid: np.ndarray,
    field: DisplacementField,
    grid: np.ndarray,
    *,
    min_gain: float = NONRIGID_MIN_GAIN,
) -> dict[str, Any]:
    """Compare the NMI of ``fixed`` with ``moved`` (affine) and with ``moved`` pulled by ``field``.

    ``moved`` is the moving image resampled into the fixed pixel grid by the affine part, ``valid`` its
    mask, ``field`` the pull-back ``e`` (µm, fixed frame: ``fixed(y) ≈ moved(y + e(y))``) and ``grid`` the
    3×3 pixel ``[col, row, 1]`` → µm map of the fixed grid. Both NMIs are taken over the same pixels
    (valid under both). Returns a JSON-safe record: ``accepted``, ``metric``, ``affine``, ``nonrigid``
    (the two NMIs), ``gain``, ``min_gain`` and ``reason``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = ndimage.gaussian_filter(rng.random((96, 96)), 2)
    >>> moved = np.roll(img, 3, axis=1)  # fixed(y) = moved(y + 3 px in x)
    >>> grid = np.diag([0.5, 0.5, 1.0])
    >>> v = np.zeros((2, 4, 4)); v[0] = 1.5  # 3 px along x
    >>> e = DisplacementField.from_spacing(v, spacing_um=16.0)
    >>> rec = nonrigid_check(img, moved, np.ones(img.shape, bool), e, grid)
    >>> rec["accepted"], rec["nonrigid"] > rec["affine"]
    (True, True)
    """
    h, w = fixed.shape
    rows, cols = np.mgrid[0:h, 0:w]
    xy = np.column_stack([cols.ravel(), rows.ravel(), np.ones(h * w)]) @ grid[:2].T
    d = np.asarray(field(xy)) / grid[0, 0]  # µm → px
    src = [(rows.ravel() + d[:, 1]).reshape(h, w), (cols.ravel() + d[:, 0]).reshape(h, w)]
    warped = ndimage.map_coordinates(moved, src, order=1)
    inside = ndimage.map_coordinates(valid.astype(np.float32), src, order=1) > 0.999
    both = valid & inside
    f, a, b = (ndimage.gaussian_filter(x.astype(np.float32), _SIGMA) for x in (fixed, moved, warped))
    if both.sum() < 256:
        before = after = float("nan")
    else:
        before = quantile_nmi(f[both], a[both], _BINS)
        after = quantile_nmi(f[both], b[both], _BINS)
    gain = after - before
    accepted = bool(np.isfinite(gain) and gain >= min_gain)
    reason = (
        f"the field raises NMI by {gain:.4f} ≥ {min_gain}"
        if accepted
        else f"the field raises NMI by {gain:.4f} < {min_gain}: kept the affine transform"
    )
    return {
        "accepted": accepted,
        "metric": f"quantile NMI ({_BINS} bins) over the overlap",
        "affine": float(before),
        "nonrigid": float(after),
        "gain": float(gain),
        "min_gain": float(min_gain),
        "reason": reason,
    }
