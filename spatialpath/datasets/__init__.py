"""Simulated tissues and cohorts with planted, known structure (the embedded default data).

:func:`shared_data` finds the public datasets the notebooks and real-data tests read
(``$SPATIALPATH_DATA`` or ``../shared/data``).
"""

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
from spatialpath.datasets._shared import DATA_ENV, shared_data
from spatialpath.datasets._simulate import SimulatedTissue, simulate_tissue

__all__ = [
    "CELL_TYPES",
    "CELL_TYPE_COLORS",
    "DATA_ENV",
    "MARKERS",
    "NEIGHBOURHOODS",
    "NUCLEAR_MARKERS",
    "SimulatedTissue",
    "density_table",
    "profile_table",
    "shared_data",
    "simulate_cohort",
    "simulate_tissue",
    "simulation_regions",
]
