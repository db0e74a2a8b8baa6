"""One compartment label per cell, from overlapping compartments and a priority order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from spatialpath.keys import Key
from spatialpath.regions._membership import cell_membership
from spatialpath.regions._schema import (
    MARGIN_INNER,
    MARGIN_OUTER,
    OUTSIDE,
    STROMA,
    TISSUE,
    TUMOUR,
    TUMOUR_CORE,
)

__all__ = ["DEFAULT_PRIORITY", "assign_cells"]

#: default priority: the most specific compartment first (margin bands before tumour core, tumour
#: and stroma before the whole tissue); compartments not listed follow in table order. The whole
#: ``margin`` is not listed: it is the union of the two bands.
DEFAULT_PRIORITY = (MARGIN_INNER, MARGIN_OUTER, TUMOUR_CORE, TUMOUR, STROMA, TISSUE)


def assign_cells(
    adata: AnnData,
    regions,
    *,
    key_added: str | None = Key.obs.compartment,
    priority: Sequence[str] | None = None,
    library_key: str | None = Key.obs.image_id,
) -> pd.Series:
    """Label each cell with one compartment: the first of ``priority`` that contains it.

    Parameters
    ----------
    adata
        Cells, ``obsm["spatial"]`` in µm.
    regions
        Regions table (compartments may overlap).
    key_added
        ``obs`` column written (categorical); None only returns the labels.
    priority
        Compartments in decreasing priority; compartments not listed are ignored. Default:
        :data:`DEFAULT_PRIORITY` (those present), then the other compartments except ``margin``
        in table order.
    library_key
        ``obs`` column of the image, matched to the regions' ``image_id``.

    Returns
    -------
    Categorical Series (index ``obs_names``): categories the priority order then
    :data:`OUTSIDE` ("outside", the cells in no listed compartment).

    Examples
    --------
    >>> import shapely
    >>> from anndata import AnnData
    >>> from spatialpath.regions import make_regions
    >>> a = AnnData(np.zeros((3, 1)))
    >>> a.obsm["spatial"] = np.array([[1.0, 1.0], [5.0, 5.0], [20.0, 20.0]])
    >>> reg = make_regions(["tissue", "tumour"], [shapely.box(0, 0, 10, 10), shapely.box(0, 0, 2, 2)])
    >>> assign_cells(a, reg).tolist()
    ['tumour', 'tissue', 'outside']
    """
    member = cell_membership(adata, regions, library_key=library_key)
    if priority is None:
        present = list(member.columns)
        order = [c for c in DEFAULT_PRIORITY if c in present]
        order += [c for c in present if c not in order and c != "margin"]
    else:
        order = [str(c) for c in dict.fromkeys(priority)]
    cols = [c for c in order if c in member.columns]
    label = np.full(adata.n_obs, len(order), dtype=np.int64)
    for c in reversed(cols):
        label[member[c].to_numpy()] = order.index(c)
    cats = [*order, OUTSIDE] if OUTSIDE not in order else order
    codes = np.where(label == len(order), cats.index(OUTSIDE), label)
    out = pd.Series(pd.Categorical.from_codes(codes, categories=cats), index=adata.obs_names, name=key_added)
    if key_added is not None:
        adata.obs[key_added] = out
    return out
