"""Clinical tumour-microenvironment metrics, per image, compartment and cell type, from a registry.

Every metric is registered once (:data:`REGISTRY`) with its label, definition, formula, unit,
parameters, reference and level; ``docs/metrics.md`` is rendered from it
(:func:`render_metrics_doc`; regenerate with ``python -m spatialpath.metrics docs/metrics.md``).
:func:`compute` runs metrics on an AnnData and a regions table and returns the long table the
export layer consumes (columns :data:`COLUMNS`). Each metric is also a plain function of an
:class:`ImageData` (arrays of positions and types plus compartment polygons).
"""

from spatialpath.metrics._compute import compute, default_metrics
from spatialpath.metrics._density import (
    cell_count,
    density,
    density_ratio,
    fraction_in_compartment,
    proportion,
)
from spatialpath.metrics._distance import (
    fraction_within_radius,
    nn_censored_fraction,
    nn_distance_mean,
    nn_distance_median,
    nn_distance_quantile,
    nn_distances,
)
from spatialpath.metrics._docs import render_metrics_doc
from spatialpath.metrics._image import DERIVED_COMPARTMENTS, TISSUE, ImageData, implicit_tissue
from spatialpath.metrics._mixing import interaction_counts, mixing_score, mixing_score_normalised
from spatialpath.metrics._phenotype import PHENOTYPES, immune_phenotype, phenotype_call
from spatialpath.metrics._registry import (
    COLUMNS,
    LEVELS,
    REGISTRY,
    STATUSES,
    Metric,
    Parameter,
    canonical_parameters,
    get_metric,
    register,
)
from spatialpath.metrics._spatial import (
    clark_evans,
    cn_frequency,
    g_cross_auc,
    l_cross_auc,
    mean_nn_distance_cdf,
    neighbourhood_entropy,
)

__all__ = [
    "COLUMNS",
    "DERIVED_COMPARTMENTS",
    "LEVELS",
    "PHENOTYPES",
    "REGISTRY",
    "STATUSES",
    "TISSUE",
    "ImageData",
    "Metric",
    "Parameter",
    "canonical_parameters",
    "cell_count",
    "clark_evans",
    "cn_frequency",
    "compute",
    "default_metrics",
    "density",
    "density_ratio",
    "fraction_in_compartment",
    "fraction_within_radius",
    "g_cross_auc",
    "get_metric",
    "immune_phenotype",
    "implicit_tissue",
    "interaction_counts",
    "l_cross_auc",
    "mean_nn_distance_cdf",
    "mixing_score",
    "mixing_score_normalised",
    "neighbourhood_entropy",
    "nn_censored_fraction",
    "nn_distance_mean",
    "nn_distance_median",
    "nn_distance_quantile",
    "nn_distances",
    "phenotype_call",
    "proportion",
    "register",
    "render_metrics_doc",
]
