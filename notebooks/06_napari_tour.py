# %% [markdown]
# # A napari tour: looking at results from a notebook
#
# napari shows the tissue itself: the image, the cell-type mask, every cell and the compartments, all in
# micrometres. `spatialpath.napari.view` opens (or reuses) a viewer from a notebook and returns it, so the
# same objects you analyse here can be inspected, recoloured and edited there (the pattern of
# napari-spatialdata's `Interactive`). Install the plugin with `pip install "spatialpath[napari]"`.
#
# 1. a simulated section (image, nucleus mask, cells, true compartments) in one viewer;
# 2. the plugin's widgets, docked next to it: cell types and markers, neighbourhood statistics,
#    compartments and densities, alignment;
# 3. a screenshot of the canvas, for a report.
#
# In CI this notebook runs under a virtual X display (Xvfb); on a desktop the viewer opens as a window.

# %% tags=["parameters"]
import os

# Full analysis by default; CI sets SPATIALPATH_NB_FAST=1 for a reduced run.
FAST = os.environ.get("SPATIALPATH_NB_FAST", "0") == "1"
N_CELLS = int(os.environ.get("SPATIALPATH_NB_N_CELLS", 2_000 if FAST else 10_000))
SEED = 0
SHOW = True  # open the viewer window (False: build it hidden, e.g. on a server)

# %%
# %matplotlib inline
import matplotlib.pyplot as plt

import spatialpath as sp
from spatialpath.napari import view

# %% [markdown]
# ## 1. One section in one viewer
#
# `view` takes the AnnData of cells, the image and nucleus mask (xarray, µm coordinates; dask arrays
# stay lazy) and the compartments
# (GeoDataFrame, µm) and adds one layer for each: image channels with `scale` = pixel size, the mask as
# cell types (coloured like `adata.uns["cell_type_colors"]`, so napari matches scanpy and squidpy plots),
# the cells as points with `obs` as features, and the compartments as shapes.

# %%
tissue = sp.datasets.simulate_tissue(seed=SEED, n_cells=N_CELLS, pixel_size_um=1.0)
image, labels = tissue.image.compute(), tissue.labels.compute()  # small enough to hold in memory
regions = sp.datasets.simulation_regions(tissue.adata)
viewer = view(tissue.adata, image=image, labels=labels, regions=regions, show=SHOW)
[(layer.name, type(layer).__name__) for layer in viewer.layers]

# %% [markdown]
# Every layer is in micrometres: a cell's point sits where `obsm["spatial"]` puts it (napari orders
# coordinates (y, x)), and the image's pixel `(row, col)` is drawn at `(row, col) × pixel size`.

# %%
cells = next(layer for layer in viewer.layers if layer.metadata.get("spatialpath_kind") == "cells")
first = tissue.adata.obsm["spatial"][0]
print("cell 0 at x, y =", first, "µm; napari world (y, x) =", cells.data_to_world(cells.data[0]))

# %% [markdown]
# ## 2. The widgets
#
# The plugin's four widgets dock on the right (**Plugins → spatialpath** in the menu does the same).

# %%
for name in ("Cell types and markers", "Neighbourhood statistics", "Compartments and densities", "Alignment"):
    viewer.window.add_plugin_dock_widget("spatialpath", name)

# %% [markdown]
# The widgets' logic is plain functions, usable from here too: for instance, colour the points by a
# marker exactly as the cell-types widget does.

# %%
from spatialpath.napari._cell_types import apply_to_layer

apply_to_layer(cells, "CD8")
cells.visible = True

# %% [markdown]
# ## 3. A screenshot for the report

# %%
shot = viewer.screenshot(canvas_only=True)
fig, ax = plt.subplots(figsize=(6, 6))
ax.imshow(shot)
ax.set_axis_off()
ax.set_title("napari canvas: simulated section, cells coloured by CD8")
plt.show()

# %%
viewer.close()
