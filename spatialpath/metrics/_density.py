"""Counts, proportions and densities per cell type; the tumour/stroma density ratio; fraction in tumour.

Areas come from the regions (tissue masks or polygons in µm), never from a convex hull of the
cells. A type with no cell in a compartment has count, proportion and density **0** (a structural
zero, status ``ok``); NaN appears only where a value is undefined, with its status.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spatialpath.metrics._image import TISSUE, ImageData, row
from spatialpath.metrics._registry import Parameter, register, text

__all__ = ["cell_count", "density", "density_ratio", "fraction_in_compartment", "proportion"]

_REF_AREA = "Area from the regions table (mask or polygon), never a convex hull; see statistics.md §11."


def _absent_types(image: ImageData) -> list[dict[str, Any]]:
    return [row(t, status="compartment_absent") for t in image.categories]


@register(
    name="count",
    label="Cell count",
    definition="Number of cells of the type in the compartment.",
    formula="n_a = #{i in compartment : type(i) = a}",
    unit="cells",
    level="type",
    parameters=(),
    reference="Convention.",
)
def cell_count(image: ImageData, compartment: str = TISSUE) -> list[dict[str, Any]]:
    """Cells of each type in ``compartment`` (structural zeros for absent types).

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).

    Examples
    --------
    >>> import shapely
    >>> img = ImageData.from_arrays([[1, 1], [2, 2]], ["T", "T"], {"tissue": shapely.box(0, 0, 10, 10)},
    ...                             categories=["T", "B"])
    >>> [(r["cell_type"], r["value"]) for r in cell_count(img)]
    [('T', 2.0), ('B', 0.0)]
    """
    if not image.present(compartment):
        return _absent_types(image)
    counts = image.type_counts(compartment)
    return [row(t, value=n, n_cells_a=n) for t, n in zip(image.categories, counts, strict=True)]


@register(
    name="proportion",
    label="Proportion of cells",
    definition="Fraction of the compartment's cells that are of the type; sums to 1 over types.",
    formula="p_a = n_a / n, n = all cells in the compartment",
    unit="1",
    level="type",
    parameters=(),
    reference="Convention (SPIAT calculate_cell_proportions).",
)
def proportion(image: ImageData, compartment: str = TISSUE) -> list[dict[str, Any]]:
    """Fraction of the compartment's cells of each type; ``zero_denominator`` when it has no cell.

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).

    Examples
    --------
    >>> import shapely
    >>> img = ImageData.from_arrays([[1, 1], [2, 2], [3, 3]], ["T", "B", "T"],
    ...                             {"tissue": shapely.box(0, 0, 10, 10)})
    >>> [round(r["value"], 3) for r in proportion(img)]
    [0.667, 0.333]
    """
    if not image.present(compartment):
        return _absent_types(image)
    counts = image.type_counts(compartment)
    total = int(counts.sum())
    status = "ok" if total > 0 else "zero_denominator"
    return [
        row(t, value=n / total if total else np.nan, n_cells_a=n, n_cells_b=total, status=status)
        for t, n in zip(image.categories, counts, strict=True)
    ]


@register(
    name="density",
    label="Cell density",
    definition="Cells of the type per mm² of the compartment's area (from the regions).",
    formula="ρ_a = n_a / |compartment|, |·| in mm²",
    unit="cells/mm2",
    level="type",
    parameters=(),
    reference=_REF_AREA,
)
def density(image: ImageData, compartment: str = TISSUE) -> list[dict[str, Any]]:
    """Cells of each type per mm² of ``compartment``.

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).

    Examples
    --------
    >>> import shapely
    >>> img = ImageData.from_arrays([[1, 1], [2, 2]], ["T", "B"], {"tissue": shapely.box(0, 0, 1000, 500)})
    >>> [r["value"] for r in density(img)]  # 0.5 mm²
    [2.0, 2.0]
    """
    if not image.present(compartment):
        return _absent_types(image)
    area = image.area_mm2(compartment)
    counts = image.type_counts(compartment)
    return [row(t, value=n / area, n_cells_a=n) for t, n in zip(image.categories, counts, strict=True)]


@register(
    name="density_ratio",
    label="Intratumoral / stromal density ratio",
    definition=(
        "Density of the type in the numerator compartment (tumour) divided by its density in the "
        "denominator compartment (stroma). Reported once per image (compartment 'tissue')."
    ),
    formula="ρ_a(tumour) / ρ_a(stroma)",
    unit="1",
    level="type",
    parameters=(
        Parameter("numerator", "tumour", "compartment of the numerator density", text),
        Parameter("denominator", "stroma", "compartment of the denominator density", text),
    ),
    reference="Immune phenotype (Chen & Mellman 2017) from tumour vs stromal densities; statistics.md §11.",
    scope="image",
)
def density_ratio(
    image: ImageData, compartment: str = TISSUE, *, numerator: str = "tumour", denominator: str = "stroma"
) -> list[dict[str, Any]]:
    """Per type, density in ``numerator`` / density in ``denominator`` (NaN + status when undefined).

    ``n_cells_a``/``n_cells_b`` are the type's counts in the numerator/denominator compartments.
    A zero stromal density gives ``zero_denominator``; a missing compartment ``compartment_absent``.

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    numerator, denominator
        Compartments whose densities are divided (default tumour / stroma).

    Examples
    --------
    >>> import shapely
    >>> regions = {"tumour": shapely.box(0, 0, 10, 10), "stroma": shapely.box(10, 0, 20, 10)}
    >>> img = ImageData.from_arrays([[1, 1], [12, 1], [13, 1]], ["T", "T", "T"], regions)
    >>> density_ratio(img)[0]["value"]
    0.5
    """
    if not (image.present(numerator) and image.present(denominator)):
        return _absent_types(image)
    num, den = image.type_counts(numerator), image.type_counts(denominator)
    a_num, a_den = image.area_mm2(numerator), image.area_mm2(denominator)
    out = []
    for t, n1, n2 in zip(image.categories, num, den, strict=True):
        ok = n2 > 0
        value = (n1 / a_num) / (n2 / a_den) if ok else np.nan
        out.append(row(t, value=value, n_cells_a=n1, n_cells_b=n2, status="ok" if ok else "zero_denominator"))
    return out


@register(
    name="fraction_in_compartment",
    label="Fraction of the type inside tumour",
    definition=(
        "Fraction of the type's tissue cells that lie in the named compartment (default tumour). "
        "Reported once per image (compartment 'tissue')."
    ),
    formula="#{i : type(i) = a, i in tumour} / #{i : type(i) = a, i in tissue}",
    unit="1",
    level="type",
    parameters=(Parameter("inside", "tumour", "the compartment the fraction refers to", text),),
    reference="Convention (e.g. fraction of CD8 T cells that are intratumoral).",
    scope="image",
)
def fraction_in_compartment(
    image: ImageData, compartment: str = TISSUE, *, inside: str = "tumour"
) -> list[dict[str, Any]]:
    """Per type, the fraction of its tissue cells inside the compartment ``inside`` (default tumour).

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    inside
        The compartment whose share of each type's tissue cells is reported.

    Examples
    --------
    >>> import shapely
    >>> regions = {"tumour": shapely.box(0, 0, 10, 10), "stroma": shapely.box(10, 0, 20, 10)}
    >>> img = ImageData.from_arrays([[1, 1], [12, 1], [13, 1]], ["T", "T", "T"], regions)
    >>> round(fraction_in_compartment(img)[0]["value"], 3)
    0.333
    """
    if not (image.present(inside) and image.present(TISSUE)):
        return _absent_types(image)
    part = np.bincount(image.codes[image.mask(inside) & image.mask(TISSUE)], minlength=len(image.categories))
    whole = image.type_counts(TISSUE)
    return [
        row(
            t,
            value=p / w if w else np.nan,
            n_cells_a=p,
            n_cells_b=w,
            status="ok" if w else "zero_denominator",
        )
        for t, p, w in zip(image.categories, part, whole, strict=True)
    ]
