"""Tissue maps: cells at their µm positions, coloured by a categorical column."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from spatialpath.keys import Key
from spatialpath.model import validate_cells
from spatialpath.pl._palette import categories_in_use, category_colors

__all__ = ["tissue_map"]


def tissue_map(
    adata: AnnData,
    *,
    color: str = Key.obs.cell_type,
    library_key: str = Key.obs.image_id,
    images: Sequence[str] | None = None,
    ncols: int = 3,
    point_size: float | None = None,
    panel_size: float = 4.0,
    ax: Axes | None = None,
) -> Figure:
    """Plot cells at their positions (µm), coloured by a categorical column, one panel per image.

    The y axis points down, as in the image (row 0 at the top), so the map overlays the image
    and matches napari. Colours come from ``adata.uns[f"{color}_colors"]`` when present.

    Parameters
    ----------
    adata
        Cells with ``obsm["spatial"]`` in µm and categorical ``obs[color]``.
    color
        Categorical column to colour by.
    library_key
        Image column; one panel per image.
    images
        Images to show (default: all, in category order).
    ncols
        Panels per row.
    point_size
        Marker size in points²; default scales with the number of cells per panel.
    panel_size
        Panel edge in inches.
    ax
        Draw a single image into this Axes (requires exactly one image).

    Returns
    -------
    The matplotlib Figure.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> fig = tissue_map(simulate_tissue(n_cells=500).adata)
    >>> len(fig.axes)
    1
    """
    validate_cells(adata, cluster_key=None, check_extent=False)
    palette = category_colors(adata, color)
    if library_key in adata.obs:
        lib = adata.obs[library_key].astype(str).to_numpy()
        order = categories_in_use(adata.obs[library_key].astype("category"))
    else:
        lib = np.full(adata.n_obs, "")
        order = [""]
    shown = list(images) if images is not None else order
    unknown = sorted(set(shown) - set(order))
    if unknown:
        raise ValueError(f"images {unknown} are not in adata.obs[{library_key!r}]")
    if ax is not None and len(shown) != 1:
        raise ValueError(f"ax draws one image, but {len(shown)} are selected; pass images=[...] with one id")
    if ax is None:
        nrows = int(np.ceil(len(shown) / ncols))
        nc = min(ncols, len(shown))
        fig, axes = plt.subplots(
            nrows, nc, figsize=(panel_size * nc + 1.8, panel_size * nrows), squeeze=False
        )
        axes_list = list(axes.ravel())
        for extra in axes_list[len(shown) :]:
            extra.set_axis_off()
    else:
        fig, axes_list = ax.figure, [ax]

    xy = np.asarray(adata.obsm[Key.obsm.spatial])
    labels = adata.obs[color].astype(str).to_numpy()
    colours = np.array([palette[v] for v in labels]) if len(labels) else np.array([])
    for image_id, a in zip(shown, axes_list, strict=False):
        sel = lib == image_id
        size = point_size if point_size is not None else float(np.clip(3e4 / max(sel.sum(), 1), 0.2, 20))
        a.scatter(xy[sel, 0], xy[sel, 1], c=colours[sel], s=size, linewidths=0, rasterized=True)
        a.set_aspect("equal")
        if not a.yaxis_inverted():
            a.invert_yaxis()
        a.set_title(image_id, fontsize=9)
        a.set_xlabel("x (µm)")
        a.set_ylabel("y (µm)")
        a.tick_params(labelsize=7)
    used = categories_in_use(adata.obs[color])
    handles = [Line2D([], [], ls="", marker="o", color=palette[c], label=c) for c in used]
    fig.legend(handles=handles, title=color, loc="center right", frameon=False, fontsize=8)
    if ax is None:
        fig.tight_layout(rect=(0, 0, 1 - 1.6 / fig.get_size_inches()[0], 1))
    return fig
