# %% [markdown]
# # Vectra/inForm mIF: compartments, margins, densities and spatial statistics
#
# A real 7-colour Vectra field analysed with inForm (the `phenoptr` sample field `Set4_1-6plex_[16142,55840]`,
# data folder `phenoptr_vectra_mif`, read in place): 6,072 cells phenotyped CK+, CD8+, CD68+, FoxP3+ or other,
# and inForm's tissue-category map (tumour / stroma / background, 0.5 µm pixels). This notebook goes:
#
# 1. inForm cell table → AnnData in µm; tissue map → **tumour, stroma and tissue polygons**;
# 2. **invasive-margin bands** inside and outside the tumour border;
# 3. **densities per mm²** by compartment and **signed distances** to the tumour border (checked against
#    inForm's own distance column);
# 4. an **infiltration call** (inflamed / excluded / desert) from CD8 densities;
# 5. **cross-L** of CD8+ around CK+ cells in the tissue window, with a **global envelope** under random
#    labelling;
# 6. **export**: biomarker tables, compartment GeoJSON.

# %% tags=["parameters"]
import os
import tempfile

# Full analysis by default; CI sets SPATIALPATH_NB_FAST=1 (or the individual variables) for a reduced run.
FAST = os.environ.get("SPATIALPATH_NB_FAST", "0") == "1"
N_PERMS = int(os.environ.get("SPATIALPATH_NB_N_PERMS", 99 if FAST else 999))  # envelope simulations
MARGIN_WIDTH_UM = 25.0  # each side of the tumour border (a 0.9 mm field: narrow bands)
R_MAX_UM = 100.0  # largest radius of the cross-L function
DESERT_DENSITY = 50.0  # CD8/mm² below which tumour and stroma count as a desert
EXCLUDED_RATIO = 0.5  # excluded when tumour CD8 density < this × stromal CD8 density
SEED = 0
DATA_ROOT = os.environ.get("SPATIALPATH_DATA")  # None: found by spatialpath's data helper
OUTPUT_DIR = os.environ.get(
    "SPATIALPATH_NB_OUTPUT", os.path.join(tempfile.gettempdir(), "spatialpath-notebooks", "03_mif")
)

# %%
# %matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tifffile

import spatialpath as sp
from spatialpath.datasets import shared_data

pd.set_option("display.max_columns", 12)
folder = shared_data("phenoptr_vectra_mif", "sample_Set4", root=DATA_ROOT)
FIELD = "Set4_1-6plex_[16142,55840]"

# %% [markdown]
# ## 1. Cells and the tissue map
#
# `read_cell_table` recognises the inForm export (positions in microns, `Phenotype` → `cell_type`,
# `Tissue Category` → `compartment`). Page 0 of inForm's `binary_seg_maps.tif` is the tissue-category map:
# value *k* is the *k*-th category named in the page's XML (here 0 = Tumor, 1 = Stroma, 2 = Background).

# %%
adata = sp.io.read_cell_table(folder / "sample_cell_seg_data.csv.gz")
image_id = adata.obs["image_id"].iloc[0]
adata.obs["cell_type"].value_counts().to_frame()

# %%
with tifffile.TiffFile(folder / f"{FIELD}_binary_seg_maps.tif") as tif:
    tissue_xml = tif.pages[0].description
    tissue_map = tif.pages[0].asarray()
names = [s.split("</Name>")[0] for s in tissue_xml.split("<Name>")[1:]]
PIXEL_SIZE_UM = 0.5  # inForm 20x: the cells' µm positions are 0.5 × the seg-map pixel centres
print(names, tissue_map.shape)

# %%
# canonical compartment names (tumour / stroma / tissue) so every default of spatialpath applies
compartments = sp.regions.from_mask(
    tissue_map,
    pixel_size_um=PIXEL_SIZE_UM,
    categories={names.index("Tumor"): "tumour", names.index("Stroma"): "stroma"},
    background=names.index("Background"),
    image_id=image_id,
)
tissue = sp.regions.from_mask(
    (tissue_map != names.index("Background")).astype(np.uint8),
    pixel_size_um=PIXEL_SIZE_UM,
    categories={1: "tissue"},
    image_id=image_id,
)
regions = pd.concat([tissue, compartments], ignore_index=True)
sp.regions.validate_regions(regions, adata)
regions = sp.regions.margin_bands(regions, widths_um=(MARGIN_WIDTH_UM, MARGIN_WIDTH_UM))
sp.regions.compartment_areas(regions).to_frame()

# %%
adata.obs["region"] = sp.regions.assign_cells(
    adata, regions, key_added=None, priority=["margin_inner", "margin_outer", "tumour", "stroma"]
)
pd.crosstab(adata.obs["cell_type"], adata.obs["region"])

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
colours = {"tumour": "#e6b8b8", "stroma": "#c6dbef", "margin_inner": "#e07b39", "margin_outer": "#74a557"}
for name, colour in colours.items():
    regions[regions["compartment"] == name].plot(ax=axes[0], color=colour)
axes[0].legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()], labels=list(colours))
axes[0].set(title="compartments and margin bands", aspect="equal")
axes[0].invert_yaxis()
regions[regions["compartment"] == "tumour"].boundary.plot(ax=axes[1], color="k", lw=0.6)
sp.pl.tissue_map(adata, ax=axes[1], point_size=4)
axes[1].set(title="phenotypes and the tumour border")
fig.tight_layout()

# %% [markdown]
# ## 2. Densities per mm² and signed distances
#
# Densities divide each compartment's cell count by its polygon area (exact pixel areas of the tissue map).
# Signed distances are negative inside the tumour; inForm exported its own (unsigned) distance to the
# tissue-category edge, which they should reproduce to within a pixel.

# %%
dens = sp.metrics.compute(adata, regions, ["density"])
dens.pivot_table(index="cell_type", columns="compartment", values="value", observed=True).round(0)

# %%
distance = sp.regions.signed_distance(adata, regions)  # also obs["tumour_distance_um"]
inform = adata.obs["Distance from Tissue Category Edge (microns)"].to_numpy(dtype=float)
given = np.isfinite(inform)
agree = np.mean(np.abs(np.abs(distance[given]) - inform[given]) <= PIXEL_SIZE_UM)
print(f"|signed distance| within one pixel of inForm's distance for {agree:.1%} of {given.sum()} cells")

# %%
fig, ax = plt.subplots(figsize=(9, 4))
bins = np.arange(-200, 201, 10)
for cell_type, colour in [("CD8+", "#cc0000"), ("CD68+", "#3465a4"), ("FoxP3+", "#73a03a")]:
    d = adata.obs.loc[adata.obs["cell_type"] == cell_type, "tumour_distance_um"]
    ax.hist(d, bins=bins, histtype="step", lw=2, color=colour, label=cell_type, density=True)
ax.axvline(0, color="k", lw=1)
ax.axvspan(-MARGIN_WIDTH_UM, MARGIN_WIDTH_UM, color="0.9", zorder=0, label="margin bands")
ax.set(xlabel="signed distance to the tumour border (µm; < 0 inside)", ylabel="density", title="immune cells")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 3. Infiltration call
#
# `immune_phenotype` calls the field *desert* when the CD8 density is below `DESERT_DENSITY` in both
# tumour and stroma, else *excluded* when the tumour density is below `EXCLUDED_RATIO` × the stromal
# density, else *inflamed*.

# %%
params = {
    "immune_phenotype": {
        "immune_type": "CD8+",
        "desert_density": DESERT_DENSITY,
        "excluded_ratio": EXCLUDED_RATIO,
    }
}
call = sp.metrics.compute(adata, regions, ["immune_phenotype", "density_ratio"], params=params)
labels = sp.metrics.get_metric("immune_phenotype").value_labels
call = call.assign(call=call["value"].map(labels).where(call["metric"] == "immune_phenotype"))
call.query("cell_type == 'CD8+'")[["metric", "cell_type", "value", "call", "n_cells_a", "n_cells_b"]]

# %% [markdown]
# ## 4. Cross-L function with a global envelope
#
# Besag's L for CD8+ cells around CK+ cells, with translation edge correction in the **tissue** window
# (not the image rectangle: the background would look like avoidance). The null is random labelling
# (the positions fixed, the labels shuffled); the grey band is the global (extreme rank length) envelope,
# so a curve leaving it anywhere is significant at α = 0.05 over all radii at once.

# %%
tissue_window = regions.loc[regions["compartment"] == "tissue", "geometry"].iloc[0]
cross = sp.gr.cross_function(
    adata,
    "cell_type",
    "L",
    a=["CD8+", "CD68+"],
    b="CK+",
    r_max=R_MAX_UM,
    window=tissue_window,
    n_perms=N_PERMS,
    seed=SEED,
    copy=True,
)
cross.summary().drop(columns=["image_id", "correction", "null", "window"])

# %%
fig = sp.pl.cross_function_curves(cross)

# %% [markdown]
# ## 5. Export
#
# The biomarker tables (long and wide, with a data dictionary and a manifest) and the compartments as
# GeoJSON in pixel coordinates of the tissue map (what QuPath and napari expect).

# %%
out = Path(OUTPUT_DIR)
metrics = [*sp.metrics.default_metrics(), "immune_phenotype"]
long, wide = sp.export.biomarker_table(adata, regions, metrics=metrics, params=params)
written = sp.export.write_tables(
    long, wide, out / "biomarker_tables", formats=["csv", "parquet"], overwrite=True
)
sp.regions.write_geojson(regions, out / "compartments.geojson", pixel_size_um=PIXEL_SIZE_UM, overwrite=True)
long.query("metric == 'density' and cell_type == 'CD8+'")[["compartment", "value", "unit", "status"]]

# %%
sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
