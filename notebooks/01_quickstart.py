# %% [markdown]
# # Quickstart: from a simulated section to a biomarker table
#
# This notebook runs the whole spatialpath path on one **simulated** multiplexed tumour section
# (`spatialpath.datasets.simulate_tissue`), so it needs no data download and runs in under a minute:
#
# 1. cells as an AnnData in micrometres, and a tissue map;
# 2. a spatial graph (k nearest cells) and **neighbourhood enrichment** (random-labelling permutation test);
# 3. **compartments**: tumour and stroma polygons, and the invasive-margin bands around the tumour border;
# 4. cell **densities per mm²** in every compartment, and signed distances to the tumour border;
# 5. the **biomarker table** (long and wide, one row per image in the wide table), written to CSV/Parquet.
#
# The simulator plants known effects (CD8 T cells excluded from tumour nests, macrophages enriched at the
# invasive margin), so every number below can be checked against the truth stored in
# `adata.uns["simulation"]`.

# %% tags=["parameters"]
import os
import tempfile

# Full analysis by default; CI sets SPATIALPATH_NB_FAST=1 (or the individual variables) for a reduced run.
FAST = os.environ.get("SPATIALPATH_NB_FAST", "0") == "1"
N_CELLS = int(os.environ.get("SPATIALPATH_NB_N_CELLS", 5_000 if FAST else 20_000))
N_PERMS = int(os.environ.get("SPATIALPATH_NB_N_PERMS", 100 if FAST else 1000))
SEED = 0
MARGIN_WIDTH_UM = 50.0  # half-width of the invasive margin, inside and outside the tumour border
# where the tables are written (default: a folder in the system temp directory)
OUTPUT_DIR = os.environ.get(
    "SPATIALPATH_NB_OUTPUT", os.path.join(tempfile.gettempdir(), "spatialpath-notebooks", "01_quickstart")
)

# %%
# %matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import spatialpath as sp

pd.set_option("display.max_columns", 12)
print("spatialpath", sp.__version__)

# %% [markdown]
# ## 1. A simulated section
#
# `simulate_tissue` returns the cells (`adata`, coordinates in µm in `obsm["spatial"]`), a lazy
# 12-channel image, nucleus labels and the true region polygons. Only the cells are used here.

# %%
tissue = sp.datasets.simulate_tissue(seed=SEED, n_cells=N_CELLS)
adata = tissue.adata
print(adata)

# %%
fig = sp.pl.tissue_map(adata, panel_size=6)

# %% [markdown]
# ## 2. Spatial graph and neighbourhood enrichment
#
# A directed 10-nearest-cell graph, then for every pair of cell types (A, B): do A cells have more B
# neighbours than if the labels were shuffled among the cells of the image? The z-score measures the
# evidence, `log2_ratio` (observed / expected count) the effect size.

# %%
sp.gr.knn_graph(adata, n_neighbors=10)
enrichment = sp.gr.nhood_enrichment(adata, "cell_type", n_perms=N_PERMS, seed=SEED, copy=True)
enrichment.table.query("level == 'image'").sort_values("zscore", ascending=False).head(8)

# %%
fig = sp.pl.nhood_heatmap(enrichment, "cell_type")

# %% [markdown]
# ## 3. Compartments and margin bands
#
# The simulator knows its tumour and stroma polygons (`simulation_regions`); on real data they come
# from a tissue-segmentation mask (`spatialpath.regions.from_mask`, see notebook 03). `margin_bands`
# adds the inner and outer invasive-margin bands around the tumour border, and `assign_cells` gives each
# cell one compartment (first match in `priority`).

# %%
regions = sp.datasets.simulation_regions(adata)
regions = sp.regions.margin_bands(regions, widths_um=(MARGIN_WIDTH_UM, MARGIN_WIDTH_UM))
sp.regions.compartment_areas(regions).to_frame()

# %%
sp.regions.assign_cells(adata, regions, priority=["margin_inner", "margin_outer", "tumour", "stroma"])
sp.regions.signed_distance(adata, regions)  # obs["tumour_distance_um"]: < 0 inside the tumour
pd.crosstab(adata.obs["cell_type"], adata.obs["compartment"])

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
colours = {"tumour": "#d9a3a3", "stroma": "#b9d3e8", "margin_inner": "#e07b39", "margin_outer": "#7aa457"}
for name, colour in colours.items():
    regions[regions["compartment"] == name].plot(ax=axes[0], color=colour, label=name)
axes[0].legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()], labels=list(colours))
axes[0].set(title="compartments", xlabel="x (µm)", ylabel="y (µm)", aspect="equal")
axes[0].invert_yaxis()  # image convention: y grows downwards
cd8 = adata.obs["cell_type"] == "CD8 T"
axes[1].hist(adata.obs.loc[cd8, "tumour_distance_um"], bins=40, color="#3465a4")
axes[1].axvline(0, color="k", lw=1)
axes[1].set(title="CD8 T cells: signed distance to the tumour border", xlabel="µm (< 0: inside tumour)")
fig.tight_layout()

# %% [markdown]
# ## 4. Densities per mm² by compartment
#
# `spatialpath.metrics.compute` evaluates registered metrics on the cells and the compartment polygons
# (densities are counts divided by the compartment's polygon area).

# %%
dens = sp.metrics.compute(adata, regions, ["density"])
table = dens.pivot_table(index="cell_type", columns="compartment", values="value", observed=True)
table[["tumour", "margin_inner", "margin_outer", "stroma", "tissue"]].round(0)

# %% [markdown]
# The simulator stores the densities it planted. The measured tumour densities should be close to the
# `tumour_nest` row, and the outer margin (the first 50 µm of stroma outside the border) close to the
# `invasive_margin` row: CD8 T cells are excluded from the nests (about 25/mm² against 1,000/mm² at the
# margin) and macrophages are enriched at the border.

# %%
planted = adata.uns["simulation"]["density_per_mm2"]  # expected cells/mm² per planted neighbourhood
check = pd.DataFrame(
    {
        "planted, tumour nests": planted.loc["tumour_nest"],
        "measured, tumour": table["tumour"],
        "planted, invasive margin": planted.loc["invasive_margin"],
        "measured, outer margin": table["margin_outer"],
    }
)
check.round(0)

# %%
fig, ax = plt.subplots(figsize=(9, 4))
table[["tumour", "margin_inner", "margin_outer", "stroma"]].plot.bar(ax=ax)
ax.set(ylabel="cells per mm²", title="density by compartment")
fig.tight_layout()

# %% [markdown]
# ## 5. The biomarker table
#
# `biomarker_table` runs the default metric set on every image and compartment and returns a long table
# (one row per image × compartment × metric × cell type, with units, QC status and parameters) and a
# wide table (one row per image; column names `metric__compartment__cell_type`). `write_tables` writes
# both with a data dictionary and a `manifest.json`.

# %%
long, wide = sp.export.biomarker_table(adata, regions)
long.query("metric == 'density' and cell_type == 'CD8 T'")[["compartment", "value", "unit", "status"]]

# %%
wide.filter(like="density__").T.head(12)

# %%
written = sp.export.write_tables(
    long, wide, Path(OUTPUT_DIR) / "biomarker_tables", formats=["csv", "parquet"], overwrite=True
)
{name: str(path) for name, path in written.items()}
