"""Spatial statistics of the tumour microenvironment, per image (``library_key``).

Functions take AnnData, write squidpy's keys where squidpy has the same statistic (so
``squidpy.pl`` plots spatialpath's results), and return a result object with ``copy=True``.
No statistic ever pairs cells of different images.
"""

from spatialpath.gr._centrality import CentralityResult, centrality
from spatialpath.gr._cooccurrence import co_occurrence
from spatialpath.gr._graph import delaunay_graph, hop_graph, knn_graph, radius_graph, spatial_graph
from spatialpath.gr._interaction_matrix import InteractionMatrixResult, interaction_matrix
from spatialpath.gr._interaction_test import interaction_summary, interaction_test
from spatialpath.gr._nhood import NhoodEnrichmentResult, nhood_enrichment
from spatialpath.gr._permutation import PermutationResult, permutation_test

__all__ = [
    "CentralityResult",
    "InteractionMatrixResult",
    "NhoodEnrichmentResult",
    "PermutationResult",
    "centrality",
    "co_occurrence",
    "delaunay_graph",
    "hop_graph",
    "interaction_matrix",
    "interaction_summary",
    "interaction_test",
    "knn_graph",
    "nhood_enrichment",
    "permutation_test",
    "radius_graph",
    "spatial_graph",
]
