"""Registration inputs: one nuclear-like, normalised channel per image on a grid of known µm pixels.

:func:`prepare` turns a spatialpath image (``(c, y, x)``, ``(y, x)`` or ``(y, x, c)`` DataArray with µm
coordinates, numpy- or dask-backed) or a label mask into a :class:`Prepared` image: a per-pixel channel
function (a named channel, the hematoxylin channel of an RGB brightfield image by Ruifrok–Johnston colour
deconvolution, the luminance, or the foreground of a label mask) and the µm grid. :meth:`Prepared.level`
block-averages it lazily to a working pixel size, so a whole slide is never loaded at full resolution;
:meth:`Prepared.patch` reads one full-resolution window.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage
from skimage.color import rgb2hed

from spatialpath.align._resample_grid import grid_of
from spatialpath.model import DataModelError

__all__ = ["Prepared", "grid_matrix", "prepare"]

#: channel names taken as nuclear when no channel is given (case-insensitive, whole name).
NUCLEAR = re.compile(
    r"^(dapi|hoechst.*|nuclear|nuclei|dna\d*|hematoxylin|haematoxylin|ir19[13].*|h3342)$", re.I
)
#: RGB images whose median luminance exceeds this are brightfield (white background).
BRIGHTFIELD_LUMINANCE = 0.5
_RGB_NAMES = ("R", "G", "B")
_CHUNK = 2048


def grid_matrix(pixel_size_um: float, origin_um: tuple[float, float]) -> np.ndarray:
    """3×3 map of pixel ``[col, row, 1]`` to µm ``[x, y, 1]`` (pixel centres)."""
    return np.array([[pixel_size_um, 0.0, origin_um[0]], [0.0, pixel_size_um, origin_um[1]], [0.0, 0.0, 1.0]])


@dataclass
class Prepared:
    """One registration channel of an image: full-resolution source, channel function and µm grid."""

    data: Any  # (c, y, x) numpy or dask array of the channels the function reads
    fn: Callable[[np.ndarray], np.ndarray]  # (c, y, x) block -> (y, x) float32
    pixel_size_um: float
    origin_um: tuple[float, float]
    channel: str  # what was used, e.g. "DAPI", "hematoxylin", "labels"
    lo: float = 0.0
    hi: float = 1.0
    ranged: bool = False
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.data.shape[-2]), int(self.data.shape[-1])

    @property
    def grid(self) -> np.ndarray:
        return grid_matrix(self.pixel_size_um, self.origin_um)

    def level(self, pixel_size_um: float) -> tuple[np.ndarray, np.ndarray]:
        """The channel block-averaged to about ``pixel_size_um`` (never finer than native).

        Returns the float32 image normalised to [0, 1] (1st–99.5th percentile of the first level computed)
        and its pixel→µm grid. Levels are cached; a coarser level is derived from the finest cached one
        whose factor fits, so the full-resolution data are read once.
        """
        f = max(1, int(np.floor(pixel_size_um / self.pixel_size_um + 1e-9)))
        finer = [f0 for f0 in self._cache if f0 <= f]
        if finer:
            f0 = max(finer)
            k = f // f0
            raw0 = self._cache[f0]
            h, w = raw0.shape[0] // k * k, raw0.shape[1] // k * k
            out = raw0[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3)) if k > 1 else raw0
            f = f0 * k
        else:
            h, w = (s // f * f for s in self.shape)
            arr = da.asarray(self.data[..., :h, :w])
            arr = arr.rechunk((-1, max(f, _CHUNK // f * f), max(f, _CHUNK // f * f)))
            chan = arr.map_blocks(lambda b: self.fn(np.asarray(b)), drop_axis=0, dtype=np.float32)
            img = da.coarsen(np.mean, chan, {0: f, 1: f}, trim_excess=True) if f > 1 else chan
            out = np.asarray(img.compute(scheduler="threads"), dtype=np.float32)
        self._cache[f] = out
        off = (f - 1) / 2.0 * self.pixel_size_um
        grid = grid_matrix(self.pixel_size_um * f, (self.origin_um[0] + off, self.origin_um[1] + off))
        if not self.ranged:
            self.set_range(out)
        return self.normalise(out), grid

    def set_range(self, img: np.ndarray) -> None:
        """Fix the normalisation range from a (thumbnail) image of the raw channel."""
        lo, hi = np.percentile(img, [1.0, 99.5])
        self.lo, self.hi, self.ranged = float(lo), float(max(hi, lo + 1e-6)), True

    def normalise(self, img: np.ndarray) -> np.ndarray:
        return np.clip((img - self.lo) / (self.hi - self.lo), 0.0, 1.0).astype(np.float32)

    def patch(self, row0: int, col0: int, rows: int, cols: int) -> np.ndarray:
        """A full-resolution normalised window (clipped to the image; may be smaller than asked)."""
        r0, c0 = max(0, row0), max(0, col0)
        block = np.asarray(self.data[..., r0 : max(r0, row0 + rows), c0 : max(c0, col0 + cols)])
        return self.normalise(self.fn(block))


def _pixel_size(img: xr.DataArray, what: str) -> tuple[float, tuple[float, float]]:
    """Pixel size and origin (µm) of a registration input, read by the resampler's grid reader.

    Adds the checks registration needs: square pixels, at least 2 × 2, and
    ``attrs['pixel_size_um']`` agreeing with the coordinates.
    """
    hint = (
        f"unknown units: the {what} image needs µm coordinates 'x' and 'y' at pixel centres and "
        "attrs['units'] == 'um'; build it with spatialpath.model.make_image(data, channels=..., "
        "pixel_size_um=...) or read it with spatialpath.io.read_image(path, pixel_size_um=...)"
    )
    if not isinstance(img, xr.DataArray):
        raise DataModelError(f"the {what} image must be an xarray.DataArray, got {type(img).__name__}")
    if img.sizes.get("x", 0) < 2 or img.sizes.get("y", 0) < 2:
        raise DataModelError(f"the {what} image must be at least 2 × 2 pixels, got sizes {dict(img.sizes)}")
    try:
        affine = grid_of(img, f"the {what} image").affine
    except DataModelError as err:
        raise DataModelError(f"{hint} ({err})") from None
    dx, dy = float(affine[0, 0]), float(affine[1, 1])
    stated = img.attrs.get("pixel_size_um", dx)
    try:
        stated = float(stated)
    except (TypeError, ValueError):
        stated = float("nan")
    if not (dx > 0 and np.isclose(dy, dx, rtol=1e-3) and np.isclose(stated, dx, rtol=1e-3)):
        raise DataModelError(
            f"{hint}; the {what} image's pixel size must be a positive, finite number of µm shared by x "
            f"and y, got pixel_size_um={stated!r} and coordinate steps {dx:.6g} (x), {dy:.6g} (y)"
        )
    return dx, (float(affine[0, 2]), float(affine[1, 2]))


def _hematoxylin(block: np.ndarray) -> np.ndarray:
    rgb = np.moveaxis(block.astype(np.float32) / (255.0 if block.dtype == np.uint8 else 1.0), 0, -1)
    return rgb2hed(np.clip(rgb, 0, 1))[..., 0].astype(np.float32)


def _luminance(block: np.ndarray) -> np.ndarray:
    return block.astype(np.float32).mean(axis=0)


def _difference(a: int, b: int) -> Callable[[np.ndarray], np.ndarray]:
    def fn(block: np.ndarray) -> np.ndarray:
        return block[a].astype(np.float32) - block[b].astype(np.float32)

    return fn


#: derived channels of an RGB image: name -> per-pixel function of the (3, y, x) block. "B-G" isolates DAPI
#: (blue) from cyan (blue + green) membrane markers in fluorescence composites.
DERIVED = {"luminance": _luminance, "B-G": _difference(2, 1), "B-R": _difference(2, 0)}
#: channels tried (and kept by score) for an RGB fluorescence composite when no channel is given.
COMPOSITE_CHANNELS = ("B", "B-G", "luminance")


#: label masks are registered through each label's interior: the distance (µm) to the label's edge (the
#: background or another label) clipped at this value, so touching cells stay apart and cell centres, where
#: nuclei sit, are bright (see docs/image-registration.md, "CosMx").
LABEL_INTERIOR_UM = 1.5


def _foreground(block: np.ndarray) -> np.ndarray:
    return (block[0] > 0).astype(np.float32)


def _interior(clip_px: float) -> Callable[[np.ndarray], np.ndarray]:
    """Per-label distance (px) to the label's edge, clipped at ``clip_px``: a cone-topped mesa per label."""

    def fn(block: np.ndarray) -> np.ndarray:
        lab = block[0]
        inner = lab > 0
        step_r, step_c = lab[1:] != lab[:-1], lab[:, 1:] != lab[:, :-1]
        inner[1:] &= ~step_r
        inner[:-1] &= ~step_r
        inner[:, 1:] &= ~step_c
        inner[:, :-1] &= ~step_c
        return np.minimum(ndimage.distance_transform_edt(inner), clip_px).astype(np.float32)

    return fn


def _one(block: np.ndarray) -> np.ndarray:
    return block[0].astype(np.float32)


def prepare(img: xr.DataArray, channel: str | int | None, *, what: str = "fixed") -> Prepared:
    """Pick the registration channel of ``img`` (see :func:`~spatialpath.align.register_images`).

    Examples
    --------
    >>> from spatialpath.model import make_labels
    >>> p = prepare(make_labels(np.eye(4, dtype=int), pixel_size_um=0.5), None)
    >>> p.channel, p.level(1.0)[0].shape
    ('labels', (2, 2))
    """
    ps, origin = _pixel_size(img, what)
    if img.ndim == 3 and img.dims[-1] == "c":
        img = img.transpose("c", "y", "x")
    if img.ndim == 2:
        if img.dims != ("y", "x"):
            raise DataModelError(f"a 2-D {what} image must have dims ('y', 'x'), got {img.dims}")
        data = img.data[None]
        if np.issubdtype(img.dtype, np.integer) or img.dtype == bool:
            if channel is not None and channel not in ("labels", "foreground"):
                raise DataModelError(
                    f"{what}_channel={channel!r} is not a channel of a label mask; use None or 'labels' "
                    "(each label's interior distance) or 'foreground' (label > 0)"
                )
            if channel == "foreground":
                return Prepared(data, _foreground, ps, origin, "foreground")
            return Prepared(data, _interior(max(1.0, LABEL_INTERIOR_UM / ps)), ps, origin, "labels")
        return Prepared(data, _one, ps, origin, str(img.name or "image"))
    if img.dims != ("c", "y", "x"):
        raise DataModelError(
            f"the {what} image dims must be ('c', 'y', 'x'), ('y', 'x') or ('y', 'x', 'c'), got {img.dims}"
        )
    names = [str(c) for c in img.c.values] if "c" in img.coords else [str(i) for i in range(img.sizes["c"])]
    lower_names = [n.lower() for n in names]
    rgb = img.sizes["c"] == 3 and ([n.upper() for n in names] == list(_RGB_NAMES) or img.dtype == np.uint8)
    if channel is None:
        if rgb:
            thumb = np.asarray(
                img.data[:, :: max(1, img.sizes["y"] // 256), :: max(1, img.sizes["x"] // 256)]
            )
            thumb = thumb / (255.0 if thumb.dtype == np.uint8 else 1.0)
            lit = thumb.max(axis=0) > 0.04  # ignore black padding (e.g. around a rotated image)
            lum = float(np.median(thumb.mean(axis=0)[lit])) if lit.any() else 0.0
            channel = "hematoxylin" if lum > BRIGHTFIELD_LUMINANCE else "B"
        else:
            nuclear = [n for n in names if NUCLEAR.match(n)]
            if len(names) == 1 or nuclear:
                channel = nuclear[0] if nuclear else names[0]
            else:
                raise DataModelError(
                    f"cannot tell which {what} channel to register: none of {names} is nuclear "
                    f"(DAPI, Hoechst, DNA…); pass {what}_channel= a name or index"
                )
    if (
        isinstance(channel, str)
        and channel.lower() in ("hematoxylin", "haematoxylin")
        and "hematoxylin" not in [n.lower() for n in names]
    ):
        if not rgb:
            raise DataModelError(
                f"{what}_channel='hematoxylin' needs an RGB brightfield image (channels R, G, B), got {names}"
            )
        return Prepared(img.data, _hematoxylin, ps, origin, "hematoxylin")
    if isinstance(channel, str) and channel.lower() in ("luminance", "grey", "gray"):
        return Prepared(img.data, _luminance, ps, origin, "luminance")
    if isinstance(channel, str) and channel.upper() in ("B-G", "B-R") and channel.lower() not in lower_names:
        if not rgb:
            raise DataModelError(
                f"{what}_channel={channel!r} needs an RGB image (channels R, G, B), got {names}"
            )
        return Prepared(img.data, DERIVED[channel.upper()], ps, origin, channel.upper())
    if isinstance(channel, (int, np.integer)) and not isinstance(channel, bool):
        if not -len(names) <= channel < len(names):
            raise DataModelError(f"{what}_channel={channel} is out of range for channels {names}")
        idx = int(channel) % len(names)
    else:
        lower = [n.lower() for n in names]
        if not isinstance(channel, str) or channel.lower() not in lower:
            raise DataModelError(
                f"{what}_channel={channel!r} is not a channel of the {what} image; choose one of {names}, "
                "'hematoxylin' (RGB brightfield), 'luminance' or an index"
            )
        idx = lower.index(channel.lower())
    return Prepared(img.data[idx : idx + 1], _one, ps, origin, names[idx])


def smooth(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing in pixels (0: unchanged)."""
    return ndimage.gaussian_filter(img, sigma) if sigma > 0 else img
