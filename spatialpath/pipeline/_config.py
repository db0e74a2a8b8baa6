"""The cohort pipeline's configuration: pydantic models of the YAML file, every default documented.

Each section of the YAML file is a model that refuses unknown keys (``extra="forbid"``). Types are
checked by pydantic; the rules that tie several keys together, or a key to the file system or to
the metric registry, are each section's :meth:`_Section.problems`, so that
:func:`spatialpath.pipeline.load_config` can report all of them at once with their line numbers.
Built directly in Python (``PipelineConfig.model_validate(dict)``) the same rules raise at once.
See ``docs/pipeline-config.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    RootModel,
    ValidationInfo,
    field_validator,
    model_validator,
)

from spatialpath.pipeline._config_base import Loc, _explicit, _resolve, _Section, suggest
from spatialpath.pipeline._config_stats import (
    CellularNeighborhoodsConfig,
    CoOccurrenceConfig,
    CrossFunctionConfig,
    InteractionTestConfig,
    NhoodEnrichmentConfig,
    StatisticsConfig,
)

__all__ = [
    "CONFIG_VERSION",
    "NEEDS_PIXEL_SIZE",
    "NO_PIXEL_SIZE",
    "BlindingConfig",
    "CellularNeighborhoodsConfig",
    "ClusterConfig",
    "CoOccurrenceConfig",
    "CompartmentsConfig",
    "CrossFunctionConfig",
    "GraphConfig",
    "InteractionTestConfig",
    "MarginsConfig",
    "MetricsConfig",
    "NhoodEnrichmentConfig",
    "OutputsConfig",
    "PhenotypeConfig",
    "PipelineConfig",
    "StatisticsConfig",
    "suggest",
]

#: the config format this spatialpath reads (the ``version`` key).
CONFIG_VERSION = 1
#: technologies whose cell tables are in pixels: the sample sheet must give ``pixel_size_um``.
NEEDS_PIXEL_SIZE = frozenset({"codex", "cycif", "mibi"})
#: technologies whose reader takes the scale from its own files: ``pixel_size_um`` must be empty.
NO_PIXEL_SIZE = frozenset({"visium", "xenium", "merscope", "simulated"})


class PhenotypeConfig(_Section):
    """Where cell types come from: a column of the cell table, or manual gates and a gating tree.

    ``column``: name of the cell-type column in the input (copied to ``obs["cell_type"]``).
    ``workflow`` (+ ``gates``, ``log``): :func:`spatialpath.io.phenotype` with scimap's
    ``phenotype_workflow.csv`` and ``manual_gates.csv``. Neither: the column the reader detected
    as ``cell_type`` (``cellType``, ``Phenotype``, ``class`` ...).
    """

    column: str | None = None
    gates: Path | None = None
    workflow: Path | None = None
    log: bool | None = None

    @field_validator("gates", "workflow")
    @classmethod
    def _relative(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    def problems(self) -> list[tuple[Loc, str]]:
        out: list[tuple[Loc, str]] = []
        if self.column is not None and self.workflow is not None:
            out.append((("column",), "give either column or gates + workflow, not both"))
        for key in ("gates", "log"):
            if key in self.model_fields_set and self.workflow is None:
                out.append(((key,), f"{key} is used only with a workflow file; add workflow: <csv>"))
        for key in ("gates", "workflow"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                out.append(((key,), f"{key} file not found: {path}"))
        return out


class GraphConfig(_Section):
    """The spatial graph of each image (:func:`spatialpath.gr.spatial_graph`), distances in µm."""

    method: Literal["knn", "radius", "delaunay"] = "knn"
    n_neighbors: int = Field(6, ge=1)
    symmetric: bool = False
    radius_um: float | None = Field(None, gt=0)
    max_distance_um: float | None = Field(None, gt=0)

    def problems(self) -> list[tuple[Loc, str]]:
        unused = {"knn": ("radius_um",), "radius": ("n_neighbors", "symmetric", "max_distance_um")}
        out = _explicit(
            self, unused.get(self.method, ("n_neighbors", "symmetric", "radius_um")), "method", self.method
        )
        if self.method == "radius" and self.radius_um is None:
            out.append((("method",), "method radius needs radius_um: <µm>"))
        return out

    def kwargs(self) -> dict[str, Any]:
        """Arguments of :func:`spatialpath.gr.spatial_graph` besides ``adata`` and ``method``."""
        if self.method == "knn":
            return {
                "n_neighbors": self.n_neighbors,
                "symmetric": self.symmetric,
                "max_distance": self.max_distance_um,
            }
        if self.method == "radius":
            return {"radius": self.radius_um}
        return {"max_distance": self.max_distance_um}


class MarginsConfig(_Section):
    """Invasive-margin bands (:func:`spatialpath.regions.margin_bands`) around ``tumour``."""

    tumour: str = "tumour"
    widths_um: tuple[float, float] = (500.0, 500.0)

    def problems(self) -> list[tuple[Loc, str]]:
        if min(self.widths_um) < 0 or max(self.widths_um) <= 0:
            return [(("widths_um",), "widths_um must be [inside, outside] µm, both ≥ 0 and not both 0")]
        return []


_SOURCE_KEYS = {
    "cells": ("resolution_um", "closing_radius_um"),
    "masks": ("mask_channel", "categories", "background"),
    "geojson": ("classification_key", "geojson_units"),
}


class CompartmentsConfig(_Section):
    """Tissue compartments of each image: from a class mask, a GeoJSON file, or the cells.

    ``source: cells`` (default): the tissue outline from the cells
    (:func:`spatialpath.regions.tissue_from_cells`). ``masks``: the sample sheet's ``mask_path``
    (channel ``mask_channel``, pixel size from the sheet or the file) via
    :func:`spatialpath.regions.from_mask`. ``geojson``: the sheet's ``regions_path`` via
    :func:`spatialpath.regions.read_geojson` (``geojson_units: px`` scales by ``pixel_size_um``).
    """

    source: Literal["cells", "masks", "geojson"] = "cells"
    resolution_um: float = Field(20.0, gt=0)
    closing_radius_um: float = Field(50.0, ge=0)
    mask_channel: int | str = 0
    categories: list[str] | dict[int, str] | None = None
    background: int | list[int] | None = 0
    classification_key: str | None = None
    geojson_units: Literal["um", "px"] = "um"
    margins: MarginsConfig | None = None

    def problems(self) -> list[tuple[Loc, str]]:
        others = tuple(k for s, keys in _SOURCE_KEYS.items() if s != self.source for k in keys)
        out = _explicit(self, others, "source", self.source)
        if self.margins is not None:
            out += [(("margins", *loc), msg) for loc, msg in self.margins.problems()]
        return out


class MetricsConfig(RootModel[dict[str, dict[str, Any]] | None]):
    """Metrics of :data:`spatialpath.metrics.REGISTRY`: a list of names, or names → parameters.

    ``None`` (key absent or empty): :func:`spatialpath.metrics.default_metrics`.
    """

    @model_validator(mode="before")
    @classmethod
    def _names_to_mapping(cls, data: Any) -> Any:
        if isinstance(data, list) and all(isinstance(n, str) for n in data):
            return {name: {} for name in data}
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Any:
        return _Section._check(self, info)  # type: ignore[arg-type]

    def problems(self) -> list[tuple[Loc, str]]:
        from spatialpath.metrics import REGISTRY

        out: list[tuple[Loc, str]] = []
        for name, params in (self.root or {}).items():
            if name not in REGISTRY:
                out.append(
                    (
                        (name,),
                        f"unknown metric {name!r}{suggest(name, list(REGISTRY))} "
                        f"(known: {', '.join(REGISTRY)})",
                    )
                )
                continue
            for key in params:
                if key not in REGISTRY[name].defaults:
                    known = list(REGISTRY[name].defaults)
                    out.append(
                        (
                            (name, key),
                            f"metric {name} has no parameter {key!r}{suggest(key, known)} "
                            f"(its parameters: {known})",
                        )
                    )
            try:
                REGISTRY[name].resolve({k: v for k, v in params.items() if k in REGISTRY[name].defaults})
            except ValueError as e:
                out.append(((name,), str(e)))
        return out

    def requests(self) -> dict[str, dict[str, Any]]:
        """Every metric to compute with its parameters, registry defaults filled in."""
        from spatialpath.metrics import REGISTRY, default_metrics

        chosen = self.root if self.root is not None else {name: {} for name in default_metrics()}
        return {name: REGISTRY[name].resolve(params) for name, params in chosen.items()}


class OutputsConfig(_Section):
    """Formats of the tables and whether figures are drawn."""

    formats: list[Literal["csv", "parquet", "xlsx"]] = Field(
        default_factory=lambda: ["csv", "parquet", "xlsx"], min_length=1
    )
    figures: bool = True


class BlindingConfig(_Section):
    """Sample-sheet metadata columns withheld from every output until the study is unblinded."""

    columns: list[str] = Field(default_factory=list)


class ClusterConfig(_Section):
    """The dask.distributed cluster; every key None = sized to the machine."""

    n_workers: int | None = Field(None, ge=1)
    threads_per_worker: int | None = Field(None, ge=1)
    memory_limit: str | None = None

    def problems(self) -> list[tuple[Loc, str]]:
        from dask.utils import parse_bytes

        if self.memory_limit not in (None, "auto"):
            try:
                parse_bytes(self.memory_limit)
            except ValueError:
                return [
                    (
                        ("memory_limit",),
                        f"memory_limit {self.memory_limit!r} is not a size like '4GB' or 'auto'",
                    )
                ]
        return []


#: sections of the top level, in the YAML file's documented order.
SECTIONS: dict[str, type[BaseModel]] = {
    "phenotype": PhenotypeConfig,
    "graph": GraphConfig,
    "statistics": StatisticsConfig,
    "compartments": CompartmentsConfig,
    "metrics": MetricsConfig,
    "outputs": OutputsConfig,
    "blinding": BlindingConfig,
    "cluster": ClusterConfig,
}


def section_value(name: str, value: Any) -> Any:
    """The value a section is validated from: an empty section is its defaults."""
    return {} if value is None and name != "metrics" else value


class PipelineConfig(_Section):
    """A validated pipeline configuration: paths absolute, the sample sheet loaded.

    Build it with :func:`spatialpath.pipeline.load_config`, which also checks the sample sheet
    and reports every problem with its line number.

    Examples
    --------
    >>> cfg = PipelineConfig.model_validate({"version": 1, "samples": "/data/s.csv", "output": "/out"})
    >>> cfg.graph.method, cfg.compartments.source, cfg.seed
    ('knn', 'cells', 0)
    >>> sorted(cfg.parameters_for_hash())[:3]
    ['compartments', 'graph', 'metrics']
    """

    version: Literal[1]
    samples: Path
    output: Path
    seed: int = Field(0, ge=0)
    phenotype: PhenotypeConfig = Field(default_factory=PhenotypeConfig)
    graph: GraphConfig = Field(default_factory=GraphConfig)
    statistics: StatisticsConfig = Field(default_factory=StatisticsConfig)
    compartments: CompartmentsConfig = Field(default_factory=CompartmentsConfig)
    metrics: MetricsConfig = Field(default_factory=lambda: MetricsConfig(None))
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    blinding: BlindingConfig = Field(default_factory=BlindingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    _config_path: Path | None = PrivateAttr(default=None)
    _sheet: pd.DataFrame | None = PrivateAttr(default=None)

    @field_validator("samples", "output")
    @classmethod
    def _relative(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: section_value(k, v) if k in SECTIONS else v for k, v in data.items()}
        return data

    def problems(self) -> list[tuple[Loc, str]]:
        return [((name, *loc), msg) for name in SECTIONS for loc, msg in getattr(self, name).problems()]

    @property
    def config_path(self) -> Path | None:
        """The YAML file this configuration was read from (None when built in Python)."""
        return self._config_path

    @property
    def sample_sheet(self) -> pd.DataFrame:
        """The checked sample sheet: one row per image, indexed by its line in the CSV file.

        Paths are absolute, ``technology`` lower case, ``pixel_size_um`` float (NaN when empty),
        other columns text (missing values ``NaN``).
        """
        if self._sheet is None:
            raise RuntimeError(
                "no sample sheet loaded: build the config with spatialpath.pipeline.load_config"
            )
        return self._sheet

    @property
    def metadata_columns(self) -> list[str]:
        """Sample-sheet columns beyond the known ones (arm, timepoint...), copied to every cell."""
        from spatialpath.pipeline._validate import SHEET_COLUMNS

        return [c for c in self.sample_sheet.columns if c not in SHEET_COLUMNS]

    def parameters_for_hash(self) -> dict[str, Any]:
        """Everything that influences the results, as canonical JSON-able data.

        The version, seed, phenotyping (gates and workflow by their SHA-256, not their path),
        graph, statistics, compartments and metrics with registry defaults filled in. Left out:
        paths of the sample sheet and output, output formats, blinding and cluster (they change
        where and how results are written, not their values). Per-image inputs are the rows of
        :attr:`sample_sheet`.
        """
        from spatialpath.provenance import sha256_file

        pheno = self.phenotype.model_dump(mode="json", exclude={"gates", "workflow"})
        for key in ("gates", "workflow"):
            path = getattr(self.phenotype, key)
            pheno[f"{key}_sha256"] = sha256_file(path) if path is not None and path.is_file() else None
        return {
            "version": self.version,
            "seed": self.seed,
            "phenotype": pheno,
            "graph": {"method": self.graph.method, **self.graph.kwargs()},
            "statistics": self.statistics.model_dump(mode="json", exclude_none=True),
            "compartments": self.compartments.model_dump(mode="json"),
            "metrics": dict(sorted(self.metrics.requests().items())),
        }
