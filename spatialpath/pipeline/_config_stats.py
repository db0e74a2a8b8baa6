"""The ``statistics`` section of the pipeline config: which spatial statistics run, and how.

A key present (even empty) runs that statistic on every image with these parameters; see
``docs/pipeline-config.md``.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import Field, model_validator

from spatialpath.pipeline._config_base import Loc, _Section, suggest

__all__ = [
    "CellularNeighborhoodsConfig",
    "CoOccurrenceConfig",
    "CrossFunctionConfig",
    "InteractionTestConfig",
    "NhoodEnrichmentConfig",
    "StatisticsConfig",
]


class NhoodEnrichmentConfig(_Section):
    """:func:`spatialpath.gr.nhood_enrichment` on the graph: permutations or the analytic z-score."""

    n_perms: int = Field(1000, ge=1)
    analytical: bool = False


class CoOccurrenceConfig(_Section):
    """:func:`spatialpath.gr.co_occurrence`; ``interval_um`` None = 50 distances from 10 to 250 µm."""

    interval_um: list[float] | None = None

    def problems(self) -> list[tuple[Loc, str]]:
        v = self.interval_um
        if v is not None and (len(v) < 2 or min(v) < 0 or any(b <= a for a, b in itertools.pairwise(v))):
            return [(("interval_um",), "interval_um must hold at least 2 distances ≥ 0, strictly increasing")]
        return []


class CrossFunctionConfig(_Section):
    """:func:`spatialpath.gr.cross_function` between ``focal`` and ``target`` types (None: all types)."""

    kind: Literal["K", "L", "G", "J", "g"] = "L"
    focal: list[str] | None = None
    target: list[str] | None = None
    r_max_um: float | None = Field(None, gt=0)
    correction: str | None = None
    n_perms: int | None = Field(None, ge=1)
    alpha: float = Field(0.05, gt=0, lt=1)

    def problems(self) -> list[tuple[Loc, str]]:
        from spatialpath.gr._cross_function import CORRECTIONS

        allowed = CORRECTIONS[self.kind]
        if self.correction is not None and self.correction not in allowed:
            msg = f"correction {self.correction!r} is not one of {list(allowed)} (kind {self.kind})"
            return [(("correction",), msg + suggest(self.correction, allowed))]
        return []


class InteractionTestConfig(_Section):
    """:func:`spatialpath.gr.interaction_test` per image (histoCAT/imcRtools), summarised over the cohort.

    ``method`` ``conditional`` (histoCAT's, the default), ``classic`` or ``patch`` (which needs
    ``patch_size``); ``n_perms`` within-image label permutations; ``p_threshold`` of ``sigval``.
    """

    method: Literal["conditional", "histocat", "classic", "patch"] = "conditional"
    n_perms: int = Field(1000, ge=1)
    p_threshold: float = Field(0.01, gt=0, lt=1)
    patch_size: int | None = Field(None, ge=1)

    def problems(self) -> list[tuple[Loc, str]]:
        if self.method == "patch" and self.patch_size is None:
            return [(("patch_size",), "method: patch needs patch_size (the minimum number of B neighbours)")]
        if self.method != "patch" and self.patch_size is not None:
            return [(("patch_size",), f"patch_size is not used with method: {self.method}; remove it")]
        return []


class CellularNeighborhoodsConfig(_Section):
    """:func:`spatialpath.gr.cellular_neighborhoods`: windows of ``n_neighbors`` cells or ``radius_um``."""

    n_neighbors: int | None = Field(10, ge=1)
    radius_um: float | None = Field(None, gt=0)
    n_clusters: int = Field(10, ge=2)
    n_restarts: int = Field(1, ge=1)

    def problems(self) -> list[tuple[Loc, str]]:
        if self.radius_um is not None and "n_neighbors" in self.model_fields_set and self.n_neighbors:
            return [(("radius_um",), "give n_neighbors or radius_um, not both")]
        return []

    def kwargs(self) -> dict[str, Any]:
        """Arguments of :func:`spatialpath.gr.cellular_neighborhoods` (besides data and seed)."""
        n = None if self.radius_um is not None else self.n_neighbors
        return {
            "n_neighbors": n,
            "radius": self.radius_um,
            "n_clusters": self.n_clusters,
            "n_restarts": self.n_restarts,
        }


class StatisticsConfig(_Section):
    """Which statistics run: a key present (even empty) runs it with these parameters."""

    nhood_enrichment: NhoodEnrichmentConfig | None = None
    co_occurrence: CoOccurrenceConfig | None = None
    cross_function: CrossFunctionConfig | None = None
    interaction_test: InteractionTestConfig | None = None
    cellular_neighborhoods: CellularNeighborhoodsConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_means_defaults(cls, data: Any) -> Any:
        return {k: ({} if v is None else v) for k, v in data.items()} if isinstance(data, dict) else data

    def problems(self) -> list[tuple[Loc, str]]:
        return [
            ((name, *loc), msg)
            for name in type(self).model_fields
            if (sub := getattr(self, name))
            for loc, msg in sub.problems()
        ]
