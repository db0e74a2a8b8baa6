"""histoCAT / imcRtools ``testInteractions``: per-image permutation tests of cell-type interactions.

The statistics (classic, histocat, patch) are counted by :mod:`spatialpath.gr._neighbour_kernels`
and permuted within images by the engine (:mod:`spatialpath.gr._permutation`); imcRtools'
p-values, tolerance included, are recovered exactly from the engine's counts (derivation in
``docs/interaction-test.md``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from spatialpath.gr import _neighbour_kernels as nk
from spatialpath.gr._counts import pair_counts_args
from spatialpath.gr._utils import (
    Groups,
    check_min_cells,
    connectivity_obsp_key,
    default_library_key,
    get_graph,
    image_groups,
    label_codes,
)
from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["interaction_summary", "interaction_test", "interaction_test_key"]

Method = Literal["classic", "histocat", "conditional", "patch"]
_RULES = {"classic": nk.CLASSIC, "histocat": nk.HISTOCAT, "conditional": nk.HISTOCAT, "patch": nk.PATCH}
_NAMES = {nk.CLASSIC: "classic", nk.HISTOCAT: "histocat", nk.PATCH: "patch"}
#: columns of the result table, in order.
COLUMNS = ("image_id", "from_label", "to_label", "ct", "p_gt", "p_lt", "interaction", "p", "sig", "sigval",
           "zscore", "conditional_ratio", "n_from", "n_to")  # fmt: skip
#: imcRtools' default tolerance, ``sqrt(.Machine$double.eps)``.
DEFAULT_TOLERANCE = math.sqrt(np.finfo(np.float64).eps)


def interaction_test_key(cluster_key: str) -> str:
    """Key of the :func:`interaction_test` result in ``adata.uns``."""
    return Key.uns.interaction_test(cluster_key)


def interaction_test(
    adata: AnnData,
    cluster_key: str,
    *,
    method: Method = "classic",
    patch_size: int | None = None,
    library_key: str | None = None,
    n_perms: int = 1000,
    seed: int = 0,
    p_threshold: float = 0.01,
    tolerance: float = DEFAULT_TOLERANCE,
    connectivity_key: str = "spatial",
    progress: bool = True,
    copy: bool = False,
) -> pd.DataFrame | None:
    """Test, image by image, whether A cells have more or fewer B neighbours than by chance.

    The histoCAT design as implemented by imcRtools ``testInteractions``. For each image and
    ordered pair of cell types (A, B), with ``n_B(a)`` the number of B cells among the stored
    out-neighbours of cell ``a`` (row ``a`` of the graph; a kNN graph stays directed):

    - ``method="classic"``: ``ct = sum_{a in A} n_B(a) / n_A`` over all A cells of the image;
    - ``method="histocat"`` (alias ``"conditional"``, its imcRtools name since PR #140): the mean
      of ``n_B(a)`` over the A cells with ``n_B(a) >= 1``, and 0 when there is none;
    - ``method="patch"``: ``ct = #{a in A : n_B(a) >= patch_size} / n_A``.

    Labels are permuted within each image ``n_perms`` times by the permutation engine (seeded,
    bit-identical whatever the number of threads). With ``iter = n_perms`` and
    ``d = ct_perm - ct``, the p-values are imcRtools':

    - ``p_gt = (#{d > -tolerance} + 1) / (iter + 1)``, and 1 when ``ct = 0``;
    - ``p_lt = (#{d <= tolerance} + 1) / (iter + 1)``;
    - ``interaction = p_gt < p_lt``; ``p`` is the p-value of that direction (a one-sided p: under
      the null ``P(p <= alpha)`` is about ``2 alpha``); ``sig = p < p_threshold``;
      ``sigval`` is ``+1`` (attraction), ``-1`` (avoidance) or ``0``.

    ``zscore`` is ``(ct - mean) / sd`` of the permutation distribution (NaN when ``sd = 0``) and
    ``conditional_ratio`` is COZI's ``#{a in A : n_B(a) >= 1} / n_A``. Every statistic of a pair
    is NA when A or B has no cell in the image.

    Parameters
    ----------
    adata
        Cells with a categorical ``obs[cluster_key]`` and a graph in
        ``obsp[f"{connectivity_key}_connectivities"]``.
    cluster_key
        Categorical column of cell types.
    method
        ``"classic"``, ``"histocat"`` (or ``"conditional"``) or ``"patch"``.
    patch_size
        For ``method="patch"`` only (required there): the minimum number of B neighbours, >= 1.
    library_key
        Column naming the image of each cell; default ``obs["image_id"]`` when present, else all
        cells form one image. Labels never leave their image.
    n_perms, seed
        Number of permutations and the seed of the engine's ``SeedSequence``.
    p_threshold
        Significance threshold of ``sig`` and ``sigval`` (imcRtools' default 0.01).
    tolerance
        imcRtools' ``tolerance`` (default ``sqrt(machine eps)``): permuted values within it of
        the observed one count as ties.
    connectivity_key
        Prefix (or full key) of the graph in ``adata.obsp``, as in squidpy.
    progress
        Show a progress bar.
    copy
        Return the table instead of writing it to ``adata.uns``.

    Returns
    -------
    With ``copy=True`` the result table (parameters in ``.attrs["params"]``); otherwise ``None``,
    and writes ``adata.uns[f"{cluster_key}_interaction_test"] = {"table": DataFrame, "params":
    dict}``. The table has one row per (image, A, B) in this order, with columns ``image_id``,
    ``from_label``, ``to_label`` (categorical), ``ct``, ``p_gt``, ``p_lt``, ``interaction``
    (boolean), ``p``, ``sig`` (boolean), ``sigval`` (Int8), ``zscore``, ``conditional_ratio``,
    ``n_from``, ``n_to`` (cells of A and B in the image). ``params`` holds ``method``,
    ``patch_size``, ``n_perms``, ``seed``, ``p_threshold``, ``tolerance``, ``cluster_key``,
    ``library_key`` and ``connectivity_key`` (``None`` values are left out).

    Raises
    ------
    spatialpath.model.DataModelError
        If ``obs[cluster_key]`` is missing, not categorical, has missing values or fewer than
        two cell types; if an image has fewer than 3 cells; if there is no graph or it was built
        for other cells.
    ValueError
        For an unknown ``method``, a missing or invalid ``patch_size``, or invalid numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import sparse
    >>> from scipy.spatial import cKDTree
    >>> from spatialpath.datasets import simulate_tissue
    >>> adata = simulate_tissue(seed=1, n_cells=400).adata
    >>> xy = adata.obsm["spatial"]
    >>> nn = cKDTree(xy).query(xy, k=7)[1][:, 1:]  # a directed 6-NN graph
    >>> rows = np.repeat(np.arange(400), 6)
    >>> adata.obsp["spatial_connectivities"] = sparse.csr_matrix((np.ones(2400), (rows, nn.ravel())))
    >>> interaction_test(adata, "cell_type", n_perms=199, progress=False)
    >>> res = adata.uns["cell_type_interaction_test"]
    >>> res["params"]["method"], res["table"].shape
    ('classic', (64, 14))
    >>> row = res["table"].query("from_label == 'Tumour' and to_label == 'Tumour'").iloc[0]
    >>> bool(row.ct > 3), int(row.sigval)  # tumour cells cluster in nests
    (True, 1)
    """
    rule = _check_arguments(method, patch_size, p_threshold, tolerance)
    if isinstance(n_perms, int | np.integer) and n_perms >= 1 and 1 / (n_perms + 1) >= p_threshold:
        warnings.warn(
            f"with n_perms={n_perms} the smallest p-value is 1/(n_perms + 1) = {1 / (n_perms + 1):.3g} "
            f">= p_threshold={p_threshold}: no pair can be significant; use n_perms >= "
            f"{math.ceil(1 / p_threshold)}",
            UserWarning,
            stacklevel=2,
        )
    codes, categories = label_codes(adata, cluster_key, min_types=2)
    n_types = len(categories)
    if np.count_nonzero(np.bincount(codes, minlength=n_types)) < 2:
        raise DataModelError(
            f"adata.obs[{cluster_key!r}] has cells of a single type: an interaction test needs at least "
            "two cell types"
        )
    library_key = default_library_key(adata, library_key)
    groups = image_groups(adata, library_key)
    check_min_cells(groups, 3)
    obsp_key = connectivity_obsp_key(connectivity_key)
    graph = get_graph(adata, obsp_key)
    _warn_cross_image_edges(graph, groups, library_key)

    n_images = groups.n
    args = pair_counts_args(graph, groups, n_types)
    flat = groups.codes.astype(np.int64) * n_types + codes
    n_cells = np.bincount(flat, minlength=n_images * n_types).reshape(n_images, n_types)
    shape = (n_images, n_types, n_types)
    n_from = np.broadcast_to(n_cells[:, :, None], shape).ravel()
    n_to = np.broadcast_to(n_cells[:, None, :], shape).ravel()
    psize = int(patch_size) if patch_size is not None else 1
    _, c1, _ = nk.neighbour_counts(codes, args, n_images, n_types, psize)
    max_degree = int(np.diff(graph.indptr).max())
    ct, n_gt, n_le, zscore = nk.permute_statistic(
        rule, codes, groups, args, n_from, psize, max_degree, n_perms=n_perms, seed=seed,
        tolerance=float(tolerance), progress=progress, desc=f"{_NAMES[rule]} permutations",
    )  # fmt: skip

    m = n_perms + 1
    p_gt = np.where(ct == 0, 1.0, (n_gt + 1) / m)
    p_lt = (n_le + 1) / m
    interaction = p_gt < p_lt
    p = np.where(interaction, p_gt, p_lt)
    sig = p < p_threshold
    sigval = np.where(sig, np.where(interaction, 1, -1), 0).astype(np.int8)
    missing = (n_from == 0) | (n_to == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = c1.ravel() / n_from
    floats = {"ct": ct, "p_gt": p_gt, "p_lt": p_lt, "p": p, "zscore": zscore, "conditional_ratio": cond}
    for v in floats.values():
        v[missing] = np.nan
    g, a, b = (x.ravel() for x in np.indices(shape))
    table = pd.DataFrame(
        {
            "image_id": pd.Categorical.from_codes(g, categories=list(groups.names)),
            "from_label": pd.Categorical.from_codes(a, categories=list(categories)),
            "to_label": pd.Categorical.from_codes(b, categories=list(categories)),
            **floats,
            "interaction": pd.arrays.BooleanArray(interaction, missing),
            "sig": pd.arrays.BooleanArray(sig, missing),
            "sigval": pd.arrays.IntegerArray(sigval, missing),
            "n_from": n_from.astype(np.int64),
            "n_to": n_to.astype(np.int64),
        }
    )[list(COLUMNS)]
    params = {
        "method": _NAMES[rule],
        "patch_size": None if patch_size is None else int(patch_size),
        "n_perms": int(n_perms),
        "seed": int(seed),
        "p_threshold": float(p_threshold),
        "tolerance": float(tolerance),
        "cluster_key": cluster_key,
        "library_key": library_key,
        "connectivity_key": obsp_key,
    }
    params = {k: v for k, v in params.items() if v is not None}
    if copy:
        table.attrs["params"] = params
        return table
    adata.uns[interaction_test_key(cluster_key)] = {"table": table, "params": params}
    return None


def interaction_summary(result: pd.DataFrame | Mapping[str, Any]) -> pd.DataFrame:
    """Summarise an :func:`interaction_test` table over images: histoCAT's summary heatmap input.

    Parameters
    ----------
    result
        The table returned by ``interaction_test(..., copy=True)``, or the dict stored in
        ``adata.uns[f"{cluster_key}_interaction_test"]``.

    Returns
    -------
    One row per ordered pair (``from_label``, ``to_label``), all pairs of the categories:
    ``n_images`` (images where both types are present, i.e. tested), ``frac_attraction`` and
    ``frac_avoidance`` (fractions of those images with ``sigval`` +1 and -1; NaN when
    ``n_images = 0``) and ``mean_zscore`` (mean of the finite z-scores).

    Examples
    --------
    >>> import pandas as pd
    >>> lab = pd.Categorical(["A", "A", "A"])
    >>> table = pd.DataFrame({"image_id": ["i1", "i2", "i3"], "from_label": lab, "to_label": lab,
    ...                       "sigval": pd.array([1, 0, None], dtype="Int8"), "zscore": [3.0, 1.0, None]})
    >>> print(interaction_summary(table).to_string(index=False))
    from_label to_label  n_images  frac_attraction  frac_avoidance  mean_zscore
             A        A         2              0.5             0.0          2.0
    """
    table = result["table"] if isinstance(result, Mapping) else result
    missing = [c for c in ("from_label", "to_label", "sigval", "zscore") if c not in table]
    if missing:
        raise ValueError(f"not an interaction_test table: columns {missing} are missing")
    tested = table[table["sigval"].notna()]
    sigval = tested["sigval"].astype(np.int64)
    grouped = pd.DataFrame(
        {
            "from_label": tested["from_label"],
            "to_label": tested["to_label"],
            "n_images": 1,
            "attraction": (sigval == 1).astype(np.float64),
            "avoidance": (sigval == -1).astype(np.float64),
            "zscore": tested["zscore"].where(np.isfinite(tested["zscore"])),
        }
    ).groupby(["from_label", "to_label"], observed=False, sort=True)
    out = pd.DataFrame(
        {
            "n_images": grouped["n_images"].sum().astype(np.int64),
            "frac_attraction": grouped["attraction"].mean(),
            "frac_avoidance": grouped["avoidance"].mean(),
            "mean_zscore": grouped["zscore"].mean(),
        }
    )
    return out.reset_index()


def _check_arguments(method: str, patch_size: int | None, p_threshold: float, tolerance: float) -> int:
    if not 0 < p_threshold <= 1:
        raise ValueError(f"p_threshold must be in (0, 1], got {p_threshold!r}")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if method not in _RULES:
        raise ValueError(
            f"method must be 'classic', 'histocat' (alias 'conditional') or 'patch', got {method!r}"
        )
    rule = _RULES[method]
    if rule == nk.PATCH:
        if patch_size is None:
            raise ValueError(
                "method='patch' needs patch_size: the minimum number of B neighbours of an A cell "
                "(an integer >= 1)"
            )
        if isinstance(patch_size, bool) or not isinstance(patch_size, int | np.integer) or patch_size < 1:
            raise ValueError(f"patch_size must be an integer >= 1, got {patch_size!r}")
    elif patch_size is not None:
        raise ValueError(f"patch_size is only used by method='patch' (got method={method!r})")
    return rule


def _warn_cross_image_edges(graph: sparse.csr_matrix, groups: Groups, library_key: str | None) -> None:
    """Warn when edges join images: they count in the image of their source cell."""
    if groups.n == 1:
        return
    rows = np.repeat(groups.codes, np.diff(graph.indptr))
    n_cross = int(np.count_nonzero(rows != groups.codes[graph.indices]))
    if n_cross:
        warnings.warn(
            f"{n_cross} edges of the spatial graph join cells of different images "
            f"(adata.obs[{library_key!r}]): they count in the image of their source cell. Rebuild the "
            f"graph per image, e.g. squidpy.gr.spatial_neighbors_knn(adata, library_key={library_key!r})",
            UserWarning,
            stacklevel=3,
        )
