"""Cell types, marker panel and planted neighbourhood compositions of the simulated tissue.

All numbers here are the simulator's design; the values a simulated dataset actually used are
written to its ``uns["simulation"]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CELL_TYPES: tuple[str, ...] = (
    "Tumour",
    "CD8 T",
    "CD4 T",
    "Treg",
    "Macrophage",
    "B cell",
    "Fibroblast",
    "Endothelial",
)

#: one colour per cell type, stored as ``uns["cell_type_colors"]`` (scanpy convention).
CELL_TYPE_COLORS: tuple[str, ...] = (
    "#d62728",
    "#1f77b4",
    "#17becf",
    "#9467bd",
    "#ff7f0e",
    "#2ca02c",
    "#8c564b",
    "#e377c2",
)

MARKERS: tuple[str, ...] = (
    "DAPI",
    "panCK",
    "CD45",
    "CD3",
    "CD8",
    "CD4",
    "FOXP3",
    "CD68",
    "CD20",
    "SMA",
    "CD31",
    "Ki67",
)
#: markers whose signal is in the nucleus; the others fill the whole cell body.
NUCLEAR_MARKERS: frozenset[str] = frozenset({"DAPI", "FOXP3", "Ki67"})

# Median expression of each marker per type (arbitrary units, 1 = bright positive).
_PROFILE = {
    #              DAPI panCK CD45 CD3  CD8  CD4  FOXP3 CD68 CD20 SMA  CD31 Ki67
    "Tumour": (1.0, 1.0, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.5),
    "CD8 T": (1.0, 0.02, 0.8, 0.9, 1.0, 0.03, 0.02, 0.02, 0.02, 0.02, 0.02, 0.15),
    "CD4 T": (1.0, 0.02, 0.8, 0.9, 0.03, 0.9, 0.02, 0.02, 0.02, 0.02, 0.02, 0.1),
    "Treg": (1.0, 0.02, 0.8, 0.9, 0.03, 0.8, 0.9, 0.02, 0.02, 0.02, 0.02, 0.1),
    "Macrophage": (1.0, 0.02, 0.7, 0.02, 0.02, 0.3, 0.02, 1.0, 0.02, 0.02, 0.02, 0.05),
    "B cell": (1.0, 0.02, 0.8, 0.02, 0.02, 0.02, 0.02, 0.02, 1.0, 0.02, 0.02, 0.2),
    "Fibroblast": (1.0, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 1.0, 0.02, 0.05),
    "Endothelial": (1.0, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.3, 1.0, 0.05),
}

#: nucleus radius in µm per type; the cell body is ``BODY_TO_NUCLEUS`` times larger.
NUCLEUS_RADIUS_UM = {
    "Tumour": 5.0,
    "CD8 T": 3.0,
    "CD4 T": 3.0,
    "Treg": 3.0,
    "Macrophage": 4.5,
    "B cell": 3.0,
    "Fibroblast": 3.5,
    "Endothelial": 3.5,
}
BODY_TO_NUCLEUS = 1.6

#: planted cellular neighbourhoods (zones), in the order of the region-mask codes 1, 2, ...
NEIGHBOURHOODS: tuple[str, ...] = ("tumour_nest", "invasive_margin", "immune_aggregate", "fibrotic_stroma")

# Expected density (cells/mm²) of each type in each neighbourhood; rows sum to the zone's density.
# Planted effects (overridable): CD8 T density in tumour nests / fibrotic stroma = 0.2 (exclusion);
# macrophage density in the invasive margin / fibrotic stroma = 8 (border enrichment). The
# compositions differ enough, and the margin (100 µm by default) is wide enough, for a 10-nearest-
# cell composition + k-means (the Schürch et al. 2020 recipe) to recover the neighbourhoods.
_DENSITY = {
    #                  Tumour CD8  CD4  Treg Mac   B    Fib   Endo
    "tumour_nest": (4500, 25, 50, 25, 250, 25, 100, 25),
    "invasive_margin": (0, 1000, 300, 200, 1600, 50, 450, 200),
    "immune_aggregate": (0, 700, 2100, 350, 200, 3440, 140, 70),
    "fibrotic_stroma": (0, 125, 100, 50, 200, 50, 1500, 475),
}


def profile_table() -> pd.DataFrame:
    """Median marker expression, cell types × markers.

    Returns
    -------
    pandas.DataFrame
        :data:`CELL_TYPES` × :data:`MARKERS`, levels in [0, 1].

    Examples
    --------
    >>> p = profile_table()
    >>> p.shape, p.loc["CD8 T", ["panCK", "CD3", "CD8"]].tolist()
    ((8, 12), [0.02, 0.9, 0.9])
    """
    return pd.DataFrame.from_dict(_PROFILE, orient="index", columns=list(MARKERS)).loc[list(CELL_TYPES)]


def density_table() -> pd.DataFrame:
    """Planted expected densities (cells/mm²), neighbourhoods × cell types.

    Returns
    -------
    pandas.DataFrame
        One row per planted neighbourhood, one column per cell type of :data:`CELL_TYPES`.

    Examples
    --------
    >>> d = density_table()
    >>> d["CD8 T"].to_dict()  # CD8 T exclusion: 25 in tumour nests / 125 in fibrotic stroma = 0.2
    {'tumour_nest': 25.0, 'invasive_margin': 1000.0, 'immune_aggregate': 700.0, 'fibrotic_stroma': 125.0}
    >>> d.sum(axis=1).to_dict()  # the zones' total densities
    {'tumour_nest': 5000.0, 'invasive_margin': 3800.0, 'immune_aggregate': 7000.0, 'fibrotic_stroma': 2500.0}
    """
    return pd.DataFrame.from_dict(_DENSITY, orient="index", columns=list(CELL_TYPES)).astype(float)


def default_effects() -> dict[str, float]:
    """The planted effect sizes implied by :func:`density_table`."""
    d = density_table()
    return {
        "cd8_exclusion": d.loc["tumour_nest", "CD8 T"] / d.loc["fibrotic_stroma", "CD8 T"],
        "macrophage_border_enrichment": d.loc["invasive_margin", "Macrophage"]
        / d.loc["fibrotic_stroma", "Macrophage"],
    }


def apply_effects(
    density: pd.DataFrame, cd8_exclusion: float | None, macrophage_border_enrichment: float | None
) -> pd.DataFrame:
    """Return ``density`` with the two named planted effects set to the given ratios."""
    d = density.copy()
    if cd8_exclusion is not None:
        _check_ratio("cd8_exclusion", cd8_exclusion)
        d.loc["tumour_nest", "CD8 T"] = cd8_exclusion * d.loc["fibrotic_stroma", "CD8 T"]
    if macrophage_border_enrichment is not None:
        _check_ratio("macrophage_border_enrichment", macrophage_border_enrichment)
        d.loc["invasive_margin", "Macrophage"] = (
            macrophage_border_enrichment * d.loc["fibrotic_stroma", "Macrophage"]
        )
    return d


def _check_ratio(name: str, value: float) -> None:
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite ratio >= 0, got {value}")
