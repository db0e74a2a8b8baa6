"""The planted compartments of simulated data as a regions table (:mod:`spatialpath.regions` schema)."""

from __future__ import annotations

from collections.abc import Sequence

import shapely
from anndata import AnnData

from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["simulation_regions"]

#: compartments taken from the simulator's truth by default (its ``regions_wkt`` names).
DEFAULT_COMPARTMENTS = ("tissue", "tumour", "stroma")


def simulation_regions(adata: AnnData, compartments: Sequence[str] = DEFAULT_COMPARTMENTS):
    """The simulator's true tissue, tumour and stroma polygons (µm), one row per image and compartment.

    Works on :func:`simulate_tissue` output (one image) and :func:`simulate_cohort` output (the
    per-image truth in ``uns["simulation"]["images"]``).

    Parameters
    ----------
    adata
        Output of :func:`simulate_tissue` (``.adata``) or :func:`simulate_cohort`.
    compartments
        Which of the true polygons to return.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_cohort
    >>> adata = simulate_cohort(n_patients=2, n_cells=1000, seed=0, progress=False)
    >>> reg = simulation_regions(adata)
    >>> reg.columns.tolist(), len(reg) == 3 * adata.obs["image_id"].nunique()
    (['image_id', 'compartment', 'geometry'], True)
    """
    from spatialpath.regions import make_regions

    sim = adata.uns.get(Key.uns.simulation)
    if sim is None:
        raise DataModelError("adata.uns['simulation'] is missing: these are not simulated data")
    per_image = sim["images"] if "images" in sim else {str(adata.obs[Key.obs.image_id].iloc[0]): sim}
    names, geoms, ids = [], [], []
    for image, truth in per_image.items():
        wkt = truth["regions_wkt"]
        missing = [c for c in compartments if c not in wkt]
        if missing:
            raise DataModelError(f"no compartment {missing} in the simulation; it has {sorted(wkt)}")
        for comp in compartments:
            names.append(comp)
            geoms.append(shapely.from_wkt(wkt[comp]))  # valid: the simulator writes repaired, snapped WKT
            ids.append(str(image))
    return make_regions(names, geoms, image_id=ids, meta={"source": "spatialpath.datasets simulation truth"})
