"""Mixing score (Keren et al. 2018) and its normalised form, for every ordered pair of cell types.

Two cells *interact* when they are within ``radius_um`` of each other and both lie in the
compartment. For a reference type A (Keren: immune) and a target type B (Keren: tumour):

- ``RT`` = number of A–B interacting pairs, ``RR`` = number of unordered A–A interacting pairs;
- mixing score ``MS = RT / RR`` (NaN with ``zero_denominator`` when ``RR = 0``, where SPIAT
  returns 0);
- normalised ``NMS = ½ · MS · (n_A − 1) / n_B`` (SPIAT ``mixing_score_summary``), about 1 under
  random labelling: ``E[RT] / E[RR] = 2 n_B / (n_A − 1)``.

A = B is not defined (SPIAT appends a duplicate row there); those pairs are not reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from spatialpath.metrics._image import TISSUE, ImageData, row
from spatialpath.metrics._registry import Parameter, count, positive, register

__all__ = ["interaction_counts", "mixing_score", "mixing_score_normalised"]

_PARAMS = (
    Parameter("radius_um", 20.0, "interaction radius (µm; SPIAT's default)", positive),
    Parameter("min_cells", 10, "minimum cells of each of A and B in the compartment", count),
)
_REF = (
    "Keren et al. 2018, Cell 174:1373; SPIAT mixing_score_summary (statistics.md §9). Cohort cut-offs "
    "(cold / compartmentalised / mixed) are left to the analysis."
)


def interaction_counts(xy: np.ndarray, codes: np.ndarray, n_types: int, radius_um: float) -> np.ndarray:
    """Unordered pairs of cells within ``radius_um`` by type: ``C[a, b]``, symmetric; ``C[a, a]``: A–A pairs.

    Parameters
    ----------
    xy
        ``(n, 2)`` cell positions in µm.
    codes
        ``(n,)`` type code of each cell, in ``range(n_types)``.
    n_types
        Number of types (the size of the result).
    radius_um
        Pairs at distance ≤ ``radius_um`` interact.

    Examples
    --------
    >>> xy = np.array([[0.0, 0], [1, 0], [0, 1], [10, 10]])
    >>> interaction_counts(xy, np.array([0, 0, 1, 1]), 2, 1.5).tolist()
    [[1, 2], [2, 0]]
    """
    c = np.zeros((n_types, n_types), np.int64)
    if len(xy) < 2:
        return c
    pairs = cKDTree(xy).query_pairs(float(radius_um), output_type="ndarray")
    if len(pairs):
        a, b = codes[pairs[:, 0]], codes[pairs[:, 1]]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        np.add.at(c, (lo, hi), 1)
        c = c + np.triu(c, 1).T
    return c


def _rows(image: ImageData, compartment: str, radius_um: float, min_cells: int, normalised: bool):
    cats = image.categories
    if not image.present(compartment):
        return [row(a, b, status="compartment_absent") for a in cats for b in cats if a != b]
    key = ("pairs", compartment, float(radius_um))
    m = image.mask(compartment)
    if key not in image._cache:
        image._cache[key] = interaction_counts(image.xy[m], image.codes[m], len(cats), radius_um)
    c = image._cache[key]
    n = image.type_counts(compartment)
    out = []
    for ia, a in enumerate(cats):
        for ib, b in enumerate(cats):
            if ia == ib:
                continue
            na, nb = int(n[ia]), int(n[ib])
            if na < min_cells or nb < min_cells:
                out.append(row(a, b, n_cells_a=na, n_cells_b=nb, status="below_min_cells"))
            elif c[ia, ia] == 0:
                out.append(row(a, b, n_cells_a=na, n_cells_b=nb, status="zero_denominator"))
            else:
                ms = c[ia, ib] / c[ia, ia]
                out.append(row(a, b, 0.5 * ms * (na - 1) / nb if normalised else ms, na, nb))
    return out


@register(
    name="mixing_score",
    label="Mixing score (Keren)",
    definition=(
        "Interactions (pairs within radius_um, both in the compartment) between the reference type A "
        "and the target type B per interaction among A cells."
    ),
    formula="MS = RT / RR; RT = #{(i∈A, j∈B): d_ij ≤ r}, RR = #{{i, j} ⊂ A: d_ij ≤ r}",
    unit="1",
    level="type_pair",
    parameters=_PARAMS,
    reference=_REF,
)
def mixing_score(
    image: ImageData, compartment: str = TISSUE, *, radius_um: float = 20.0, min_cells: int = 10
) -> list[dict[str, Any]]:
    """Keren's mixing score for every ordered pair (reference A, target B), A ≠ B.

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    radius_um
        Cells at distance ≤ ``radius_um`` interact.
    min_cells
        Minimum cells of each of A and B in the compartment.

    Examples
    --------
    >>> import shapely
    >>> xy = [[0, 0], [1, 0], [0, 1], [1, 1], [30, 30]]
    >>> img = ImageData.from_arrays(xy, ["I", "I", "T", "T", "T"], {"tissue": shapely.box(-5, -5, 40, 40)})
    >>> r = mixing_score(img, radius_um=1.2, min_cells=1)[0]  # I-T pairs 2 (1 µm apart) / I-I pairs 1
    >>> r["cell_type"], r["cell_type_b"], r["value"]
    ('I', 'T', 2.0)
    """
    return _rows(image, compartment, radius_um, min_cells, normalised=False)


@register(
    name="mixing_score_normalised",
    label="Normalised mixing score",
    definition="The mixing score scaled so that it is about 1 under random labelling of the cells.",
    formula="NMS = ½ · MS · (n_A − 1) / n_B",
    unit="1",
    level="type_pair",
    parameters=_PARAMS,
    reference=_REF,
)
def mixing_score_normalised(
    image: ImageData, compartment: str = TISSUE, *, radius_um: float = 20.0, min_cells: int = 10
) -> list[dict[str, Any]]:
    """Normalised mixing score ``½·MS·(n_A − 1)/n_B`` for every ordered pair A ≠ B.

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    radius_um
        Cells at distance ≤ ``radius_um`` interact.
    min_cells
        Minimum cells of each of A and B in the compartment.

    Examples
    --------
    >>> import shapely
    >>> xy = [[0, 0], [1, 0], [0, 1], [1, 1], [30, 30]]
    >>> img = ImageData.from_arrays(xy, ["I", "I", "T", "T", "T"], {"tissue": shapely.box(-5, -5, 40, 40)})
    >>> r = mixing_score_normalised(img, radius_um=1.2, min_cells=1)[0]
    >>> r["cell_type"], r["cell_type_b"], round(r["value"], 4)  # ½ · MS 2 · (n_I − 1 = 1) / (n_T = 3)
    ('I', 'T', 0.3333)
    """
    return _rows(image, compartment, radius_um, min_cells, normalised=True)
