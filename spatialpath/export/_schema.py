"""Column schema of the biomarker tables: names, order, labels, units and derivations.

One place for every fixed column of the long and wide biomarker tables, so that
:func:`~spatialpath.export.biomarker_table`, the data dictionary and the readers agree.
"""

from __future__ import annotations

from typing import Final

from spatialpath.keys import Key
from spatialpath.metrics._registry import COLUMNS
from spatialpath.metrics._registry import STATUSES as _METRIC_STATUSES

#: columns of the long metrics frame returned by ``spatialpath.metrics.compute`` (the contract).
METRIC_COLUMNS: Final = COLUMNS

#: statuses a metric row may carry (the metrics contract).
STATUSES: Final = tuple(_METRIC_STATUSES)
#: further statuses of a sample-level (aggregated) wide cell.
AGGREGATE_STATUSES: Final = ("not_aggregated", "no_evaluable_image")

#: the hierarchy columns that lead every biomarker table.
ID_COLUMNS: Final = (Key.obs.patient_id, Key.obs.sample_id, Key.obs.image_id)
#: per-image quality-control columns (constant within an image).
QC_COLUMNS: Final = (
    "n_cells_total",
    "tissue_area_mm2",
    "tissue_area_source",
    "tumour_area_mm2",
    "evaluable",
    "qc_note",
)
#: the columns of one long row that identify a wide column.
KEY_COLUMNS: Final = (Key.obs.compartment, "metric", "cell_type", "cell_type_b")
#: long columns that vary within an image (everything else is per image).
ROW_COLUMNS: Final = (
    *KEY_COLUMNS,
    "value",
    "unit",
    "n_cells_a",
    "n_cells_b",
    "area_mm2",
    "status",
    "parameters",
)
#: fixed long-table columns, in order; user metadata columns follow.
LONG_COLUMNS: Final = (*ID_COLUMNS, *ROW_COLUMNS, "spatialpath_version", *QC_COLUMNS)
#: columns of a sample-level wide table that replace the per-image QC columns.
SAMPLE_QC_COLUMNS: Final = (
    "n_images",
    "n_images_evaluable",
    "n_cells_total",
    "tissue_area_mm2",
    "tumour_area_mm2",
    "evaluable",
)

#: (label, unit, derivation) of every fixed column, for the data dictionary.
DESCRIPTIONS: Final[dict[str, tuple[str, str, str]]] = {
    "patient_id": ("Patient identifier", "", "obs['patient_id'] (or the image metadata); missing if absent"),
    "sample_id": ("Sample (specimen/slide) identifier", "", "obs['sample_id'] (or the image metadata)"),
    "image_id": ("Image (ROI, core, field) identifier", "", "obs[library_key]"),
    "compartment": ("Tissue compartment", "", "regions 'compartment' the metric was computed in"),
    "metric": ("Metric name", "", "spatialpath.metrics registry name"),
    "cell_type": ("Cell type (first type)", "", "category of obs[cluster_key]"),
    "cell_type_b": ("Second cell type", "", "second category for two-type metrics; missing otherwise"),
    "value": ("Metric value", "see unit", "spatialpath.metrics.compute; see the metric definitions"),
    "unit": ("Unit of value", "", "from the metric definition"),
    "n_cells_a": ("Cells of cell_type", "cells", "cells of cell_type in the compartment"),
    "n_cells_b": ("Cells of cell_type_b", "cells", "cells of cell_type_b (two-type metrics)"),
    "area_mm2": ("Compartment area", "mm2", "area of the compartment polygons (union), mm²"),
    "status": ("Status of value", "", "ok, zero_denominator, below_min_cells, compartment_absent, censored"),
    "parameters": ("Metric parameters", "", "canonical JSON of the metric's parameters"),
    "spatialpath_version": ("spatialpath version", "", "version of the package that computed the row"),
    "n_cells_total": (
        "Cells in the image (sample level: in its evaluable images)",
        "cells",
        "all cells of the image (per-image QC); sample level: sum over evaluable images",
    ),
    "tissue_area_mm2": (
        "Tissue area",
        "mm2",
        "the tissue area the metrics used (area_mm2 of the 'tissue' rows: the 'tissue' region "
        "polygons, else the union of the non-derived compartments, or the tissue from the cells "
        "without regions), else uns image metadata tissue_area_um2 / 1e6",
    ),
    "tissue_area_source": (
        "Source of tissue_area_mm2",
        "",
        "regions, tissue_from_cells, image_metadata or missing",
    ),
    "tumour_area_mm2": (
        "Tumour area",
        "mm2",
        "union of the tumour region polygons; 0 when the image has regions but no tumour; "
        "missing without regions",
    ),
    "evaluable": (
        "Image passes QC",
        "",
        "n_cells_total >= min_cells and tissue_area_mm2 >= min_tissue_mm2 (sample: any image evaluable)",
    ),
    "qc_note": ("Why the image is not evaluable", "", "the failed QC rules; missing when evaluable"),
    "n_images": ("Images of the sample", "images", "count of images pooled into the row"),
    "n_images_evaluable": ("Evaluable images of the sample", "images", "images with evaluable True"),
}
