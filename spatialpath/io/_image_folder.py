"""Images read whole or file by file: MIBI channel folders, steinbock ``img/`` + panel, PNG/JPEG."""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import tifffile
import xarray as xr

from spatialpath.io._common import ReaderError, check_path, require_pixel_size
from spatialpath.io._tiff_meta import check_data_extent, open_tiff, pixel_size
from spatialpath.model import make_image

__all__ = [
    "image_stem",
    "read_channel_folder",
    "read_pil",
    "read_steinbock_images",
    "resolve_channels",
    "resolve_pixel_size",
    "steinbock_metadata",
]

PathLike = str | os.PathLike[str]
_TIFF_SUFFIXES = (".tif", ".tiff")
_SUFFIX = re.compile(r"(\.ome)?\.(tiff?|qptiff|svs|png|jpe?g)$", re.IGNORECASE)


def image_stem(path: Path) -> str:
    """File name without its image suffix (``.ome.tif`` counts as one): the default ``image_id``."""
    return _SUFFIX.sub("", path.name) or path.name


def resolve_pixel_size(
    file_ps: float | None,
    file_from: str,
    given: float | None,
    name: str,
    looked_for: str = "no OME PhysicalSizeX, SVS MPP, ImageJ unit or cm/inch resolution tags",
) -> tuple[float, str]:
    """The pixel size to use: ``given`` overrides the file (warning if they differ by > 1 %).

    Raises
    ------
    ValueError
        If neither the file nor ``given`` has one (the message names ``pixel_size_um`` and what
        was looked for).
    """
    if given is None:
        if file_ps is None:
            require_pixel_size(None, source=f"{name} ({looked_for})")
        return float(file_ps), file_from
    ps = require_pixel_size(given, source=name)
    if file_ps is not None and abs(ps - file_ps) > 0.01 * file_ps:
        warnings.warn(
            f"{name}: pixel_size_um={ps:g} overrides the file's {file_ps:g} µm/px (from {file_from}); "
            "check which one is right",
            UserWarning,
            stacklevel=4,
        )
    return ps, "pixel_size_um argument"


def resolve_channels(file_names: list[str], file_from: str, given: Sequence[str] | None, name: str):
    """The channel names to use: ``given`` renames the file's channels (same count required)."""
    if given is None:
        return list(file_names), file_from
    given = [given] if isinstance(given, str) else [str(c) for c in given]
    if len(given) != len(file_names):
        raise ValueError(
            f"channels= has {len(given)} names but {name} has {len(file_names)} channels "
            f"(the file calls them {file_names[:8]}{'...' if len(file_names) > 8 else ''}); pass exactly "
            f"{len(file_names)} names in file order, or omit channels= to keep the file's names"
        )
    return given, "channels argument"


def read_pil(path: Path, channels: Any, pixel_size_um: float | None) -> xr.DataArray:
    """Read an RGB(A) or grey PNG/JPEG (whole, as numpy); the pixel size must be given."""
    from PIL import Image

    if pixel_size_um is None:
        raise ValueError(
            f"{path.name}: PNG and JPEG files carry no reliable pixel size (their DPI is a screen/print "
            "setting); pass pixel_size_um=<micrometres per pixel> from the scanner or publication. "
            "spatialpath never guesses a pixel size."
        )
    try:
        with Image.open(path) as im:
            if im.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            arr = np.asarray(im)
    except OSError as e:
        raise ReaderError(
            f"{path.name}: cannot decode the image, the file is truncated or corrupt ({e})"
        ) from e
    if arr.ndim == 3:
        names = ["R", "G", "B", "A"][: arr.shape[2]] if arr.shape[2] in (3, 4) else None
        arr = np.moveaxis(arr, 2, 0)
        names = names or [f"ch{i}" for i in range(arr.shape[0])]
        names_from = "RGB(A) samples" if arr.shape[0] in (3, 4) else "default"
    else:
        arr, names, names_from = arr[None], ["ch0"], "default ch0 (no names in the file)"
    names, names_from = resolve_channels(names, names_from, channels, path.name)
    ps, ps_from = resolve_pixel_size(None, "", pixel_size_um, path.name)
    image = make_image(arr, channels=names, pixel_size_um=ps, image_id=image_stem(path), source=str(path))
    image.attrs.update(level=0, n_levels=1, channels_from=names_from, pixel_size_from=ps_from)
    return image


def _tiffs(folder: Path) -> list[Path]:
    """TIFF files in ``folder`` (not hidden), sorted by name in Python string order."""
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in _TIFF_SUFFIXES and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def _read_plane(path: Path) -> np.ndarray:
    try:
        arr = tifffile.imread(path, series=0)
    except Exception as e:  # tifffile and its codecs raise many types on corrupt data
        raise ReaderError(f"{path.name}: cannot decode the image data ({e})") from e
    return arr.reshape(arr.shape[-2:])


def read_channel_folder(
    folder: PathLike,
    *,
    channels: Sequence[str] | None = None,
    pixel_size_um: float | None = None,
    chunks: Any = None,
) -> xr.DataArray:
    """Stack a folder of single-channel TIFFs, one per marker, into one lazy ``(c, y, x)`` image.

    This is the MIBI-TOF layout (``Point1/CD8.tif``, ``Point1/HH3.tif``...). The channel name of
    each file is its stem. Files are read only when the image is computed (one dask block per
    file); their headers are checked up front.

    Parameters
    ----------
    folder
        The field-of-view folder. ``*.tif`` / ``*.tiff`` files are used; other files are ignored.
    channels
        Markers to read, in this order (a subset is allowed). Default: every TIFF, sorted by file
        name in Python string order (upper case before lower case: ``"PanKRT" < "SMA" < "pS6"``).
    pixel_size_um
        µm per pixel; required unless the first file has resolution tags (MIBI exports usually
        do not: take it from the instrument run, e.g. field width in µm / width in pixels).
    chunks
        Dask chunks; default one block per channel.

    Returns
    -------
    Dask-backed DataArray ``(c, y, x)``; ``attrs["image_id"]`` is the folder name.

    Raises
    ------
    ReaderError
        If the folder has no TIFF, a file is not a single 2-D plane, or shapes differ (the message
        names the odd file).
    ValueError
        If a requested channel has no file, or no pixel size is known.

    Examples
    --------
    >>> import os, tempfile, numpy as np, tifffile
    >>> fov = tempfile.mkdtemp()
    >>> for name in ["HH3", "CD8"]:
    ...     tifffile.imwrite(os.path.join(fov, f"{name}.tif"), np.full((3, 4), len(name), np.uint8))
    >>> img = read_channel_folder(fov, pixel_size_um=0.5)
    >>> img.c.values.tolist(), img.shape, int(img.sel(c="HH3").max())
    (['CD8', 'HH3'], (2, 3, 4), 3)
    """
    folder = check_path(folder, kind="dir", what="folder of single-channel TIFFs")
    files = {p.stem: p for p in _tiffs(folder)}
    if not files:
        raise ReaderError(f"{folder}: no .tif/.tiff files; expected one single-channel TIFF per marker")
    if channels is not None:
        missing = [c for c in channels if c not in files]
        if missing:
            raise ValueError(
                f"channels {missing} have no file in {folder} (files: {sorted(files)[:12]}...); "
                "channel names are the file names without .tif"
            )
        files = {c: files[c] for c in channels}
    headers = {}
    for name, p in files.items():
        with open_tiff(p) as tif:
            s = tif.series[0]
            shape = tuple(n for n in s.shape if n != 1)
            if len(shape) != 2:
                raise ReaderError(
                    f"{p.name} has shape {s.shape} (axes {s.axes!r}), but every file of a channel folder "
                    "must hold one 2-D plane; read multi-channel files with read_image(file)"
                )
            check_data_extent(p, s.pages)
            headers[name] = (shape, s.dtype)
            if len(headers) == 1:
                file_ps, ps_from = pixel_size(tif, 0)
    common, n_common = Counter(h[0] for h in headers.values()).most_common(1)[0]
    odd = [n for n, h in headers.items() if h[0] != common]
    if odd:
        o = files[odd[0]]
        raise ReaderError(
            f"{o.name} has shape {headers[odd[0]][0]} but {n_common} other file(s) in {folder} have "
            f"{common}; every channel of one field must have the same size (remove or fix the odd file)"
        )
    ps, ps_from = resolve_pixel_size(
        file_ps, f"{ps_from} of {next(iter(files.values())).name}", pixel_size_um, str(folder)
    )
    dtype = np.result_type(*(h[1] for h in headers.values()))
    planes = [
        da.from_delayed(dask.delayed(_read_plane)(p), shape=common, dtype=headers[n][1]).astype(dtype)
        for n, p in files.items()
    ]
    data = da.stack(planes)
    if chunks is not None:
        data = data.rechunk(chunks)
    image = make_image(data, channels=list(files), pixel_size_um=ps, image_id=folder.name, source=str(folder))
    image.attrs.update(level=0, n_levels=1, channels_from="file names", pixel_size_from=ps_from)
    return image


def _read_panel(panel_csv: Path) -> list[str]:
    panel = pd.read_csv(panel_csv)
    if "name" not in panel or "channel" not in panel:
        raise ReaderError(
            f"{panel_csv}: a steinbock panel needs columns 'channel' and 'name' (found {list(panel.columns)})"
        )
    if "keep" in panel:
        panel = panel[panel["keep"].fillna(0).astype(int) == 1]
    return [str(n) if pd.notna(n) else str(c) for c, n in zip(panel["channel"], panel["name"], strict=True)]


def steinbock_metadata(path: Path, n_channels: int) -> tuple[list[str], str, float | None, str] | None:
    """Channel names and pixel size of a steinbock ``img/*.tiff`` from ``../panel.csv`` and ``../images.csv``.

    Returns None unless ``path`` lies in a folder named ``img`` next to a ``panel.csv``. Names are
    the panel's ``name`` column for rows with ``keep == 1`` (steinbock writes exactly those
    channels, in panel order); the pixel size is ``acquisition_width_um / width_px`` of the
    image's row in ``images.csv`` (steinbock copies both from the MCD acquisition).

    Raises
    ------
    ReaderError
        If the panel's kept rows do not match the number of channels in the image.
    """
    root = path.parent.parent
    if path.parent.name != "img" or not (root / "panel.csv").is_file():
        return None
    names = _read_panel(root / "panel.csv")
    if len(names) != n_channels:
        raise ReaderError(
            f"{path.name} has {n_channels} channels but {root / 'panel.csv'} keeps {len(names)} "
            "(rows with keep == 1); the panel does not belong to this image"
        )
    ps = None
    if (root / "images.csv").is_file():
        images = pd.read_csv(root / "images.csv")
        row = images[images["image"] == path.name] if "image" in images else images.iloc[:0]
        if len(row) == 1 and {"acquisition_width_um", "width_px"} <= set(images.columns):
            width_um, width_px = float(row["acquisition_width_um"].iloc[0]), float(row["width_px"].iloc[0])
            ps = width_um / width_px if width_um > 0 and width_px > 0 else None
    return (
        names,
        "steinbock panel.csv name (keep == 1)",
        ps,
        "steinbock images.csv acquisition_width_um / width_px",
    )


def read_steinbock_images(
    steinbock_dir: PathLike, *, pixel_size_um: float | None = None, chunks: Any = None
) -> dict[str, xr.DataArray]:
    """Read every image of a steinbock output folder (``img/*.tiff`` with ``panel.csv``).

    Parameters
    ----------
    steinbock_dir
        The steinbock folder (holding ``img/``, ``panel.csv`` and ``images.csv``), or its ``img/``.
    pixel_size_um, chunks
        As in :func:`~spatialpath.io.read_image`.

    Returns
    -------
    dict from image id (file stem, e.g. ``"20210305_NE_mockData2_001"``, the ``Image`` column of
    steinbock's cell tables without ``.tiff``) to image, in file-name order.

    Examples
    --------
    >>> import os, tempfile, numpy as np, pandas as pd, tifffile
    >>> root = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(root, "img"))
    >>> tifffile.imwrite(os.path.join(root, "img", "run_001.tiff"), np.zeros((2, 5, 6), np.float32))
    >>> panel = {"channel": ["Ir191", "Pr141"], "name": ["DNA1", "CK5"], "keep": [1, 1]}
    >>> pd.DataFrame(panel).to_csv(os.path.join(root, "panel.csv"), index=False)
    >>> images = {"image": ["run_001.tiff"], "width_px": [6], "acquisition_width_um": [6.0]}
    >>> pd.DataFrame(images).to_csv(os.path.join(root, "images.csv"), index=False)
    >>> img = read_steinbock_images(root)["run_001"]
    >>> img.c.values.tolist(), img.attrs["pixel_size_um"]
    (['DNA1', 'CK5'], 1.0)
    """
    from spatialpath.io._image import read_image

    root = check_path(steinbock_dir, kind="dir", what="steinbock folder")
    img_dir = root if root.name == "img" else root / "img"
    files = _tiffs(check_path(img_dir, kind="dir", what="steinbock img/ folder"))
    return {image_stem(p): read_image(p, pixel_size_um=pixel_size_um, chunks=chunks) for p in files}
