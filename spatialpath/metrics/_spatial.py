"""Spatial-arrangement metrics: Clark–Evans index, neighbourhood entropy and CN frequencies.

- **Clark–Evans** ``R = d̄ / (0.5 / √λ)`` of each type's pattern in the compartment (``λ = n_a/|W|``,
  ``W`` the compartment region). ``R < 1``: clustered, ``≈ 1``: random, ``> 1``: regular (2 on a
  square lattice, 2.149 on a hexagonal one). Edge correction ``"cdf"`` (default) estimates ``d̄`` as
  ``∫ (1 − G(r)) dr`` with the reduced-sample (border) estimate of the NN distance distribution
  ``G(r) = #{d_i ≤ r ≤ b_i} / #{b_i ≥ r}``, ``b_i`` the distance to the boundary of ``W``; ``"none"``
  is the plain mean, biased upwards in small or irregular windows.
- **Neighbourhood entropy**: for each cell of the compartment, the Shannon entropy of the cell-type
  composition of its ``k`` nearest other cells (in the field), averaged over the cells.
- **CN frequencies**: the fraction of the compartment's cells in each cellular neighbourhood
  (labels from :func:`spatialpath.gr.cellular_neighborhoods`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from spatialpath.metrics._image import TISSUE, ImageData, row
from spatialpath.metrics._registry import Parameter, count, one_of, positive, register, text
from spatialpath.model import DataModelError

__all__ = [
    "clark_evans",
    "cn_frequency",
    "g_cross_auc",
    "l_cross_auc",
    "mean_nn_distance_cdf",
    "neighbourhood_entropy",
]


def mean_nn_distance_cdf(d: np.ndarray, b: np.ndarray) -> float:
    """``∫ (1 − G(r)) dr`` with the reduced-sample ``G``; NaN when ``G`` never reaches 1 (censored).

    Exact for the step function: between consecutive breakpoints ``t_k < t_(k+1)`` (the ``d_i`` and
    ``b_i``), ``G = #{d_i ≤ t_k, b_i ≥ t_(k+1)} / #{b_i ≥ t_(k+1)}``.

    Parameters
    ----------
    d
        ``(n,)`` nearest-neighbour distances (µm; inf when there is no neighbour).
    b
        ``(n,)`` distances of the same cells to the window boundary (µm).

    Examples
    --------
    >>> mean_nn_distance_cdf(np.array([1.0, 1.0, 1.0]), np.array([5.0, 5.0, 0.5]))
    1.0
    """
    t = np.unique(np.concatenate([[0.0], d[np.isfinite(d)], b]))
    lo, hi = t[:-1], t[1:]
    sb, sd, smax = np.sort(b), np.sort(d), np.sort(np.maximum(d, b))
    den = len(b) - np.searchsorted(sb, hi, side="left")
    num = np.searchsorted(sd, lo, side="right") - np.searchsorted(smax, lo, side="right")
    valid = den > 0
    if not valid.any():
        return np.nan
    one_minus_g = 1.0 - num[valid] / den[valid]
    if one_minus_g[-1] > 0:  # the distribution is not complete before the window runs out
        return np.nan
    return float(np.sum(one_minus_g * (hi[valid] - lo[valid])))


@register(
    name="clark_evans",
    label="Clark–Evans aggregation index",
    definition=(
        "Mean nearest-neighbour distance of the type's cells in the compartment divided by its "
        "expectation under complete spatial randomness at the same density; < 1 clustered, > 1 regular."
    ),
    formula="R = d̄ / (0.5 / √λ), λ = n_a / |W|; d̄ = ∫ (1 − G_rs(r)) dr (correction 'cdf') or mean d_i",
    unit="1",
    level="type",
    parameters=(
        Parameter("correction", "cdf", "'cdf' (border-corrected G) or 'none'", one_of("cdf", "none")),
        Parameter("min_cells", 5, "minimum cells of the type in the compartment", count),
    ),
    reference="Clark & Evans 1954, Ecology 35:445; spatstat clarkevans (cdf correction); statistics.md §10.",
)
def clark_evans(
    image: ImageData, compartment: str = TISSUE, *, correction: str = "cdf", min_cells: int = 5
) -> list[dict[str, Any]]:
    """Clark–Evans index of each type's pattern in ``compartment`` (``censored`` if d̄ is unknowable).

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    correction
        ``"cdf"`` (border-corrected mean NN distance, :func:`mean_nn_distance_cdf`) or ``"none"``.
    min_cells
        Minimum cells of the type in the compartment.

    Examples
    --------
    >>> import shapely
    >>> g = np.arange(20) * 10.0
    >>> xy = np.column_stack([np.repeat(g, 20), np.tile(g, 20)])  # square lattice, spacing 10 µm
    >>> img = ImageData.from_arrays(xy, ["A"] * 400, {"tissue": shapely.box(-5, -5, 195, 195)})
    >>> round(clark_evans(img)[0]["value"], 6)
    2.0
    """
    cats = image.categories
    if not image.present(compartment):
        return [row(t, status="compartment_absent") for t in cats]
    m = image.mask(compartment)
    area_um2 = image.area_mm2(compartment) * 1e6
    edge = image.edge_distance(compartment)
    out = []
    for ia, t in enumerate(cats):
        sel = m & (image.codes == ia)
        n = int(sel.sum())
        if n < max(min_cells, 2):
            out.append(row(t, n_cells_a=n, status="below_min_cells"))
            continue
        d = cKDTree(image.xy[sel]).query(image.xy[sel], k=2)[0][:, 1]
        dbar = float(d.mean()) if correction == "none" else mean_nn_distance_cdf(d, edge[sel])
        expected = 0.5 / np.sqrt(n / area_um2)
        status = "ok" if np.isfinite(dbar) else "censored"
        out.append(row(t, value=dbar / expected, n_cells_a=n, status=status))
    return out


@register(
    name="neighbourhood_entropy",
    label="Neighbourhood Shannon entropy",
    definition=(
        "Mean over the compartment's cells of the Shannon entropy of the cell-type composition of the "
        "k nearest other cells of the field; 0 when every neighbourhood is of one type."
    ),
    formula="H̄ = mean_i −Σ_t p_it log_base p_it, p_it = share of type t among the k nearest cells of i",
    unit="bits",
    level="image",
    parameters=(
        Parameter("k", 10, "neighbours per cell (self excluded)", count),
        Parameter("base", 2.0, "logarithm base (2: bits)", positive),
        Parameter("min_cells", 1, "minimum cells in the compartment", count),
    ),
    reference="Shannon 1948; per-cell neighbourhood heterogeneity as in Schürch et al. 2020 windows.",
)
def neighbourhood_entropy(
    image: ImageData, compartment: str = TISSUE, *, k: int = 10, base: float = 2.0, min_cells: int = 1
) -> list[dict[str, Any]]:
    """Mean Shannon entropy of the type composition of each cell's ``k`` nearest neighbours.

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    k
        Neighbours per cell (the cell itself excluded).
    base
        Logarithm base (2: bits).
    min_cells
        Minimum cells in the compartment.

    Examples
    --------
    >>> import shapely
    >>> img = ImageData.from_arrays([[0, 0], [1, 0], [0, 1]], ["A", "B", "A"],
    ...                             {"tissue": shapely.box(-1, -1, 2, 2)})
    >>> neighbourhood_entropy(img, k=2)[0]["value"]  # (1 + 0 + 1) / 3 bits
    0.6666666666666666
    """
    if not image.present(compartment):
        return [row(status="compartment_absent")]
    focal = np.flatnonzero(image.mask(compartment))
    if len(focal) < min_cells or len(image.xy) < k + 1:
        return [row(n_cells_a=len(focal), status="below_min_cells")]
    key = ("knn", int(k))
    if key not in image._cache:
        idx = cKDTree(image.xy).query(image.xy, k=k + 1)[1]
        own = idx == np.arange(len(idx))[:, None]
        first = np.argsort(own, axis=1, kind="stable")[:, :k]  # drop self (wherever ties put it)
        image._cache[key] = np.take_along_axis(idx, first, axis=1)
    nb = image._cache[key][focal]
    n_types = len(image.categories)
    counts = np.zeros((len(focal), n_types))
    np.add.at(counts, (np.repeat(np.arange(len(focal)), k), image.codes[nb].ravel()), 1.0)
    p = counts / k
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(1) / np.log(base)
    return [row(value=float(h.mean()), n_cells_a=len(focal))]


@register(
    name="cn_frequency",
    label="Cellular-neighbourhood frequency",
    definition=(
        "Fraction of the compartment's cells in each cellular neighbourhood (CN label in the cell_type "
        "column); sums to 1 over CNs. Needs CN labels in obs[cn_key]."
    ),
    formula="f_c = #{i in compartment : CN(i) = c} / #{i in compartment}",
    unit="1",
    level="neighbourhood",
    parameters=(Parameter("cn_key", "cn", "obs column of CN labels (gr.cellular_neighborhoods)", text),),
    reference="Schürch et al. 2020, Cell 182:1341 (CN frequencies); spatialpath.gr.cn_frequencies.",
    default=False,
)  # fmt: skip
def cn_frequency(image: ImageData, compartment: str = TISSUE, *, cn_key: str = "cn") -> list[dict[str, Any]]:
    """Fraction of the compartment's cells in each CN of ``image.labels[cn_key]``.

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    cn_key
        Name of the CN labels in ``image.labels`` (the ``obs`` column of
        :func:`spatialpath.gr.cellular_neighborhoods`).

    Examples
    --------
    >>> import shapely
    >>> tissue = {"tissue": shapely.box(-1, -1, 2, 2)}
    >>> img = ImageData.from_arrays([[0, 0], [1, 0], [0, 1]], ["A", "B", "A"], tissue,
    ...                             labels={"cn": ["CN1", "CN1", "CN2"]})
    >>> [(r["cell_type"], round(r["value"], 3)) for r in cn_frequency(img)]
    [('CN1', 0.667), ('CN2', 0.333)]
    """
    if cn_key not in image.labels:
        raise DataModelError(
            f"cn_frequency needs CN labels {cn_key!r}: run spatialpath.gr.cellular_neighborhoods(adata) "
            "first, or set params={'cn_frequency': {'cn_key': <obs column>}}"
        )
    codes, cats = image.labels[cn_key]
    if not image.present(compartment):
        return [row(c, status="compartment_absent") for c in cats]
    counts = np.bincount(codes[image.mask(compartment)], minlength=len(cats))
    total = int(counts.sum())
    status = "ok" if total else "zero_denominator"
    return [
        row(c, value=n / total if total else np.nan, n_cells_a=n, n_cells_b=total, status=status)
        for c, n in zip(cats, counts, strict=True)
    ]


def _cross_auc(image: ImageData, compartment: str, kind: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    import pandas as pd
    from anndata import AnnData

    from spatialpath.gr import cross_function

    cats = image.categories
    if not image.present(compartment):
        return [row(a, b, status="compartment_absent") for a in cats for b in cats]
    m = image.mask(compartment)
    n = image.type_counts(compartment)
    ok = [c for c, k in zip(cats, n, strict=True) if k >= max(params["min_cells"], 2)]
    aucs: dict[tuple[str, str], float] = {}
    if ok:
        obs = pd.DataFrame(
            {"cell_type": pd.Categorical.from_codes(image.codes[m], categories=list(cats))},
            index=[str(i) for i in range(int(m.sum()))],
        )
        a = AnnData(obs=obs)
        a.obsm["spatial"] = image.xy[m]
        try:
            res = cross_function(
                a, "cell_type", kind, ok, ok, r_max=params["r_max_um"], correction=params["correction"],
                window=image.geometry[compartment], window_resolution_um=params["window_resolution_um"],
                library_key=None, null=None, copy=True, progress=False,
            )  # fmt: skip
        except DataModelError as err:
            raise DataModelError(
                f"metric '{kind.lower()}_cross_auc', image {image.image_id!r}: {err}"
            ) from err
        s = res.summary()
        aucs = dict(zip(zip(s["a"], s["b"], strict=True), s["auc"], strict=True))
    out = []
    for ia, a_name in enumerate(cats):
        for ib, b_name in enumerate(cats):
            na, nb = int(n[ia]), int(n[ib])
            if (a_name, b_name) not in aucs:
                out.append(row(a_name, b_name, n_cells_a=na, n_cells_b=nb, status="below_min_cells"))
            else:
                v = aucs[(a_name, b_name)]
                out.append(row(a_name, b_name, v, na, nb, status="ok" if np.isfinite(v) else "censored"))
    return out


_CROSS_PARAMS = (
    Parameter("r_max_um", 50.0, "largest distance r (µm) of the curve; 51 values from 0", positive),
    Parameter("correction", None, "edge correction (None: cross_function's default for the kind)",
              lambda v: None if v is None or isinstance(v, str) else "None or a correction name"),
    Parameter("window_resolution_um", None, "raster resolution of the compartment window (None: ~4 Mpx)",
              lambda v: None if v is None or (isinstance(v, int | float) and v > 0) else "None or > 0"),
    Parameter("min_cells", 5, "minimum cells of each of A and B in the compartment", count),
)  # fmt: skip
_CROSS_REF = (
    "Baddeley, Rubak & Turner 2015; SPIAT AUC_of_cross_function; spatialpath.gr.cross_function(..., "
    "copy=True).summary()['auc'] on the compartment window."
)


@register(
    name="l_cross_auc",
    label="AUC of the cross L function",
    definition=(
        "Area between the edge-corrected (translation) cross L function of A → B and its CSR value r, "
        "over 0 ≤ r ≤ r_max_um; > 0: B cells closer to A cells than at random."
    ),
    formula="∫_0^r_max (L_AB(r) − r) dr (trapezoidal rule)",
    unit="um*um",
    level="type_pair",
    parameters=_CROSS_PARAMS,
    reference=_CROSS_REF,
    default=False,
)
def l_cross_auc(image: ImageData, compartment: str = TISSUE, **params: Any) -> list[dict[str, Any]]:
    """AUC of ``L_AB(r) − r`` per ordered type pair (needs ≥ ``min_cells`` of A and of B).

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    **params
        ``r_max_um`` (default 50), ``correction`` (default None: the kind's default),
        ``window_resolution_um`` (raster of the compartment window; default about 4 Mpx) and
        ``min_cells`` (default 5), as registered in :data:`REGISTRY`.

    Examples
    --------
    >>> import numpy as np, shapely
    >>> a = np.random.default_rng(0).uniform(10, 190, (100, 2))
    >>> img = ImageData.from_arrays(np.r_[a, a + [2.0, 0.0]], ["A"] * 100 + ["B"] * 100,
    ...                             {"tissue": shapely.box(0, 0, 200, 200)})  # each B 2 µm from an A
    >>> rows = l_cross_auc(img, window_resolution_um=1.0)
    >>> [(r["cell_type"], r["cell_type_b"], round(r["value"])) for r in rows]  # > 0: B closer to A than CSR
    [('A', 'A', 78), ('A', 'B', 220), ('B', 'A', 220), ('B', 'B', 78)]
    """
    return _cross_auc(image, compartment, "L", {**{p.name: p.default for p in _CROSS_PARAMS}, **params})


@register(
    name="g_cross_auc",
    label="AUC of the cross G function",
    definition=(
        "Area between the border-corrected cross G function of A → B (fraction of A cells with a B cell "
        "within r) and its CSR value, over 0 ≤ r ≤ r_max_um; > 0: B cells nearer than at random."
    ),
    formula="∫_0^r_max (G_AB(r) − (1 − exp(−λ_B π r²))) dr (trapezoidal rule)",
    unit="um",
    level="type_pair",
    parameters=_CROSS_PARAMS,
    reference=_CROSS_REF,
    default=False,
)
def g_cross_auc(image: ImageData, compartment: str = TISSUE, **params: Any) -> list[dict[str, Any]]:
    """AUC of ``G_AB(r) − G_CSR(r)`` per ordered type pair (needs ≥ ``min_cells`` of A and of B).

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    **params
        ``r_max_um`` (default 50), ``correction`` (default None: the kind's default),
        ``window_resolution_um`` (raster of the compartment window; default about 4 Mpx) and
        ``min_cells`` (default 5), as registered in :data:`REGISTRY`.

    Examples
    --------
    >>> import numpy as np, shapely
    >>> a = np.random.default_rng(0).uniform(10, 190, (100, 2))
    >>> img = ImageData.from_arrays(np.r_[a, a + [2.0, 0.0]], ["A"] * 100 + ["B"] * 100,
    ...                             {"tissue": shapely.box(0, 0, 200, 200)})  # each B 2 µm from an A
    >>> r = g_cross_auc(img, window_resolution_um=1.0)[1]
    >>> r["cell_type"], r["cell_type_b"], round(r["value"], 1)  # ≈ ∫G_AB − ∫G_CSR = 48.5 − (50 − 0.5/√λ_B)
    ('A', 'B', 8.5)
    """
    return _cross_auc(image, compartment, "G", {**{p.name: p.default for p in _CROSS_PARAMS}, **params})
