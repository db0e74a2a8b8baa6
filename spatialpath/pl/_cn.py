"""Heatmap of the cell-type enrichment of cellular neighbourhoods (:mod:`spatialpath.gr`'s CNs)."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spatialpath.gr._cn_model import CellularNeighborhoods
from spatialpath.keys import Key

__all__ = ["cn_enrichment"]


def _model(source: Any, key: str) -> CellularNeighborhoods:
    if isinstance(source, CellularNeighborhoods):
        return source
    if isinstance(source, AnnData):
        if key not in source.uns or "model" not in source.uns[key]:
            raise ValueError(
                f"adata.uns[{key!r}] holds no CN model: run spatialpath.gr.cellular_neighborhoods(adata) "
                f"(or pass key= the key_added you used)"
            )
        return CellularNeighborhoods.from_dict(source.uns[key]["model"])
    if isinstance(source, dict):
        return CellularNeighborhoods.from_dict(source.get("model", source))
    raise TypeError(
        f"expected an AnnData, a CellularNeighborhoods or its to_dict(), got {type(source).__name__}"
    )


def cn_enrichment(
    result_or_adata: AnnData | CellularNeighborhoods | dict[str, Any],
    key: str = Key.obs.cellular_neighborhood,
    *,
    cell_types: list[str] | None = None,
    vmax: float | None = None,
    cmap: str = "RdBu_r",
    annotate: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Heatmap of each CN's log2 cell-type enrichment: rows are cell types, columns CNs.

    The value is Schürch et al.'s ``log2(((c + f̄) / Σ(c + f̄)) / f̄)`` (``model.enrichment``): how
    much more frequent a type is in the CN's centroid window than in the whole tissue.

    Parameters
    ----------
    result_or_adata
        An AnnData after :func:`spatialpath.gr.cellular_neighborhoods` (reads ``uns[key]``), a
        :class:`~spatialpath.gr.CellularNeighborhoods` model, or its ``to_dict()`` (or the
        ``uns[key]`` dictionary).
    key
        ``uns`` key of the result (the ``key_added`` of the fit).
    cell_types
        Rows to show, in this order; default all types of the model.
    vmax
        Colour limit, symmetric around 0; default the largest absolute value.
    cmap
        Diverging colormap.
    annotate
        Write the value in every cell.
    ax
        Axes to draw in; default a new figure.

    Returns
    -------
    The matplotlib Figure; the column labels give each CN's share of the fitting cells.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> from spatialpath.gr._cellular_neighborhoods import cellular_neighborhoods
    >>> adata = simulate_tissue(seed=1, n_cells=3000).adata
    >>> cellular_neighborhoods(adata, n_clusters=4)
    >>> fig = cn_enrichment(adata)
    >>> fig.axes[0].images[0].get_array().shape  # 8 cell types × 4 CNs
    (8, 4)
    """
    model = _model(result_or_adata, key)
    table: pd.DataFrame = model.enrichment.T
    if cell_types is not None:
        unknown = [t for t in cell_types if t not in table.index]
        if unknown:
            raise ValueError(f"cell types {unknown} are not in the model (types: {list(table.index)})")
        table = table.loc[list(cell_types)]
    values = table.to_numpy(float)
    top = vmax if vmax is not None else float(np.abs(values).max()) or 1.0
    n_types, n_cns = values.shape
    if ax is None:
        label = 0.09 * max((len(t) for t in table.index), default=4)
        fig, ax = plt.subplots(figsize=(2.6 + label + 0.5 * n_cns, 1.6 + 0.4 * n_types), layout="constrained")
    else:
        fig = ax.figure
    image = ax.imshow(values, cmap=cmap, vmin=-top, vmax=top, aspect="auto")
    share = model.n_cells / max(int(model.n_cells.sum()), 1)
    ax.set_xticks(range(n_cns), [f"{n}\n{s:.0%}" for n, s in zip(model.names, share, strict=True)])
    ax.set_yticks(range(n_types), list(table.index))
    ax.set_xlabel("cellular neighbourhood (share of cells)")
    ax.set_ylabel(model.cluster_key)
    ax.set_title(f"CN enrichment, window: {model.window()}", fontsize=9)
    fig.colorbar(image, ax=ax, label="log2 enrichment vs tissue", shrink=0.8)
    if annotate:
        for (i, j), v in np.ndenumerate(values):
            ax.text(
                j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color="w" if abs(v) > top / 2 else "k"
            )
    return fig
