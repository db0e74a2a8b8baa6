"""Tidy, documented tables for analysts: counts, densities and (later) biomarker tables."""

from spatialpath.export._counts import cell_counts

__all__ = ["cell_counts"]
