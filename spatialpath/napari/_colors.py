"""Colours of napari layers, as plain numpy (napari is never imported).

Categorical columns use the scanpy palette ``uns[f"{key}_colors"]`` through
:func:`spatialpath.pl._palette.category_colors`, so napari, scanpy and squidpy show a cell type in
the same colour; numeric columns and markers use a matplotlib colormap between robust percentiles.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib as mpl
import numpy as np
import pandas as pd
from anndata import AnnData

from spatialpath.model import DataModelError
from spatialpath.pl._palette import category_colors

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


def _values(adata: AnnData, key: str) -> pd.Series | np.ndarray:
    if key in adata.obs.columns:
        return adata.obs[key]
    if key in adata.var_names:
        col = adata[:, key].X
        col = col.toarray() if hasattr(col, "toarray") else np.asarray(col)
        return np.asarray(col, dtype=np.float64).ravel()
    raise DataModelError(
        f"cannot colour by {key!r}: it is neither an obs column nor a marker (var_name); obs columns: "
        f"{list(adata.obs.columns)[:12]}, markers: {list(adata.var_names[:12])}"
    )


def point_colors(
    adata: AnnData, key: str | None, *, cmap: str = "viridis"
) -> tuple[np.ndarray, dict[str, str]]:
    """Face colour of every cell, ``(n, 4)`` float32, and the legend ``{category: colour}``.

    A categorical (or string/boolean) ``obs`` column is coloured from ``uns[f"{key}_colors"]``
    (scanpy's palette; ``tab20`` when absent) by indexing the palette with the category codes, which
    is fast for millions of cells; a numeric column or a marker is mapped through ``cmap`` between
    its 1st and 99th percentiles (the legend is then empty). Missing values are grey.

    Examples
    --------
    >>> import anndata as ad, pandas as pd
    >>> a = ad.AnnData(obs=pd.DataFrame({"t": pd.Categorical(["B", "A", "B"])}))
    >>> a.uns["t_colors"] = ["#ff0000", "#0000ff"]
    >>> face, legend = point_colors(a, "t")
    >>> face[:, :3].tolist(), legend
    ([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], {'A': '#ff0000', 'B': '#0000ff'})
    """
    n = adata.n_obs
    if key is None:
        return np.tile(rgba(["#ffffff"]), (n, 1)), {}
    values = _values(adata, key)
    if isinstance(values, pd.Series) and not pd.api.types.is_numeric_dtype(values.dtype):
        if not isinstance(values.dtype, pd.CategoricalDtype):
            raise DataModelError(
                f"obs[{key!r}] is {values.dtype}, not categorical: convert it with "
                f"adata.obs[{key!r}] = adata.obs[{key!r}].astype('category') to colour cells by it"
            )
        legend = category_colors(adata, key)
        palette = np.vstack([rgba(list(legend.values())), rgba(["#808080"])])
        codes = values.cat.codes.to_numpy()
        return palette[np.where(codes < 0, len(legend), codes)], legend
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x)
    lo, hi = np.percentile(x[ok], [1, 99]) if ok.any() else (0.0, 1.0)
    scaled = np.clip((x - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    face = np.asarray(mpl.colormaps[cmap](np.where(ok, scaled, 0.0)), dtype=np.float32)
    face[~ok] = rgba(["#808080"])[0]
    return face, {}


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
