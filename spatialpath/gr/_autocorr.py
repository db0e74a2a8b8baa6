"""Moran's I and Geary's C of many features at once, per image, with analytic and permutation nulls.

All features of a chunk share one pass over the edges of the graph (a sparse–dense product
``W @ Z`` fused with the per-image sums). The analytic variances are Cliff & Ord's under normality
and under randomisation (the exact variance over all permutations of the values; Geary's as
pysal esda); the permutation null permutes the **values** over the cells of each image with the
engine of :mod:`spatialpath.gr._permutation`, one image at a time (seeded by image id).
Definitions, derivations and squidpy's defects: ``docs/spatial-autocorrelation.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from spatialpath.gr import _autocorr_kernels as kern
from spatialpath.gr._multitest import bh_qvalues
from spatialpath.gr._permutation import permutation_test
from spatialpath.gr._utils import (
    Groups,
    connectivity_obsp_key,
    default_library_key,
    get_graph,
    image_groups,
    image_seed,
)
from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["CHUNK_BYTES", "CONSTANT_RTOL", "TIE_TOLERANCE", "spatial_autocorr"]

_STAT = {"moran": "I", "geary": "C"}
_UNS = {"moran": Key.uns.moran, "geary": Key.uns.geary}
#: features per chunk: about this many bytes per dense (cells × features) float64 block.
CHUNK_BYTES = 2**29
#: a permuted statistic within this of the observed one counts as a tie (rounding of the sums).
TIE_TOLERANCE = float(np.sqrt(np.finfo(np.float64).eps))
#: a feature is constant in an image when its sum of squares is ≤ this × n × max|x|².
CONSTANT_RTOL = 1e-24


def _features(adata: AnnData, features: Any, layer: str | None, attr: str) -> tuple[Any, Any, list[str]]:
    """The values (array, CSC matrix), the column of each feature in them (or None), the names."""
    if features is not None:
        features = [features] if isinstance(features, str) else [str(f) for f in features]
        dup = pd.Index(features)[pd.Index(features).duplicated()].unique().tolist()
        if not features or dup:
            raise ValueError(f"features is empty or has duplicates {dup[:5]}: pass distinct names, or None")
    if attr == "obs":
        if layer is not None:
            raise ValueError(f"layer={layer!r} applies to attr='X' only; obs columns have no layers")
        obs = adata.obs
        names = features or [str(c) for c in obs if pd.api.types.is_numeric_dtype(obs[c])
                             and not pd.api.types.is_bool_dtype(obs[c])]  # fmt: skip
        missing = [c for c in names if c not in obs or not pd.api.types.is_numeric_dtype(obs[c])]
        if not names or missing:
            raise DataModelError(
                f"features {missing[:5]} are not numeric columns of adata.obs (numeric columns: "
                f"{[str(c) for c in obs.select_dtypes('number').columns[:5]]}); for cell types use "
                "spatialpath.gr.nhood_enrichment"
            )
        return np.column_stack([obs[c].to_numpy(np.float64, na_value=np.nan) for c in names]), None, names
    if layer is not None and layer not in adata.layers:
        raise DataModelError(f"adata.layers[{layer!r}] is missing; layers: {list(adata.layers)[:10]}")
    values = adata.X if layer is None else adata.layers[layer]
    if values is None:
        raise DataModelError("adata.X is None: pass layer=... or attr='obs'")
    names, idx = [str(v) for v in adata.var_names], None
    if features is not None:
        if not adata.var_names.is_unique:
            raise DataModelError("adata.var_names are not unique: run adata.var_names_make_unique() first")
        names, idx = features, adata.var_names.get_indexer(features)
        missing = [f for f, i in zip(names, idx, strict=True) if i < 0]
        if missing:
            raise DataModelError(
                f"features {missing[:5]} ({len(missing)} in all) are not in adata.var_names (e.g. "
                f"{[str(v) for v in adata.var_names[:5]]}); for obs columns pass attr='obs'"
            )
    if sparse.issparse(values):  # one sparse copy of the selected columns, cheap to slice by column
        return sparse.csc_matrix(values if idx is None else values[:, idx]), None, names
    return values, idx, names


def _block(values: Any, idx: np.ndarray | None, cols: slice) -> np.ndarray:
    """The (cells × chunk) values of the features ``cols``, dense, C-ordered, in their own dtype."""
    if sparse.issparse(values):
        block = values[:, cols].toarray()
    else:
        values = np.asarray(values)
        sel = np.arange(cols.start, cols.stop) if idx is None else idx[cols]
        if values.flags.c_contiguous and np.array_equal(sel, np.arange(values.shape[1])):
            block = values  # every column in order: no copy
        else:  # np.take: many times faster than copying a strided view
            block = np.take(values, sel, 1)
    if block.dtype not in (np.float32, np.float64) and block.dtype.kind not in "iu":
        block = block.astype(np.float64)  # bool, float16...: types the numba kernels do not take
    return np.ascontiguousarray(block)


def _weights(adata: AnnData, key: str, groups: Groups) -> sparse.csr_matrix:
    """The stored float64 CSR weights, checked (finite, ≥ 0, no self-loop, no edge between images)."""
    w = get_graph(adata, key).astype(np.float64)
    w.sum_duplicates()
    if not np.isfinite(w.data).all() or (w.data < 0).any():
        raise DataModelError(f"adata.obsp[{key!r}] has negative or non-finite weights: weights must be ≥ 0")
    if loops := np.count_nonzero(w.diagonal()):
        raise DataModelError(
            f"adata.obsp[{key!r}] has {loops} self-loops (w_ii ≠ 0), which the Cliff–Ord moments exclude: "
            "rebuild the graph without them (squidpy: set_diag=False) or g.setdiag(0); g.eliminate_zeros()"
        )
    if groups.n > 1:
        rows = np.repeat(groups.codes, np.diff(w.indptr))
        if cross := int(np.count_nonzero((rows != groups.codes[w.indices]) & (w.data != 0))):
            raise DataModelError(
                f"{cross} edges of adata.obsp[{key!r}] join cells of different images: each image's "
                "statistic uses its own cells only. Build the graph per image, e.g. "
                "spatialpath.gr.knn_graph(adata, library_key=...)"
            )
    return w


def _permute(out, cols, x, images, valid, groups: Groups, mode, alternative, n_perms, seed, progress) -> None:
    """Fill ``out[k][g, cols]`` with each image's permutation mean, variance, p and observed value.

    Each image runs its own permutation test, seeded by :func:`~spatialpath.gr._utils.image_seed`
    and computed from the image's own values and weights only (``kern.image_graphs``); labels are
    cell indices, so permuting them permutes the values over the image's cells.
    """
    for g, (image, (rows, w)) in enumerate(zip(groups.names, images, strict=True)):
        if not valid[g].any():
            continue
        z = x[rows].astype(np.float64)
        z -= z.mean(axis=0)
        n_g, s0, m2 = len(rows), w.data.sum(), (z * z).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = n_g / (s0 * m2) if mode == "moran" else (n_g - 1) / (2 * s0 * m2)
        one = Groups([image], np.zeros(n_g, np.int32), np.arange(n_g), np.array([0, n_g]))
        labels = np.arange(n_g, dtype=np.int32 if n_g < 2**31 else np.int64)
        args = (w.indptr, w.indices, w.data, one.codes, z, np.where(valid[g], scale, 0.0), mode == "geary")
        res = permutation_test(
            kern.perm_kernel, labels, one, args, z.shape[1], n_perms=n_perms, seed=image_seed(seed, image),
            tolerance=TIE_TOLERANCE, progress=progress, desc=f"spatial_autocorr {mode} {image}",
        )  # fmt: skip
        for k, v in {
            "mean": res.mean,
            "var": res.var,
            "p": res.pvalue(alternative),
            "obs": res.observed,
        }.items():
            out[k][g, cols] = np.where(valid[g], v, np.nan)


def _check_args(mode: str, attr: str, alternative: str, n_perms: int | None, groups: Groups, lib) -> None:
    if mode not in _STAT:
        raise ValueError(f"mode must be 'moran' or 'geary', got {mode!r}")
    if attr not in ("X", "obs"):
        raise ValueError(f"attr must be 'X' (adata.X or a layer) or 'obs' (numeric columns), got {attr!r}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    if n_perms is not None and (isinstance(n_perms, bool) or not isinstance(n_perms, int | np.integer)
                                or n_perms < 1):  # fmt: skip
        raise ValueError(f"n_perms must be None (no permutations) or a positive integer, got {n_perms!r}")
    if small := [(g, int(s)) for g, s in zip(groups.names, groups.sizes(), strict=True) if s < 4]:
        raise DataModelError(
            f"images with fewer than 4 cells {small[:5]} (adata.obs[{lib!r}]): the randomisation "
            "variance needs n > 3; drop those images' cells first"
        )


def spatial_autocorr(
    adata: AnnData,
    mode: Literal["moran", "geary"] = "moran",
    *,
    features: str | Sequence[str] | None = None,
    layer: str | None = None,
    attr: Literal["X", "obs"] = "X",
    connectivity_key: str = "spatial",
    library_key: str | None = None,
    transformation: bool = True,
    n_perms: int | None = None,
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
    seed: int = 0,
    copy: bool = False,
    progress: bool = True,
) -> pd.DataFrame | None:
    """Moran's I or Geary's C of many features, per image, with analytic and permutation p-values.

    In each image and for each feature x, with ``z = x − mean(x)`` over the image's n cells, W the
    graph's weights within the image and ``S0 = Σ w_ij``:

    - ``mode="moran"``: ``I = n / S0 · Σ w_ij z_i z_j / Σ z_i²``, expected ``−1 / (n − 1)``;
    - ``mode="geary"``: ``C = (n − 1) / (2 S0) · Σ w_ij (x_i − x_j)² / Σ z_i²``, expected 1.

    Positive autocorrelation (neighbours alike) is ``I > E[I]`` but ``C < 1``. The null hypothesis
    is that the values are exchangeable over the cells of the image: the normal p-values use
    Cliff & Ord's variance under normality (``var_norm``) or the exact permutation variance
    (``var_rand``); with ``n_perms`` the values are also permuted (squidpy shuffles the rows of W
    instead, a miscalibrated null: see ``docs/spatial-autocorrelation.md``).

    Parameters
    ----------
    adata
        Cells with a spatial graph in ``obsp[f"{connectivity_key}_connectivities"]``
        (:func:`spatialpath.gr.knn_graph` or squidpy's) with weights ≥ 0, no self-loop and no edge
        between two images.
    mode
        ``"moran"`` (writes ``uns["moranI"]``) or ``"geary"`` (``uns["gearyC"]``).
    features
        ``var_names`` (``attr="X"``; default all: squidpy defaults to the highly variable genes)
        or numeric ``obs`` columns (``attr="obs"``; default all numeric non-boolean columns).
    layer
        Read ``adata.layers[layer]`` instead of ``adata.X``. Sparse values are densified one
        chunk of features (:data:`CHUNK_BYTES` as float64) at a time.
    attr
        ``"X"`` (``adata.X`` or ``layer``) or ``"obs"``.
    connectivity_key
        Prefix (or full key) of the graph in ``adata.obsp``.
    library_key
        Column naming the image of each cell; default ``obs["image_id"]`` when present, else all
        cells form one image. Each image uses its own cells, mean and edges only.
    transformation
        Row-normalise W (rows divided by their sum; empty rows stay 0), as squidpy's ``True`` and
        pysal's ``"R"``; ``False`` uses the stored weights. W is float64 (squidpy keeps float32).
    n_perms
        Permutations of the values within each image; ``None`` for analytic p-values only. Each
        image is permuted on its own, its cells in ``obs_names`` order: its permutation columns
        depend on its own cells, values and edges and on ``(seed, image id)`` only, never on the
        other images in the call nor on the order of the AnnData's rows.
    alternative
        ``"greater"`` (statistic above its expectation), ``"less"`` or ``"two-sided"`` (twice the
        smaller one-sided p, capped at 1: ``pval_norm`` is then squidpy's with ``two_tailed=True``;
        squidpy's default is the smaller one-sided p). Positive autocorrelation is ``"greater"``
        for Moran and ``"less"`` for Geary.
    seed
        Seed of the permutations (image ``g`` uses ``image_seed(seed, g)``); results do not depend
        on the number of threads.
    copy
        Return the table instead of writing ``adata.uns``.
    progress
        Show a progress bar over the permutations.

    Returns
    -------
    With ``copy=True`` a DataFrame, else ``None`` and the DataFrame in ``adata.uns["moranI"]`` or
    ``adata.uns["gearyC"]``: with one image indexed by feature (squidpy's layout), with several a
    long table starting with a ``library_key`` column and ``feature``. Rows are sorted by the
    statistic within each image (Moran descending, Geary ascending, NaN last, as squidpy). Columns:

    - ``I`` or ``C``, ``pval_norm``, ``var_norm``; with ``n_perms``: ``pval_z_sim`` (normal p of
        ``z_sim``), ``pval_sim`` (``(count + 1) / (n_perms + 1)``), ``var_sim`` (ddof 0): squidpy's;
    - ``expected``, ``z_norm``, ``var_rand``, ``z_rand``, ``pval_rand``, ``z_sim`` (with
        ``n_perms``) and ``n_cells``;
    - ``<p>_fdr_bh``: Benjamini–Hochberg q-values of each p column over the image's features.

    ``df.attrs["params"]`` holds ``mode``, ``alternative``, ``n_perms``, ``seed``,
    ``transformation``, ``connectivity_key``, ``library_key``, ``attr``, ``layer`` and ``images``.
    A feature constant in an image (Σ z² ≤ :data:`CONSTANT_RTOL` · n · max|x|²) has no defined
    autocorrelation: its statistic, z-scores, p-values (left out of the FDR) and variances except
    ``var_norm`` (a function of W only) are NaN there. An image without edges is NaN throughout
    (with a warning).

    Raises
    ------
    ValueError
        For an unknown ``mode``, ``attr`` or ``alternative``, a bad ``n_perms``, empty or
        duplicated ``features``, or ``layer`` with ``attr="obs"``.
    spatialpath.model.DataModelError
        For unknown or non-numeric features, NaN or infinite values, an image with fewer than 4
        cells, a missing graph or one built for other cells, edges between images, self-loops,
        negative or non-finite weights.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> from spatialpath.gr import knn_graph
    >>> adata = simulate_tissue(seed=0, n_cells=1000).adata
    >>> knn_graph(adata, n_neighbors=6)
    >>> df = spatial_autocorr(adata, features=["panCK", "CD3"], n_perms=99, progress=False, copy=True)
    >>> df.columns[:6].tolist()
    ['I', 'pval_norm', 'var_norm', 'pval_z_sim', 'pval_sim', 'var_sim']
    >>> bool((df["I"] > df["expected"]).all()), df["pval_sim"].tolist()  # markers cluster in space
    (True, [0.02, 0.02])
    >>> spatial_autocorr(adata, "geary", alternative="less", progress=False)
    >>> c = adata.uns["gearyC"]
    >>> c.shape, bool(c.loc["panCK", "C"] < 1), c.attrs["params"]["alternative"]
    ((12, 11), True, 'less')
    """
    library_key = default_library_key(adata, library_key)
    groups = image_groups(adata, library_key)
    _check_args(mode, attr, alternative, n_perms, groups, library_key)
    values, idx, names = _features(adata, features, layer, attr)
    key = connectivity_obsp_key(connectivity_key)
    w = raw = _weights(adata, key, groups)
    if transformation:  # keep the stored weights for the per-image permutations
        w = kern.row_normalise(raw.copy() if n_perms else raw)
    images = kern.image_graphs(adata, raw, groups, transformation) if n_perms else []
    s0, s1, s2, d = kern.graph_moments(w, groups)
    if (s0 <= 0).any():
        empty = [g for g, s in zip(groups.names, s0[:, 0], strict=True) if s <= 0]
        warnings.warn(f"images {empty[:5]} have no edges in adata.obsp[{key!r}]: their statistics are NaN",
                      UserWarning, stacklevel=2)  # fmt: skip
    n, sizes = adata.n_obs, groups.sizes().astype(np.float64)[:, None]
    out = {
        k: np.full((groups.n, len(names)), np.nan) for k in ("stat", "m2", "m4", "mean", "var", "p", "obs")
    }
    step = max(1, CHUNK_BYTES // (8 * n))
    for start in range(0, len(names), step):
        cols = slice(start, min(len(names), start + step))
        x = _block(values, idx, cols)
        out["stat"][:, cols], out["m2"][:, cols], out["m4"][:, cols], valid = _chunk(
            x, names[cols], w, d, groups, sizes, s0, mode
        )
        if n_perms:
            _permute(out, cols, x, images, valid, groups, mode, alternative, int(n_perms), seed, progress)
    with np.errstate(divide="ignore", invalid="ignore"):
        moments = kern.variances(mode, sizes, s0, s1, s2, sizes * out["m4"] / out["m2"] ** 2)
    df = _table(_columns(mode, out, *moments, s0, groups, alternative, n_perms), names, groups, library_key,
                mode)  # fmt: skip
    df.attrs["params"] = {"mode": mode, "alternative": alternative, "n_perms": n_perms, "seed": int(seed),
                          "transformation": bool(transformation), "connectivity_key": key,
                          "library_key": library_key, "attr": attr, "layer": layer,
                          "images": list(groups.names)}  # fmt: skip
    if copy:
        return df
    adata.uns[_UNS[mode]] = df
    return None


def _chunk(x: np.ndarray, names: list[str], w, d, groups: Groups, sizes, s0, mode: str) -> tuple:
    """Statistic, Σ z², Σ z⁴ and validity ``(G, F)`` of one chunk of features."""
    nb = kern.block_count(x.shape[0], groups.n, x.shape[1])
    sums, top, bad = kern.column_sums(x, groups.codes, groups.n, nb)
    if bad.any():
        which = [names[b] for b in np.flatnonzero(bad.sum(axis=0))]
        raise DataModelError(
            f"features {which[:5]} ({len(which)} in all in this chunk) have NaN or infinite values: "
            "impute them or drop those cells or features first"
        )
    means = sums / sizes
    cross, m2, m4, dz = kern.cross_sums(x, means, groups.codes, d, w.indptr, w.indices, w.data, nb)
    valid = (m2 > CONSTANT_RTOL * sizes * top.max(axis=0) ** 2) & (s0 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "moran":
            scale, num = np.where(valid, sizes / (s0 * m2), 0.0), cross
        else:  # Σ w_ij (z_i − z_j)² = Σ_i (w_i· + w_·i) z_i² − 2 Σ w_ij z_i z_j
            scale, num = np.where(valid, (sizes - 1) / (2 * s0 * m2), 0.0), dz - 2 * cross
    return np.where(valid, num * scale, np.nan), m2, m4, valid


def _columns(mode, out, expected, var_norm, var_rand, s0, groups, alternative, n_perms) -> dict:
    """The output columns ``(G, F)``: squidpy's, then ours, then the BH q-values."""
    stat = out["stat"]
    var_norm = np.where(s0 > 0, np.broadcast_to(var_norm, stat.shape), np.nan)
    var_rand = np.where(np.isfinite(stat), np.maximum(var_rand, 0.0), np.nan)
    z_norm, z_rand = kern.zscore(stat, expected, var_norm), kern.zscore(stat, expected, var_rand)
    z_sim = kern.zscore(out["obs"], out["mean"], out["var"])
    cols = {_STAT[mode]: stat, "pval_norm": kern.normal_p(z_norm, alternative), "var_norm": var_norm}
    if n_perms:
        cols |= {"pval_z_sim": kern.normal_p(z_sim, alternative), "pval_sim": out["p"], "var_sim": out["var"]}
    cols |= {"expected": np.broadcast_to(expected, stat.shape), "z_norm": z_norm, "var_rand": var_rand,
             "z_rand": z_rand, "pval_rand": kern.normal_p(z_rand, alternative)}  # fmt: skip
    if n_perms:
        cols["z_sim"] = z_sim
    cols["n_cells"] = np.broadcast_to(groups.sizes()[:, None], stat.shape)
    for pv in [c for c in cols if c.startswith("pval")]:
        cols[f"{pv}_fdr_bh"] = bh_qvalues(cols[pv][:, None, :])[:, 0, :]
    return cols


def _table(cols: dict[str, np.ndarray], names: list[str], groups: Groups, library_key, mode) -> pd.DataFrame:
    """One frame per image, sorted as squidpy; one image: indexed by feature, else a long table."""
    frames = [
        pd.DataFrame({c: np.asarray(v[g]) for c, v in cols.items()}, index=pd.Index(names)).sort_values(
            _STAT[mode], ascending=mode == "geary", kind="mergesort", na_position="last"
        )
        for g in range(groups.n)
    ]
    if groups.n == 1:
        return frames[0]
    long = pd.concat(frames, keys=range(groups.n), names=["_image", "feature"]).reset_index()
    long.insert(0, library_key, pd.Categorical.from_codes(long.pop("_image"), groups.names))
    return long
