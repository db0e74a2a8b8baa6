# %% [markdown]
# # An IMC cohort through the pipeline on dask.distributed
#
# The Damond et al. (2019) imaging-mass-cytometry cohort of human pancreas in type 1 diabetes
# (data folder `spicyR_damond_t1d_imc`, read in place): 253,777 phenotyped cells in 120 images from
# 12 donors at three disease stages (non-diabetic, onset, long-duration). Positions are IMC pixels (1 µm).
#
# The notebook describes the cohort the way a study would: a **sample sheet** (one row per image: donor,
# image, input file, technology, pixel size, stage) and a **YAML config** (graph, statistics, metrics,
# outputs, blinding, cluster), both written into an output folder. `spatialpath.pipeline.run` then runs
# one task per image on a **dask.distributed LocalCluster**, with a progress bar, fits one cohort-wide
# cellular-neighbourhood model, and writes the **cohort tables** (biomarkers long/wide, neighbourhood
# enrichment, interaction summary, CN frequencies), figures and a manifest. A second run skips every
# image whose inputs and parameters did not change.

# %% tags=["parameters"]
import os
import tempfile

# Full analysis by default; CI sets SPATIALPATH_NB_FAST=1 (or the individual variables) for a reduced run.
FAST = os.environ.get("SPATIALPATH_NB_FAST", "0") == "1"
N_PERMS = int(os.environ.get("SPATIALPATH_NB_N_PERMS", 100 if FAST else 1000))
# images per disease stage (None: all 120 images)
IMAGES_PER_STAGE = int(os.environ["SPATIALPATH_NB_IMAGES"]) if "SPATIALPATH_NB_IMAGES" in os.environ else None
if FAST and IMAGES_PER_STAGE is None:
    IMAGES_PER_STAGE = 2
N_WORKERS = int(os.environ.get("SPATIALPATH_NB_WORKERS", 2))
N_CNS = 8
SEED = 0
PIXEL_SIZE_UM = 1.0  # IMC: 1 µm per pixel
DATA_ROOT = os.environ.get("SPATIALPATH_DATA")  # None: found by spatialpath's data helper
OUTPUT_DIR = os.environ.get(
    "SPATIALPATH_NB_OUTPUT", os.path.join(tempfile.gettempdir(), "spatialpath-notebooks", "05_imc")
)

# %%
# %matplotlib inline
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from distributed import Client, LocalCluster
from IPython.display import Image, display

import spatialpath as sp
from spatialpath.datasets import shared_data

pd.set_option("display.max_columns", 12)

# %% [markdown]
# ## 1. The sample sheet
#
# All images are in one cell table (`imageID` column), so every row names the same file and its image.
# Paths in a sheet are relative to the sheet's folder or absolute; `stage` is study metadata carried into
# every table.

# %%
table = shared_data("spicyR_damond_t1d_imc", "diabetesData_cells.csv.gz", root=DATA_ROOT)
images = pd.read_csv(table, usecols=["imageID", "case", "slide", "stage"]).drop_duplicates("imageID")
stages = ["Non-diabetic", "Onset", "Long-duration"]
images = images.sort_values("stage", key=lambda s: s.map(stages.index), kind="stable")
if IMAGES_PER_STAGE is not None:
    images = images.groupby("stage").head(IMAGES_PER_STAGE)
study = Path(OUTPUT_DIR)
if study.exists():
    shutil.rmtree(study)  # a fresh study folder: the first run below computes everything
study.mkdir(parents=True)
sheet = pd.DataFrame(
    {
        "patient_id": "donor_" + images["case"].astype(str),
        "sample_id": images["slide"].astype(str),
        "image_id": images["imageID"].astype(str),
        "path": str(table),
        "technology": "imc",
        "pixel_size_um": PIXEL_SIZE_UM,
        "image_column": "imageID",
        "stage": images["stage"],
    }
)
sheet.to_csv(study / "samples.csv", index=False)
print(len(sheet), "images,", sheet["patient_id"].nunique(), "donors")
sheet.head()

# %% [markdown]
# ## 2. The YAML config
#
# `load_config` checks the config and the sheet before anything runs, and lists every problem with its
# file and line (try a typo). `stage` is blinded: it is withheld from every table until the run is
# unblinded.

# %%
config_text = f"""\
version: 1
samples: samples.csv
output: results
seed: {SEED}
phenotype: {{column: cellType}}
graph: {{method: knn, n_neighbors: 10}}
statistics:
  nhood_enrichment: {{n_perms: {N_PERMS}}}
  interaction_test: {{method: conditional, n_perms: {N_PERMS}}}
  cellular_neighborhoods: {{n_neighbors: 10, n_clusters: {N_CNS}}}
compartments: {{source: cells}}
metrics: [count, proportion, density, nn_distance_median, mixing_score]
outputs: {{formats: [csv, parquet], figures: true}}
blinding: {{columns: [stage]}}
cluster: {{n_workers: {N_WORKERS}, threads_per_worker: 1}}
"""
(study / "run.yaml").write_text(config_text, encoding="utf-8")
config = sp.pipeline.load_config(study / "run.yaml")
print(config_text)

# %% [markdown]
# ## 3. Run on a LocalCluster
#
# Any `distributed.Client` works (a laptop's LocalCluster, or a scheduler on a cluster); the run never
# closes a client it was given. The bar counts images done / failed / skipped; the dashboard link shows
# the task stream.

# %%
with (
    LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, dashboard_address=":0") as cluster,
    Client(cluster) as client,
):
    print("dashboard:", client.dashboard_link)
    result = sp.pipeline.run(config, client=client, unblind=True, progress=True)
    print(result.counts, {k: round(v, 1) for k, v in result.timings.items()})
    # nothing changed: a second run skips every image
    again = sp.pipeline.run(config, client=client, unblind=True, progress=False)
    print("second run:", again.counts)
result.images.head()

# %% [markdown]
# ## 4. The cohort tables
#
# `result.outputs` lists the cohort files by role. The wide biomarker table has one row per image; the
# long one a row per image × compartment × metric × cell type with units and QC status.

# %%
sorted(str(p.relative_to(result.output)) for p in result.outputs.values() if "image_figure" not in str(p))

# %%
long, wide = sp.export.read_tables(result.output / "tables", "parquet")
print(wide.shape)
wide.filter(regex="^(image_id|stage|n_cells_total|density__tissue__(alpha|beta|Tc)$)").head(10)

# %%
dens = long.query("metric == 'density' and compartment == 'tissue'")
per_stage = dens.pivot_table(
    index="cell_type", columns="stage", values="value", aggfunc="median", observed=True
)
per_stage.loc[["alpha", "beta", "delta", "Tc", "Th", "macrophage", "neutrophil"]].round(0)

# %%
summary = pd.read_csv(result.output / "tables" / "interaction_summary.csv")
summary.query("n_images >= 2").sort_values("frac_attraction", ascending=False).head(10)

# %%
cn = pd.read_csv(result.output / "tables" / "cn_frequencies.csv")
by_stage = cn.groupby(["stage", "cn"])["fraction"].mean().unstack("cn")
fig, ax = plt.subplots(figsize=(9, 3.5))
by_stage.plot.barh(stacked=True, ax=ax, colormap="tab10", width=0.8)
ax.set(xlabel="mean fraction of an image's cells", title="cellular neighbourhoods by stage")
ax.legend(bbox_to_anchor=(1, 1), loc="upper left", fontsize=8)
fig.tight_layout()

# %% [markdown]
# The pipeline's own figures are in `figures/`: the per-image enrichment grid and the densities by
# stage (drawn because the run was unblinded).

# %%
for png in sorted((result.output / "figures").glob("*.png")):
    print(png.name)
    display(Image(filename=png, width=800))
