"""The plain data a metric reads: one image's cells, their compartments and the regions' areas.

:class:`ImageData` is what every metric function takes (``metric(image, compartment, **params)``)
and what :func:`spatialpath.metrics.compute` builds for each image from an AnnData and a regions
table. Build one yourself with :meth:`ImageData.from_arrays` to compute a metric on bare arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import shapely

from spatialpath.model import DataModelError
from spatialpath.regions._schema import MARGIN, MARGIN_INNER, MARGIN_OUTER, TUMOUR_CORE

__all__ = ["DERIVED_COMPARTMENTS", "TISSUE", "ImageData", "implicit_tissue", "row"]

#: the whole-tissue compartment: the regions' ``"tissue"`` rows, else :func:`implicit_tissue`.
TISSUE = "tissue"
#: compartments derived from others (margin bands, tumour core: :mod:`spatialpath.regions._margins`);
#: they never enter the implicit tissue (the outer margin band reaches beyond the annotated tissue).
DERIVED_COMPARTMENTS: frozenset[str] = frozenset({MARGIN_OUTER, MARGIN, MARGIN_INNER, TUMOUR_CORE})


def implicit_tissue(compartments: Sequence[str], geometries: Sequence[Any]) -> Any:
    """The tissue of an image without a ``"tissue"`` region: the union of its non-derived compartments.

    Derived compartments (:data:`DERIVED_COMPARTMENTS`: margin bands, tumour core) are left out, so
    an image annotated with tumour and stroma has tumour ∪ stroma as its tissue even after
    :func:`spatialpath.regions.margin_bands` added an outer band reaching past the annotation. An
    image with only derived compartments has no implicit tissue (``None``: ``"tissue"`` is absent).

    Parameters
    ----------
    compartments
        Compartment name of each region row.
    geometries
        The rows' (Multi)Polygons in µm, aligned with ``compartments``.

    Examples
    --------
    >>> import shapely
    >>> t = implicit_tissue(["tumour", "margin_outer"], [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 3, 1)])
    >>> t.area
    1.0
    """
    keep = [g for c, g in zip(compartments, geometries, strict=True) if str(c) not in DERIVED_COMPARTMENTS]
    return shapely.union_all(keep) if keep else None


def row(
    cell_type: str | None = None,
    cell_type_b: str | None = None,
    value: float = np.nan,
    n_cells_a: int | None = None,
    n_cells_b: int | None = None,
    status: str = "ok",
) -> dict[str, Any]:
    """One output row of a metric (``compute`` adds image, compartment, metric, unit, area, parameters)."""
    return {
        "cell_type": cell_type,
        "cell_type_b": cell_type_b,
        "value": float(value) if status == "ok" else np.nan,
        "n_cells_a": None if n_cells_a is None else int(n_cells_a),
        "n_cells_b": None if n_cells_b is None else int(n_cells_b),
        "status": status,
    }


@dataclass(eq=False)
class ImageData:
    """The cells of one image that lie in its regions, with per-compartment membership and areas.

    Attributes
    ----------
    image_id
        Image identifier.
    categories
        All cell types (also those absent from this image: their counts are structural zeros).
    xy
        ``(n, 2)`` cell positions in µm (cells outside every region are left out).
    codes
        ``(n,)`` index of each cell's type in ``categories``.
    membership
        Compartment -> ``(n,)`` bool: whether each cell lies in it (compartments may overlap).
    geometry
        Compartment -> (Multi)Polygon in µm. A compartment without a geometry of positive area is
        *absent* in this image.
    labels
        Further per-cell labels by name -> ``(codes, categories)`` (e.g. cellular neighbourhoods).
    areas_mm2
        Compartment -> area in mm² (default: the geometry's area); :func:`compute` passes
        :func:`spatialpath.regions.compartment_areas`, so ``density = n / area_mm2`` exactly.

    Examples
    --------
    >>> import shapely
    >>> regions = {"tumour": shapely.box(0, 0, 500, 500), "stroma": shapely.box(500, 0, 1000, 500)}
    >>> img = ImageData.from_arrays([[10, 10], [600, 20], [30, 30]], ["T", "B", "T"], regions)
    >>> img.categories, img.xy.shape, img.area_mm2("tissue")  # tissue = tumour ∪ stroma, 0.5 mm²
    (('T', 'B'), (3, 2), 0.5)
    >>> img.membership["tumour"].tolist(), img.type_counts("tumour").tolist()
    ([True, False, True], [2, 0])
    """

    image_id: str
    categories: tuple[str, ...]
    xy: np.ndarray
    codes: np.ndarray
    membership: Mapping[str, np.ndarray]
    geometry: Mapping[str, Any]
    labels: Mapping[str, tuple[np.ndarray, tuple[str, ...]]] = field(default_factory=dict)
    areas_mm2: Mapping[str, float] = field(default_factory=dict)
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_arrays(
        cls,
        xy: Any,
        cell_types: Sequence[str] | pd.Categorical,
        regions: Mapping[str, Any],
        *,
        categories: Sequence[str] | None = None,
        image_id: str = "image",
        labels: Mapping[str, Sequence[str]] | None = None,
    ) -> ImageData:
        """Build from positions (µm), cell types and ``{compartment: polygon}``.

        ``regions`` without a ``"tissue"`` entry get one: :func:`implicit_tissue`. Cells in no
        region are left out. Membership follows :func:`spatialpath.regions.cell_membership`
        (inside or on the boundary).

        Raises
        ------
        DataModelError
            If ``xy`` is not ``(n, 2)`` finite, lengths differ, ``regions`` is empty, or a cell type is
            not in ``categories``.

        Examples
        --------
        >>> import shapely
        >>> regions = {"tumour": shapely.box(0, 0, 5, 5), "tissue": shapely.box(0, 0, 10, 10)}
        >>> img = ImageData.from_arrays([[1, 1], [2, 2], [8, 8]], ["T", "B", "T"], regions)
        >>> img.n_cells("tumour"), img.area_mm2("tissue")
        (2, 0.0001)
        """
        import geopandas as gpd
        from anndata import AnnData

        from spatialpath.regions._membership import cell_membership

        xy = np.asarray(xy, dtype=float)
        if xy.ndim != 2 or xy.shape[1] < 2 or not np.isfinite(xy[:, :2]).all():
            raise DataModelError(f"xy must be an (n, 2) array of finite µm positions, got shape {xy.shape}")
        types = np.asarray(cell_types, dtype=object).astype(str)
        if len(types) != len(xy):
            raise DataModelError(f"cell_types has {len(types)} entries for {len(xy)} positions")
        cats = tuple(str(c) for c in (categories if categories is not None else pd.unique(types)))
        unknown = sorted(str(t) for t in set(types) - set(cats))
        if unknown:
            raise DataModelError(f"cell types {unknown[:5]} are not in categories {list(cats)[:10]}")
        if not regions:
            raise DataModelError("regions is empty: pass {compartment: polygon in µm}, e.g. {'tissue': poly}")
        geoms = dict(regions)
        if TISSUE not in geoms:
            tissue = implicit_tissue(list(geoms), list(geoms.values()))
            if tissue is not None:
                geoms[TISSUE] = tissue
        gdf = gpd.GeoDataFrame({"compartment": list(geoms)}, geometry=list(geoms.values()))
        a = AnnData(obs=pd.DataFrame(index=[str(i) for i in range(len(xy))]))
        a.obsm["spatial"] = xy[:, :2]
        member = cell_membership(a, gdf, library_key=None)
        keep = member.to_numpy().any(axis=1)
        code_of = {c: i for i, c in enumerate(cats)}
        extra = {}
        for name, values in (labels or {}).items():
            cat = pd.Categorical(np.asarray(values, dtype=object)[keep].astype(str))
            extra[name] = (cat.codes.astype(np.int64), tuple(map(str, cat.categories)))
        return cls(
            image_id=str(image_id),
            categories=cats,
            xy=xy[keep, :2],
            codes=np.array([code_of[t] for t in types[keep]], dtype=np.int64),
            membership={c: member[c].to_numpy()[keep] for c in member.columns},
            geometry=geoms,
            labels=extra,
        )

    # --- compartments ------------------------------------------------------------------------
    def present(self, compartment: str) -> bool:
        """Whether the image has a region of positive area for ``compartment``."""
        geom = self.geometry.get(compartment)
        return geom is not None and not shapely.is_empty(geom) and geom.area > 0

    def area_mm2(self, compartment: str) -> float:
        """Area of the compartment in mm² (NaN when absent)."""
        if not self.present(compartment):
            return np.nan
        if compartment in self.areas_mm2:
            return float(self.areas_mm2[compartment])
        return float(self.geometry[compartment].area) / 1e6

    def mask(self, compartment: str) -> np.ndarray:
        """Cells of the compartment (all False when absent)."""
        m = self.membership.get(compartment)
        return np.zeros(len(self.xy), bool) if m is None or not self.present(compartment) else m

    def n_cells(self, compartment: str) -> int:
        """Number of cells in the compartment."""
        return int(self.mask(compartment).sum())

    def type_counts(self, compartment: str) -> np.ndarray:
        """Cells of each type (``categories`` order) in the compartment."""
        return np.bincount(self.codes[self.mask(compartment)], minlength=len(self.categories))

    def type_code(self, name: str, parameter: str) -> int:
        """Index of a cell type named by a metric parameter.

        Raises
        ------
        DataModelError
            If ``name`` is not a category (the message names the parameter and the categories).
        """
        if name not in self.categories:
            raise DataModelError(
                f"parameter {parameter}={name!r} is not a cell type; expected one of "
                f"{list(self.categories)[:20]} (set it with params={{metric: {{{parameter!r}: ...}}}})"
            )
        return self.categories.index(name)

    # --- distances to the field edge ---------------------------------------------------------
    def edge_distance(self, compartment: str = TISSUE) -> np.ndarray:
        """Distance (µm) of every cell to the boundary of ``compartment`` (the field: ``"tissue"``)."""
        key = ("edge", compartment)
        if key not in self._cache:
            if self.present(compartment):
                boundary = self.geometry[compartment].boundary
                shapely.prepare(boundary)
                d = shapely.distance(shapely.points(self.xy), boundary) if len(self.xy) else np.zeros(0)
            else:
                d = np.zeros(len(self.xy))
            self._cache[key] = np.asarray(d, dtype=float)
        return self._cache[key]
