"""Logic of the "Neighbourhood statistics" widget: run a statistic on one image, draw it, cells behind a pair.

Plain functions over an AnnData (no napari or Qt import):

- :func:`run_statistic` takes the cells of one image, builds a spatial graph
  (:func:`spatialpath.gr.spatial_graph`) and runs neighbourhood enrichment
  (:func:`spatialpath.gr.nhood_enrichment`), co-occurrence (:func:`spatialpath.gr.co_occurrence`) or
  the cross-type L function with its global envelope (:func:`spatialpath.gr.cross_function`), with a
  seed: the same inputs and seed give the same result;
- :func:`draw` draws the result into a matplotlib Figure (a heatmap of z-scores or of
  log2 co-occurrence ratios, or the L − r curves);
- :func:`pair_at` maps a click on that figure to a pair of cell types and :func:`cells_behind_pair`
  gives the cells behind a pair: the cells of type a with at least one graph neighbour of type b and
  the cells of type b with at least one neighbour of type a (an edge in either direction).

``callback(done, total, description)`` reports progress between permutation batches (it is called
from the computing thread); when it returns True the run stops there with :class:`Cancelled`.

Examples
--------
>>> from spatialpath.datasets import simulate_tissue
>>> adata = simulate_tissue(seed=0, n_cells=800).adata
>>> run = run_statistic(adata, "nhood_enrichment", "cell_type", params={"n_perms": 20}, seed=1)
>>> run.matrix().shape == (len(run.categories), len(run.categories))
True
>>> rows = highlight_rows(run, "Tumour", "CD8 T")
>>> set(adata.obs["cell_type"].iloc[rows]) <= {"Tumour", "CD8 T"}
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData

from spatialpath.gr._progress import Cancelled, ProgressCallback, progress_hook
from spatialpath.keys import Key
from spatialpath.model import DataModelError, validate_categorical

__all__ = [
    "DEFAULT_PARAMS",
    "STATISTICS",
    "Cancelled",
    "NhoodRun",
    "cells_behind_pair",
    "draw",
    "highlight_rows",
    "image_cells",
    "image_ids",
    "pair_at",
    "run_statistic",
]

#: the statistics the widget runs.
STATISTICS = ("nhood_enrichment", "co_occurrence", "cross_L")
#: parameters of :func:`run_statistic` and their defaults.
DEFAULT_PARAMS: Mapping[str, Any] = {
    "graph": "knn",  # knn | radius | delaunay (enrichment and the cells behind a pair)
    "n_neighbors": 6,
    "radius_um": 30.0,  # radius graph; the largest edge of a Delaunay graph
    "n_perms": 199,
    "analytical": False,
    "distance_um": 50.0,  # co-occurrence: the distance of the heatmap (and of the highlight graph)
    "max_distance_um": 250.0,  # co-occurrence: distances 10 .. this
    "n_distances": 50,
    "a": None,  # cross-L focal type (None: the first category)
    "b": None,  # cross-L target type(s) (None: every type present)
    "r_max_um": None,  # cross-L largest distance (None: spatstat's rule)
    "window": None,  # cross-L tissue window (None: the convex hull of the image's cells)
}


Callback = ProgressCallback


def _check(callback: Callback | None, done: int, total: int, desc: str) -> None:
    if callback is not None and callback(done, total, desc):
        raise Cancelled(f"cancelled ({desc})")


# -- data -------------------------------------------------------------------------------------------
def _library_key(adata: AnnData, library_key: str | None) -> str | None:
    if library_key is not None:
        if library_key not in adata.obs.columns:
            raise DataModelError(
                f"adata.obs[{library_key!r}] is missing; pass the column naming each cell's image"
            )
        return library_key
    return Key.obs.image_id if Key.obs.image_id in adata.obs.columns else None


def image_ids(adata: AnnData, library_key: str | None = None) -> list[str]:
    """The images of ``adata`` (values of ``obs["image_id"]`` or ``library_key``); ``[]`` without one."""
    key = _library_key(adata, library_key)
    return [] if key is None else sorted(adata.obs[key].astype(str).unique())


def image_cells(
    adata: AnnData, cluster_key: str, image_id: str | None = None, *, library_key: str | None = None
) -> tuple[AnnData, np.ndarray]:
    """The cells of one image as a light AnnData (types, ``obsm["spatial"]``) and their rows in ``adata``.

    Unused categories are dropped; ``image_id=None`` takes every cell when ``adata`` holds one image.

    Raises
    ------
    DataModelError
        If ``cluster_key`` is not a complete categorical column, the image is unknown or ambiguous,
        or the image has fewer than 2 cell types.
    """
    validate_categorical(adata, cluster_key, allow_empty_categories=True)
    key = _library_key(adata, library_key)
    if image_id is None:
        ids = image_ids(adata, library_key)
        if len(ids) > 1:
            raise DataModelError(f"adata holds {len(ids)} images ({ids[:5]}...); choose one with image_id")
        rows = np.arange(adata.n_obs)
        image_id = ids[0] if ids else None
    else:
        if key is None:
            raise DataModelError(f"image_id={image_id!r} given but adata has no obs['image_id'] column")
        rows = np.flatnonzero(adata.obs[key].astype(str).to_numpy() == str(image_id))
        if rows.size == 0:
            raise DataModelError(
                f"no cell has obs[{key!r}] == {image_id!r}; images: {image_ids(adata, key)[:10]}"
            )
    types = adata.obs[cluster_key].iloc[rows].cat.remove_unused_categories()
    if len(types.cat.categories) < 2:
        raise DataModelError(
            f"image {image_id!r} has {len(types.cat.categories)} cell type(s) in obs[{cluster_key!r}] "
            f"({list(types.cat.categories)}); a neighbourhood statistic needs at least 2"
        )
    obs = pd.DataFrame({cluster_key: types.to_numpy()}, index=adata.obs_names[rows])
    obs[cluster_key] = obs[cluster_key].astype(types.dtype)
    cells = ad.AnnData(obs=obs, obsm={Key.obsm.spatial: np.asarray(adata.obsm[Key.obsm.spatial])[rows, :2]})
    cells.uns["image_id"] = None if image_id is None else str(image_id)
    return cells, rows


def _graph(cells: AnnData, p: Mapping[str, Any], statistic: str) -> None:
    from spatialpath.gr import spatial_graph

    if statistic == "co_occurrence":  # the pairs behind the heatmap: cells within distance_um
        spatial_graph(cells, "radius", radius=float(p["distance_um"]), library_key=None)
    elif p["graph"] == "knn":
        spatial_graph(cells, "knn", n_neighbors=int(p["n_neighbors"]), library_key=None)
    elif p["graph"] == "radius":
        spatial_graph(cells, "radius", radius=float(p["radius_um"]), library_key=None)
    elif p["graph"] == "delaunay":
        spatial_graph(cells, "delaunay", max_distance=p["radius_um"], library_key=None)
    else:
        raise ValueError(f"params['graph'] must be 'knn', 'radius' or 'delaunay', got {p['graph']!r}")


@dataclass(frozen=True, eq=False)
class NhoodRun:
    """One run of :func:`run_statistic`.

    ``cells`` are the image's cells (with the graph of the highlights in ``obsp``), ``rows`` their
    rows in the input AnnData; ``result`` is the statistic's own result object
    (:class:`~spatialpath.gr.NhoodEnrichmentResult`, ``(occ, interval)`` or
    :class:`~spatialpath.gr.CrossFunctionResult`).
    """

    statistic: str
    cluster_key: str
    image_id: str | None
    seed: int
    params: dict[str, Any]
    cells: AnnData
    rows: np.ndarray
    categories: list[str]
    result: Any
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def matrix(self) -> np.ndarray:
        """The heatmap: enrichment z, or log2 co-occurrence ratio at ``distance_um`` (rows a, columns b)."""
        if self.statistic == "nhood_enrichment":
            return np.asarray(self.result.zscore, float)
        if self.statistic == "co_occurrence":
            occ, interval = self.result
            r = int(np.argmin(np.abs(interval[1:] - self.params["distance_um"])))
            with np.errstate(divide="ignore"):
                return np.log2(occ[:, :, r].T)  # occ[i, c]: neighbour i of a centre c -> rows c, columns i
        raise ValueError(f"{self.statistic} has curves, not a matrix")


def run_statistic(
    adata: AnnData,
    statistic: str,
    cluster_key: str = Key.obs.cell_type,
    image_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    *,
    library_key: str | None = None,
    callback: Callback | None = None,
) -> NhoodRun:
    """Run ``statistic`` on the cells of one image with ``seed``; see :data:`DEFAULT_PARAMS` for ``params``.

    Parameters
    ----------
    adata
        Cells with a categorical ``obs[cluster_key]`` and ``obsm["spatial"]`` in µm.
    statistic
        ``"nhood_enrichment"`` (z-scores of graph edges between types under random labelling),
        ``"co_occurrence"`` (squidpy's ratio) or ``"cross_L"`` (L_ab − r with its global envelope).
    cluster_key, image_id, library_key
        The cell-type column and the image (see :func:`image_cells`).
    params
        Overrides of :data:`DEFAULT_PARAMS`; unknown names are refused.
    seed
        Seed of the permutations: the same seed gives the same result.
    callback
        ``callback(done, total, description)``, called between permutation batches from the
        computing thread; returning True stops the run with :class:`Cancelled`.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    unknown = set(params or {}) - set(DEFAULT_PARAMS)
    if unknown:
        raise ValueError(f"unknown params {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}")
    p = {**DEFAULT_PARAMS, **(params or {})}
    cells, rows = image_cells(adata, cluster_key, image_id, library_key=library_key)
    cats = [str(c) for c in cells.obs[cluster_key].cat.categories]
    image = cells.uns["image_id"]
    _check(callback, 0, 0, "spatial graph")
    _graph(cells, p, statistic)
    pairs: list[tuple[str, str]] = []
    with progress_hook(callback):
        if statistic == "nhood_enrichment":
            from spatialpath.gr import nhood_enrichment

            result = nhood_enrichment(
                cells, cluster_key, library_key=None, n_perms=int(p["n_perms"]), seed=int(seed),
                analytical=bool(p["analytical"]), patient_key=None, progress=callback is not None, copy=True,
            )  # fmt: skip
        elif statistic == "co_occurrence":
            from spatialpath.gr import co_occurrence

            interval = np.linspace(10.0, float(p["max_distance_um"]), int(p["n_distances"]))
            result = co_occurrence(cells, cluster_key, interval=interval, library_key=None, copy=True)
        else:
            from spatialpath.gr import cross_function

            a = p["a"] if p["a"] is not None else cats[0]
            b = p["b"] if p["b"] is not None else cats
            result = cross_function(
                cells, cluster_key, "L", a, b, r_max=p["r_max_um"], window=p["window"], library_key=None,
                n_perms=int(p["n_perms"]), seed=int(seed), progress=callback is not None, copy=True,
            )  # fmt: skip
            pairs = [tuple(x) for x in result.pairs]
    _check(callback, 1, 1, "done")
    return NhoodRun(statistic, cluster_key, image, int(seed), p, cells, rows, cats, result, pairs)


def cells_behind_pair(
    adata: AnnData, cluster_key: str, a: str, b: str, *, connectivity_key: str = "spatial"
) -> np.ndarray:
    """Rows of the cells behind (a, b): a cells with a graph neighbour of type b, b cells with one of type a.

    Neighbours are the ends of stored edges of ``obsp[f"{connectivity_key}_connectivities"]`` in
    either direction. Sorted int64 row indices.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> from scipy import sparse
    >>> a = ad.AnnData(obs=pd.DataFrame({"t": pd.Categorical(list("ABAB"))}, index=list("0123")))
    >>> a.obsp["spatial_connectivities"] = sparse.csr_matrix(([1.0, 1.0], ([0, 2], [1, 0])), shape=(4, 4))
    >>> cells_behind_pair(a, "t", "A", "B").tolist()  # edge 0-1 joins A and B; 2-0 joins A and A
    [0, 1]
    """
    validate_categorical(adata, cluster_key, allow_empty_categories=True)
    cats = [str(c) for c in adata.obs[cluster_key].cat.categories]
    for name, t in (("a", a), ("b", b)):
        if str(t) not in cats:
            raise DataModelError(f"{name}={t!r} is not a category of obs[{cluster_key!r}]: {cats}")
    obsp_key = (
        connectivity_key
        if connectivity_key.endswith("_connectivities")
        else f"{connectivity_key}_connectivities"
    )
    if obsp_key not in adata.obsp:
        raise DataModelError(f"adata.obsp[{obsp_key!r}] is missing: run spatialpath.gr.spatial_graph first")
    graph = adata.obsp[obsp_key].tocoo()
    codes = adata.obs[cluster_key].cat.codes.to_numpy()
    ia, ib = cats.index(str(a)), cats.index(str(b))
    src, dst = codes[graph.row], codes[graph.col]
    hit = ((src == ia) & (dst == ib)) | ((src == ib) & (dst == ia))
    return np.unique(np.concatenate([graph.row[hit], graph.col[hit]])).astype(np.int64)


def highlight_rows(run: NhoodRun, a: str, b: str) -> np.ndarray:
    """:func:`cells_behind_pair` on the run's image, as rows of the AnnData the run was given."""
    return run.rows[cells_behind_pair(run.cells, run.cluster_key, a, b)]


def draw(run: NhoodRun, figure: Any) -> Any:
    """Draw ``run`` into a matplotlib ``figure`` (cleared first) and return the axes.

    Enrichment: the z-score heatmap (:func:`spatialpath.pl.nhood_heatmap`); co-occurrence: log2
    ratio at ``distance_um``; cross-L: ``L − r`` with the global envelope
    (:func:`spatialpath.pl.cross_function_curves`). Only the object-oriented API is used, so the
    figure may belong to any canvas.
    """
    figure.clear()
    ax = figure.add_subplot()
    title = f"image {run.image_id}, seed {run.seed}"
    if run.statistic == "nhood_enrichment":
        from spatialpath.pl import nhood_heatmap

        nhood_heatmap(run.result, ax=ax)
        ax.set_title(f"neighbourhood enrichment (z), {title}", fontsize=9)
    elif run.statistic == "co_occurrence":
        m = run.matrix()
        finite = m[np.isfinite(m)]
        top = float(np.abs(finite).max()) if finite.size else 1.0
        im = ax.imshow(np.clip(m, -top, top), cmap="RdBu_r", vmin=-(top or 1), vmax=top or 1)
        k = len(run.categories)
        ax.set_xticks(range(k), run.categories, rotation=45, ha="right")
        ax.set_yticks(range(k), run.categories)
        ax.set_xlabel("neighbour type (b)")
        ax.set_ylabel("cell type (a)")
        figure.colorbar(im, ax=ax, label="log2 co-occurrence ratio", shrink=0.8)
        ax.set_title(f"co-occurrence within {run.params['distance_um']:g} µm, {title}", fontsize=9)
    else:
        from spatialpath.pl import cross_function_curves

        cross_function_curves(run.result, run.pairs[:12], ax=ax)
        ax.set_title(f"cross-L with global envelope, {title}", fontsize=9)
    return ax


def pair_at(run: NhoodRun, x: float | None, y: float | None) -> tuple[str, str] | None:
    """The pair of cell types under a click at data coordinates ``(x, y)`` of :func:`draw`'s axes.

    Heatmaps: row ``round(y)`` is a, column ``round(x)`` is b. Curves: the pair whose drawn curve
    (L − r) is nearest to ``y`` at the distance nearest to ``x``. None outside.

    >>> from spatialpath.datasets import simulate_tissue
    >>> run = run_statistic(simulate_tissue(seed=0, n_cells=500).adata, "nhood_enrichment",
    ...                     params={"analytical": True})  # fmt: skip
    >>> pair_at(run, 1.2, 0.1) == (run.categories[0], run.categories[1])
    True
    """
    if x is None or y is None or not (np.isfinite(x) and np.isfinite(y)):
        return None
    if run.statistic != "cross_L":
        k = len(run.categories)
        i, j = int(np.rint(y)), int(np.rint(x))
        return (run.categories[i], run.categories[j]) if 0 <= i < k and 0 <= j < k else None
    r = run.result.r
    at = int(np.argmin(np.abs(r - x)))
    best, pair = np.inf, None
    for a, b in run.pairs[:12]:
        curve = run.result.curve(a, b)
        value = float(curve["observed"].iloc[at] - curve["theoretical"].iloc[at])
        if np.isfinite(value) and abs(value - y) < best:
            best, pair = abs(value - y), (a, b)
    return pair
