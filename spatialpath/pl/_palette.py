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
