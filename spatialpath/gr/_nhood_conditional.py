"""COZI's conditional statistics for :func:`spatialpath.gr.nhood_enrichment` (``conditional=True``).

For cell types A, B in an image: ``S[A, B]`` = edges A→B, ``C1[A, B]`` = A cells with at least one
B neighbour, ``n_A`` = A cells. COZI (Schiller et al., bioRxiv 2025; squidpy PR #1023, imcRtools
PR #140) reports the **conditional count** ``S / C1`` (neighbour counts normalised by the A cells
that have any B neighbour; ``C1 = 0`` counts as 1, so the value is 0) and the **conditional
ratio** ``C1 / n_A`` (the fraction of A cells with any B neighbour). The conditional count is
histoCAT's "histocat" statistic; its z-score and two-sided p come from the permutation engine
(labels shuffled within images, the same ``seed``), through the exact route of
:func:`spatialpath.gr._neighbour_kernels.permute_statistic`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from spatialpath.gr import _neighbour_kernels as nk
from spatialpath.gr._counts import pair_counts_args
from spatialpath.gr._utils import Groups

__all__ = ["conditional_fields"]


def _within_images(graph: sparse.csr_matrix, codes: np.ndarray) -> sparse.csr_matrix:
    """Drop edges joining different images (nhood_enrichment ignores them too)."""
    coo = graph.tocoo()
    keep = codes[coo.row] == codes[coo.col]
    if keep.all():
        return graph
    out = sparse.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=graph.shape)
    out.sort_indices()
    return out


def conditional_fields(
    labels: np.ndarray,
    graph: sparse.csr_matrix,
    groups: Groups,
    n_types: int,
    n_cells_per_image: np.ndarray,
    *,
    n_perms: int,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    """Observed COZI statistics per image and pooled, with per-image permutation z and p.

    Returns the ``NhoodEnrichmentResult`` fields ``conditional_count[_per_image]``,
    ``conditional_ratio[_per_image]``, ``conditional_zscore_per_image`` and
    ``conditional_pvalue_per_image``. NaN where A or B is absent from the image.
    """
    graph = _within_images(graph, groups.codes)
    args = pair_counts_args(graph, groups, n_types)
    s, c1, _ = nk.neighbour_counts(labels, args, groups.n, n_types)
    n_a = np.broadcast_to(n_cells_per_image[:, :, None], s.shape).astype(np.float64)
    n_b = np.broadcast_to(n_cells_per_image[:, None, :], s.shape)
    absent = (n_a == 0) | (n_b == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        count = np.where(absent, np.nan, s / np.maximum(c1, 1))
        ratio = np.where(absent, np.nan, c1 / n_a)
        pooled_count = s.sum(0) / np.maximum(c1.sum(0), 1)
        pooled_ratio = np.where(n_a.sum(0) > 0, c1.sum(0) / n_a.sum(0), np.nan)
    max_degree = int(np.diff(graph.indptr).max()) if graph.nnz else 1
    _, n_gt, n_le, z = nk.permute_statistic(
        nk.HISTOCAT, labels, groups, args, n_a.ravel().copy(), 1, max_degree,
        n_perms=n_perms, seed=seed, tolerance=float(np.sqrt(np.finfo(float).eps)), progress=progress,
        desc="conditional (COZI) permutations",
    )  # fmt: skip
    m = n_perms + 1
    p = np.minimum(1.0, 2 * np.minimum((n_gt + 1) / m, (n_le + 1) / m)).reshape(s.shape)
    return {
        "conditional_count": pooled_count,
        "conditional_ratio": pooled_ratio,
        "conditional_count_per_image": count,
        "conditional_ratio_per_image": ratio,
        "conditional_zscore_per_image": np.where(absent, np.nan, np.asarray(z).reshape(s.shape)),
        "conditional_pvalue_per_image": np.where(absent, np.nan, p),
    }
