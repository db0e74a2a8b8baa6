"""Read images into the micrometre data model: TIFF/OME-TIFF/SVS/qptiff (lazy pyramids), PNG/JPEG, folders."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import tifffile
import xarray as xr
import zarr
from dask.base import tokenize

from spatialpath.io._common import ReaderError, check_path
from spatialpath.io._image_folder import (
    image_stem,
    read_channel_folder,
    read_pil,
    resolve_channels,
    resolve_pixel_size,
    steinbock_metadata,
)
from spatialpath.io._tiff_meta import (
    channel_names,
    check_data_extent,
    is_image_series,
    open_tiff,
    pixel_size,
)
from spatialpath.model import make_image

__all__ = ["LAZY_THRESHOLD_BYTES", "read_image", "read_pyramid"]

PathLike = str | os.PathLike[str]
#: single-level images larger than this (uncompressed) are returned dask-backed; smaller ones as numpy.
LAZY_THRESHOLD_BYTES = 256 * 2**20
#: default dask blocks span about this many pixels along y and x, in whole file tiles/strips.
BLOCK_PX = 1024
_CHANNEL_AXES = set("CSIQPER")
_MAGIC = {b"II*\x00": "tiff", b"MM\x00*": "tiff", b"II+\x00": "tiff", b"MM\x00+": "tiff"}


@dataclass
class _Tiff:
    """Everything known about one TIFF series before any pixel is read."""

    path: Path
    series: int  # tifffile's series index
    axes: str  # squeezed native axes, e.g. "CYX", "YXS", "YX"
    shapes: list[tuple[int, int, int]]  # (c, y, x) per level
    tiles: list[tuple[int, ...]]  # zarr chunk shape per level, native axes
    dtype: np.dtype
    channels: list[str]
    channels_from: str
    pixel_size_um: float
    pixel_size_from: str


class _TiffLevel:
    """(c, y, x) array-like over one TIFF level: tifffile ``aszarr`` -> zarr, opened on first read.

    Picklable (the store is reopened in each process), so dask graphs also run on dask.distributed.
    """

    def __init__(self, info: _Tiff, level: int) -> None:
        self.path, self.series, self.level, self.axes = info.path, info.series, level, info.axes
        self.shape, self.dtype, self.ndim = info.shapes[level], info.dtype, 3
        self._z: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_z", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _z=None, _lock=threading.Lock())

    def _zarr(self) -> Any:
        with self._lock:
            if self._z is None:
                store = tifffile.imread(self.path, series=self.series, level=self.level, aszarr=True)
                self._z = zarr.open_array(store, mode="r")
            return self._z

    def __getitem__(self, key: Any) -> np.ndarray:
        key = (key if isinstance(key, tuple) else (key,)) + (slice(None),) * 3
        ints = tuple(i for i, k in enumerate(key[:3]) if isinstance(k, int | np.integer))
        key = tuple(slice(k, k + 1) if i in ints else k for i, k in enumerate(key[:3]))
        native = tuple(key[1] if a == "Y" else key[2] if a == "X" else key[0] for a in self.axes)
        try:
            out = _to_cyx(np.asarray(self._zarr()[native]), self.axes)
        except Exception as e:  # decoders raise many types on corrupt tiles
            raise ReaderError(f"{self.path.name}: cannot decode level {self.level} ({e})") from e
        if not _has_channel_axis(self.axes):
            out = out[key[0]]
        return out.squeeze(ints) if ints else out

    def read_all(self) -> np.ndarray:
        """The whole level as numpy (tifffile's threaded decoder; used for small images)."""
        with open_tiff(self.path) as tif:
            try:
                arr = tif.series[self.series].asarray(level=self.level)
            except Exception as e:  # decoders raise many types on corrupt data
                raise ReaderError(f"{self.path.name}: cannot decode the image data ({e})") from e
        return _to_cyx(arr, self.axes)


def _has_channel_axis(axes: str) -> bool:
    return any(a in _CHANNEL_AXES for a in axes)


def _to_cyx(arr: np.ndarray, axes: str) -> np.ndarray:
    """Transpose an array in tifffile's native axes (e.g. "YXS", "CYX", "YX") to (c, y, x)."""
    if not _has_channel_axis(axes):
        return arr[None]
    axes = "".join("C" if a in _CHANNEL_AXES else a for a in axes)
    return arr.transpose([axes.index(a) for a in "CYX"])


def _sniff(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(8)
    if head[:4] in _MAGIC:
        return "tiff"
    if head.startswith(b"\x89PNG"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    raise ReaderError(
        f"{path.name}: not a TIFF (OME-TIFF, SVS, qptiff, Vectra), PNG or JPEG file (first bytes "
        f"{head[:4]!r}); for IMC .mcd files use spatialpath.io.read_mcd"
    )


def _inspect_tiff(path: Path, series: int, channels: Any, pixel_size_um: float | None) -> _Tiff:
    """Read a TIFF's metadata (never pixels) and resolve channel names and pixel size."""
    with open_tiff(path) as tif:
        image_series = [i for i, s in enumerate(tif.series) if is_image_series(s)]
        if not 0 <= series < len(image_series):
            raise ValueError(
                f"series={series} but {path.name} has {len(image_series)} image series (0 to "
                f"{len(image_series) - 1}; thumbnail, label and macro images are not counted)"
            )
        index = image_series[series]
        s = tif.series[index]
        axes = s.axes
        extra = [a for a in axes if a not in "YX"]
        if len(extra) > 1 or (extra and extra[0] not in _CHANNEL_AXES) or "Y" not in axes or "X" not in axes:
            raise ReaderError(
                f"{path.name}: series {series} has axes {axes!r} with shape {s.shape}; read_image reads 2-D "
                "images with channels (c, y, x), not z-stacks or time series: read one plane with tifffile"
            )
        rgb = extra == ["S"]
        n_c = s.shape[axes.index(extra[0])] if extra else 1
        shapes, tiles = [], []
        for k, lvl in enumerate(s.levels):
            sizes = dict(zip(lvl.axes, lvl.shape, strict=True))
            shapes.append((n_c, sizes["Y"], sizes["X"]))
            tiles.append(tuple(zarr.open_array(s.aszarr(level=k), mode="r").chunks))
            check_data_extent(path, lvl.pages)
        names, names_from = channel_names(tif, index, n_c, rgb)
        file_ps, ps_from = pixel_size(tif, index)
        dtype = s.dtype
    unnamed = names_from.startswith("default")
    st = steinbock_metadata(path, n_c) if unnamed or file_ps is None else None
    if st is not None:  # a steinbock img/*.tiff: fill in what the file itself lacks
        names, names_from = (st[0], st[1]) if unnamed else (names, names_from)
        file_ps, ps_from = (st[2], st[3]) if file_ps is None and st[2] is not None else (file_ps, ps_from)
    names, names_from = resolve_channels(names, names_from, channels, path.name)
    ps, ps_from = resolve_pixel_size(file_ps, ps_from, pixel_size_um, path.name)
    return _Tiff(path, index, axes, shapes, tiles, dtype, names, names_from, ps, ps_from)


def _dask_chunks(info: _Tiff, level: int, chunks: Any) -> Any:
    if chunks is not None and chunks != "default":
        if isinstance(chunks, Mapping):
            return tuple(chunks.get(d, -1) for d in ("c", "y", "x"))
        return chunks
    tile = dict(zip(info.axes, info.tiles[level], strict=True))

    def block(t: int) -> int:
        return max(1, BLOCK_PX // t) * t

    c_tile = next((tile[a] for a in info.axes if a in _CHANNEL_AXES), 1)
    return (c_tile, block(tile["Y"]), block(tile["X"]))


def _level_image(info: _Tiff, level: int, chunks: Any) -> xr.DataArray:
    """One pyramid level as a DataArray with its own µm grid in level 0's physical frame."""
    n_levels = len(info.shapes)
    if not 0 <= level < n_levels:
        raise ValueError(
            f"level={level} but {info.path.name} has {n_levels} resolution level(s): 0 (full resolution)"
            + (f" to {n_levels - 1}" if n_levels > 1 else "")
        )
    arr = _TiffLevel(info, level)
    shape = info.shapes[level]
    nbytes = int(np.prod(shape)) * info.dtype.itemsize
    if chunks is None and n_levels == 1 and nbytes <= LAZY_THRESHOLD_BYTES:
        data: Any = arr.read_all()
    else:
        stat = info.path.stat()
        name = "read-image-" + tokenize(
            str(info.path), stat.st_mtime_ns, stat.st_size, info.series, level, chunks
        )
        data = da.from_array(
            arr, chunks=_dask_chunks(info, level, chunks), asarray=True, fancy=False, lock=False, name=name,
            meta=np.empty((0, 0, 0), dtype=info.dtype),
        )  # fmt: skip
    _, h0, w0 = info.shapes[0]
    ps0 = info.pixel_size_um
    ps = ps0 * (w0 / shape[2] + h0 / shape[1]) / 2
    origin = (ps - ps0) / 2  # level k's pixel (0, 0) starts where level 0's does
    image = make_image(
        data,
        channels=info.channels,
        pixel_size_um=ps,
        origin_um=(origin, origin),
        image_id=image_stem(info.path),
        source=str(info.path),
    )
    image.attrs.update(
        level=level, n_levels=n_levels, channels_from=info.channels_from, pixel_size_from=info.pixel_size_from
    )
    return image


def read_pyramid(
    path: PathLike,
    *,
    channels: Sequence[str] | None = None,
    pixel_size_um: float | None = None,
    series: int = 0,
    chunks: Any = None,
) -> list[xr.DataArray]:
    """Open every resolution level of an image, finest first, lazily and in one µm frame.

    Each level has its own pixel size and µm coordinates at its pixel centres, chosen so that all
    levels cover the same physical extent as level 0 (they overlay exactly in napari or in
    ``xarray`` selections by µm). Levels are dask-backed when the file has more than one; no pixel
    is read until computed. A file or folder with one level gives a one-element list.

    Parameters
    ----------
    path, channels, pixel_size_um, series, chunks
        As in :func:`read_image`.

    Returns
    -------
    list of DataArray, level 0 (full resolution) first.

    Examples
    --------
    >>> import os, tempfile, numpy as np, tifffile
    >>> path = os.path.join(tempfile.mkdtemp(), "pyr.ome.tif")
    >>> with tifffile.TiffWriter(path) as tw:
    ...     meta = {"axes": "CYX", "Channel": {"Name": ["DAPI", "CD8"]}, "PhysicalSizeX": 0.5}
    ...     tw.write(np.zeros((2, 64, 64), np.uint8), tile=(32, 32), subifds=1, metadata=meta)
    ...     tw.write(np.zeros((2, 32, 32), np.uint8), tile=(32, 32), subfiletype=1)
    >>> levels = read_pyramid(path)
    >>> [lv.sizes["x"] for lv in levels], [lv.attrs["pixel_size_um"] for lv in levels]
    ([64, 32], [0.5, 1.0])
    >>> float(levels[1].x[0])  # centre of a 2x2 block of level-0 pixels
    0.25
    """
    p = check_path(path, kind="any", what="image file or folder")
    if p.is_dir() or _sniff(p) != "tiff":
        return [read_image(p, channels=channels, pixel_size_um=pixel_size_um, series=series, chunks=chunks)]
    info = _inspect_tiff(p, series, channels, pixel_size_um)
    lazy = chunks if chunks is not None else "default"
    return [_level_image(info, k, lazy) for k in range(len(info.shapes))]


def read_image(
    path: PathLike,
    *,
    level: int = 0,
    channels: Sequence[str] | None = None,
    pixel_size_um: float | None = None,
    series: int = 0,
    chunks: Any = None,
) -> xr.DataArray:
    """Read a multiplexed or brightfield image into a ``(c, y, x)`` DataArray in micrometres.

    Formats (recognised by content, not suffix): TIFF, OME-TIFF (with sub-IFD pyramids),
    Aperio SVS, Vectra/inForm ``component_data.tif`` and PhenoImager ``.qptiff``, steinbock
    ``img/*.tiff`` (names from ``../panel.csv``, pixel size from ``../images.csv``), PNG/JPEG (RGB),
    and a folder of single-channel TIFFs named by marker (MIBI layout; see
    :func:`~spatialpath.io._image_folder.read_channel_folder`).

    Parameters
    ----------
    path
        Image file or folder.
    level
        Pyramid level, 0 = full resolution (see :func:`read_pyramid` for all levels).
    channels
        Channel names to use instead of the file's, one per channel in file order (a count that
        differs from the file raises). For a folder: the markers to read, in this order.
    pixel_size_um
        µm per pixel. Overrides the file (with a warning if they differ by more than 1 %); required
        when the file has none (PNG/JPEG, plain TIFF). Never guessed.
    series
        Which image in a multi-image file (thumbnail, label and macro images are not counted).
    chunks
        None: numpy for single-level images up to :data:`LAZY_THRESHOLD_BYTES` (256 MiB), dask
        otherwise, in blocks of about 1024 x 1024 px aligned to the file's tiles. Anything else
        (an int, a tuple in ``(c, y, x)`` order, a dict by dim name, ``"auto"``): always dask with
        these chunks.

    Returns
    -------
    DataArray with dims ``("c", "y", "x")``, channel names in ``c``, µm coordinates at pixel
    centres, and ``attrs`` ``pixel_size_um``, ``units``, ``source``, ``image_id`` (file stem),
    ``level``, ``n_levels``, ``channels_from`` and ``pixel_size_from`` (where each came from).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ReaderError
        If the file is truncated, corrupt, or not a supported format.
    ValueError
        If no pixel size is known, ``channels`` has the wrong length, or ``level``/``series`` is out
        of range.

    Examples
    --------
    >>> import os, tempfile, numpy as np, tifffile
    >>> path = os.path.join(tempfile.mkdtemp(), "field.tif")
    >>> data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    >>> res = {"resolution": (20_000, 20_000), "resolutionunit": "CENTIMETER"}  # 20,000 px/cm = 0.5 µm/px
    >>> tifffile.imwrite(path, data, photometric="minisblack", **res)
    >>> img = read_image(path, channels=["DAPI", "CD8"])
    >>> img.dims, img.c.values.tolist(), img.attrs["pixel_size_um"], img.x.values.tolist()
    (('c', 'y', 'x'), ['DAPI', 'CD8'], 0.5, [0.0, 0.5, 1.0, 1.5])
    >>> int(img.sel(c="CD8").values[2, 3])
    23
    """
    p = check_path(path, kind="any", what="image file or folder")
    if p.is_dir():
        if level != 0 or series != 0:
            raise ValueError(f"{p.name} is a folder of single-channel TIFFs: it has one level and one series")
        return read_channel_folder(p, channels=channels, pixel_size_um=pixel_size_um, chunks=chunks)
    kind = _sniff(p)
    if kind != "tiff":
        if level != 0 or series != 0:
            raise ValueError(f"{p.name} is a {kind.upper()} image: it has one level and one series")
        return read_pil(p, channels, pixel_size_um)
    info = _inspect_tiff(p, series, channels, pixel_size_um)
    return _level_image(info, level, chunks)
