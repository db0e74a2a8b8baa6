"""Channel names and pixel sizes from TIFF metadata: OME-XML, Vectra/inForm/qptiff XML, SVS, tags.

Every function here reads metadata only (IFDs and descriptions), never pixel data. Each returns
its value together with a short text naming where it came from, stored by the readers in
``attrs["channels_from"]`` and ``attrs["pixel_size_from"]``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import struct
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from spatialpath.io._common import ReaderError

__all__ = [
    "RGB_NAMES",
    "channel_names",
    "is_image_series",
    "open_tiff",
    "pixel_size",
]

#: channel names of an RGB (brightfield H&E / IHC) image.
RGB_NAMES = ("R", "G", "B")
#: tifffile series names that are not the tissue image (whole-slide extras).
_EXTRA_SERIES = {"thumbnail", "label", "macro", "overview"}
#: resolution tags in centimetres giving pixels of this size (µm) or larger are screen/print
#: defaults, not a microscope calibration, and are ignored.
MAX_TAG_PIXEL_UM = 50.0
#: resolution tags in inches giving pixels larger than this (µm) are ignored: inch units are what
#: image editors, screens and printers write (72/96 dpi screens; 300, 600, 1200, 2400, 4800 dpi
#: print resolutions = 84.7, 42.3, 21.2, 10.6, 5.3 µm), not a microscope calibration. 5 µm is
#: ~5,080 dpi; microscopes and slide scanners that write inches write far more (0.5 µm = 50,800 dpi).
MAX_INCH_TAG_PIXEL_UM = 5.0
#: micrometres per unit, for OME ``UnitsLength`` and ImageJ ``unit`` values.
_UM_PER_UNIT = {
    "m": 1e6,
    "dm": 1e5,
    "cm": 1e4,
    "mm": 1e3,
    "µm": 1.0,  # micro sign U+00B5
    "μm": 1.0,  # greek mu U+03BC
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "nm": 1e-3,
    "pm": 1e-6,
    "Å": 1e-4,
    "in": 25_400.0,
    "inch": 25_400.0,
}
#: qptiff ``<Biomarker>`` placeholders meaning "no marker given".
_PLACEHOLDERS = {"", "--", "none", "n/a", "na"}


def is_image_series(series: tifffile.TiffPageSeries) -> bool:
    """Whether a tifffile series is a tissue image (not an SVS/qptiff thumbnail, label or macro)."""
    return (series.name or "").strip().lower() not in _EXTRA_SERIES


def _xml_root(text: str) -> ET.Element | None:
    """Parse XML text, dropping an ``encoding`` declaration that ElementTree refuses on str."""
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text or "")
    try:
        return ET.fromstring(text)
    except ET.ParseError:
        return None


def _ome_image(tif: tifffile.TiffFile, series_index: int) -> ET.Element | None:
    """The OME ``Image`` element of a series (matched by order, then by name)."""
    root = _xml_root(tif.ome_metadata or "")
    if root is None:
        return None
    images = root.findall("{*}Image")
    series = tif.series[series_index]
    if len(images) == len(tif.series) and series_index < len(images):
        return images[series_index]
    named = [im for im in images if im.get("Name") == series.name]
    return named[0] if len(named) == 1 else (images[series_index] if series_index < len(images) else None)


def _unique(names: list[str]) -> list[str]:
    """Make repeated names unique by suffixing ``" (2)"``, ``" (3)"``..."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def _page_names(pages: list[Any]) -> tuple[list[str] | None, str]:
    """Per-page channel names from qptiff/inForm XML, MIBItiff JSON or the PageName tag."""
    names: list[str | None] = []
    source = ""
    for page in pages:
        if page is None:
            return None, ""
        desc = page.description or ""
        name = None
        root = _xml_root(desc) if desc.lstrip().startswith("<") else None
        if root is not None and root.tag == "PerkinElmer-QPI-ImageDescription":
            marker = (root.findtext("Biomarker") or "").strip()
            name = marker if marker.lower() not in _PLACEHOLDERS else (root.findtext("Name") or "").strip()
            source = "Vectra/qptiff page XML <Biomarker>/<Name>"
        elif desc.lstrip().startswith("{"):
            try:
                meta = json.loads(desc)
            except ValueError:
                meta = {}
            if isinstance(meta, dict) and meta.get("channel.target"):
                name, source = str(meta["channel.target"]), "MIBItiff page JSON channel.target"
        if not name and 285 in page.tags:  # PageName
            name, source = str(page.tags[285].value).strip(), "TIFF PageName tags"
        names.append(name or None)
    if not names or any(n is None for n in names):
        return None, ""
    return _unique([str(n) for n in names]), source


def channel_names(
    tif: tifffile.TiffFile, series_index: int, n_channels: int, rgb: bool
) -> tuple[list[str], str]:
    """Channel names of a series and where they came from.

    Order of sources: OME-XML ``Channel/@Name``; per-page XML of Vectra/inForm/qptiff files
    (``<Biomarker>``, else ``<Name>``); MIBItiff JSON ``channel.target``; ``PageName`` tags; ImageJ
    ``Labels``; ``R, G, B`` for RGB images; else ``ch0, ch1, ...``.

    Examples
    --------
    >>> import tempfile, os, numpy as np, tifffile
    >>> path = os.path.join(tempfile.mkdtemp(), "two.ome.tif")
    >>> meta = {"axes": "CYX", "Channel": {"Name": ["DAPI", "CD8"]}}
    >>> tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8), photometric="minisblack", metadata=meta)
    >>> with tifffile.TiffFile(path) as tif:
    ...     channel_names(tif, 0, 2, rgb=False)
    (['DAPI', 'CD8'], 'OME-XML Channel/@Name')
    """
    if tif.is_ome:
        image = _ome_image(tif, series_index)
        chans = [] if image is None else image.findall("{*}Pixels/{*}Channel")
        names = [c.get("Name") for c in chans]
        if rgb and len(chans) == 1:
            return list(RGB_NAMES), "RGB samples (OME)"
        if len(names) == n_channels and all(names):
            return _unique([str(n) for n in names]), "OME-XML Channel/@Name"
    series = tif.series[series_index]
    if not rgb and len(series.pages) == n_channels:
        names, source = _page_names(list(series.pages))
        if names is not None:
            return names, source
    labels = (tif.imagej_metadata or {}).get("Labels") if tif.is_imagej else None
    if labels is not None and len(labels) == n_channels and all(labels):
        return _unique([str(lab) for lab in labels]), "ImageJ Labels"
    if rgb and n_channels == 3:
        return list(RGB_NAMES), "RGB samples"
    return [f"ch{i}" for i in range(n_channels)], "default ch0, ch1, ... (no names in the file)"


def _to_um(value: Any, unit: str | None) -> float | None:
    """A length in µm, or None when the unit is not physical ("pixel") or unknown."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    factor = _UM_PER_UNIT.get((unit or "µm").strip())
    if factor is None or not v > 0:
        return None
    return v * factor


def _square(x: float | None, y: float | None, what: str) -> float | None:
    """One pixel size from x and y; refuse non-square pixels (the data model has one size)."""
    if x is None:
        return None
    if y is not None and abs(x - y) > 0.01 * max(x, y):
        raise ValueError(
            f"non-square pixels in the {what} ({x:g} x {y:g} µm); spatialpath images have one pixel "
            "size: resample the image to square pixels first"
        )
    return x if y is None else (x + y) / 2


def _ome_pixel_size(tif: tifffile.TiffFile, series_index: int) -> float | None:
    image = _ome_image(tif, series_index)
    pixels = None if image is None else image.find("{*}Pixels")
    if pixels is None:
        return None
    x = _to_um(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit"))
    y = _to_um(pixels.get("PhysicalSizeY"), pixels.get("PhysicalSizeYUnit"))
    return _square(x, y, "OME-XML PhysicalSizeX/Y")


def _svs_mpp(page: Any) -> float | None:
    match = re.search(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)", page.description or "")
    return _to_um(match.group(1), "µm") if match else None


def _imagej_pixel_size(tif: tifffile.TiffFile, page: Any) -> float | None:
    meta = tif.imagej_metadata or {}
    unit = str(meta.get("unit", "")).replace("\\u00B5", "µ")
    if unit not in _UM_PER_UNIT or 282 not in page.tags:
        return None
    num, den = page.tags[282].value
    x = _to_um(den / num, unit) if num else None
    y = None
    if 283 in page.tags and page.tags[283].value[0]:
        y = _to_um(page.tags[283].value[1] / page.tags[283].value[0], unit)
    ps = _square(x, y, "ImageJ resolution")
    return _trusted_tag_size(ps, unit) if unit in ("in", "inch") else ps


def _trusted_tag_size(ps: float | None, unit: str) -> float | None:
    """A resolution-tag pixel size, or None when it is a screen/print setting (see the limits)."""
    if ps is None:
        return None
    limit_ok = ps <= MAX_INCH_TAG_PIXEL_UM if unit in ("in", "inch") else ps < MAX_TAG_PIXEL_UM
    return ps if limit_ok else None


def _tag_pixel_size(page: Any) -> float | None:
    """Pixel size from XResolution/YResolution in pixels per cm or inch (absent unit means inch).

    Trusted only below :data:`MAX_TAG_PIXEL_UM` (50 µm) in centimetres and up to
    :data:`MAX_INCH_TAG_PIXEL_UM` (5 µm) in inches; otherwise None (the pixel size is absent).
    """
    if 282 not in page.tags:
        return None
    unit_code = int(page.tags[296].value) if 296 in page.tags else 2
    unit = {2: "in", 3: "cm"}.get(unit_code)
    num, den = page.tags[282].value
    if unit is None or not num or (num, den) == (1, 1):
        return None
    x = _to_um(den / num, unit)
    y = None
    if 283 in page.tags and page.tags[283].value[0]:
        ynum, yden = page.tags[283].value
        y = _to_um(yden / ynum, unit)
    return _trusted_tag_size(_square(x, y, "TIFF XResolution/YResolution tags"), unit)


def pixel_size(tif: tifffile.TiffFile, series_index: int) -> tuple[float | None, str]:
    """Level-0 pixel size in µm of a series and where it came from, or ``(None, "")``.

    Order of sources: OME-XML ``PhysicalSizeX/Y`` (with units); Aperio SVS ``MPP``; ImageJ
    ``unit`` with the resolution tags; TIFF ``XResolution``/``YResolution`` with
    ``ResolutionUnit`` centimetre or inch. Resolution tags are a microscope calibration only when
    plausible: in centimetres below :data:`MAX_TAG_PIXEL_UM` (50 µm), in inches (the TIFF default
    unit, written by editors, screens and printers) up to :data:`MAX_INCH_TAG_PIXEL_UM` (5 µm);
    72/96 dpi screen and 300–4800 dpi print resolutions are treated as absent, so the pixel size
    must then be passed.

    Raises
    ------
    ValueError
        If the file gives different x and y pixel sizes (by more than 1 %).

    Examples
    --------
    >>> import tempfile, os, numpy as np, tifffile
    >>> path = os.path.join(tempfile.mkdtemp(), "res.tif")
    >>> res = {"resolution": (20_000, 20_000), "resolutionunit": "CENTIMETER"}  # pixels per cm
    >>> tifffile.imwrite(path, np.zeros((4, 4), np.uint8), **res)
    >>> with tifffile.TiffFile(path) as tif:
    ...     pixel_size(tif, 0)
    (0.5, 'TIFF XResolution/YResolution tags (centimetre)')
    """
    page = tif.series[series_index].keyframe
    if tif.is_ome:
        ps = _ome_pixel_size(tif, series_index)
        if ps is not None:
            return ps, "OME-XML PhysicalSizeX/Y"
    if tif.is_svs:
        ps = _svs_mpp(tif.pages.first)
        if ps is not None:
            return ps, "Aperio SVS description MPP"
    if tif.is_imagej:
        ps = _imagej_pixel_size(tif, page)
        if ps is not None:
            return ps, "ImageJ unit + resolution tags"
    ps = _tag_pixel_size(page)
    if ps is not None:
        unit = "centimetre" if 296 in page.tags and int(page.tags[296].value) == 3 else "inch"
        return ps, f"TIFF XResolution/YResolution tags ({unit})"
    return None, ""


class _Collect(logging.Handler):
    """Collect tifffile's logged errors (this thread's only) while a file is opened."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def open_tiff(path: Path) -> Iterator[tifffile.TiffFile]:
    """Open a TIFF, turning tifffile's errors and logged IFD errors into :class:`ReaderError`."""
    handler = _Collect()
    log = logging.getLogger("tifffile")
    log.addHandler(handler)
    try:
        tif = tifffile.TiffFile(path)
        try:
            tif.series  # noqa: B018 - parse the IFD chain now, with the log handler attached
        except BaseException:
            tif.close()
            raise
    except (tifffile.TiffFileError, ValueError, IndexError, KeyError, OSError, struct.error) as e:
        raise ReaderError(f"{path.name}: not a readable TIFF, the file is truncated or corrupt ({e})") from e
    finally:
        log.removeHandler(handler)
    with tif:
        if not tif.pages or not tif.series:
            handler.messages.append("no image in the file")
        if handler.messages:
            raise ReaderError(
                f"{path.name}: the TIFF structure is corrupt or the file is truncated "
                f"(tifffile: {'; '.join(handler.messages[:3])})"
            )
        yield tif


def check_data_extent(path: Path, pages: Sequence[Any]) -> None:
    """Raise :class:`ReaderError` if the pixel data of ``pages`` lies beyond the end of their file.

    Each page is checked against the size of the file that holds it: in a multi-file OME-TIFF
    (e.g. Xenium's ``morphology_focus_0000.ome.tif`` ... ``_0003``) the first file's series has
    pages in the other files, found by UUID.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.tif"
    >>> tifffile.imwrite(p, np.ones((64, 64), np.uint16))
    >>> _ = p.write_bytes(p.read_bytes()[:5000])
    >>> with tifffile.TiffFile(p) as tf:
    ...     try:
    ...         check_data_extent(p, tf.pages)
    ...     except ReaderError as e:
    ...         print(str(e).split(":")[1].strip())
    the file is truncated
    """
    sizes: dict[str, tuple[str, int]] = {}
    for page in (p for p in pages if p is not None):  # None: a page missing from an OME series
        fh = getattr(getattr(page, "parent", None), "filehandle", None)
        key = str(getattr(fh, "path", "") or path)
        if key not in sizes:
            size = getattr(fh, "size", None)
            sizes[key] = (Path(key).name, int(size) if size is not None else path.stat().st_size)
        name, size = sizes[key]
        offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        counts = np.asarray(page.databytecounts, dtype=np.int64)
        end = int((offsets + counts).max()) if offsets.size else 0
        if end > size:
            where = name if name == path.name else f"{name} (part of the multi-file OME-TIFF {path.name})"
            raise ReaderError(
                f"{where}: the file is truncated: image data runs to byte {end:,} but the file has "
                f"{size:,} bytes (an incomplete download or copy?)"
            )
