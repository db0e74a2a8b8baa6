"""Tissue compartments as polygons in µm: masks, GeoJSON, napari shapes or cells; margins; cell assignment."""

from spatialpath.regions._assign import DEFAULT_PRIORITY, assign_cells
from spatialpath.regions._distance import signed_distance
from spatialpath.regions._geojson import read_geojson, write_geojson
from spatialpath.regions._margins import IMMUNOSCORE_WIDTH_UM, immunoscore_bands, margin_bands, tumour_border
from spatialpath.regions._mask import from_mask, pixel_edge_polygon
from spatialpath.regions._membership import REGION_COLUMNS, cell_membership, check_regions, compartment_areas
from spatialpath.regions._napari import from_napari_shapes, to_napari_shapes
from spatialpath.regions._schema import (
    FRAME,
    MARGIN,
    MARGIN_INNER,
    MARGIN_OUTER,
    OUTSIDE,
    STROMA,
    TISSUE,
    TUMOUR,
    TUMOUR_CORE,
    make_regions,
)
from spatialpath.regions._tissue import tissue_from_cells
from spatialpath.regions._validate import validate_regions

__all__ = [
    "DEFAULT_PRIORITY",
    "FRAME",
    "IMMUNOSCORE_WIDTH_UM",
    "MARGIN",
    "MARGIN_INNER",
    "MARGIN_OUTER",
    "OUTSIDE",
    "REGION_COLUMNS",
    "STROMA",
    "TISSUE",
    "TUMOUR",
    "TUMOUR_CORE",
    "assign_cells",
    "cell_membership",
    "check_regions",
    "compartment_areas",
    "from_mask",
    "from_napari_shapes",
    "immunoscore_bands",
    "make_regions",
    "margin_bands",
    "pixel_edge_polygon",
    "read_geojson",
    "signed_distance",
    "tissue_from_cells",
    "to_napari_shapes",
    "tumour_border",
    "validate_regions",
    "write_geojson",
]
