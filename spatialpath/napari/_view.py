"""``spatialpath.napari.view``: show spatialpath data in napari from a notebook or a script."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from spatialpath.napari._layers import (
    LayerData,
    cell_type_labels_layer,
    cells_layer,
    image_layer,
    labels_layer,
    regions_layer,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari
    import xarray as xr
    from anndata import AnnData

    from spatialpath.align import Transform

__all__ = ["add_layers", "view", "view_layers"]


def view_layers(
    adata: AnnData | None = None,
    *,
    image: Any = None,
    labels: xr.DataArray | None = None,
    regions: Any = None,
    transform: Transform | None = None,
    color_by: str | None = "cell_type",
    image_id: str | None = None,
) -> list[LayerData]:
    """The layers :func:`view` adds, bottom to top: image, mask, compartments, cells.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue, simulation_regions
    >>> t = simulate_tissue(0, n_cells=300)
    >>> [kind for _, _, kind in view_layers(t.adata, labels=t.labels, regions=simulation_regions(t.adata))]
    ['labels', 'shapes', 'points']
    """
    from spatialpath.keys import Key
    from spatialpath.napari._reader_folders import adata_layers

    layers: list[LayerData] = []
    if image is not None:
        if isinstance(image, str | os.PathLike):
            from spatialpath.io import read_pyramid

            levels = read_pyramid(image)
            image = levels if len(levels) > 1 else levels[0]
        layers.append(image_layer(image, transform=transform, image_id=image_id))
    if labels is not None:
        typed = (
            adata is not None
            and color_by in adata.obs.columns
            and Key.obs.label in adata.obs.columns
            and hasattr(adata.obs[color_by], "cat")
        )
        if typed:
            layer = cell_type_labels_layer(labels, adata, color_by, image_id=image_id, transform=transform)
            layers.append(layer)
        else:
            layers.append(labels_layer(labels, image_id=image_id, transform=transform))
    if adata is None:
        if regions is not None:
            layers.append(regions_layer(regions, image_id=image_id))
        return layers
    many = Key.obs.image_id in adata.obs.columns and adata.obs[Key.obs.image_id].nunique() > 1
    if image_id is None and many:
        return layers + adata_layers(adata, regions=regions, color_by=color_by)
    if regions is not None:
        layers.append(regions_layer(regions, image_id=image_id))
    layers.append(cells_layer(adata, color_by=color_by, image_id=image_id))
    return layers


def add_layers(viewer: napari.Viewer, layers: list[LayerData]) -> list[Any]:
    """Add LayerData tuples to ``viewer`` through its public ``add_<type>`` methods."""
    out = []
    for data, kwargs, kind in layers:
        added = getattr(viewer, f"add_{kind}")(data, **kwargs)
        out += added if isinstance(added, list) else [added]
    return out


def view(
    adata: AnnData | None = None,
    *,
    image: Any = None,
    labels: xr.DataArray | None = None,
    regions: Any = None,
    transform: Transform | None = None,
    color_by: str | None = "cell_type",
    image_id: str | None = None,
    viewer: napari.Viewer | None = None,
    show: bool = True,
) -> napari.Viewer:
    """Show cells, an image, a mask and compartments in napari, in µm; return the viewer.

    Reuses ``viewer``, else the current napari viewer, else opens one. Layers are added bottom to
    top: the image (one layer per channel; multiscale for a pyramid or a pyramidal file path),
    the mask (painted by cell type when ``adata`` has ``obs["label"]`` and a categorical
    ``color_by``), the compartments, then the cells coloured by ``color_by`` as in scanpy. The
    scale bar is shown, in µm.

    Parameters
    ----------
    adata
        Cells (``obsm["spatial"]`` in µm). With several images and no ``image_id``, one layer per
        image, only the first visible.
    image
        A ``(c, y, x)`` DataArray, a list of them (a pyramid, finest first) or an image file.
    labels
        A ``(y, x)`` label mask on the image's grid.
    regions
        A regions GeoDataFrame (:mod:`spatialpath.regions`).
    transform
        The frame of ``image`` and ``labels`` → the cells' frame, shown by the layer ``affine``
        (affine transforms only; resample non-rigid ones with
        :func:`spatialpath.align.apply_transform`).
    color_by
        ``obs`` column or marker colouring the cells.
    image_id
        Show this image's cells and compartments only.
    viewer
        The viewer to add to.
    show
        Show a new viewer's window (False for scripts and tests).

    Returns
    -------
    napari.Viewer
        Its layers carry the data behind them in ``layer.metadata`` (:mod:`spatialpath.napari._keys`).
    """
    import napari

    layers = view_layers(
        adata,
        image=image,
        labels=labels,
        regions=regions,
        transform=transform,
        color_by=color_by,
        image_id=image_id,
    )
    if viewer is None:
        viewer = napari.current_viewer() or napari.Viewer(show=show)
    add_layers(viewer, layers)
    _scale_bar(viewer).visible = True
    viewer.reset_view()
    return viewer


def _scale_bar(viewer: Any) -> Any:
    """The viewer's scale bar (``canvas.overlays`` since napari 0.9, ``viewer.scale_bar`` before)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    return getattr(overlays, "scale_bar", None) or viewer.scale_bar
