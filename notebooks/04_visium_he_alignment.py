# %% [markdown]
# # Visium, H&E and multiplexed images in one micrometre frame
#
# spatialpath keeps every modality in µm, and moves data between frames with explicit `Transform`s
# (3×3 affine maps between named frames). This notebook shows:
#
# 1. a real **Visium section and its H&E** in one frame (`spatialpath.io.read_visium` / `visium_image`;
#    scanpy's spaceranger 1.0 test section, data folder `scanpy_visium_testdata`);
# 2. **automatic and landmark registration** on a real same-field cross-modal pair: the Vectra composite
#    image of the phenoptr field `Set4_1-6plex_[16142,55840]` and inForm's nucleus label mask of the same
#    field. The two are natively aligned, so we re-scan the mask under a **known** pose (rotation, scale,
#    shift) and check that both registrations recover it;
# 3. **cells → spots transfer**: the field's phenotyped cells are placed on the Visium section with a
#    transform and summed per spot. There is no Visium of this tissue: the placement only demonstrates the
#    mechanics (cells and spots in one frame, then `cells_to_spots`);
# 4. the **checkerboard QC figure** of the registration.

# %% tags=["parameters"]
import os

# Full analysis by default; CI sets SPATIALPATH_NB_FAST=1 for a reduced run.
FAST = os.environ.get("SPATIALPATH_NB_FAST", "0") == "1"
WORKING_SIZE = 384 if FAST else 512  # registration thumbnail size (px)
N_LANDMARKS = 8  # nuclei used as landmark pairs
# the planted pose of the re-scanned label mask (fixed -> moving)
POSE = {"rotation_deg": 23.0, "scale": 1.1, "translation": (60.0, -140.0)}
SEED = 0
DATA_ROOT = os.environ.get("SPATIALPATH_DATA")  # None: found by spatialpath's data helper

# %%
# %matplotlib inline
import warnings

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tifffile
from skimage.measure import regionprops_table

import spatialpath as sp
from spatialpath.datasets import shared_data
from spatialpath.model import make_labels

pd.set_option("display.max_columns", 12)


def show(image, ax, **kwargs):
    """Draw a (c, y, x) µm DataArray with its µm extent (RGB as is, one channel in grey)."""
    px = float(image.attrs["pixel_size_um"])
    x, y = image["x"].values, image["y"].values
    extent = (x[0] - px / 2, x[-1] + px / 2, y[-1] + px / 2, y[0] - px / 2)
    arr = np.moveaxis(np.asarray(image), 0, -1) if image.ndim == 3 else np.asarray(image)
    ax.imshow(arr if arr.shape[-1] in (3, 4) or arr.ndim == 2 else arr[..., 0], extent=extent, **kwargs)
    ax.set(xlabel="x (µm)", ylabel="y (µm)")


# %% [markdown]
# ## 1. A Visium section and its H&E
#
# `read_visium` puts the spot centres in µm (from the spot diameter in full-resolution pixels: 55 µm), and
# `visium_image` returns the H&E as a µm DataArray in the same frame: drawing both with their µm
# coordinates needs no scale factor.

# %%
visium_dir = shared_data("scanpy_visium_testdata", "1.0.0", root=DATA_ROOT)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    spots = sp.io.read_visium(visium_dir)  # this test section has expression for 100 spots only
positions = sp.io.read_visium_positions(visium_dir)  # all 4,992 spot positions
he = sp.io.visium_image(spots, "lowres")
print(spots.n_obs, "spots with expression;", len(positions), "spot positions;", dict(he.sizes), "H&E")
print(f"H&E pixel: {he.attrs['pixel_size_um']:.1f} µm")

# %%
fig, ax = plt.subplots(figsize=(7, 7))
show(he, ax)
inside = positions["in_tissue"] == 1
ax.scatter(
    positions.loc[inside, "x_um"],
    positions.loc[inside, "y_um"],
    s=2,
    c="#1f78b4",
    alpha=0.5,
    label="spots in tissue",
)
ax.scatter(*spots.obsm["spatial"].T, s=12, c="#e31a1c", label="spots with expression")
ax.legend(loc="lower left")
ax.set_title("Visium spots on the H&E (µm)")

# %% [markdown]
# ## 2. Registration on a same-field cross-modal pair
#
# **Fixed**: the Vectra RGB composite (0.5 µm). **Moving**: inForm's nucleus labels, resampled under a
# planted pose with `warp_image`, i.e. a second "scan" of the same field in another frame. The true
# moving → fixed transform is the inverse of the pose.

# %%
set4 = shared_data("phenoptr_vectra_mif", "sample_Set4", root=DATA_ROOT)
FIELD = "Set4_1-6plex_[16142,55840]"
composite = sp.io.read_image(set4 / f"{FIELD}_composite_image.jpg", pixel_size_um=0.5)
nuclei = make_labels(
    tifffile.imread(set4 / f"{FIELD}_binary_seg_maps.tif", key=1).astype(np.int32), pixel_size_um=0.5
)
pose = sp.align.Transform.from_params(**POSE, source="fixed", target="moving")
moving = sp.align.warp_image(nuclei, pose).compute()
truth = pose.inverse()  # moving -> fixed
print("composite", dict(composite.sizes), "| moving labels", dict(moving.sizes))

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 5))
show(composite, axes[0])
axes[0].set_title("fixed: Vectra composite")
show(moving > 0, axes[1], cmap="gray")
axes[1].set_title("moving: nucleus labels under the planted pose")
fig.tight_layout()

# %% [markdown]
# ### Automatic registration
#
# `register_images` picks the channels (for this pair the composite's blue − green, DAPI without the
# membrane stains), searches rotations, mirrors and scales on thumbnails, then refines an affine model
# on normalised cross-correlation. The target registration error (TRE) is measured against the truth on a
# grid of points.


# %%
def tre_um(transform, points):
    """Distance between where ``transform`` and the truth send each moving point (µm)."""
    return np.linalg.norm(transform.apply_points(points) - truth.apply_points(points), axis=1)


def rounded(params):
    """A transform's parameters, rounded for printing."""
    return {
        k: v if isinstance(v, bool | np.bool_) else np.round(np.asarray(v, float), 3).tolist()
        for k, v in params.items()
    }


ys, xs = np.meshgrid(np.linspace(100, 600, 12), np.linspace(100, 830, 12), indexing="ij")
grid = pose.apply_points(np.column_stack([xs.ravel(), ys.ravel()]))  # field points, in the moving frame

auto = sp.align.register_images(composite, moving, working_size=WORKING_SIZE, progress=False)
print("channels:", auto.channels)
print(f"NCC before {auto.similarity_before:.2f}, after {auto.similarity_after:.2f}")
print("estimated:", rounded(auto.transform.params()))
print("planted:  ", rounded(truth.params()))
errors = tre_um(auto.transform, grid)
print(f"TRE: median {np.median(errors):.2f} µm, max {errors.max():.2f} µm")

# %% [markdown]
# ### Landmark registration
#
# The same problem from point pairs, as clicked in napari or read from a landmark file: here the centroids
# of the largest nuclei, found in both images by their label (with RANSAC against bad pairs).
# `residuals` gives every pair's residual and leave-one-out TRE.


# %%
def centroids_um(labels):
    """Label, centroid x and y in µm of a (y, x) label DataArray."""
    t = pd.DataFrame(regionprops_table(np.asarray(labels), properties=("label", "area", "centroid")))
    px = float(labels.attrs["pixel_size_um"])
    t["x"] = float(labels["x"][0]) + t["centroid-1"] * px
    t["y"] = float(labels["y"][0]) + t["centroid-0"] * px
    return t.set_index("label")


fixed_c, moving_c = centroids_um(nuclei), centroids_um(moving)
chosen = fixed_c.loc[fixed_c.index.intersection(moving_c.index)].nlargest(N_LANDMARKS, "area").index
landmarks = sp.align.register_landmarks(
    fixed_c.loc[chosen, ["x", "y"]].to_numpy(), moving_c.loc[chosen, ["x", "y"]].to_numpy(), seed=SEED
)
print(f"{landmarks.n_inliers}/{landmarks.n_landmarks} inliers, RMSE {landmarks.rmse_um:.2f} µm")
print(f"TRE: median {np.median(tre_um(landmarks.transform, grid)):.2f} µm")
landmarks.residuals.round(2)

# %% [markdown]
# ## 3. The checkerboard QC figure
#
# Alternating tiles of the fixed image and the registered moving image: edges that run on across tile
# borders mean a good registration.

# %%
fig = auto.plot_checkerboard(n=8)

# %% [markdown]
# ## 4. Cells → spots
#
# The inForm cells of the field (µm, in the composite's frame) are moved onto the Visium section with a
# `Transform` (an illustrative placement: no Visium exists for this tissue), then `cells_to_spots` counts
# the cell types in each 55 µm spot.

# %%
cells = sp.io.read_cell_table(set4 / "sample_cell_seg_data.csv.gz")
centre = positions.loc[inside, ["x_um", "y_um"]].median().to_numpy()
placement = sp.align.Transform.from_params(
    rotation_deg=-10.0, translation=tuple(centre - [465.0, 350.0]), source="vectra", target="visium"
)
cells_v = sp.align.apply_transform(cells, placement)
grid_spots = sp.io.read_visium_positions(visium_dir)
spot_table = ad.AnnData(obs=grid_spots[["in_tissue", "array_row", "array_col"]])
spot_table.obsm["spatial"] = grid_spots[["x_um", "y_um"]].to_numpy()
composition = sp.align.cells_to_spots(cells_v, spot_table, cluster_key="cell_type", spot_diameter_um=55.0)
occupied = composition[composition.obs["n_cells"] > 0]
print(
    occupied.n_obs,
    "spots hold cells;",
    len(composition.uns["spatialpath_transfer"]["unassigned_cells"]),
    "cells fall between spots",
)
pd.DataFrame(occupied.X, index=occupied.obs_names, columns=occupied.var_names).head()

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 6))
for ax, lim in zip(axes, [None, 700], strict=True):
    show(he, ax)
    ck = occupied.layers["fraction"][:, list(occupied.var_names).index("CK+")]
    sc = ax.scatter(*occupied.obsm["spatial"].T, c=ck, cmap="magma", s=60 if lim else 8, vmin=0, vmax=1)
    if lim:
        ax.set(xlim=(centre[0] - lim, centre[0] + lim), ylim=(centre[1] + lim, centre[1] - lim))
fig.colorbar(sc, ax=axes, label="fraction of CK+ cells per spot", shrink=0.8)
axes[0].set_title("cells placed on the section")
axes[1].set_title("zoom: CK+ fraction per spot")
