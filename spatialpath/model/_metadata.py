"""The unified per-image metadata record, stored in ``adata.uns["spatialpath"]["images"]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from anndata import AnnData
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spatialpath.keys import Key

__all__ = ["TECHNOLOGIES", "ImageMetadata", "get_image_metadata", "set_image_metadata"]

Technology = Literal[
    "codex",
    "cycif",
    "imc",
    "mibi",
    "vectra",
    "visium",
    "xenium",
    "cosmx",
    "merscope",
    "he",
    "ihc",
    "simulated",
    "other",
]
#: technologies accepted by :class:`ImageMetadata`.
TECHNOLOGIES: tuple[str, ...] = Technology.__args__  # type: ignore[attr-defined]


class ImageMetadata(BaseModel):
    """Metadata of one image (ROI, TMA core or field), the unit a spatial statistic runs in.

    Stored per image in ``adata.uns["spatialpath"]["images"][image_id]``. Unknown fields
    are refused (a misspelt key is an error, not silently ignored); put free metadata
    under ``extra``.

    Parameters
    ----------
    image_id
        Identifier of the image, equal to the values of ``obs["image_id"]``.
    technology
        Acquisition technology, one of :data:`TECHNOLOGIES`.
    pixel_size_um
        Edge length of one pixel in micrometres. ``None`` only for data without pixels
        (a cell table already in µm with no image).
    units
        Length unit of every coordinate: always ``"um"``.
    patient_id, sample_id
        The levels above the image.
    shape_px
        ``(height, width)`` of the image in pixels, if there is one.
    origin_um
        ``(x, y)`` position in µm of the centre of pixel ``(0, 0)``.
    channels
        Channel (marker) names of the image.
    source_files
        Files the image and its cells were read from.
    tissue_area_um2
        Area of tissue in the field (from a mask or polygon, never a convex hull).
    extra
        Any other metadata (strings, numbers, lists of them).

    Examples
    --------
    >>> meta = ImageMetadata(image_id="core_1", technology="codex", pixel_size_um=0.377)
    >>> meta.extent_um() is None
    True
    >>> ImageMetadata(image_id="f", technology="imc", pixel_size_um=1.0, shape_px=(100, 200)).extent_um()
    (-0.5, -0.5, 199.5, 99.5)
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    image_id: str = Field(min_length=1)
    technology: Technology
    pixel_size_um: float | None = Field(default=None, gt=0)
    units: Literal["um"] = "um"
    patient_id: str | None = None
    sample_id: str | None = None
    shape_px: tuple[int, int] | None = None
    origin_um: tuple[float, float] = (0.0, 0.0)
    channels: list[str] = Field(default_factory=list)
    source_files: list[str] = Field(default_factory=list)
    tissue_area_um2: float | None = Field(default=None, ge=0)
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("shape_px")
    @classmethod
    def _positive_shape(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) <= 0:
            raise ValueError(f"shape_px must be (height, width) with both > 0, got {v}")
        return v

    def extent_um(self) -> tuple[float, float, float, float] | None:
        """Return the image's ``(xmin, ymin, xmax, ymax)`` in µm (pixel edges), or None without pixels."""
        if self.shape_px is None or self.pixel_size_um is None:
            return None
        ps = self.pixel_size_um
        x0, y0 = self.origin_um
        h, w = self.shape_px
        return (x0 - ps / 2, y0 - ps / 2, x0 + (w - 0.5) * ps, y0 + (h - 0.5) * ps)

    def to_uns(self) -> dict[str, Any]:
        """Return a dict that ``anndata.write_h5ad`` can store (no ``None``, lists as lists)."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_uns(cls, d: Mapping[str, Any]) -> ImageMetadata:
        """Build from the dict stored in ``uns`` (numpy arrays and scalars as read back from h5ad)."""
        return cls.model_validate({k: _plain(v) for k, v in d.items()})


def _plain(v: Any) -> Any:
    """Turn numpy values read back from h5ad into plain Python for pydantic."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    return v


def set_image_metadata(adata: AnnData, meta: ImageMetadata | Mapping[str, Any]) -> ImageMetadata:
    """Validate ``meta`` and store it in ``adata.uns["spatialpath"]["images"][meta.image_id]``.

    Parameters
    ----------
    adata
        Cells or spots.
    meta
        The record, or a mapping with its fields.

    Returns
    -------
    The validated record.

    Raises
    ------
    ValueError
        If a field is missing, misspelt or of the wrong form; the message names the field.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> a = ad.AnnData(np.zeros((2, 1)))
    >>> _ = set_image_metadata(a, {"image_id": "roi1", "technology": "imc", "pixel_size_um": 1.0})
    >>> a.uns["spatialpath"]["images"]["roi1"]["pixel_size_um"]
    1.0
    """
    if not isinstance(meta, ImageMetadata):
        try:
            meta = ImageMetadata.model_validate(dict(meta))
        except ValidationError as e:
            raise ValueError(_describe(e)) from None
    store = adata.uns.setdefault(Key.uns.spatialpath, {}).setdefault(Key.uns.images, {})
    store[meta.image_id] = meta.to_uns()
    return meta


def get_image_metadata(adata: AnnData, image_id: str) -> ImageMetadata:
    """Return the validated metadata record of ``image_id``.

    Parameters
    ----------
    adata
        Cells or spots with ``uns["spatialpath"]["images"]``.
    image_id
        The image whose record to return.

    Returns
    -------
    ImageMetadata
        The validated record.

    Raises
    ------
    KeyError
        If there is no record for ``image_id``; the message lists the images that have one.
    ValueError
        If the stored record is malformed; the message names the field.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> a = ad.AnnData(np.zeros((2, 1)))
    >>> _ = set_image_metadata(a, {"image_id": "roi1", "technology": "imc", "pixel_size_um": 1.0,
    ...                            "shape_px": (20, 30)})
    >>> meta = get_image_metadata(a, "roi1")
    >>> meta.technology, meta.pixel_size_um, meta.extent_um()
    ('imc', 1.0, (-0.5, -0.5, 29.5, 19.5))
    """
    images = adata.uns.get(Key.uns.spatialpath, {}).get(Key.uns.images, {})
    if image_id not in images:
        known = ", ".join(map(repr, list(images)[:10])) or "none"
        raise KeyError(
            f"No metadata for image {image_id!r} in adata.uns['spatialpath']['images'] "
            f"(images with metadata: {known}). Add it with spatialpath.model.set_image_metadata()."
        )
    try:
        return ImageMetadata.from_uns(images[image_id])
    except ValidationError as e:
        raise ValueError(f"metadata of image {image_id!r}: " + _describe(e)) from None


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "record"
        parts.append(f"field {loc!r}: {err['msg']} (got {err.get('input')!r})")
    return "invalid image metadata: " + "; ".join(parts)
