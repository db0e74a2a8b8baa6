"""Block matching by normalised cross-correlation, and robust regularisation of the node shifts.

All quantities are in pixels of the arrays passed in; shifts are ``(dx, dy)`` with x the column axis.
A shift ``t`` at a point ``p`` means ``fixed(p + u) ≈ moving(p + t + u)`` for ``u`` in the patch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage

__all__ = ["BlockMatches", "local_linear", "match_blocks", "median_outliers"]

#: a patch whose standard deviation is below this fraction of the image's robust spread is textureless.
_MIN_TEXTURE = 0.15


@dataclass(frozen=True)
class BlockMatches:
    """Shifts ``(n, 2)`` (dx, dy, px), peak NCC ``(n,)`` and a validity flag ``(n,)`` per point."""

    shift: np.ndarray
    peak: np.ndarray
    valid: np.ndarray


def _robust_spread(image: np.ndarray) -> float:
    q = np.percentile(image[:: max(1, image.shape[0] // 256), :: max(1, image.shape[1] // 256)], [5, 95])
    return float(q[1] - q[0]) or float(image.std())


def _subpixel(v_minus: float, v0: float, v_plus: float) -> float:
    """Vertex of the parabola through three equally spaced samples (offset from the middle one)."""
    denom = v_minus - 2.0 * v0 + v_plus
    if denom >= 0 or not np.isfinite(denom):
        return 0.0
    return float(np.clip(0.5 * (v_minus - v_plus) / denom, -0.5, 0.5))


def _ncc_batch(patches: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """NCC maps ``(n, w−p+1, w−p+1)`` of ``(n, p, p)`` patches over ``(n, w, w)`` windows (FFT, batched)."""
    _n, p, _ = patches.shape
    w = windows.shape[1]
    m = w - p + 1
    pz = patches - patches.mean(axis=(1, 2), keepdims=True)
    pz /= np.sqrt((pz**2).sum(axis=(1, 2), keepdims=True)) + 1e-300
    size = fft.next_fast_len(w, real=True)
    spec = fft.rfft2(windows, s=(size, size)) * np.conj(fft.rfft2(pz, s=(size, size)))
    num = fft.irfft2(spec, s=(size, size))[:, :m, :m]  # Σ_u pz(u) · W(u + k), no wrap for k < m
    c1 = np.pad(windows.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    c2 = np.pad((windows**2).cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))

    def box(c: np.ndarray) -> np.ndarray:
        return c[:, p:, p:] - c[:, :-p, p:] - c[:, p:, :-p] + c[:, :-p, :-p]

    var = box(c2) - box(c1) ** 2 / (p * p)
    scale = np.sqrt(np.maximum(var, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ncc = np.where(scale > 1e-9 * (np.abs(windows).max() + 1e-300) * p, num / scale, 0.0)
    return np.clip(ncc, -1.0, 1.0)


def match_blocks(
    fixed: np.ndarray,
    moving: np.ndarray,
    centres: np.ndarray,
    *,
    half: int,
    radius: int,
    mask: np.ndarray | None = None,
) -> BlockMatches:
    """Match a ``(2·half+1)²`` patch of ``fixed`` at each centre within ``±radius`` px of ``moving``.

    Parameters
    ----------
    fixed, moving
        2-D arrays of the same shape.
    centres
        ``(n, 2)`` integer (x, y) patch centres; they must leave ``half`` px to every border.
    half, radius
        Patch half-width and search radius (px). Near a border the search is cut to what exists.
    mask
        Optional boolean mask of valid ``fixed`` pixels; a patch less than half valid is rejected.

    Returns
    -------
    BlockMatches
        Sub-pixel shifts (parabola fit of the NCC peak), the peak NCC (NaN where not matched), and
        ``valid`` = textured patch, peak strictly inside the search window.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> from scipy import ndimage
    >>> a = ndimage.gaussian_filter(rng.normal(size=(80, 80)), 2)
    >>> b = np.roll(a, (3, -2), axis=(0, 1))  # moving content 3 px down, 2 px left
    >>> m = match_blocks(a, b, np.array([[40, 40]]), half=12, radius=6)
    >>> m.shift.round(6).tolist(), bool(m.valid[0])
    ([[-2.0, 3.0]], True)
    """
    ny, nx = fixed.shape
    spread_f, spread_m = _robust_spread(fixed), _robust_spread(moving)
    centres = np.asarray(centres, dtype=int)
    n = len(centres)
    shift = np.zeros((n, 2))
    peak = np.full(n, np.nan)
    valid = np.zeros(n, dtype=bool)
    p = 2 * half + 1
    # windows cut by the image border are padded by edge replication and their cut offsets excluded
    fpad = np.pad(fixed, radius, mode="edge")
    mpad = np.pad(moving, radius, mode="edge")
    todo, patches, windows, limits = [], [], [], []
    for i, (cx, cy) in enumerate(centres):
        y0, x0 = cy - half, cx - half
        if y0 < 0 or x0 < 0 or y0 + p > ny or x0 + p > nx:
            continue
        if mask is not None and mask[y0 : y0 + p, x0 : x0 + p].mean() < 0.5:
            continue
        patch = fpad[y0 + radius : y0 + radius + p, x0 + radius : x0 + radius + p]
        window = mpad[y0 : y0 + p + 2 * radius, x0 : x0 + p + 2 * radius]
        if patch.std() < _MIN_TEXTURE * spread_f or window.std() < _MIN_TEXTURE * spread_m:
            continue
        # allowed offsets (index into the NCC map) where the moving patch lies inside the image
        limits.append(
            (
                max(0, radius - y0),
                min(2 * radius, radius + ny - p - y0),
                max(0, radius - x0),
                min(2 * radius, radius + nx - p - x0),
            )
        )
        todo.append(i)
        patches.append(patch)
        windows.append(window)
    if not todo:
        return BlockMatches(shift, peak, valid)
    ncc = _ncc_batch(np.asarray(patches, dtype=np.float64), np.asarray(windows, dtype=np.float64))
    for k, i in enumerate(todo):
        r_lo, r_hi, c_lo, c_hi = limits[k]
        sub = ncc[k, r_lo : r_hi + 1, c_lo : c_hi + 1]
        r, c = np.unravel_index(int(np.argmax(sub)), sub.shape)
        peak[i] = sub[r, c]
        if not (0 < r < sub.shape[0] - 1 and 0 < c < sub.shape[1] - 1):
            continue  # on the border of the search: the true peak may lie outside
        sy = _subpixel(sub[r - 1, c], sub[r, c], sub[r + 1, c])
        sx = _subpixel(sub[r, c - 1], sub[r, c], sub[r, c + 1])
        shift[i] = (c + c_lo + sx - radius, r + r_lo + sy - radius)
        valid[i] = True
    return BlockMatches(shift, peak, valid)


def median_outliers(d: np.ndarray, ok: np.ndarray, eps: float) -> np.ndarray:
    """Normalised median test (Westerweel & Scarano 2005) on a node lattice; returns the kept mask.

    Each node is compared with the median of the valid nodes in its 5 × 5 neighbourhood (at least
    3 of them; otherwise with the median of all valid nodes) and dropped when its deviation exceeds
    twice the neighbours' median deviation plus ``eps``.
    """
    ny, nx = ok.shape
    keep = ok.copy()
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy, dx) != (0, 0)]
    for _ in range(2):
        if keep.sum() < 2:
            break
        pad_d = np.pad(np.where(keep[None], d, np.nan), ((0, 0), (2, 2), (2, 2)), constant_values=np.nan)
        neigh = np.stack([pad_d[:, 2 + dy : 2 + dy + ny, 2 + dx : 2 + dx + nx] for dy, dx in offsets], axis=1)
        n_valid = np.sum(np.isfinite(neigh[0]), axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(neigh, axis=1)
            resid = np.nanmedian(np.abs(neigh - med[:, None]), axis=1)
        g_med = np.median(d[:, keep], axis=1)
        g_res = np.median(np.abs(d[:, keep] - g_med[:, None]), axis=1)
        few = n_valid < 3
        med[:, few] = g_med[:, None]
        resid[:, few] = g_res[:, None]
        r = np.abs(d - med) / (resid + eps)
        keep = keep & ~(np.max(r, axis=0) > 2.0)
    return keep


def local_linear(
    xs: np.ndarray, ys: np.ndarray, d: np.ndarray, w: np.ndarray, sigma: float, ridge: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-weighted local linear fit of lattice measurements, evaluated at the lattice nodes.

    ``xs``, ``ys`` are the measurement positions in node units (column, row; a measurement near a
    border sits inside its node), ``d`` ``(2, ny, nx)`` the measurements and ``w`` their weights.
    The kernel is a Gaussian of ``sigma`` nodes over lattice indices; the fit reproduces any affine
    field exactly, so borders and gaps are extrapolated linearly rather than shrunk.
    Returns the fitted values and the kernel weight sum (0 where nothing was measured nearby).
    """

    def g(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma, mode="constant", cval=0.0, truncate=3.0)

    jn, i_n = np.meshgrid(np.arange(w.shape[1], dtype=float), np.arange(w.shape[0], dtype=float))
    s0, sx_, sy_ = g(w), g(w * xs), g(w * ys)
    sx = sx_ - jn * s0  # Σ K w (X − j_n)
    sy = sy_ - i_n * s0
    sxx = g(w * xs * xs) - 2 * jn * sx_ + jn * jn * s0
    syy = g(w * ys * ys) - 2 * i_n * sy_ + i_n * i_n * s0
    sxy = g(w * xs * ys) - jn * sy_ - i_n * sx_ + jn * i_n * s0
    a = np.stack([np.stack([s0, sx, sy], -1), np.stack([sx, sxx, sxy], -1), np.stack([sy, sxy, syy], -1)], -2)
    ridge = ridge * s0 + 1e-12  # keeps the slope defined where measurements lie on a line
    a[..., 0, 0] += 1e-12
    a[..., 1, 1] += ridge
    a[..., 2, 2] += ridge
    out = np.empty_like(d)
    for k in range(2):
        sd = g(w * d[k])
        b = np.stack([sd, g(w * xs * d[k]) - jn * sd, g(w * ys * d[k]) - i_n * sd], -1)
        out[k] = np.linalg.solve(a, b[..., None])[..., 0, 0]
    return out, s0
