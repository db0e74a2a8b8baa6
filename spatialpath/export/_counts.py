"""Cell counts, proportions and densities per cell type, per image, sample or patient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from spatialpath.keys import Key
from spatialpath.model import validate_categorical

__all__ = ["cell_counts"]

Level = Literal["image_id", "sample_id", "patient_id"]
_HIERARCHY = (Key.obs.patient_id, Key.obs.sample_id, Key.obs.image_id)


def cell_counts(
    adata: AnnData,
    *,
    level: Level = "sample_id",
    cluster_key: str = Key.obs.cell_type,
    library_key: str = Key.obs.image_id,
    metadata: Sequence[str] = (),
) -> pd.DataFrame:
    """Count cells of each type per image, sample or patient, with proportions and densities.

    Every cell type appears in every group: a type with no cell has ``n_cells`` 0, proportion
    0 and density 0 (structural zeros). The tissue area of a group is the sum of its images'
    ``tissue_area_um2`` metadata (from a mask or polygon, never a convex hull); if an image has
    none, the group's area and densities are NaN.

    Parameters
    ----------
    adata
        Cells with ``obs[cluster_key]`` (categorical) and the hierarchy columns present.
    level
        Row unit: ``"image_id"``, ``"sample_id"`` or ``"patient_id"``.
    cluster_key
        Cell-type column.
    library_key
        Image column (to find each image's metadata).
    metadata
        Further ``obs`` columns to carry into the table (e.g. ``arm``, ``timepoint``); each must
        be constant within a group.

    Returns
    -------
    Long table with the id columns down to ``level`` (those present in ``obs``), then
    ``cell_type``, ``n_cells``, ``n_cells_total``, ``proportion``, ``tissue_area_mm2`` and
    ``density_per_mm2``, then the ``metadata`` columns, sorted by ids and the cell-type order.
    Label columns are plain strings.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> t = cell_counts(simulate_tissue(n_cells=1_000).adata)
    >>> int(t["n_cells"].sum()), float(t["proportion"].sum())
    (1000, 1.0)
    """
    if level not in _HIERARCHY:
        raise ValueError(f"level must be one of {list(_HIERARCHY)}, got {level!r}")
    validate_categorical(adata, cluster_key, allow_empty_categories=True)
    if level not in adata.obs:
        raise ValueError(f"adata.obs[{level!r}] is missing; cannot count per {level}")
    ids = [k for k in _HIERARCHY[: _HIERARCHY.index(level) + 1] if k in adata.obs]
    obs = adata.obs[[*ids, cluster_key]].copy()
    for k in ids:
        obs[k] = obs[k].astype(str)

    counts = obs.groupby([*ids, cluster_key], observed=False).size().rename("n_cells").reset_index()
    # drop id combinations that do not exist (observed=False crosses every id with every other)
    present = obs[ids].drop_duplicates()
    counts = counts.merge(present, on=ids, how="inner")
    counts = counts.rename(columns={cluster_key: Key.obs.cell_type})
    total = counts.groupby(ids)["n_cells"].transform("sum")
    counts["n_cells_total"] = total.astype(np.int64)
    counts["proportion"] = counts["n_cells"] / total
    area = _group_area(adata, obs, ids, library_key)
    counts = counts.merge(area, on=ids, how="left")
    counts["density_per_mm2"] = counts["n_cells"] / counts["tissue_area_mm2"]
    counts["n_cells"] = counts["n_cells"].astype(np.int64)
    if metadata:
        counts = counts.merge(_group_metadata(adata, obs, ids, list(metadata)), on=ids, how="left")
    counts = counts.sort_values([*ids, Key.obs.cell_type], kind="stable").reset_index(drop=True)
    # plain strings in the exported table: identical in CSV, Parquet, Excel and R
    for col in counts.columns:
        if isinstance(counts[col].dtype, pd.CategoricalDtype):
            counts[col] = counts[col].astype(str)
    return counts


def _group_area(adata: AnnData, obs: pd.DataFrame, ids: list[str], library_key: str) -> pd.DataFrame:
    images = adata.uns.get(Key.uns.spatialpath, {}).get(Key.uns.images, {})
    if library_key in adata.obs:
        img = adata.obs[library_key].astype(str)
    else:
        img = pd.Series("", index=adata.obs_names)
    per_image = obs[ids].assign(_image=img.to_numpy()).drop_duplicates()
    per_image["tissue_area_mm2"] = [
        float(images[i]["tissue_area_um2"]) * 1e-6
        if i in images and "tissue_area_um2" in images[i]
        else np.nan
        for i in per_image["_image"]
    ]
    return per_image.groupby(ids, as_index=False)["tissue_area_mm2"].agg(lambda s: s.sum(min_count=len(s)))


def _group_metadata(adata: AnnData, obs: pd.DataFrame, ids: list[str], columns: list[str]) -> pd.DataFrame:
    missing = [c for c in columns if c not in adata.obs]
    if missing:
        raise ValueError(f"metadata columns {missing} are not in adata.obs")
    meta = obs[ids].join(adata.obs[columns])
    n_values = meta.groupby(ids, observed=True)[columns].nunique(dropna=False)
    varying = [c for c in columns if (n_values[c] > 1).any()]
    if varying:
        raise ValueError(
            f"metadata columns {varying} vary within a {ids[-1]}; only per-{ids[-1]} columns can be carried"
        )
    return meta.drop_duplicates(subset=ids).reset_index(drop=True)
