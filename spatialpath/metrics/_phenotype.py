"""Immune phenotype of a tumour: inflamed, excluded or desert (Chen & Mellman 2017).

From the densities of one immune type (default CD8 T cells) in the tumour (``ρ_T``) and the
stroma (``ρ_S``), with two documented thresholds:

1. **desert** (code 0) when ``max(ρ_T, ρ_S) < desert_density``: few immune cells anywhere;
2. otherwise **excluded** (code 1) when ``ρ_T < excluded_ratio · ρ_S``: immune cells held in the
   stroma;
3. otherwise **inflamed** (code 2).

The defaults (50 cells/mm², ratio 0.5) are illustrative, not validated cut-offs: calibrate them
on the cohort (e.g. the cohort median of ``ρ_T``) and report them with the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from spatialpath.metrics._image import TISSUE, ImageData, row
from spatialpath.metrics._registry import Parameter, non_negative, register, text

__all__ = ["PHENOTYPES", "immune_phenotype", "phenotype_call"]

#: integer code of each call in the ``value`` column.
PHENOTYPES: Mapping[int, str] = MappingProxyType({0: "desert", 1: "excluded", 2: "inflamed"})


def phenotype_call(
    density_tumour: float, density_stroma: float, *, desert_density: float = 50.0, excluded_ratio: float = 0.5
) -> int:
    """The call (code of :data:`PHENOTYPES`) for tumour and stromal densities (cells/mm²).

    Parameters
    ----------
    density_tumour, density_stroma
        The immune type's densities (cells/mm²) in tumour and stroma.
    desert_density
        δ: below it in both compartments the call is desert.
    excluded_ratio
        κ: a tumour density below κ × the stromal density is excluded.

    Examples
    --------
    >>> [PHENOTYPES[phenotype_call(t, s)] for t, s in [(10, 20), (30, 400), (300, 400)]]
    ['desert', 'excluded', 'inflamed']
    """
    if max(density_tumour, density_stroma) < desert_density:
        return 0
    if density_tumour < excluded_ratio * density_stroma:
        return 1
    return 2


@register(
    name="immune_phenotype",
    label="Immune phenotype (inflamed / excluded / desert)",
    definition=(
        "Call from the immune type's tumour and stromal densities: desert if both are below "
        "desert_density, else excluded if the tumour density is below excluded_ratio × the stromal "
        "density, else inflamed. Reported once per image (compartment 'tissue'), cell_type = immune_type; "
        "n_cells_a / n_cells_b are its counts in tumour / stroma."
    ),
    formula="desert: max(ρ_T, ρ_S) < δ; excluded: ρ_T < κ·ρ_S; inflamed: otherwise",
    unit="category",
    level="image",
    parameters=(
        Parameter("immune_type", "CD8 T", "the immune cell type (a category of cluster_key)", text, True),
        Parameter("tumour", "tumour", "tumour compartment", text),
        Parameter("stroma", "stroma", "stromal compartment", text),
        Parameter(
            "desert_density",
            50.0,
            "δ: density (cells/mm²) below which both compartments are empty",
            non_negative,
        ),
        Parameter(
            "excluded_ratio",
            0.5,
            "κ: tumour/stromal density ratio below which cells are excluded",
            non_negative,
        ),
    ),
    reference="Chen & Mellman 2017, Nature 541:321 (qualitative); the thresholds are parameters.",
    scope="image",
    default=False,
    value_labels=PHENOTYPES,
)
def immune_phenotype(
    image: ImageData,
    compartment: str = TISSUE,
    *,
    immune_type: str = "CD8 T",
    tumour: str = "tumour",
    stroma: str = "stroma",
    desert_density: float = 50.0,
    excluded_ratio: float = 0.5,
) -> list[dict[str, Any]]:
    """Inflamed (2) / excluded (1) / desert (0) call of one image from ``immune_type`` densities.

    Parameters
    ----------
    image
        One image's cells, compartment membership and areas (:class:`ImageData`).
    compartment
        The compartment to compute in (default ``"tissue"``).
    immune_type
        The immune cell type (a category of the cell types).
    tumour, stroma
        Tumour and stromal compartments.
    desert_density, excluded_ratio
        δ and κ of :func:`phenotype_call`.

    Examples
    --------
    >>> import shapely
    >>> regions = {"tumour": shapely.box(0, 0, 1000, 1000), "stroma": shapely.box(1000, 0, 2000, 1000)}
    >>> xy = [[100, 100]] * 10 + [[1500, 500]] * 100
    >>> img = ImageData.from_arrays(xy, ["CD8 T"] * 110, regions)
    >>> PHENOTYPES[int(immune_phenotype(img)[0]["value"])]
    'excluded'
    """
    code = image.type_code(immune_type, "immune_type")
    if not (image.present(tumour) and image.present(stroma)):
        return [row(immune_type, status="compartment_absent")]
    n_t, n_s = int(image.type_counts(tumour)[code]), int(image.type_counts(stroma)[code])
    call = phenotype_call(
        n_t / image.area_mm2(tumour),
        n_s / image.area_mm2(stroma),
        desert_density=desert_density,
        excluded_ratio=excluded_ratio,
    )
    return [row(immune_type, value=call, n_cells_a=n_t, n_cells_b=n_s)]
