"""Multiple-testing corrections shared by the statistics of :mod:`spatialpath.gr`."""

from __future__ import annotations

import numpy as np

__all__ = ["bh_qvalues"]


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values along the last two axes (each ``K × K`` matrix a family).

    NaN p-values are left out of the family and stay NaN.

    Examples
    --------
    >>> bh_qvalues(np.array([[0.01, 0.04], [0.03, np.nan]])).round(3).tolist()
    [[0.03, 0.04], [0.04, nan]]
    """
    p = np.asarray(p, np.float64)
    flat = p.reshape(-1, p.shape[-2] * p.shape[-1])
    q = np.full_like(flat, np.nan)
    for r in range(flat.shape[0]):
        ok = np.flatnonzero(np.isfinite(flat[r]))
        if ok.size == 0:
            continue
        order = ok[np.argsort(flat[r, ok], kind="stable")]
        ranked = flat[r, order] * ok.size / np.arange(1, ok.size + 1)
        q[r, order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q.reshape(p.shape)
