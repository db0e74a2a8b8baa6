"""Plots (matplotlib); every function returns the Figure."""

from spatialpath.pl._bars import density_bars
from spatialpath.pl._cn import cn_enrichment
from spatialpath.pl._cross_function import cross_function_curves
from spatialpath.pl._nhood import nhood_heatmap
from spatialpath.pl._palette import category_colors
from spatialpath.pl._tissue import tissue_map

__all__ = [
    "category_colors",
    "cn_enrichment",
    "cross_function_curves",
    "density_bars",
    "nhood_heatmap",
    "tissue_map",
]
