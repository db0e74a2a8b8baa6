"""Nearest-neighbour distances from type A to type B, with censoring at the field edge.

For each focal cell ``i`` of type A in the compartment, ``d_i`` is the distance to the nearest
*other* cell of type B anywhere in the image's field (the ``"tissue"`` region), and ``b_i`` its
distance to the field edge. Fields are small (a CODEX core is about 724 × 543 µm), so a cell with
``d_i > b_i`` is **censored**: its true nearest B cell may lie outside the field. By default the
summaries use uncensored cells only (the reduced-sample rule of spatstat's border correction); the
``nn_censored_fraction`` metric reports how many were left out. KD-trees, never dense matrices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from spatialpath.metrics._image import TISSUE, ImageData, row
from spatialpath.metrics._registry import Parameter, count, probability, register

__all__ = [
    "fraction_within_radius",
    "nn_censored_fraction",
    "nn_distance_mean",
    "nn_distance_median",
    "nn_distance_quantile",
    "nn_distances",
]

_REF = (
    "statistics.md §10 (scimap spatial_distance, SPIAT minimum distances); border rule: Baddeley et al. 2015."
)
_COMMON = (
    Parameter("min_cells_a", 1, "minimum focal (A) cells in the compartment", count),
    Parameter("min_cells_b", 1, "minimum target (B) cells in the field (other than the focal cell)", count),
    Parameter("exclude_censored", True, "leave out cells closer to the field edge than to their B neighbour",
              lambda v: None if isinstance(v, bool) else "True or False"),
)  # fmt: skip


def _nearest(image: ImageData, compartment: str) -> dict[int, np.ndarray]:
    """Per target type code: the NN distance of every focal cell of the compartment (inf if none)."""
    key = ("nn", compartment)
    if key not in image._cache:
        focal = np.flatnonzero(image.mask(compartment))
        out = {}
        for b in range(len(image.categories)):
            d = np.full(len(focal), np.inf)
            targets = image.xy[image.codes == b]
            if len(targets) and len(focal):
                k = min(2, len(targets))
                dist, _ = cKDTree(targets).query(image.xy[focal], k=k)
                dist = dist.reshape(len(focal), k)
                same = image.codes[focal] == b  # the focal cell is its own nearest B: take the next one
                d = np.where(same, dist[:, 1] if k == 2 else np.inf, dist[:, 0])
            out[b] = d
        image._cache[key] = (focal, out)
    return image._cache[key]


def nn_distances(image: ImageData, a: str, b: str, compartment: str = TISSUE) -> pd.DataFrame:
    """Distribution of A→B nearest-neighbour distances: one row per A cell of the compartment.

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    a, b
        Focal and target cell types.
    compartment
        Compartment of the focal A cells; targets are searched in the whole field.

    Returns
    -------
    ``distance_um`` (inf when there is no other B cell), ``edge_distance_um`` (to the field edge,
    the ``"tissue"`` region's boundary) and ``censored`` (``distance_um > edge_distance_um``).

    Examples
    --------
    >>> import shapely
    >>> img = ImageData.from_arrays([[50, 50], [53, 54], [5, 50]], ["A", "B", "B"],
    ...                             {"tissue": shapely.box(0, 0, 100, 100)})
    >>> nn_distances(img, "A", "B").to_dict("records")
    [{'distance_um': 5.0, 'edge_distance_um': 50.0, 'censored': False}]
    """
    ia, ib = image.type_code(a, "a"), image.type_code(b, "b")
    focal, dist = _nearest(image, compartment)
    sel = image.codes[focal] == ia
    d = dist[ib][sel]
    edge = image.edge_distance(TISSUE)[focal[sel]]
    return pd.DataFrame({"distance_um": d, "edge_distance_um": edge, "censored": d > edge})


def _pairs(image: ImageData, compartment: str, params: dict[str, Any], summary, censor_rule=None):
    """Rows for every ordered pair (A, B); ``summary(d, uncensored, n)`` gives one number."""
    cats = image.categories
    if not image.present(compartment):
        return [row(a, b, status="compartment_absent") for a in cats for b in cats]
    focal, dist = _nearest(image, compartment)
    edge = image.edge_distance(TISSUE)[focal]
    n_field = np.bincount(image.codes, minlength=len(cats))
    out = []
    for ia, a in enumerate(cats):
        sel = image.codes[focal] == ia
        n_a = int(sel.sum())
        for ib, b in enumerate(cats):
            n_b = int(n_field[ib]) - (1 if ia == ib else 0)  # others than the focal cell
            if n_a < params["min_cells_a"] or n_b < params["min_cells_b"]:
                out.append(row(a, b, n_cells_a=n_a, n_cells_b=n_b, status="below_min_cells"))
                continue
            d, e = dist[ib][sel], edge[sel]
            known = censor_rule(d, e) if censor_rule else d <= e
            use = known if params.get("exclude_censored", True) else np.ones_like(known)
            if not use.any():
                out.append(row(a, b, n_cells_a=n_a, n_cells_b=n_b, status="censored"))
                continue
            out.append(row(a, b, summary(d, use, e), n_cells_a=n_a, n_cells_b=n_b))
    return out


@register(
    name="nn_distance_mean",
    label="Mean nearest-neighbour distance A→B",
    definition="Mean over the compartment's A cells of the distance to the nearest other B cell (field).",
    formula="mean_{i∈A, d_i ≤ b_i} d_i(B), d_i(B) = min_{j∈B, j≠i} ‖x_i − x_j‖",
    unit="um",
    level="type_pair",
    parameters=_COMMON,
    reference=_REF,
)
def nn_distance_mean(image: ImageData, compartment: str = TISSUE, **params: Any) -> list[dict[str, Any]]:
    """Mean A→B nearest-neighbour distance per ordered type pair (censored cells left out).

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    **params
        ``min_cells_a`` (focal A cells in the compartment, default 1), ``min_cells_b`` (other B
        cells in the field, default 1) and ``exclude_censored`` (default True), as registered in
        :data:`REGISTRY`.

    Examples
    --------
    >>> import shapely
    >>> img = ImageData.from_arrays([[50, 50], [53, 54]], ["A", "B"], {"tissue": shapely.box(0, 0, 100, 100)})
    >>> [(r["cell_type"], r["cell_type_b"], r["value"], r["status"]) for r in nn_distance_mean(img)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('A', 'A', nan, 'below_min_cells'), ('A', 'B', 5.0, 'ok'),
     ('B', 'A', 5.0, 'ok'), ('B', 'B', nan, 'below_min_cells')]
    """
    params = {"min_cells_a": 1, "min_cells_b": 1, "exclude_censored": True, **params}
    return _pairs(image, compartment, params, lambda d, use, e: float(d[use].mean()))


@register(
    name="nn_distance_median",
    label="Median nearest-neighbour distance A→B",
    definition="Median over the compartment's A cells of the distance to the nearest other B cell (field).",
    formula="median_{i∈A, d_i ≤ b_i} d_i(B)",
    unit="um",
    level="type_pair",
    parameters=_COMMON,
    reference=_REF,
)
def nn_distance_median(image: ImageData, compartment: str = TISSUE, **params: Any) -> list[dict[str, Any]]:
    """Median A→B nearest-neighbour distance per ordered type pair (see :func:`nn_distance_mean`).

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    **params
        ``min_cells_a`` (focal A cells in the compartment, default 1), ``min_cells_b`` (other B
        cells in the field, default 1) and ``exclude_censored`` (default True), as registered in
        :data:`REGISTRY`.

    Examples
    --------
    >>> import shapely
    >>> img = ImageData.from_arrays([[50, 50], [70, 50], [53, 54], [70, 58]], ["A", "A", "B", "B"],
    ...                             {"tissue": shapely.box(0, 0, 100, 100)})
    >>> r = nn_distance_median(img)[1]  # A→B distances 5 and 8 µm
    >>> r["cell_type"], r["cell_type_b"], r["value"]
    ('A', 'B', 6.5)
    """
    params = {"min_cells_a": 1, "min_cells_b": 1, "exclude_censored": True, **params}
    return _pairs(image, compartment, params, lambda d, use, e: float(np.median(d[use])))


@register(
    name="nn_distance_quantile",
    label="Quantile of the nearest-neighbour distance A→B",
    definition="The q-quantile (linear interpolation) of the uncensored A→B nearest-neighbour distances.",
    formula="Q_q({d_i(B) : i∈A, d_i ≤ b_i})",
    unit="um",
    level="type_pair",
    parameters=(Parameter("q", 0.9, "the quantile, in [0, 1]", probability), *_COMMON),
    reference=_REF,
)
def nn_distance_quantile(
    image: ImageData, compartment: str = TISSUE, *, q: float = 0.9, **params: Any
) -> list[dict[str, Any]]:
    """The ``q``-quantile of the A→B nearest-neighbour distances per ordered type pair.

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    q
        The quantile, in [0, 1] (linear interpolation, :func:`numpy.quantile`).
    **params
        ``min_cells_a`` (focal A cells in the compartment, default 1), ``min_cells_b`` (other B
        cells in the field, default 1) and ``exclude_censored`` (default True), as registered in
        :data:`REGISTRY`.

    Examples
    --------
    >>> import shapely
    >>> img = ImageData.from_arrays([[50, 50], [70, 50], [53, 54], [70, 58]], ["A", "A", "B", "B"],
    ...                             {"tissue": shapely.box(0, 0, 100, 100)})
    >>> r = nn_distance_quantile(img, q=0.9)[1]  # A→B distances 5 and 8 µm: 5 + 0.9 · 3
    >>> r["cell_type"], r["cell_type_b"], round(r["value"], 6)
    ('A', 'B', 7.7)
    """
    params = {"min_cells_a": 1, "min_cells_b": 1, "exclude_censored": True, **params}
    return _pairs(image, compartment, params, lambda d, use, e: float(np.quantile(d[use], q)))


@register(
    name="fraction_within_radius",
    label="Fraction of A cells within r of a B cell",
    definition=(
        "Fraction of A cells of the compartment with another B cell within radius_um (cross G_AB(r)). "
        "A cell without a B cell within r but closer than r to the field edge is censored."
    ),
    formula="#{i∈A : d_i ≤ r} / #{i∈A : d_i ≤ r or b_i ≥ r}",
    unit="1",
    level="type_pair",
    parameters=(Parameter("radius_um", 20.0, "the radius r (µm)", lambda v: None if (
        isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < np.inf) else "a distance > 0"),
        *_COMMON),
    reference="Cross G function with the border rule (Baddeley et al. 2015); statistics.md §5, §10.",
)  # fmt: skip
def fraction_within_radius(
    image: ImageData, compartment: str = TISSUE, *, radius_um: float = 20.0, **params: Any
) -> list[dict[str, Any]]:
    """Fraction of A cells with a B cell within ``radius_um`` per ordered type pair.

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    radius_um
        The radius r (µm).
    **params
        ``min_cells_a`` (focal A cells in the compartment, default 1), ``min_cells_b`` (other B
        cells in the field, default 1) and ``exclude_censored`` (default True), as registered in
        :data:`REGISTRY`.

    Examples
    --------
    >>> import shapely
    >>> img = ImageData.from_arrays([[50, 50], [53, 54], [90, 50]], ["A", "B", "A"],
    ...                             {"tissue": shapely.box(0, 0, 100, 100)})
    >>> r = fraction_within_radius(img, radius_um=8)[1]  # A→B: 5 µm ≤ 8; 37 µm > 8 with edge 10 ≥ 8
    >>> r["cell_type"], r["cell_type_b"], r["value"]
    ('A', 'B', 0.5)
    """
    params = {"min_cells_a": 1, "min_cells_b": 1, "exclude_censored": True, **params}
    r = float(radius_um)
    return _pairs(
        image,
        compartment,
        params,
        lambda d, use, e: float((d[use] <= r).mean()),
        censor_rule=lambda d, e: (d <= r) | (e >= r),
    )


@register(
    name="nn_censored_fraction",
    label="Censored fraction of A→B nearest-neighbour distances",
    definition=(
        "Fraction of A cells whose nearest B cell is farther than the field edge (left out of the NN "
        "summaries)."
    ),
    formula="#{i∈A : d_i(B) > b_i} / n_A",
    unit="1",
    level="type_pair",
    parameters=_COMMON[:2],
    reference="Border (reduced-sample) rule, Baddeley et al. 2015.",
)
def nn_censored_fraction(image: ImageData, compartment: str = TISSUE, **params: Any) -> list[dict[str, Any]]:
    """Fraction of A cells whose A→B nearest-neighbour distance is censored by the field edge.

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    **params
        ``min_cells_a`` and ``min_cells_b`` (default 1 each), as registered in :data:`REGISTRY`.

    Examples
    --------
    >>> import shapely
    >>> img = ImageData.from_arrays([[50, 50], [5, 50], [53, 54]], ["A", "A", "B"],
    ...                             {"tissue": shapely.box(0, 0, 100, 100)})
    >>> r = nn_censored_fraction(img)[1]  # the A cell at x = 5: its B is 48 µm away, the edge 5 µm
    >>> r["cell_type"], r["cell_type_b"], r["value"]
    ('A', 'B', 0.5)
    """
    params = {"min_cells_a": 1, "min_cells_b": 1, **params, "exclude_censored": False}
    return _pairs(image, compartment, params, lambda d, use, e: float((d > e).mean()))
