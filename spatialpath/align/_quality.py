"""Registration quality: resampling on thumbnails, similarity metrics, overlap, QC figures, failure.

Resampling convention: a 3×3 matrix ``A`` maps an *output* pixel ``[col, row, 1]`` to the *input* pixel
it reads (a pull-back), as :func:`scipy.ndimage.affine_transform` does in ``(row, col)`` order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from spatialpath.model import DataModelError

__all__ = ["RegistrationError", "checkerboard", "ncc", "nmi", "warp"]

_SWAP = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


class RegistrationError(DataModelError):
    """The images could not be registered; ``result`` holds the partial :class:`RegistrationResult`."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


def warp(
    img: np.ndarray, pull: np.ndarray, shape: tuple[int, int], *, order: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``img`` on an output grid of ``shape``; ``pull`` maps output ``[col, row, 1]`` to input.

    Returns the resampled image (0 outside) and the boolean mask of output pixels that read inside.

    Examples
    --------
    >>> out, valid = warp(np.arange(9.0).reshape(3, 3), np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1.0]]), (3, 3))
    >>> out[0].tolist(), valid[0].tolist()
    ([1.0, 2.0, 0.0], [True, True, False])
    """
    a = _SWAP @ pull @ _SWAP
    out = ndimage.affine_transform(img, a[:2, :2], a[:2, 2], output_shape=shape, order=order, cval=0.0)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    c = pull[0, 0] * cols + pull[0, 1] * rows + pull[0, 2]
    r = pull[1, 0] * cols + pull[1, 1] * rows + pull[1, 2]
    tol = 1e-6
    valid = (c >= -tol) & (r >= -tol) & (c <= img.shape[1] - 1 + tol) & (r <= img.shape[0] - 1 + tol)
    return out.astype(np.float32), valid


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation of two images over ``mask`` (NaN when fewer than 16 pixels or constant).

    Examples
    --------
    >>> x = np.random.default_rng(0).random((8, 8))
    >>> round(ncc(x, 2 * x + 1), 12)
    1.0
    """
    if mask is not None:
        a, b = a[mask], b[mask]
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.size < 16:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / den) if den > 0 else float("nan")


def nmi(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, bins: int = 32) -> float:
    """Normalised mutual information ``(H(A) + H(B)) / H(A, B)`` (1 = independent, 2 = identical).

    Intensities are assumed in [0, 1] (as the registration normalises them).

    Examples
    --------
    >>> x = np.random.default_rng(0).random((64, 64))
    >>> round(nmi(x, x), 6), nmi(x, np.random.default_rng(1).random((64, 64))) < 1.1
    (2.0, True)
    """
    if mask is not None:
        a, b = a[mask], b[mask]
    if np.size(a) < 16:
        return float("nan")
    h, _, _ = np.histogram2d(np.ravel(a), np.ravel(b), bins=bins, range=[[0, 1], [0, 1]])
    p = h / h.sum()
    px, py = p.sum(1), p.sum(0)

    def ent(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    hab = ent(p.ravel())
    return (ent(px) + ent(py)) / hab if hab > 0 else float("nan")


def checkerboard(fixed: np.ndarray, moved: np.ndarray, valid: np.ndarray, n: int = 8) -> np.ndarray:
    """Alternate squares of ``fixed`` and ``moved`` (``n`` squares along the longer side); NaN off-image."""
    side = max(1, int(np.ceil(max(fixed.shape) / n)))
    rows, cols = np.indices(fixed.shape)
    board = ((rows // side + cols // side) % 2).astype(bool)
    out = np.where(board, np.where(valid, moved, np.nan), fixed)
    return out.astype(np.float32)


def overlay(fixed: np.ndarray, moved: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """RGB overlay: fixed in magenta, the registered moving image in green (white where both)."""
    m = np.where(valid, moved, 0.0)
    return np.clip(np.stack([fixed, m, fixed], axis=-1), 0, 1)
