"""Image identifiers of the cohort pipeline: keys, validation, and safe folder names.

An image is identified by ``(sample_id, image_id)`` (:class:`ImageKey`); :func:`check_ids`
refuses duplicated or empty IDs before any work starts, and :func:`safe_name` turns an ID into a
folder name that is the same on every file system (percent-encoding of anything unsafe, Windows'
reserved names, a length cap), reversibly (:func:`id_from_name`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, NamedTuple

__all__ = ["ImageKey", "as_key", "check_ids", "id_from_name", "safe_name"]

_SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
)
_MAX_NAME = 150


def _data_error(message: str) -> Exception:
    # spatialpath.model imports anndata and xarray; import it only when an error is raised so
    # that worker processes importing the store stay light.
    from spatialpath.model import DataModelError

    return DataModelError(message)


class ImageKey(NamedTuple):
    """The identity of one image: ``(sample_id, image_id)``."""

    sample_id: str
    image_id: str


def as_key(image: Any) -> ImageKey:
    """Turn an image reference into an :class:`ImageKey`.

    ``image`` is a key, a ``(sample_id, image_id)`` pair or an object with ``sample_id`` and
    ``image_id`` attributes (e.g. a row of the pipeline's image table).

    Raises
    ------
    DataModelError
        If either ID is missing, not a str, or empty.

    Examples
    --------
    >>> as_key(("S1", "img1"))
    ImageKey(sample_id='S1', image_id='img1')
    """
    if hasattr(image, "sample_id") and hasattr(image, "image_id"):
        ids = (image.sample_id, image.image_id)
    elif isinstance(image, tuple | list) and len(image) == 2:
        ids = tuple(image)
    else:
        raise _data_error(
            f"image {image!r} is not an image key; pass (sample_id, image_id) or an object with "
            "sample_id and image_id attributes"
        )
    for name, value in zip(("sample_id", "image_id"), ids, strict=True):
        if not isinstance(value, str) or not value:
            raise _data_error(f"{name} = {value!r}: image IDs must be non-empty str; convert with str()")
    return ImageKey(*ids)


def safe_name(id_: str) -> str:
    """The folder name of an ID: readable, file-system safe, and distinct for distinct IDs.

    ASCII letters, digits, ``_``, ``-`` and ``.`` are kept; every other character (``%``, ``/``,
    spaces, ``~``, non-ASCII...) becomes ``%XX`` per UTF-8 byte, so the mapping is reversible
    (:func:`id_from_name`). A leading or trailing ``.`` and Windows device names (``CON``...)
    are escaped too. Names longer than 150 characters are cut to 120 and suffixed with ``~`` and
    16 hex digits of the ID's SHA-256 (``~`` cannot occur otherwise).

    Examples
    --------
    >>> safe_name("TMA 1/core A1"), safe_name(".."), safe_name("100%")
    ('TMA%201%2Fcore%20A1', '%2E%2E', '100%25')
    """
    if not isinstance(id_, str) or not id_:
        raise _data_error(f"ID {id_!r} must be a non-empty str")
    parts = [c if c in _SAFE_CHARS else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in id_]
    if parts[0] == ".":
        parts[0] = "%2E"
    if parts[-1] == ".":
        parts[-1] = "%2E"
    name = "".join(parts)
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        name = f"%{ord(name[0]):02X}{name[1:]}"
    if len(name) > _MAX_NAME:
        name = name[:120] + "~" + hashlib.sha256(id_.encode("utf-8")).hexdigest()[:16]
    return name


def id_from_name(name: str) -> str | None:
    """The ID of a folder name made by :func:`safe_name` (None for a shortened long name).

    Examples
    --------
    >>> id_from_name(safe_name("TMA 1/core A1"))
    'TMA 1/core A1'
    """
    from urllib.parse import unquote

    return None if "~" in name else unquote(name, errors="strict")


def check_ids(images: Iterable[Any]) -> list[ImageKey]:
    """Check that the images' folders stay distinct on case-insensitive file systems.

    ``safe_name`` keeps case, so IDs differing only in case (``"a1"`` and ``"A1"``) would
    share a folder on macOS or Windows; the runner calls this once when planning a run.

    Raises
    ------
    DataModelError
        If an image is listed twice or two images differ only in the case of their IDs.

    Examples
    --------
    >>> check_ids([("S1", "a1"), ("S1", "a2")])
    [ImageKey(sample_id='S1', image_id='a1'), ImageKey(sample_id='S1', image_id='a2')]
    """
    keys = [as_key(i) for i in images]
    seen: dict[str, ImageKey] = {}
    for k in keys:
        folded = f"{safe_name(k.sample_id)}/{safe_name(k.image_id)}".casefold()
        if folded in seen:
            other = seen[folded]
            what = "is listed twice" if other == k else f"differs from {tuple(other)} only in letter case"
            raise _data_error(
                f"image {tuple(k)} {what}: each image needs its own output folder on every file "
                "system; make sample_id/image_id unique ignoring case"
            )
        seen[folded] = k
    return keys
