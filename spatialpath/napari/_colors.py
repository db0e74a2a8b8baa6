"""Colours of napari layers, as plain numpy (napari is never imported).

Categorical columns use the scanpy palette ``uns[f"{key}_colors"]`` through
:func:`spatialpath.pl._palette.category_colors`, so napari, scanpy and squidpy show a cell type in
the same colour; numeric columns and markers use a matplotlib colormap between robust percentiles.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib as mpl
import numpy as np
from anndata import AnnData

__all__ = ["COMPARTMENT_COLORS", "compartment_colors", "point_colors", "rgba"]

#: edge colours of the usual compartments; others cycle through ``tab10``.
COMPARTMENT_COLORS: Mapping[str, str] = {
    "tissue": "#7f7f7f",
    "tumour": "#d62728",
    "stroma": "#2ca02c",
    "margin": "#ff7f0e",
    "margin_inner": "#ff7f0e",
    "margin_outer": "#bcbd22",
    "tumour_core": "#8c564b",
}


def rgba(colors: list[str] | np.ndarray) -> np.ndarray:
    """``(n, 4)`` float32 RGBA in [0, 1] of matplotlib colour specifications.

    Examples
    --------
    >>> rgba(["#ff0000", "blue"]).tolist()
    [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
    """
    return np.asarray(mpl.colors.to_rgba_array(colors), dtype=np.float32).reshape(-1, 4)


def point_colors(
    adata: AnnData, key: str | None, *, cmap: str = "viridis"
) -> tuple[np.ndarray, dict[str, str]]:
    """Face colour of every cell, ``(n, 4)`` float32, and the legend ``{category: colour}``.

    The colours are the cell-types widget's (:func:`spatialpath.napari._cell_types.point_colors`):
    a categorical (or string/boolean) ``obs`` column takes ``uns[f"{key}_colors"]`` (scanpy's
    palette, written when missing) indexed by the category codes, which is fast for millions of
    cells; a numeric column or a marker is mapped through ``cmap`` between its 1st and 99th
    percentiles (the legend is then empty). Missing values are grey. ``key=None``: white.

    Examples
    --------
    >>> import anndata as ad, pandas as pd
    >>> a = ad.AnnData(obs=pd.DataFrame({"t": pd.Categorical(["B", "A", "B"])}, index=list("012")))
    >>> a.uns["t_colors"] = ["#ff0000", "#0000ff"]
    >>> face, legend = point_colors(a, "t")
    >>> face[:, :3].tolist(), legend
    ([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], {'A': '#ff0000', 'B': '#0000ff'})
    """
    from spatialpath.napari import _cell_types

    if key is None:
        return np.tile(rgba(["#ffffff"]), (adata.n_obs, 1)), {}
    face = _cell_types.point_colors(adata, key, cmap=cmap)
    if not _cell_types.is_categorical(adata, key):
        return face, {}
    table = _cell_types.legend(adata, key)  # categories in order, then an "NA" row for missing labels
    n = len(_cell_types.categories(adata, key))
    return face, dict(zip(table["category"][:n], table["color"][:n], strict=True))


def compartment_colors(names: list[str]) -> dict[str, str]:
    """Colour of each compartment: :data:`COMPARTMENT_COLORS`, else ``tab10`` in order of appearance.

    Examples
    --------
    >>> compartment_colors(["tumour", "stroma", "band"])
    {'tumour': '#d62728', 'stroma': '#2ca02c', 'band': '#1f77b4'}
    """
    cmap, out, k = mpl.colormaps["tab10"], {}, 0
    for name in dict.fromkeys(names):
        if name in COMPARTMENT_COLORS:
            out[name] = COMPARTMENT_COLORS[name]
        else:
            out[name] = mpl.colors.to_hex(cmap(k % cmap.N))
            k += 1
    return out
