"""Neighbourhood enrichment: edges between cell types against within-image label permutation.

``count[a, b]`` is squidpy's statistic: the number of stored edges ``i -> j`` of the spatial graph
with ``label(i) = a`` and ``label(j) = b``. It is computed per image (``library_key``) and compared
with its distribution when the labels are permuted within each image, either by permutation (the
engine of :mod:`spatialpath.gr._permutation`) or exactly (:mod:`spatialpath.gr._nhood_analytic`).
Pooled (cohort) and per-patient counts are sums over images, tested against the same
permutations. Definitions, null model and derivations: ``docs/nhood-enrichment.md``.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numba
import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from spatialpath.gr._counts import pair_counts_args, pair_counts_kernel
from spatialpath.gr._layout import renumber_graph, spatial_order
from spatialpath.gr._multitest import bh_qvalues
from spatialpath.gr._nhood_analytic import NORMAL_MIN_EXPECTED, analytic_levels, cells_per_image, sum_by
from spatialpath.gr._nhood_conditional import conditional_fields
from spatialpath.gr._permutation import permutation_test
from spatialpath.gr._utils import (
    Groups,
    check_coordinates,
    check_min_cells,
    connectivity_obsp_key,
    default_library_key,
    get_graph,
    image_groups,
    label_codes,
)
from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["NORMAL_MIN_EXPECTED", "NhoodEnrichmentResult", "nhood_enrichment"]

_STATS = ("count", "expected", "variance", "log2_ratio", "zscore", "pvalue", "qvalue")
_LEVELS = ("image", "patient", "cohort")


@dataclass(frozen=True)
class NhoodEnrichmentResult:
    """What :func:`nhood_enrichment` returns with ``copy=True``: the ``uns`` arrays and a tidy table.

    Unsuffixed arrays are ``(K, K)`` and pooled over images (the cohort level, squidpy's
    ``zscore`` and ``count``); ``*_per_image`` are ``(G, K, K)`` in the order of ``images``;
    ``*_per_patient`` are ``(P, K, K)`` in the order of ``patients`` (``None`` without patients).
    Axis 1 (rows) is the source type ``a``, axis 2 the target type ``b``, both in the order of
    ``categories``.
    """

    categories: list[str]
    images: list[str]
    count: np.ndarray
    expected: np.ndarray
    variance: np.ndarray
    log2_ratio: np.ndarray
    zscore: np.ndarray
    pvalue: np.ndarray
    qvalue: np.ndarray
    n_cells: np.ndarray
    count_per_image: np.ndarray
    expected_per_image: np.ndarray
    variance_per_image: np.ndarray
    log2_ratio_per_image: np.ndarray
    zscore_per_image: np.ndarray
    pvalue_per_image: np.ndarray
    qvalue_per_image: np.ndarray
    n_cells_per_image: np.ndarray
    params: dict[str, Any]
    patients: list[str] | None = None
    image_patient: list[str] | None = None
    n_images_per_patient: np.ndarray | None = None
    count_per_patient: np.ndarray | None = None
    expected_per_patient: np.ndarray | None = None
    variance_per_patient: np.ndarray | None = None
    log2_ratio_per_patient: np.ndarray | None = None
    zscore_per_patient: np.ndarray | None = None
    pvalue_per_patient: np.ndarray | None = None
    qvalue_per_patient: np.ndarray | None = None
    n_cells_per_patient: np.ndarray | None = None
    #: COZI statistics with ``conditional=True`` (see :mod:`spatialpath.gr._nhood_conditional`).
    conditional_count: np.ndarray | None = None
    conditional_ratio: np.ndarray | None = None
    conditional_count_per_image: np.ndarray | None = None
    conditional_ratio_per_image: np.ndarray | None = None
    conditional_zscore_per_image: np.ndarray | None = None
    conditional_pvalue_per_image: np.ndarray | None = None

    @property
    def counts(self) -> np.ndarray:
        """The pooled counts under squidpy's ``NhoodEnrichmentResult`` name."""
        return self.count

    def to_uns(self) -> dict[str, Any]:
        """The dictionary written to ``adata.uns[f"{cluster_key}_nhood_enrichment"]`` (no ``None``)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            if isinstance(value, list):
                value = np.asarray(value, dtype=object)
            out[key] = value
        out["count"] = np.minimum(self.count, np.iinfo(np.uint32).max).astype(np.uint32)  # squidpy dtype
        return out

    @cached_property
    def table(self) -> pd.DataFrame:
        """Long table, one row per (level, unit, type a, type b).

        Columns: ``level`` (``image``, ``patient``, ``cohort``), ``image_id``, ``patient_id``
        (missing above their level), ``n_images``, ``cell_type`` (a, source), ``cell_type_b``
        (target), ``n_a``, ``n_b`` (cells of each type in the unit), ``count``, ``expected``,
        ``log2_ratio``, ``zscore``, ``pvalue``, ``qvalue`` and, for ``analytical=True``,
        ``normal_ok`` (expected ≥ :data:`NORMAL_MIN_EXPECTED`).
        """
        k, n_img = len(self.categories), len(self.images)
        units = [
            ("image", "_per_image", list(self.images), self.image_patient or [None] * n_img, [1] * n_img)
        ]
        if self.patients is not None:
            npat = len(self.patients)
            units.append(("patient", "_per_patient", [None] * npat, self.patients, self.n_images_per_patient))
        units.append(("cohort", "", [None], [None], [n_img]))

        def stack(name: str, per_pair: bool = True) -> np.ndarray:
            shape = (-1, k, k) if per_pair else (-1, k)
            return np.concatenate([np.reshape(getattr(self, name + u[1]), shape) for u in units])

        n_cells = stack("n_cells", per_pair=False)
        cats = np.asarray(self.categories, dtype=object)
        table = pd.DataFrame(
            {
                "level": np.repeat(np.concatenate([[u[0]] * len(u[2]) for u in units]), k * k),
                "image_id": np.repeat(np.concatenate([np.asarray(u[2], object) for u in units]), k * k),
                "patient_id": np.repeat(np.concatenate([np.asarray(u[3], object) for u in units]), k * k),
                "n_images": np.repeat(np.concatenate([np.asarray(u[4], np.int64) for u in units]), k * k),
                "cell_type": np.tile(np.repeat(cats, k), len(n_cells)),
                "cell_type_b": np.tile(np.tile(cats, k), len(n_cells)),
                "n_a": np.repeat(n_cells, k, axis=1).ravel(),
                "n_b": np.tile(n_cells, k).ravel(),
                **{s: stack(s).ravel() for s in _STATS if s != "variance"},
            }
        )
        if self.params.get("analytical"):
            table["normal_ok"] = table["expected"] >= NORMAL_MIN_EXPECTED
        table["level"] = pd.Categorical(table["level"], categories=_LEVELS)
        for col in ("cell_type", "cell_type_b"):
            table[col] = pd.Categorical(table[col], categories=self.categories)
        return table


@numba.njit(nogil=True)
def _nhood_kernel(labels, args, out):
    """Per-image counts (``pair_counts_kernel``), then each image's block added to its sums."""
    indptr, indices, row_base, k, n_image_stats, kk, targets = args  # flat: parfor refuses nested tuples
    pair_counts_kernel(labels, (indptr, indices, row_base, k), out[:n_image_stats])
    for g in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            dst = targets[g, t]
            if dst >= 0:
                for s in range(kk):
                    out[dst + s] += out[g * kk + s]


def _patients(adata: AnnData, patient_key: str | None, groups: Groups) -> tuple[list[str], np.ndarray] | None:
    """Patient names and the patient index of each image; images must nest in patients."""
    if patient_key is None:
        return None
    if patient_key not in adata.obs:
        raise DataModelError(f"adata.obs[{patient_key!r}] is missing: it names the patient of each cell")
    col = adata.obs[patient_key]
    if col.isna().any():
        raise DataModelError(f"adata.obs[{patient_key!r}] has missing values: every cell needs a patient")
    pairs = pd.DataFrame({"image": groups.codes, "patient": col.astype(str).to_numpy()}).drop_duplicates()
    if pairs["image"].duplicated().any():
        bad = [groups.names[i] for i in pairs.loc[pairs["image"].duplicated(), "image"].unique()[:5]]
        raise DataModelError(
            f"images {bad} hold cells of several adata.obs[{patient_key!r}] values: images must nest in "
            "patients (pass library_key naming the image of each cell)"
        )
    per_image = pairs.set_index("image")["patient"].sort_index()
    names = sorted(per_image.unique())
    return names, per_image.map({p: i for i, p in enumerate(names)}).to_numpy(np.int64)


def _permutation_moments(
    labels, graph, xy, groups, n_types, image_patient, n_patients, n_perms, seed, progress
):
    """Observed counts, mean, variance and p of every image, the pooled sum and each patient's sum."""
    new_to_old = spatial_order(xy, groups.codes)
    old_to_new = np.empty_like(new_to_old)
    old_to_new[new_to_old] = np.arange(len(new_to_old))
    indptr, indices = renumber_graph(
        graph.indptr.astype(np.int64), graph.indices, new_to_old, old_to_new, groups.codes
    )
    n_cross = graph.nnz - int(indptr[-1])
    codes = groups.codes[new_to_old]
    sorted_groups = Groups(groups.names, codes, np.arange(len(codes)), groups.offsets)
    ordered = sparse.csr_matrix((np.ones(len(indices), np.int8), indices, indptr), shape=graph.shape)
    kk, g = n_types * n_types, groups.n
    # statistic vector: [images | pooled (if G > 1) | patients (if a patient has several images)]
    by_patient = image_patient is not None and n_patients < g
    cols = [np.full(g, g * kk)] if g > 1 else []
    if by_patient:
        cols.append((g + (g > 1) + image_patient) * kk)
    targets = np.stack(cols, axis=1).astype(np.int64) if cols else np.zeros((g, 0), np.int64)
    n_stats = (g + (g > 1) + n_patients * by_patient) * kk
    args = (*pair_counts_args(ordered, sorted_groups, n_types), g * kk, kk, targets)
    res = permutation_test(
        _nhood_kernel, labels[new_to_old], sorted_groups, args, n_stats,
        n_perms=n_perms, seed=seed, progress=progress, desc="nhood_enrichment",
    )  # fmt: skip
    blocks = {"observed": res.observed, "mean": res.mean, "var": res.var, "p": res.pvalue("two-sided")}
    split = {k: v.reshape(-1, n_types, n_types) for k, v in blocks.items()}
    out = {
        "image": {k: v[:g] for k, v in split.items()},
        "cohort": {k: v[g * (g > 1)] for k, v in split.items()},
    }
    if by_patient:
        out["patient"] = {k: v[g + (g > 1) :] for k, v in split.items()}
    elif image_patient is not None:  # one image per patient: the patient level is the image level
        out["patient"] = {k: v[np.argsort(image_patient)] for k, v in out["image"].items()}
    return out, n_cross


def _statistics(level: dict[str, np.ndarray], n_cells: np.ndarray) -> dict[str, np.ndarray]:
    """count, expected, variance, log2 ratio, z, p (NaN where a type is absent) and BH q."""
    present = (n_cells[..., :, None] > 0) & (n_cells[..., None, :] > 0)
    obs, mean, var = level["observed"], level["mean"], level["var"]
    with np.errstate(divide="ignore", invalid="ignore"):
        log2 = np.where(present & (mean > 0), np.log2(obs / mean), np.nan)
        z = np.where(present & (var > 0), (obs - mean) / np.sqrt(var), np.nan)
    p = np.where(present, level["p"], np.nan)
    count = np.rint(obs).astype(np.int64)
    return {"count": count, "expected": mean, "variance": var, "log2_ratio": log2, "zscore": z, "pvalue": p,
            "qvalue": bh_qvalues(p)}  # fmt: skip


def nhood_enrichment(
    adata: AnnData,
    cluster_key: str,
    *,
    library_key: str | None = None,
    n_perms: int = 1000,
    seed: int = 0,
    analytical: bool = False,
    connectivity_key: str = "spatial",
    patient_key: str | None = None,
    conditional: bool = False,
    progress: bool = True,
    copy: bool = False,
) -> NhoodEnrichmentResult | None:
    """Test whether cell types neighbour each other more or less than under random labelling.

    ``count[a, b]`` is the number of stored edges ``i -> j`` of the spatial graph with
    ``obs[cluster_key]`` equal to ``a`` at ``i`` and ``b`` at ``j`` (squidpy's statistic: edge values
    are ignored and a directed kNN graph gives an asymmetric matrix). It is computed in each image
    and compared with its distribution when the labels are permuted uniformly **within each
    image**: by ``n_perms`` permutations, or exactly (``analytical=True``: the exact mean and
    variance of the join counts, and a normal p-value). The pooled (cohort) counts are sums over
    images, tested against the same within-image permutations (squidpy's ``library_key``
    behaviour); so are the per-patient sums. Edges between two images are ignored (with a warning).

    Parameters
    ----------
    adata
        Cells with a categorical ``obs[cluster_key]``, ``obsm["spatial"]`` (µm) and a graph in
        ``obsp[f"{connectivity_key}_connectivities"]`` (any graph: kNN, radius, Delaunay, squidpy's).
    cluster_key
        Categorical column of cell types; its categories order the matrices.
    library_key
        Column naming the image of each cell; default ``obs["image_id"]`` when present, else all
        cells form one image.
    n_perms
        Number of permutations (ignored with ``analytical=True``).
    seed
        Seed of the permutations (``numpy.random.SeedSequence(seed).spawn``). The result depends
        on the seed and the data only: not on the number of numba threads nor on the row order
        of ``adata`` (cells are renumbered by image and along a Morton curve first).
    analytical
        Use the exact permutation mean and variance instead of permutations; the p-value is then
        the two-sided normal approximation, claimed where the expected count is at least
        :data:`NORMAL_MIN_EXPECTED`.
    connectivity_key
        Prefix (or full key) of the graph in ``adata.obsp``.
    patient_key
        Column naming the patient of each cell (images must nest in patients); default
        ``obs["patient_id"]`` when present. Adds per-patient sums with their own tests.
    conditional
        Also compute COZI's conditional statistics per image: the conditional count ``S / C1``
        (edges A→B per A cell with any B neighbour), the conditional ratio ``C1 / n_A``, and a
        permutation z-score and two-sided p of the conditional count (``n_perms``, ``seed``),
        written as ``conditional_*`` keys; pooled values are ratios of sums. See
        ``docs/nhood-enrichment.md``.
    progress
        Show a progress bar over the permutations.
    copy
        Return an :class:`NhoodEnrichmentResult` instead of writing ``adata.uns``.

    Returns
    -------
    With ``copy=True`` an :class:`NhoodEnrichmentResult` (arrays below and a long ``table``);
    otherwise ``None``, and ``adata.uns[f"{cluster_key}_nhood_enrichment"]`` holds

    - ``zscore`` (K, K) float64 and ``count`` (K, K) uint32: pooled over images (squidpy's keys
        and dtypes, so ``squidpy.pl.nhood_enrichment`` plots them);
    - ``expected``, ``variance``, ``log2_ratio`` (log2 count / expected), ``pvalue`` (two-sided),
        ``qvalue`` (Benjamini–Hochberg over the K × K pairs), ``n_cells`` (K,): pooled;
    - the same with suffix ``_per_image`` (G, K, K), ``count_per_image`` int64, and
        ``n_cells_per_image`` (G, K); ``images`` (G,) and ``categories`` (K,) names;
    - with patients: ``patients`` (P,), ``image_patient`` (G,), ``n_images_per_patient`` (P,) and
        the statistics with suffix ``_per_patient`` (P, K, K);
    - ``params``: ``n_perms``, ``seed``, ``analytical``, ``method``, ``cluster_key``,
        ``library_key``, ``patient_key``, ``connectivity_key``, ``n_cross_image_edges``,
        ``normal_min_expected``, ``units`` ("edges").

    Statistics of a pair whose types are not both present in the unit are NaN; z is NaN where the
    null variance is 0; log2_ratio is -inf where no edge is observed.

    Raises
    ------
    spatialpath.model.DataModelError
        If the labels are missing, not categorical or have a single type; an image has fewer than
        3 cells; coordinates are missing or NaN; there is no graph (run
        ``spatialpath.gr.spatial_graph`` first) or it was built for other cells; images do not nest
        in patients.

    Examples
    --------
    A 6-nearest-neighbour graph (``spatialpath.gr.spatial_graph`` or squidpy build the same):

    >>> from scipy.spatial import cKDTree
    >>> from spatialpath.datasets import simulate_tissue
    >>> adata = simulate_tissue(n_cells=500).adata
    >>> _, nn = cKDTree(adata.obsm["spatial"]).query(adata.obsm["spatial"], k=7)
    >>> adata.obsp["spatial_connectivities"] = sparse.csr_matrix(
    ...     (np.ones(3000), nn[:, 1:].ravel(), np.arange(0, 3001, 6)), shape=(500, 500)
    ... )
    >>> nhood_enrichment(adata, "cell_type", n_perms=99, progress=False)
    >>> res = adata.uns["cell_type_nhood_enrichment"]
    >>> res["zscore"].shape, res["count"].dtype, int(res["count"].sum())  # 6 out-edges per cell
    ((8, 8), dtype('uint32'), 3000)
    >>> exact = nhood_enrichment(adata, "cell_type", analytical=True, copy=True)
    >>> bool(abs(exact.expected - res["expected"]).max() < 5)
    True
    >>> exact.table.columns[:6].tolist()
    ['level', 'image_id', 'patient_id', 'n_images', 'cell_type', 'cell_type_b']
    """
    labels, categories = label_codes(adata, cluster_key, min_types=2)
    library_key = default_library_key(adata, library_key)
    groups = image_groups(adata, library_key)
    check_min_cells(groups)
    xy = check_coordinates(adata)
    graph = get_graph(adata, connectivity_obsp_key(connectivity_key))
    if patient_key is None and Key.obs.patient_id in adata.obs:
        patient_key = Key.obs.patient_id
    patients = _patients(adata, patient_key, groups)
    image_patient, n_patients = (None, 0) if patients is None else (patients[1], len(patients[0]))
    n_types = len(categories)

    if analytical:
        levels, n_cross = analytic_levels(labels, graph, groups, n_types, image_patient, n_patients)
    else:
        levels, n_cross = _permutation_moments(
            labels, graph, xy, groups, n_types, image_patient, n_patients, n_perms, seed, progress
        )
    if n_cross:
        warnings.warn(
            f"{n_cross} edges of the spatial graph join cells of different images (adata.obs"
            f"[{library_key!r}]); they are ignored. Build the graph per image, e.g. "
            f"spatialpath.gr.spatial_graph(adata, library_key={library_key!r})",
            UserWarning,
            stacklevel=2,
        )

    n_img = cells_per_image(labels, groups, n_types)
    fields: dict[str, Any] = {"categories": categories, "images": list(groups.names)}
    fields |= _statistics(levels["cohort"], n_img.sum(axis=0)) | {"n_cells": n_img.sum(axis=0)}
    fields |= {f"{k}_per_image": v for k, v in _statistics(levels["image"], n_img).items()}
    fields["n_cells_per_image"] = n_img
    if patients is not None:
        n_pat = sum_by(n_img, image_patient, n_patients)
        fields |= {f"{k}_per_patient": v for k, v in _statistics(levels["patient"], n_pat).items()}
        fields |= {"patients": patients[0], "image_patient": [patients[0][i] for i in image_patient],
                   "n_images_per_patient": np.bincount(image_patient, minlength=n_patients),
                   "n_cells_per_patient": n_pat}  # fmt: skip
    if conditional:
        fields |= conditional_fields(labels, graph, groups, n_types, n_img, n_perms=n_perms, seed=seed,
                                     progress=progress)  # fmt: skip
    params = {"method": "analytical" if analytical else "permutation", "analytical": bool(analytical),
              "conditional": bool(conditional),
              "n_perms": 0 if analytical else int(n_perms), "seed": int(seed), "cluster_key": cluster_key,
              "library_key": library_key or "", "patient_key": patient_key or "",
              "connectivity_key": connectivity_obsp_key(connectivity_key),
              "n_cross_image_edges": int(n_cross),
              "normal_min_expected": NORMAL_MIN_EXPECTED, "units": "edges"}  # fmt: skip
    result = NhoodEnrichmentResult(**fields, params=params)
    if copy:
        return result
    adata.uns[Key.uns.nhood_enrichment(cluster_key)] = result.to_uns()
    return None
