"""The plugin's sample data: a small simulated tumour section (image, cell types, cells, compartments)."""

from __future__ import annotations

import numpy as np

from spatialpath.napari._layers import (
    LayerData,
    cell_type_labels_layer,
    cells_layer,
    image_layer,
    regions_layer,
)

__all__ = ["SAMPLE_CELLS", "SAMPLE_PIXEL_SIZE_UM", "SAMPLE_SEED", "simulated_tissue", "simulated_tissue_data"]

#: cells, seed and pixel size of the sample (small enough to open in about a second).
SAMPLE_CELLS = 2000
SAMPLE_SEED = 0
SAMPLE_PIXEL_SIZE_UM = 1.0
#: channels visible when the sample opens.
SAMPLE_VISIBLE = ("DAPI", "panCK", "CD45")


def simulated_tissue_data(n_cells: int = SAMPLE_CELLS, seed: int = SAMPLE_SEED):
    """The :class:`~spatialpath.datasets.SimulatedTissue` behind the sample, with its image in memory."""
    from spatialpath.datasets import simulate_tissue

    tissue = simulate_tissue(seed, n_cells=n_cells, pixel_size_um=SAMPLE_PIXEL_SIZE_UM)
    return tissue._replace(image=tissue.image.compute(), labels=tissue.labels.compute())


def simulated_tissue(n_cells: int = SAMPLE_CELLS, seed: int = SAMPLE_SEED) -> list[LayerData]:
    """The simulated tissue as napari layers: channels, cell types, cells and compartments (µm).

    :func:`spatialpath.datasets.simulate_tissue` with ``n_cells`` cells (seed ``seed``) at
    1 µm/px, shown as one Image layer per marker (DAPI, panCK and CD45 visible), the nucleus mask
    coloured by cell type (a ``DirectLabelColormap`` from ``uns["cell_type_colors"]``), the cells
    as Points coloured the same way, and the true tissue/tumour/stroma polygons as Shapes
    (:func:`spatialpath.datasets.simulation_regions`).

    Examples
    --------
    >>> layers = simulated_tissue(n_cells=300)
    >>> [kind for _, _, kind in layers]
    ['image', 'labels', 'points', 'shapes']
    >>> layers[2][0].shape
    (300, 2)
    """
    from spatialpath.datasets import simulation_regions

    tissue = simulated_tissue_data(n_cells, seed)
    source = f"spatialpath.datasets.simulate_tissue(seed={seed}, n_cells={n_cells})"
    image = image_layer(tissue.image, visible_channels=SAMPLE_VISIBLE, source=source)
    image[1]["colormap"] = _channel_colormaps([str(c) for c in tissue.image["c"].values])
    types = cell_type_labels_layer(tissue.labels, tissue.adata, source=source)
    types[1]["opacity"] = 0.6
    cells = cells_layer(tissue.adata, source=source, size_um=6.0)
    cells[1]["visible"] = False
    regions = regions_layer(simulation_regions(tissue.adata), source=source)
    return [image, types, cells, regions]


def _channel_colormaps(channels: list[str]) -> list[str]:
    named = {"DAPI": "blue", "panCK": "magenta", "CD45": "green", "CD3": "yellow", "CD8": "red"}
    rest = iter(np.resize(["cyan", "gray", "bop orange", "bop purple"], len(channels)).tolist())
    return [named.get(c) or next(rest) for c in channels]
