"""Shared validation and bookkeeping of the statistics in :mod:`spatialpath.gr`.

Every statistic runs **per image** (``library_key``): these helpers turn an AnnData into compact
arrays — label codes, image codes, the rows of each image — and fetch the spatial graph,
checking that it was built for these cells.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from spatialpath.keys import Key
from spatialpath.model import DataModelError, validate_categorical, validate_cells

__all__ = [
    "Groups",
    "check_coordinates",
    "check_min_cells",
    "connectivity_obsp_key",
    "default_library_key",
    "get_graph",
    "image_groups",
    "image_seed",
    "label_codes",
]


@dataclass(frozen=True)
class Groups:
    """Cells grouped by image.

    ``order`` lists cell rows image by image; image ``g`` owns ``order[offsets[g]:offsets[g + 1]]``;
    ``codes[i]`` is the image index of cell ``i``.
    """

    names: list[str]
    codes: np.ndarray  # (n_cells,) int32
    order: np.ndarray  # (n_cells,) int64
    offsets: np.ndarray  # (n_images + 1,) int64

    @property
    def n(self) -> int:
        """Number of images."""
        return len(self.names)

    def sizes(self) -> np.ndarray:
        """Number of cells per image."""
        return np.diff(self.offsets)


def image_groups(adata: AnnData, library_key: str | None) -> Groups:
    """Group cells by ``obs[library_key]``; ``None`` (or a missing default column) means one image.

    Raises
    ------
    DataModelError
        If ``library_key`` is given but missing, or has missing values.
    """
    n = adata.n_obs
    if library_key is None:
        codes = np.zeros(n, np.int32)
        names = ["all"]
    else:
        if library_key not in adata.obs:
            raise DataModelError(
                f"adata.obs[{library_key!r}] is missing: it names the image of each cell; pass "
                f"library_key=None to treat all cells as one image"
            )
        col = adata.obs[library_key]
        if col.isna().any():
            raise DataModelError(f"adata.obs[{library_key!r}] has missing values: every cell needs an image")
        cat = col.astype("category") if not isinstance(col.dtype, pd.CategoricalDtype) else col
        cat = cat.cat.remove_unused_categories()
        codes = cat.cat.codes.to_numpy().astype(np.int32)
        names = [str(c) for c in cat.cat.categories]
    order = np.argsort(codes, kind="stable").astype(np.int64)
    offsets = np.zeros(len(names) + 1, np.int64)
    offsets[1:] = np.cumsum(np.bincount(codes, minlength=len(names)))
    return Groups(names=names, codes=codes, order=order, offsets=offsets)


def image_seed(seed: int, image: str) -> int:
    """A seed from (seed, image id): adding or reordering images changes no other image's result.

    Examples
    --------
    >>> image_seed(0, "img1") == image_seed(0, "img1") != image_seed(0, "img2")
    True
    """
    ss = np.random.SeedSequence([int(seed), zlib.crc32(image.encode())])
    return int(ss.generate_state(1, np.uint32)[0])


def default_library_key(adata: AnnData, library_key: str | None) -> str | None:
    """The keys module's ``image_id`` when present and no key is given, else ``library_key``."""
    if library_key is None and Key.obs.image_id in adata.obs:
        return Key.obs.image_id
    return library_key


def label_codes(adata: AnnData, cluster_key: str, *, min_types: int = 2) -> tuple[np.ndarray, list[str]]:
    """Return compact label codes (int8 when K <= 127, else int16) and the category names.

    Raises
    ------
    DataModelError
        If the column is missing, not categorical, has missing values, or has fewer than
        ``min_types`` categories (a single cell type has nothing to compare).
    """
    validate_categorical(adata, cluster_key, allow_empty_categories=True)
    cats = [str(c) for c in adata.obs[cluster_key].cat.categories]
    if len(cats) < min_types:
        raise DataModelError(
            f"adata.obs[{cluster_key!r}] has {len(cats)} categor{'y' if len(cats) == 1 else 'ies'}; "
            f"this statistic needs at least {min_types} cell types"
        )
    dtype = np.int8 if len(cats) <= 127 else np.int16
    return adata.obs[cluster_key].cat.codes.to_numpy().astype(dtype), cats


def connectivity_obsp_key(connectivity_key: str) -> str:
    """``"spatial"`` -> ``"spatial_connectivities"``; a key already ending in it is kept (as squidpy).

    Examples
    --------
    >>> connectivity_obsp_key("spatial"), connectivity_obsp_key("spatial_2hop_connectivities")
    ('spatial_connectivities', 'spatial_2hop_connectivities')
    """
    suffix = Key.obsp.connectivities("")
    return (
        connectivity_key if connectivity_key.endswith(suffix) else Key.obsp.connectivities(connectivity_key)
    )


def get_graph(adata: AnnData, key: str = Key.obsp.connectivities()) -> sparse.csr_matrix:
    """Return the adjacency in ``obsp[key]`` as CSR with sorted int32/int64 indices.

    Raises
    ------
    DataModelError
        If there is no graph ("run spatialpath.gr.spatial_graph first") or its shape does not
        match the cells (a graph built for other cells).
    """
    if key not in adata.obsp:
        raise DataModelError(
            f"adata.obsp[{key!r}] is missing: run spatialpath.gr.spatial_graph(adata) first "
            "(or squidpy.gr.spatial_neighbors)"
        )
    g = adata.obsp[key]
    if g.shape != (adata.n_obs, adata.n_obs):
        raise DataModelError(
            f"adata.obsp[{key!r}] has shape {g.shape} but there are {adata.n_obs} cells: the graph was "
            "built for other cells; rebuild it with spatialpath.gr.spatial_graph(adata)"
        )
    csr = sparse.csr_matrix(g)
    if not csr.has_sorted_indices:
        csr = csr.sorted_indices()
    return csr


def check_coordinates(adata: AnnData) -> np.ndarray:
    """Validated ``obsm["spatial"]`` (x, y) as float64; NaN coordinates are refused."""
    validate_cells(adata, check_extent=False)
    return np.ascontiguousarray(np.asarray(adata.obsm[Key.obsm.spatial])[:, :2], dtype=np.float64)


def check_min_cells(groups: Groups, minimum: int = 3) -> None:
    """Refuse images with fewer than ``minimum`` cells (a statistic is meaningless there)."""
    small = [(name, int(s)) for name, s in zip(groups.names, groups.sizes(), strict=True) if s < minimum]
    if small:
        raise DataModelError(
            f"images with fewer than {minimum} cells: {small[:5]}; drop them, e.g. "
            "adata = adata[adata.obs[library_key].map(adata.obs[library_key].value_counts()) >= 3].copy()"
        )
