"""The tasks a pipeline run sends to dask workers: one image's analysis, the cohort CN fit, CN predict.

Every task writes through :class:`~spatialpath.pipeline._store.ImageStore` (atomic files, marker
last) and never raises for a bad image: the error and its traceback go to the exclusion log and
the task returns a status record (:func:`status_record`). Per-image result layout
(``docs/pipeline.md``): tables ``metrics``, ``nhood_zscore``, ``cn_frequencies`` (after the
cohort CN step), ``cells`` (+ ``co_occurrence``, ``cross_function`` when configured), figure
``nhood``, extra ``{"n_cells", "seed", "timings"}`` (+ ``"cn_model"``).

Cellular neighbourhoods need the whole cohort: :func:`process_image` writes the image's result
without CNs under the *stage* fingerprint (:func:`stage_fingerprint`); :func:`fit_cn` fits one
model on the stored ``cells`` tables; :func:`predict_image` assigns the image's cells to CNs and
rewrites its result, complete, under the final fingerprint.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spatialpath.keys import Key
from spatialpath.pipeline._config import PipelineConfig
from spatialpath.pipeline._store import ImageKey, ImageStore

__all__ = [
    "CN_FIT_MAX_CELLS",
    "fit_cn",
    "predict_image",
    "process_image",
    "stage_fingerprint",
    "status_record",
]

#: the cohort CN model is fitted on at most this many cells: whole images, in the order of their seeds.
CN_FIT_MAX_CELLS = 2_000_000
_CT, _IMG = Key.obs.cell_type, Key.obs.image_id


def stage_fingerprint(fp: str) -> str:
    """The fingerprint of an image's result before the cohort CN step (distinct from ``fp``).

    Examples
    --------
    >>> fp = "0" * 64
    >>> stage_fingerprint(fp) != fp, len(stage_fingerprint(fp))
    (True, 64)
    """
    return hashlib.sha256(f"{fp}:before-cellular-neighborhoods".encode()).hexdigest()


def status_record(key: ImageKey, status: str, seconds: float, error: BaseException | None = None) -> dict:
    """What a task returns: ids, ``computed`` or ``failed``, seconds, the error's type and message.

    Examples
    --------
    >>> status_record(ImageKey("S1", "img1"), "failed", 1.5, ValueError("no cells"))["error"]
    'ValueError: no cells'
    """
    return {
        "sample_id": key.sample_id,
        "image_id": key.image_id,
        "status": status,
        "seconds": float(seconds),
        "error": None if error is None else f"{type(error).__name__}: {error}",
    }


class _SavedFigure:
    """An already-rendered figure file, re-saved byte for byte by ``ImageStore.write_result``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def savefig(self, target: Any, **_: Any) -> None:
        shutil.copyfile(self.path, target)


def _cells_table(cells: Any) -> pd.DataFrame:
    xy = np.asarray(cells.obsm["spatial"], dtype=float)
    return pd.DataFrame(
        {
            "cell_id": cells.obs_names.astype(str),
            _CT: cells.obs[_CT].astype(str).to_numpy(),
            "x": xy[:, 0],
            "y": xy[:, 1],
        }
    )


def _nhood(cells: Any, cfg: Any, seed: int, image_id: str) -> pd.DataFrame:
    from spatialpath.gr import nhood_enrichment

    res = nhood_enrichment(
        cells,
        _CT,
        library_key=_IMG,
        n_perms=cfg.n_perms,
        seed=seed,
        analytical=cfg.analytical,
        progress=False,
        copy=True,
    )
    t = res.table
    t = t[t["level"] == "image"]
    return pd.DataFrame(
        {
            _IMG: image_id,
            "cluster_a": t["cell_type"].astype(str).to_numpy(),
            "cluster_b": t["cell_type_b"].astype(str).to_numpy(),
            "zscore": t["zscore"].to_numpy(float),
            "count": t["count"].to_numpy(float),
            "pvalue": t["pvalue"].to_numpy(float),
            "qvalue": t["qvalue"].to_numpy(float),
        }
    )


def _nhood_figure(table: pd.DataFrame) -> Any:
    """The image's enrichment heatmap (``spatialpath.pl.nhood_heatmap``) from its ``nhood_zscore`` table."""
    import anndata as ad

    from spatialpath.pl import nhood_heatmap

    cats = list(pd.unique(table["cluster_a"]))
    z = table.pivot(index="cluster_a", columns="cluster_b", values="zscore").loc[cats, cats].to_numpy()
    q = table.pivot(index="cluster_a", columns="cluster_b", values="qvalue").loc[cats, cats].to_numpy()
    holder = ad.AnnData(
        obs=pd.DataFrame(
            {_CT: pd.Categorical(cats, categories=cats)}, index=[str(i) for i in range(len(cats))]
        )
    )
    holder.uns[f"{_CT}_nhood_enrichment"] = {
        "zscore": z,
        "qvalue": q,
        "categories": np.array(cats, dtype=object),
    }
    fig = nhood_heatmap(holder, _CT)
    fig.axes[0].set_title(f"{table[_IMG].iloc[0]}: neighbourhood enrichment (z)")
    return fig


def _co_occurrence(cells: Any, cfg: Any, image_id: str) -> pd.DataFrame:
    from spatialpath.gr import co_occurrence

    interval = None if cfg.interval_um is None else np.asarray(cfg.interval_um, float)
    occ, dist = co_occurrence(cells, _CT, interval=interval, library_key=_IMG, copy=True)
    cats = [str(c) for c in cells.obs[_CT].cat.categories]
    k, m = len(cats), occ.shape[2]
    return pd.DataFrame(
        {
            _IMG: image_id,
            "cluster_a": np.repeat(cats, k * m),
            "cluster_b": np.tile(np.repeat(cats, m), k),
            "distance_um": np.tile(np.asarray(dist, float)[1:], k * k),
            "ratio": occ.ravel(),
        }
    )


def _cross_function(cells: Any, cfg: Any, seed: int) -> pd.DataFrame:
    from spatialpath.gr import cross_function

    res = cross_function(
        cells,
        _CT,
        cfg.kind,
        cfg.focal,
        cfg.target,
        r_max=cfg.r_max_um,
        correction=cfg.correction,
        library_key=_IMG,
        n_perms=cfg.n_perms,
        alpha=cfg.alpha,
        seed=seed,
        copy=True,
        progress=False,
    )
    return res.summary()


def _interaction(cells: Any, cfg: Any, seed: int) -> pd.DataFrame:
    from spatialpath.gr import interaction_test

    table = interaction_test(
        cells,
        _CT,
        method=cfg.method,
        patch_size=cfg.patch_size,
        library_key=_IMG,
        n_perms=cfg.n_perms,
        seed=seed,
        p_threshold=cfg.p_threshold,
        progress=False,
        copy=True,
    )
    table = table.copy()
    for col in ("image_id", "from_label", "to_label"):
        table[col] = table[col].astype(str)
    return table


def process_image(config: PipelineConfig, row: pd.Series, fp: str, seed: int, *, cohort_cn: bool) -> dict:
    """Analyse one image and write its result (under :func:`stage_fingerprint` when ``cohort_cn``).

    Reads the cells and compartments, builds the graph, runs the configured statistics with
    ``seed``, computes the biomarker table and writes everything atomically. Any exception is
    recorded in the exclusion log (with its traceback) and returned as a ``failed`` record.
    """
    from spatialpath import export
    from spatialpath.gr import spatial_graph
    from spatialpath.pipeline._inputs import read_image_cells, read_image_regions

    key = ImageKey(str(row[Key.obs.sample_id]), str(row[_IMG]))
    store, started, t = ImageStore(config.output), time.perf_counter(), {}
    try:
        tic = time.perf_counter()
        cells = read_image_cells(config, row)
        regions = read_image_regions(config, row, cells)
        t["read_s"] = time.perf_counter() - tic
        tic = time.perf_counter()
        spatial_graph(cells, config.graph.method, library_key=_IMG, **config.graph.kwargs())
        t["graph_s"] = time.perf_counter() - tic
        stats, tables, figures = config.statistics, {"cells": _cells_table(cells)}, {}
        tic = time.perf_counter()
        if stats.nhood_enrichment is not None:
            tables["nhood_zscore"] = _nhood(cells, stats.nhood_enrichment, seed, key.image_id)
            if config.outputs.figures:
                figures["nhood"] = _nhood_figure(tables["nhood_zscore"])
        if stats.co_occurrence is not None:
            tables["co_occurrence"] = _co_occurrence(cells, stats.co_occurrence, key.image_id)
        if stats.cross_function is not None:
            tables["cross_function"] = _cross_function(cells, stats.cross_function, seed)
        if stats.interaction_test is not None:
            tables["interaction_test"] = _interaction(cells, stats.interaction_test, seed)
        t["statistics_s"] = time.perf_counter() - tic
        tic = time.perf_counter()
        requests = config.metrics.requests()  # every metric with its (resolved) parameters
        names = [m for m in requests if m != "cn_frequency"]  # CNs come later: own table
        long, _ = export.biomarker_table(
            cells,
            regions,
            metrics=names,
            params={m: requests[m] for m in names},
            metadata=config.metadata_columns,
        )
        tables["metrics"] = long
        t["metrics_s"] = time.perf_counter() - tic
        extra = {"n_cells": int(cells.n_obs), "seed": int(seed), "timings": dict(t)}
        target = stage_fingerprint(fp) if cohort_cn else fp
        store.write_result(key, target, tables=tables, figures=figures, extra=extra, seed=seed, timings=t)
        _close(figures)
    except Exception as err:
        store.exclusions.record(key, err, fp, seed=seed)
        return status_record(key, "failed", time.perf_counter() - started, err)
    return status_record(key, "computed", time.perf_counter() - started)


def _close(figures: dict) -> None:
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


def _cells_adata(table: pd.DataFrame, library: str) -> Any:
    import anndata as ad

    obs = pd.DataFrame(
        {_CT: pd.Categorical(table[_CT].astype(str)), "_library": library},
        index=table["cell_id"].astype(str).to_numpy(),
    )
    obs.index.name = None
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = table[["x", "y"]].to_numpy(float)
    return adata


def fit_cn(output: str | Path, images: Sequence[tuple[str, str, int]], kwargs: dict, seed: int,
           max_cells: int = CN_FIT_MAX_CELLS) -> dict:  # fmt: skip
    """Fit the cohort's CN model on the stored ``cells`` tables; return ``model.to_dict()``.

    ``images`` are ``(sample_id, image_id, image_seed)``; whole images are taken in the order of
    their seeds (never of the sheet) until ``max_cells`` cells, so the subsample is order-free.
    """
    import anndata as ad

    from spatialpath.gr import fit_cellular_neighborhoods

    store, parts, total = ImageStore(output), [], 0
    for sample_id, image_id, _ in sorted(images, key=lambda i: (i[2], i[0], i[1])):
        table = store.read_result((sample_id, image_id)).tables["cells"]
        if parts and total + len(table) > max_cells:
            break
        parts.append(_cells_adata(table, f"{sample_id}/{image_id}"))
        total += len(table)
    adata = ad.concat(parts, index_unique="@", merge="first")
    adata.obs[_CT] = adata.obs[_CT].astype(str).astype("category")
    model = fit_cellular_neighborhoods(adata, _CT, library_key="_library", seed=seed, **kwargs)
    return model.to_dict()


def predict_image(output: str | Path, key: ImageKey, fp: str, seed: int, model: dict, model_fp: str) -> dict:
    """Assign one image's stored cells to the cohort CNs; rewrite its result under ``fp``.

    Adds ``cn`` to the ``cells`` table and the ``cn_frequencies`` table (image_id, cn, fraction,
    n_cells); records ``cn_model`` (the model's fingerprint) in the extra JSON.
    """
    from spatialpath.gr import cn_frequencies, predict_cellular_neighborhoods

    store, started = ImageStore(output), time.perf_counter()
    try:
        res = store.read_result(key)
        tables = dict(res.tables)
        cells = tables["cells"].drop(columns=["cn"], errors="ignore")
        adata = _cells_adata(cells, key.image_id)
        cn = predict_cellular_neighborhoods(adata, model, cluster_key=_CT, library_key="_library", copy=True)
        adata.obs["cn"] = cn.values  # categorical, every CN a category
        freq = cn_frequencies(adata, "cn", library_key="_library").rename(columns={"_library": _IMG})
        tables["cells"] = cells.assign(cn=cn.astype(str).to_numpy())
        tables["cn_frequencies"] = freq[[_IMG, "cn", "fraction", "n_cells"]].astype({"cn": str, _IMG: str})
        timings = {k: v for k, v in res.marker.timings.items() if k != "write_s"}
        timings["cn_predict_s"] = time.perf_counter() - started
        extra = {**res.extra, "cn_model": model_fp, "timings": timings}
        figures = {name: _SavedFigure(path) for name, path in res.figures.items()}
        store.write_result(key, fp, tables=tables, figures=figures, extra=extra, seed=seed, timings=timings)
    except Exception as err:
        store.exclusions.record(
            key, err, fp, seed=seed, traceback_text="".join(traceback.format_exception(err))
        )
        return status_record(key, "failed", time.perf_counter() - started, err)
    return status_record(key, "computed", time.perf_counter() - started)
