"""Images and label masks as :class:`xarray.DataArray` on a micrometre grid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from spatialpath.keys import Key

__all__ = ["make_image", "make_labels", "pixel_coords"]


def pixel_coords(n: int, pixel_size_um: float, origin_um: float = 0.0) -> np.ndarray:
    """Return the µm positions of the centres of ``n`` pixels along one axis.

    The centre of pixel ``i`` is at ``origin_um + i * pixel_size_um``.

    Parameters
    ----------
    n
        Number of pixels.
    pixel_size_um
        Pixel edge length in µm.
    origin_um
        Position in µm of the centre of pixel 0.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64 positions in µm.

    Examples
    --------
    >>> pixel_coords(3, 0.5)
    array([0. , 0.5, 1. ])
    """
    return origin_um + np.arange(n, dtype=np.float64) * float(pixel_size_um)


def _check_pixel_size(pixel_size_um: Any) -> float:
    try:
        ps = float(pixel_size_um)
    except (TypeError, ValueError):
        raise ValueError(
            f"pixel_size_um must be a positive number of micrometres per pixel, got {pixel_size_um!r}"
        ) from None
    if not np.isfinite(ps) or ps <= 0:
        raise ValueError(f"pixel_size_um must be a positive, finite number of micrometres, got {ps}")
    return ps


def make_image(
    data: Any,
    *,
    channels: Sequence[str],
    pixel_size_um: float,
    origin_um: tuple[float, float] = (0.0, 0.0),
    image_id: str | None = None,
    source: str | None = None,
) -> xr.DataArray:
    """Wrap a ``(c, y, x)`` array (numpy or dask) as a spatialpath image.

    Parameters
    ----------
    data
        Array of shape ``(n_channels, height, width)``; a 2-D array is taken as one channel.
        A dask array stays lazy.
    channels
        One name per channel.
    pixel_size_um
        Pixel edge length in µm.
    origin_um
        ``(x, y)`` in µm of the centre of pixel ``(0, 0)``.
    image_id, source
        Stored in ``attrs``.

    Returns
    -------
    DataArray with dims ``("c", "y", "x")``, coordinate ``c`` = channel names and ``y``/``x``
    in µm at pixel centres; ``attrs`` hold ``pixel_size_um``, ``units`` and ``source``.

    Raises
    ------
    ValueError
        If the number of channel names does not match the array, names repeat, or the pixel
        size is not a positive number.

    Examples
    --------
    >>> import numpy as np
    >>> img = make_image(np.zeros((2, 3, 4)), channels=["DAPI", "CD8"], pixel_size_um=0.5)
    >>> img.dims, img.x.values.tolist()
    (('c', 'y', 'x'), [0.0, 0.5, 1.0, 1.5])
    """
    ps = _check_pixel_size(pixel_size_um)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(
            f"image data must have shape (c, y, x) (or (y, x) for one channel), got {data.ndim} dims "
            f"with shape {tuple(data.shape)}"
        )
    channels = [str(c) for c in channels]
    if len(channels) != data.shape[0]:
        raise ValueError(
            f"got {len(channels)} channel names for an image with {data.shape[0]} channels "
            f"(shape {tuple(data.shape)}); pass exactly one name per channel, in order"
        )
    if len(set(channels)) != len(channels):
        dup = sorted({c for c in channels if channels.count(c) > 1})
        raise ValueError(f"channel names must be unique; repeated: {dup}")
    coords, attrs = _grid(data.shape[-2:], ps, origin_um, image_id, source)
    return xr.DataArray(data, dims=Key.image_dims, coords={"c": channels, **coords}, attrs=attrs)


def make_labels(
    data: Any,
    *,
    pixel_size_um: float,
    origin_um: tuple[float, float] = (0.0, 0.0),
    categories: Sequence[str] | None = None,
    image_id: str | None = None,
    source: str | None = None,
) -> xr.DataArray:
    """Wrap an integer ``(y, x)`` mask (instance labels or class codes) on the µm grid.

    Parameters
    ----------
    data
        Integer array of shape ``(height, width)``; 0 is background.
    pixel_size_um, origin_um, image_id, source
        As in :func:`make_image`.
    categories
        For a class mask, the name of each code (``categories[k]`` names value ``k``);
        stored in ``attrs["categories"]``.

    Raises
    ------
    ValueError
        If the array is not 2-D or not integer.

    Examples
    --------
    >>> import numpy as np
    >>> lab = make_labels(np.array([[0, 1], [2, 2]]), pixel_size_um=2.0)
    >>> lab.dims, lab.y.values.tolist()
    (('y', 'x'), [0.0, 2.0])
    """
    ps = _check_pixel_size(pixel_size_um)
    if data.ndim != 2:
        raise ValueError(f"a label mask must be 2-D (y, x), got shape {tuple(data.shape)}")
    if not np.issubdtype(data.dtype, np.integer):
        raise ValueError(
            f"a label mask must have an integer dtype, got {data.dtype}; "
            "convert with data.astype(np.int32) if the values are whole numbers"
        )
    coords, attrs = _grid(data.shape, ps, origin_um, image_id, source)
    if categories is not None:
        attrs[Key.attrs.categories] = [str(c) for c in categories]
    return xr.DataArray(data, dims=Key.labels_dims, coords=coords, attrs=attrs)


def _grid(
    shape_yx: tuple[int, ...],
    ps: float,
    origin_um: tuple[float, float],
    image_id: str | None,
    source: str | None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """µm coordinates at pixel centres and the attrs shared by images and masks."""
    x0, y0 = origin_um
    coords = {"y": pixel_coords(shape_yx[0], ps, y0), "x": pixel_coords(shape_yx[1], ps, x0)}
    attrs: dict[str, Any] = {Key.attrs.pixel_size_um: ps, Key.attrs.units: Key.unit}
    if image_id is not None:
        attrs[Key.attrs.image_id] = image_id
    if source is not None:
        attrs[Key.attrs.source] = source
    return coords, attrs
