# %% [markdown]
# # CODEX colorectal cancer: enrichment, interaction tests and cellular neighbourhoods
#
# The real CODEX colorectal-cancer TMA of Schürch et al. (2020, *Cell* 182:1341): 258,385 cells in 140
# cores (tissue regions) from 35 patients, 11 cell types, in two patient groups coded `1` and `2`
# (data folder `schurch_crc_codex_cells`, read in place). This notebook shows:
#
# 1. reading the published cell table (pixel positions, 0.377 µm per pixel) into AnnData in µm;
# 2. **per-core neighbourhood enrichment** (10-nearest-cell graph, random labelling within each core),
#    with the cohort- and patient-level results from the same permutations;
# 3. a **cohort conditional interaction test** (histoCAT's conditional statistic, per core) summarised
#    over cores with `interaction_summary`;
# 4. **cellular neighbourhoods** with the Schürch preset (10 nearest cells, k-means, 10 CNs);
# 5. **CN frequencies per patient group**.
#
# **Patient groups.** The table codes the groups as `1` and `2`. The original study compared patients with
# a Crohn's-like reaction (CLR) and with diffuse inflammatory infiltration (DII), and the source codes
# 1 = CLR, 2 = DII; the redistributed table's documentation gives patient counts that disagree with
# that mapping, so **the mapping of 1/2 to CLR/DII is unverified** and the groups are named `1` and `2` here.

# %% tags=["parameters"]
import os
import tempfile

# Full analysis by default; CI sets SPATIALPATH_NB_FAST=1 (or the individual variables) for a reduced run.
FAST = os.environ.get("SPATIALPATH_NB_FAST", "0") == "1"
N_PERMS = int(os.environ.get("SPATIALPATH_NB_N_PERMS", 100 if FAST else 1000))
# cores per patient group (None: all 140 cores)
CORES_PER_GROUP = int(os.environ["SPATIALPATH_NB_CORES"]) if "SPATIALPATH_NB_CORES" in os.environ else None
if FAST and CORES_PER_GROUP is None:
    CORES_PER_GROUP = 10
N_NEIGHBORS = 10  # graph and CN window: the 10 nearest cells (Schürch et al.)
N_CNS = 10
SEED = 0
PIXEL_SIZE_UM = 0.377  # CODEX 20x tile, per the original publication
DATA_ROOT = os.environ.get("SPATIALPATH_DATA")  # None: found by spatialpath's data helper
OUTPUT_DIR = os.environ.get(
    "SPATIALPATH_NB_OUTPUT", os.path.join(tempfile.gettempdir(), "spatialpath-notebooks", "02_codex")
)

# %%
# %matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

import spatialpath as sp
from spatialpath.datasets import shared_data

pd.set_option("display.max_columns", 12)

# %% [markdown]
# ## 1. Read the cell table
#
# The published table has positions in pixels of each core's tile, a bare `ID` column for the patient and
# `imageID` for the core. `read_cell_table` never guesses units: the pixel size converts them to µm.

# %%
path = shared_data("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz", root=DATA_ROOT)
adata = sp.io.read_cell_table(
    path,
    pixel_size_um=PIXEL_SIZE_UM,
    columns={"patient_id": "ID", "image_id": "imageID"},
    technology="codex",
)
adata.obs["group"] = adata.obs.pop("Group").astype(str).astype("category")  # "1" / "2", see above
if CORES_PER_GROUP is not None:  # reduced run: the same number of randomly chosen cores per group
    cores = adata.obs.groupby("image_id", observed=True)["group"].first()
    keep = cores.groupby(cores, observed=True).sample(n=CORES_PER_GROUP, random_state=SEED).index
    adata = adata[adata.obs["image_id"].isin(keep)].copy()
    adata.obs["image_id"] = adata.obs["image_id"].cat.remove_unused_categories()
    adata.obs["patient_id"] = adata.obs["patient_id"].cat.remove_unused_categories()
adata.obs.groupby("group", observed=True).agg(
    cells=("image_id", "size"), cores=("image_id", "nunique"), patients=("patient_id", "nunique")
)

# %%
first = adata.obs.groupby("group", observed=True)["image_id"].first().tolist()
fig = sp.pl.tissue_map(adata, images=first, ncols=2, panel_size=5)

# %% [markdown]
# ## 2. Per-core neighbourhood enrichment
#
# One directed 10-nearest-cell graph per core; labels are permuted within each core. The result table
# holds the per-core (`level == "image"`), per-patient and cohort (`level == "cohort"`) statistics, all
# from the same permutations. `log2_ratio` is the effect size (observed / expected neighbour count).

# %%
sp.gr.knn_graph(adata, n_neighbors=N_NEIGHBORS, library_key="image_id")
enrichment = sp.gr.nhood_enrichment(adata, "cell_type", n_perms=N_PERMS, seed=SEED, copy=True)
enrichment.table["level"].value_counts()

# %%
fig = sp.pl.nhood_heatmap(enrichment, "cell_type")

# %%
per_core = enrichment.table.query("level == 'image'")
pair = per_core.query("cell_type == 'cd8_t_cells' and cell_type_b == 'tumor_cells'")
print(f"CD8 T -> tumour neighbours, per core: median log2 ratio {pair['log2_ratio'].median():.2f}")
print(f"cores with q < 0.05: {(pair['qvalue'] < 0.05).sum()} of {pair['qvalue'].notna().sum()} tested")

# %% [markdown]
# ## 3. Cohort conditional interaction test
#
# `interaction_test(method="histocat")` is histoCAT/imcRtools' conditional statistic: for type A, the
# mean number of B neighbours among the A cells that have at least one. It is tested per core against
# label permutations; `interaction_summary` gives, for every ordered pair, the fraction of cores with
# significant attraction or avoidance (p < 0.01) and the mean z-score: the cohort view.

# %%
tests = sp.gr.interaction_test(
    adata, "cell_type", method="histocat", n_perms=N_PERMS, seed=SEED, p_threshold=0.01, copy=True
)
summary = sp.gr.interaction_summary(tests)
summary.sort_values("frac_attraction", ascending=False).head(10)

# %%
net = summary.assign(net=summary["frac_attraction"] - summary["frac_avoidance"]).pivot(
    index="from_label", columns="to_label", values="net"
)
fig, ax = plt.subplots(figsize=(8, 6.5))
im = ax.imshow(net.to_numpy(dtype=float), cmap="RdBu_r", vmin=-1, vmax=1)
ax.set_xticks(range(net.shape[1]), net.columns, rotation=90)
ax.set_yticks(range(net.shape[0]), net.index)
ax.set(xlabel="neighbour type B", ylabel="cell type A", title="fraction of cores: attraction − avoidance")
fig.colorbar(im, ax=ax, shrink=0.8)
fig.tight_layout()

# %% [markdown]
# ## 4. Cellular neighbourhoods (Schürch preset)
#
# Each cell's window is its 10 nearest cells (itself included); the window compositions are clustered
# with k-means into 10 CNs. `adata.uns["cn"]["enrichment"]` is each CN's log2 enrichment of cell types
# over the tissue average: the usual heatmap to name the CNs.

# %%
sp.gr.cellular_neighborhoods(adata, "cell_type", n_neighbors=N_NEIGHBORS, n_clusters=N_CNS, seed=SEED)
fig = sp.pl.cn_enrichment(adata)

# %%
fig = sp.pl.tissue_map(adata, color="cn", images=first, ncols=2, panel_size=5)

# %% [markdown]
# ## 5. CN frequencies per patient group
#
# `cn_frequencies` gives each core's fraction of cells in each CN. Cores of one patient are averaged first
# (the patient is the unit of replication), then the groups are compared per CN with a two-sided
# Mann–Whitney test. These are exploratory p-values (10 CNs, no correction), and group labels are `1`/`2`
# (mapping to CLR/DII unverified).

# %%
freq = sp.gr.cn_frequencies(adata)
core_info = adata.obs.groupby("image_id", observed=True)[["patient_id", "group"]].first()
freq = freq.join(core_info, on="image_id")
per_patient = freq.groupby(["group", "patient_id", "cn"], observed=True)["fraction"].mean().reset_index()
rows = []
for cn, d in per_patient.groupby("cn", observed=True):
    a, b = (d.loc[d["group"] == g, "fraction"] for g in ("1", "2"))
    rows.append(
        {"cn": cn, "median_group_1": a.median(), "median_group_2": b.median(), "p": mannwhitneyu(a, b).pvalue}
    )
pd.DataFrame(rows).set_index("cn").round(3)

# %%
cns = list(adata.obs["cn"].cat.categories)
fig, ax = plt.subplots(figsize=(11, 4))
for j, (group, colour) in enumerate([("1", "#3465a4"), ("2", "#cc0000")]):
    in_group = per_patient[per_patient["group"] == group]
    data = [in_group.loc[in_group["cn"] == cn, "fraction"] for cn in cns]
    pos = np.arange(len(cns)) + (j - 0.5) * 0.35
    bp = ax.boxplot(data, positions=pos, widths=0.3, patch_artist=True, showfliers=False)
    for box in bp["boxes"]:
        box.set(facecolor=colour, alpha=0.5)
    for x, d in zip(pos, data, strict=True):
        ax.scatter(np.full(len(d), x), d, s=8, color=colour, zorder=3)
ax.set_xticks(range(len(cns)), cns)
ax.legend(
    handles=[plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.5) for c in ("#3465a4", "#cc0000")],
    labels=["group 1", "group 2"],
)
ax.set(ylabel="fraction of a patient's cells", title="CN frequencies per patient, by group")
fig.tight_layout()

# %%
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)
enrichment.table.to_csv(out / "nhood_enrichment.csv", index=False)
summary.to_csv(out / "interaction_summary.csv", index=False)
freq.to_csv(out / "cn_frequencies.csv", index=False)
sorted(p.name for p in out.iterdir())
