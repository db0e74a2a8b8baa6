"""Shared pieces of spatialpath's napari layers: the LayerData type, units, metadata, affines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from spatialpath.model import DataModelError
from spatialpath.napari import _keys

if TYPE_CHECKING:  # pragma: no cover
    from spatialpath.align import Transform

__all__ = ["UNITS", "LayerData", "layer_metadata", "transform_to_affine"]

#: napari's LayerData: ``(data, add_kwargs, layer_type)``.
LayerData = tuple[Any, dict[str, Any], str]
#: unit of every spatial layer axis (napari shows it on the scale bar).
UNITS = ("um", "um")


def layer_metadata(kind: str, image_id: Any = None, source: Any = None, **extra: Any) -> dict[str, Any]:
    """``layer.metadata``: ``KIND``, ``IMAGE_ID``, ``SOURCE`` (when known) and ``extra``."""
    out = {_keys.KIND: kind, _keys.IMAGE_ID: None if image_id is None else str(image_id), **extra}
    if source is not None:
        out[_keys.SOURCE] = str(source)
    return out


def transform_to_affine(transform: Transform | None) -> np.ndarray | None:
    """A :class:`~spatialpath.align.Transform` as napari's 3×3 ``affine`` in (y, x) order.

    The Transform acts on ``[x, y, 1]``; napari's affine acts on ``[y, x, 1]``, so rows and columns
    0 and 1 are swapped. Non-rigid transforms cannot be shown without resampling and are refused.

    Examples
    --------
    >>> from spatialpath.align import Transform
    >>> t = Transform.from_params(translation=(10.0, 5.0))  # x + 10, y + 5
    >>> transform_to_affine(t)[:2, 2].tolist()  # (y, x) translation
    [5.0, 10.0]
    """
    if transform is None:
        return None
    if not getattr(transform, "is_affine", True):
        raise DataModelError(
            f"the transform {transform.source!r} → {transform.target!r} is non-rigid (it has a displacement "
            "field), which a napari layer affine cannot show; resample the image into the target frame with "
            "spatialpath.align.apply_transform(image, transform) and add the result without a transform"
        )
    swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return swap @ np.asarray(transform.matrix, dtype=np.float64) @ swap
