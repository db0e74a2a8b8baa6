"""Spatial statistics of the tumour microenvironment, per image (``library_key``).

Functions take AnnData, write squidpy's keys where squidpy has the same statistic (so
``squidpy.pl`` plots spatialpath's results), and return a result object with ``copy=True``.
No statistic ever pairs cells of different images.
"""

from spatialpath.gr._autocorr import spatial_autocorr
from spatialpath.gr._cellular_neighborhoods import (
    CellularNeighborhoods,
    cellular_neighborhoods,
    cn_frequencies,
    cn_mixing,
    fit_cellular_neighborhoods,
    predict_cellular_neighborhoods,
)
from spatialpath.gr._centrality import CentralityResult, centrality
from spatialpath.gr._cooccurrence import co_occurrence
from spatialpath.gr._cross_function import cross_function
from spatialpath.gr._cross_result import CrossFunctionResult
from spatialpath.gr._envelope import (
    GlobalEnvelopeResult,
    PointwiseEnvelopeResult,
    auc,
    global_envelope_test,
    pointwise_envelope,
)
from spatialpath.gr._graph import delaunay_graph, hop_graph, knn_graph, radius_graph, spatial_graph
from spatialpath.gr._interaction_matrix import InteractionMatrixResult, interaction_matrix
from spatialpath.gr._interaction_test import interaction_summary, interaction_test
from spatialpath.gr._nhood import NhoodEnrichmentResult, nhood_enrichment
from spatialpath.gr._permutation import PermutationResult, permutation_test
from spatialpath.gr._window import Window, make_window

__all__ = [
    "CellularNeighborhoods",
    "CentralityResult",
    "CrossFunctionResult",
    "GlobalEnvelopeResult",
    "InteractionMatrixResult",
    "NhoodEnrichmentResult",
    "PermutationResult",
    "PointwiseEnvelopeResult",
    "Window",
    "auc",
    "cellular_neighborhoods",
    "centrality",
    "cn_frequencies",
    "cn_mixing",
    "co_occurrence",
    "cross_function",
    "delaunay_graph",
    "fit_cellular_neighborhoods",
    "global_envelope_test",
    "hop_graph",
    "interaction_matrix",
    "interaction_summary",
    "interaction_test",
    "knn_graph",
    "make_window",
    "nhood_enrichment",
    "permutation_test",
    "pointwise_envelope",
    "predict_cellular_neighborhoods",
    "radius_graph",
    "spatial_autocorr",
    "spatial_graph",
]
