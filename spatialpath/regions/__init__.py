"""Tissue compartments as polygons in µm: masks, GeoJSON, napari shapes or cells; margins; cell assignment."""

from spatialpath.regions._membership import REGION_COLUMNS, cell_membership, check_regions, compartment_areas

__all__ = ["REGION_COLUMNS", "cell_membership", "check_regions", "compartment_areas"]
