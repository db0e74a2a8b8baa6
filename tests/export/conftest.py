"""Synthetic inputs for the biomarker-table tests: cells, regions and a fake metrics engine.

The fake ``compute`` follows the ``spatialpath.metrics.compute`` contract (the long metrics
frame) with values computed directly from the cells, so the tests know every expected value.
"""

from __future__ import annotations

import json
import sys
import types

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from anndata import AnnData

METRIC_COLUMNS = [
    "image_id",
    "compartment",
    "metric",
    "cell_type",
    "cell_type_b",
    "value",
    "unit",
    "n_cells_a",
    "n_cells_b",
    "area_mm2",
    "status",
    "parameters",
]
TYPES = ["Tumour", "CD8+ T", "B cell"]
#: an input path recorded in the metrics' parameters (must vanish when de-identifying).
SOURCE = "/data/trial/P001/cells.h5ad"


def make_cells(n_images: int = 6, n_cells: int = 200, seed: int = 0) -> AnnData:
    """1 mm x 1 mm images, 2 per sample, 2 samples per patient; image 0 has no B cell.

    ``arm`` is per patient, ``timepoint`` (ordered categorical) per sample, ``area_um2`` per cell.
    """
    rng = np.random.default_rng(seed)
    obs, xy = [], []
    for i in range(n_images):
        patient = f"P{i // 4 + 1:03d}"
        sample = f"{patient}_S{i // 2 % 2 + 1}"
        kinds = TYPES[:2] if i == 0 else TYPES
        ct = rng.choice(kinds, n_cells)
        for j in range(n_cells):
            obs.append(
                {
                    "image_id": f"{sample}_I{i % 2 + 1}",
                    "sample_id": sample,
                    "patient_id": patient,
                    "cell_type": ct[j],
                    "arm": "control" if i // 4 % 2 == 0 else "treatment",
                    "timepoint": "baseline" if i // 2 % 2 == 0 else "week 6",
                    "area_um2": float(rng.uniform(20, 80)),
                }
            )
        xy.append(rng.uniform(0, 1000, size=(n_cells, 2)))
    frame = pd.DataFrame(obs)
    frame.index = [f"c{k}" for k in range(len(frame))]
    for c in ("image_id", "sample_id", "patient_id", "arm"):
        frame[c] = pd.Categorical(frame[c])
    frame["cell_type"] = pd.Categorical(frame["cell_type"], categories=TYPES)
    frame["timepoint"] = pd.Categorical(frame["timepoint"], categories=["baseline", "week 6"], ordered=True)
    adata = AnnData(np.zeros((len(frame), 1)), obs=frame)
    adata.obsm["spatial"] = np.vstack(xy)
    return adata


def make_regions(images: list[str], *, tumour: bool = True) -> gpd.GeoDataFrame:
    """Tissue = the whole 1 mm²; tumour = left half (absent in the last image)."""
    rows = []
    for k, image in enumerate(images):
        rows.append((image, "tissue", shapely.box(0, 0, 1000, 1000)))
        if tumour and k < len(images) - 1:
            rows.append((image, "tumour", shapely.box(0, 0, 500, 1000)))
    return gpd.GeoDataFrame(rows, columns=["image_id", "compartment", "geometry"], geometry="geometry")


def fake_compute(adata, regions, *, metrics=None, cluster_key="cell_type", library_key="image_id"):
    """Counts and densities per type, and a two-type ratio, per (image, compartment)."""
    rows = []
    xy = np.asarray(adata.obsm["spatial"])
    params = json.dumps({"min_cells": 5, "source": SOURCE}, sort_keys=True, separators=(",", ":"))
    for image in pd.unique(adata.obs[library_key].astype(str)):
        in_image = (adata.obs[library_key].astype(str) == image).to_numpy()
        comps = {"tissue": shapely.box(0, 0, 1000, 1000), "tumour": None}
        if regions is not None:
            sub = regions[regions["image_id"] == image]
            comps = {"tissue": None, "tumour": None}
            for comp, geom in zip(sub["compartment"], sub.geometry, strict=True):
                comps[comp] = geom
        for comp, geom in comps.items():
            if geom is None:
                for t in TYPES:
                    rows.append(
                        (image, comp, "density", t, None, np.nan, "cells/mm2", 0, None, 0.0,
                         "compartment_absent", params)
                    )  # fmt: skip
                continue
            inside = in_image & shapely.contains_xy(geom, xy[:, 0], xy[:, 1])
            area = geom.area / 1e6
            types_in = adata.obs.loc[inside, cluster_key].astype(str)
            n = {t: int((types_in == t).sum()) for t in TYPES}
            for t in TYPES:
                rows.append(
                    (image, comp, "count", t, None, float(n[t]), "cells", n[t], None, area, "ok", params)
                )
                rows.append(
                    (
                        image,
                        comp,
                        "density",
                        t,
                        None,
                        n[t] / area,
                        "cells/mm2",
                        n[t],
                        None,
                        area,
                        "ok",
                        params,
                    )
                )
            a, b = n["CD8+ T"], n["B cell"]
            status = "ok" if b > 0 else "zero_denominator"
            ratio = a / b if b > 0 else np.nan
            rows.append((image, comp, "ratio", "CD8+ T", "B cell", ratio, "1", a, b, area, status, params))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def fake_metrics_module() -> types.ModuleType:
    module = types.ModuleType("spatialpath.metrics")
    module.compute = fake_compute

    def entry(label, definition):
        return types.SimpleNamespace(label=label, definition=definition, formula="", reference="test")

    module.REGISTRY = {
        "count": entry("Cell count", "Number of cells of the type in the compartment."),
        "density": entry("Cell density", "Cells of the type per mm² of the compartment."),
        "ratio": entry("=Ratio", "=cells of cell_type / cells of cell_type_b"),  # formula-like text
    }
    return module


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def fake_metrics(monkeypatch):
    """Install the fake ``spatialpath.metrics`` (the real one may not exist yet)."""
    module = fake_metrics_module()
    monkeypatch.setitem(sys.modules, "spatialpath.metrics", module)
    return module


@pytest.fixture(scope="session")
def cells():
    return make_cells()


@pytest.fixture(scope="session")
def image_ids(cells):
    return list(pd.unique(cells.obs["image_id"].astype(str)))


@pytest.fixture
def tables(fake_metrics, cells, image_ids):
    """(long, wide) per image; the last image has no tumour polygon."""
    from spatialpath.export import biomarker_table

    return biomarker_table(cells, make_regions(image_ids), min_cells=10)


@pytest.fixture(scope="session")
def syn():
    """The helpers of this conftest (test modules cannot import it under importlib mode)."""
    return types.SimpleNamespace(
        make_cells=make_cells,
        make_regions=make_regions,
        fake_compute=fake_compute,
        TYPES=TYPES,
        SOURCE=SOURCE,
        METRIC_COLUMNS=METRIC_COLUMNS,
    )
