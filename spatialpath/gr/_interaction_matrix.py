"""Interaction matrix: edges of the spatial graph counted by (cell type, cell type), pooled and per image.

The definition is squidpy's ``interaction_matrix`` (1.8.2): entry ``[a, b]`` counts the *stored*
edges ``i -> j`` of ``obsp["{connectivity_key}_connectivities"]`` with ``label(i) = a`` and
``label(j) = b``. A directed kNN graph stays directed (the matrix is asymmetric and sums to the
number of stored edges); ``weights=True`` sums the stored edge values instead of counting them;
``normalized=True`` divides each row by its sum.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from spatialpath.gr._csr import warn_cross_image_edges
from spatialpath.gr._utils import (
    connectivity_obsp_key,
    default_library_key,
    get_graph,
    image_groups,
    label_codes,
)
from spatialpath.keys import Key

__all__ = ["InteractionMatrixResult", "interaction_matrix", "interactions_per_image_key"]


def interactions_per_image_key(cluster_key: str) -> str:
    """Key of the per-image interaction matrices in ``adata.uns``."""
    return f"{Key.uns.interactions(cluster_key)}_per_image"


class InteractionMatrixResult(NamedTuple):
    """What :func:`interaction_matrix` returns with ``copy=True``."""

    #: (K, K) matrix over all cells, equal to ``squidpy.gr.interaction_matrix``.
    interactions: np.ndarray
    #: (G, K, K) matrices, one per image (only edges inside the image).
    per_image: np.ndarray
    #: image names, the order of ``per_image``.
    images: list[str]
    #: cell-type names, the order of both axes.
    categories: list[str]


def _edge_rows(graph: sparse.csr_matrix) -> np.ndarray:
    """Row (source cell) of every stored entry of a CSR matrix, in storage order."""
    n = graph.shape[0]
    dtype = np.int32 if n < np.iinfo(np.int32).max else np.int64
    return np.repeat(np.arange(n, dtype=dtype), np.diff(graph.indptr))


def interaction_matrix(
    adata: AnnData,
    cluster_key: str,
    *,
    normalized: bool = False,
    weights: bool = False,
    library_key: str | None = None,
    connectivity_key: str = "spatial",
    copy: bool = False,
) -> InteractionMatrixResult | None:
    """Count the edges of the spatial graph between each pair of cell types, pooled and per image.

    ``interactions[a, b]`` is the number of stored edges ``i -> j`` of the graph with
    ``adata.obs[cluster_key]`` equal to ``a`` at ``i`` and ``b`` at ``j`` — squidpy's definition,
    so a directed kNN graph gives an asymmetric matrix whose entries sum to the number of stored
    edges. The pooled matrix equals ``squidpy.gr.interaction_matrix`` exactly (same values, same
    dtype: integer for a boolean or integer graph, else float64). The per-image matrices count
    only the edges between two cells of the same image; they sum to the pooled matrix when the
    graph was built per image (a graph joining images is counted in the pooled matrix, as squidpy
    does, and a warning is issued).

    Parameters
    ----------
    adata
        Cells, with a categorical ``obs[cluster_key]`` and a graph in
        ``obsp[f"{connectivity_key}_connectivities"]``.
    cluster_key
        Categorical column of cell types (the order of its categories is the matrix order).
    normalized
        Divide each row by its sum (row fractions; a type with no outgoing edge gives a NaN row,
        as in squidpy).
    weights
        Sum the stored edge values instead of counting edges.
    library_key
        Column naming the image of each cell; default ``obs["image_id"]`` when present, else all
        cells form one image.
    connectivity_key
        Prefix (or full key) of the graph in ``adata.obsp``, as in squidpy.
    copy
        Return the matrices instead of writing them to ``adata.uns``.

    Returns
    -------
    With ``copy=True`` an :class:`InteractionMatrixResult` (``interactions``, ``per_image``,
    ``images``, ``categories``); otherwise ``None``, and writes

    - ``adata.uns[f"{cluster_key}_interactions"]``: the (K, K) pooled matrix (squidpy's key);
    - ``adata.uns[f"{cluster_key}_interactions_per_image"]``: ``{"interactions": (G, K, K),
        "images": (G,) str, "categories": (K,) str}``, normalised per image when ``normalized``.

    Raises
    ------
    spatialpath.model.DataModelError
        If there is no graph (run ``spatialpath.gr.spatial_graph`` first), the graph was built for
        other cells, or ``obs[cluster_key]`` is missing, not categorical or has missing values.

    Examples
    --------
    >>> from sklearn.neighbors import kneighbors_graph
    >>> from spatialpath.datasets import simulate_tissue
    >>> adata = simulate_tissue(n_cells=500).adata
    >>> # a 6-NN graph, as squidpy.gr.spatial_neighbors_knn(adata, n_neighs=6) builds it
    >>> adata.obsp["spatial_connectivities"] = kneighbors_graph(adata.obsm["spatial"], 6)
    >>> interaction_matrix(adata, "cell_type")
    >>> m = adata.uns["cell_type_interactions"]
    >>> m.shape, int(m.sum())  # 6 out-edges per cell
    ((8, 8), 3000)
    >>> adata.uns["cell_type_interactions_per_image"]["interactions"].shape
    (1, 8, 8)
    """
    codes, categories = label_codes(adata, cluster_key, min_types=1)
    library_key = default_library_key(adata, library_key)
    groups = image_groups(adata, library_key)
    graph = get_graph(adata, connectivity_obsp_key(connectivity_key))
    n_types, n_images = len(categories), groups.n

    integer = pd.api.types.is_bool_dtype(graph.dtype) or pd.api.types.is_integer_dtype(graph.dtype)
    dtype = np.int64 if integer else np.float64
    values = graph.data.astype(np.float64) if weights else None  # bincount sums in float64

    rows = _edge_rows(graph)
    pair = codes[rows].astype(np.int64) * n_types + codes[graph.indices]
    pooled = _bincount(pair, values, n_types * n_types, dtype).reshape(n_types, n_types)

    if n_images == 1:
        per_image = pooled[None].copy()
    else:
        img_src = groups.codes[rows]
        inside = img_src == groups.codes[graph.indices]
        del rows
        warn_cross_image_edges(
            int(inside.size - np.count_nonzero(inside)),
            groups,
            library_key,
            "they count in the pooled matrix (as in squidpy) but in no per-image matrix",
        )
        flat = img_src[inside].astype(np.int64) * (n_types * n_types) + pair[inside]
        per_image = _bincount(
            flat, None if values is None else values[inside], n_images * n_types * n_types, dtype
        ).reshape(n_images, n_types, n_types)

    if normalized:
        with np.errstate(invalid="ignore", divide="ignore"):
            pooled = pooled / pooled.sum(axis=1).reshape((-1, 1))
            per_image = per_image / per_image.sum(axis=2, keepdims=True)

    if copy:
        return InteractionMatrixResult(pooled, per_image, list(groups.names), list(categories))
    adata.uns[Key.uns.interactions(cluster_key)] = pooled
    adata.uns[interactions_per_image_key(cluster_key)] = {
        "interactions": per_image,
        "images": np.asarray(groups.names, dtype=object),
        "categories": np.asarray(categories, dtype=object),
    }
    return None


def _bincount(index: np.ndarray, values: np.ndarray | None, size: int, dtype: type) -> np.ndarray:
    """``np.bincount`` in storage order (the summation order of squidpy's loop), cast to ``dtype``."""
    out = np.bincount(index, weights=values, minlength=size)
    return out.astype(dtype, copy=False)
