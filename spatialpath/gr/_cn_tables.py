"""Per-image tables of cellular neighbourhoods: CN frequencies and Schürch's CN mixing.

Both read the CN labels of ``obs[key]`` (from :func:`~spatialpath.gr.cellular_neighborhoods` or
:func:`~spatialpath.gr.predict_cellular_neighborhoods`) and return long DataFrames, one row per
image and CN (pair). Definitions: ``docs/cellular-neighbourhoods.md``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.spatial import cKDTree

from spatialpath.gr._cn_model import _canonical
from spatialpath.gr._utils import Groups, check_coordinates, default_library_key, image_groups
from spatialpath.keys import Key
from spatialpath.model import validate_categorical

__all__ = ["cn_frequencies", "cn_mixing"]


def _cn_codes(adata: AnnData, key: str, library_key: str | None) -> tuple[np.ndarray, list[str], Groups]:
    validate_categorical(adata, key, allow_empty_categories=True)
    groups = image_groups(adata, default_library_key(adata, library_key))
    return (
        adata.obs[key].cat.codes.to_numpy().astype(np.int64),
        [str(c) for c in adata.obs[key].cat.categories],
        groups,
    )


def cn_frequencies(
    adata: AnnData, key: str = Key.obs.cellular_neighborhood, *, library_key: str | None = None,
    normalize: bool = True,
) -> pd.DataFrame:  # fmt: skip
    """Number (and fraction) of cells of each CN in each image, as a long table.

    Parameters
    ----------
    adata
        Cells with a categorical CN column ``obs[key]`` (from :func:`cellular_neighborhoods`).
    key
        The CN column.
    library_key
        Image column; default ``obs["image_id"]`` when present, else one image.
    normalize
        Add the ``fraction`` column.

    Returns
    -------
    One row per (image, CN), every CN category in every image: ``image_id``, ``cn``,
    ``n_cells`` and, with ``normalize``, ``fraction`` (of the image's cells; sums to 1 per image).

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> from spatialpath.gr import cellular_neighborhoods
    >>> adata = simulate_tissue(seed=1, n_cells=3000).adata
    >>> cellular_neighborhoods(adata, n_clusters=4)
    >>> t = cn_frequencies(adata)
    >>> t.columns.tolist(), round(float(t["fraction"].sum()), 6)
    (['image_id', 'cn', 'n_cells', 'fraction'], 1.0)
    """
    codes, cats, groups = _cn_codes(adata, key, library_key)
    counts = np.bincount(groups.codes * len(cats) + codes, minlength=groups.n * len(cats))
    table = pd.DataFrame({
        Key.obs.image_id: pd.Categorical(np.repeat(groups.names, len(cats)), categories=groups.names),
        "cn": pd.Categorical(np.tile(cats, groups.n), categories=cats), "n_cells": counts,
    })  # fmt: skip
    if normalize:
        table["fraction"] = counts / np.repeat(groups.sizes(), len(cats))
    return table


def cn_mixing(
    adata: AnnData, key: str = Key.obs.cellular_neighborhood, *, library_key: str | None = None
) -> pd.DataFrame:
    """CN of each cell's nearest other cell (Schürch's "neighborhood mixing"), per image.

    Parameters
    ----------
    adata
        Cells with ``obsm["spatial"]`` (µm) and a categorical CN column ``obs[key]``.
    key
        The CN column.
    library_key
        Image column; default ``obs["image_id"]`` when present, else one image.

    Returns
    -------
    One row per (image, CN a, CN b): ``image_id``, ``cn``, ``cn_neighbor``, ``n_cells`` (cells of
    CN a whose nearest other cell of the image is in CN b) and ``fraction`` (of the CN-a cells with
    a neighbour; NaN where there are none). Cells alone in their image are left out.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> from spatialpath.gr import cellular_neighborhoods
    >>> adata = simulate_tissue(seed=1, n_cells=3000).adata
    >>> cellular_neighborhoods(adata, n_clusters=4)
    >>> t = cn_mixing(adata)
    >>> len(t), int(t["n_cells"].sum())
    (16, 3000)
    """
    codes, cats, groups = _cn_codes(adata, key, library_key)
    order, bounds, _ = _canonical(adata, groups)
    xy, k = check_coordinates(adata)[order], len(cats)
    own, nb = codes[order], np.full(adata.n_obs, -1)
    for s, e in itertools.pairwise(bounds):
        if e - s > 1:
            idx = cKDTree(xy[s:e]).query(xy[s:e], k=2, workers=-1)[1]
            first_is_self = idx[:, 0] == np.arange(e - s)
            nb[s:e] = own[s:e][np.where(first_is_self, idx[:, 1], idx[:, 0])]
    image = np.repeat(np.arange(groups.n), np.diff(bounds))  # canonical image index
    names = [groups.names[i] for i in np.argsort(np.asarray(groups.names, dtype=str), kind="stable")]
    ok = nb >= 0
    counts = np.bincount((image[ok] * k + own[ok]) * k + nb[ok], minlength=groups.n * k * k).reshape(-1, k, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = counts / counts.sum(axis=2, keepdims=True)
    return pd.DataFrame({
        Key.obs.image_id: pd.Categorical(np.repeat(names, k * k), categories=groups.names),
        "cn": pd.Categorical(np.tile(np.repeat(cats, k), groups.n), categories=cats),
        "cn_neighbor": pd.Categorical(np.tile(cats, k * groups.n), categories=cats),
        "n_cells": counts.ravel(), "fraction": fraction.ravel(),
    })  # fmt: skip
