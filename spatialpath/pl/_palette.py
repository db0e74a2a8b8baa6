"""Colours of categorical columns, following scanpy's ``uns[f"{key}_colors"]`` convention."""

from __future__ import annotations

import matplotlib as mpl
import pandas as pd
from anndata import AnnData

from spatialpath.keys import Key
from spatialpath.model import validate_categorical


def category_colors(adata: AnnData, key: str) -> dict[str, str]:
    """Map each category of ``adata.obs[key]`` to a colour, without modifying ``adata``.

    Uses ``adata.uns[f"{key}_colors"]`` when it has one colour per category (so figures match
    scanpy, squidpy and napari), else matplotlib's ``tab20`` cycle.

    Parameters
    ----------
    adata
        Cells with a categorical ``obs[key]``.
    key
        The categorical column.

    Returns
    -------
    dict
        Category name -> hex colour, in category order.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> obs = pd.DataFrame({"t": pd.Categorical(["T", "B", "T"])}, index=["0", "1", "2"])
    >>> a = ad.AnnData(np.zeros((3, 1)), obs=obs)
    >>> category_colors(a, "t")  # tab20: categories sorted, B then T
    {'B': '#1f77b4', 'T': '#aec7e8'}
    >>> a.uns["t_colors"] = ["#000000", "#ff0000"]
    >>> category_colors(a, "t")
    {'B': '#000000', 'T': '#ff0000'}
    """
    validate_categorical(adata, key, allow_empty_categories=True)
    cats = list(adata.obs[key].cat.categories)
    stored = adata.uns.get(Key.uns.colors(key))
    if stored is not None and len(stored) == len(cats):
        colors = [str(c) for c in stored]
    else:
        cmap = mpl.colormaps["tab20"]
        colors = [mpl.colors.to_hex(cmap(i % cmap.N)) for i in range(len(cats))]
    return dict(zip(map(str, cats), colors, strict=True))


def categories_in_use(series: pd.Series) -> list[str]:
    """Categories of ``series`` that occur, in category order."""
    present = set(series.astype(str).unique())
    return [str(c) for c in series.cat.categories if str(c) in present]
