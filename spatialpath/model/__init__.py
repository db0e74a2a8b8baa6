"""The spatialpath data model: cells in AnnData, images and masks in xarray, all in micrometres.

See ``docs/data-model.md`` for the full description.
"""

from spatialpath.model._arrays import make_image, make_labels, pixel_coords
from spatialpath.model._metadata import TECHNOLOGIES, ImageMetadata, get_image_metadata, set_image_metadata
from spatialpath.model._validate import (
    DataModelError,
    validate_categorical,
    validate_cells,
    validate_image,
    validate_labels,
)

__all__ = [
    "TECHNOLOGIES",
    "DataModelError",
    "ImageMetadata",
    "get_image_metadata",
    "make_image",
    "make_labels",
    "pixel_coords",
    "set_image_metadata",
    "validate_categorical",
    "validate_cells",
    "validate_image",
    "validate_labels",
]
