"""Simulated tissues and cohorts with planted, known structure (the embedded default data)."""

from spatialpath.datasets._cohort import simulate_cohort
from spatialpath.datasets._profiles import (
    CELL_TYPE_COLORS,
    CELL_TYPES,
    MARKERS,
    NEIGHBOURHOODS,
    NUCLEAR_MARKERS,
    density_table,
    profile_table,
)
from spatialpath.datasets._regions import simulation_regions
from spatialpath.datasets._simulate import SimulatedTissue, simulate_tissue

__all__ = [
    "CELL_TYPES",
    "CELL_TYPE_COLORS",
    "MARKERS",
    "NEIGHBOURHOODS",
    "NUCLEAR_MARKERS",
    "SimulatedTissue",
    "density_table",
    "profile_table",
    "simulate_cohort",
    "simulate_tissue",
    "simulation_regions",
]
