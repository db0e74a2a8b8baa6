"""Layers of spatialpath outputs: an AnnData of one or many images, a pipeline output folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from spatialpath.keys import Key
from spatialpath.napari import _keys
from spatialpath.napari._layers import LayerData, cells_layer, image_layer, regions_layer, spots_layer

__all__ = ["adata_layers", "pipeline_cells", "pipeline_layers"]


def _hide(layer: LayerData, visible: bool) -> LayerData:
    kw = layer[1]
    if not visible:
        kw["visible"] = [False] * len(kw["name"]) if isinstance(kw.get("name"), list) else False
    return layer


def _image_ids(adata: ad.AnnData) -> list[str]:
    if Key.obs.image_id not in adata.obs.columns:
        return []
    return [str(v) for v in pd.unique(adata.obs[Key.obs.image_id].astype(str))]


def _visium_layers(adata: ad.AnnData, source: str | None) -> list[LayerData]:
    from spatialpath.io import visium_image

    out: list[LayerData] = []
    color = Key.obs.cell_type if Key.obs.cell_type in adata.obs.columns else None
    for k, lib in enumerate(adata.uns[Key.uns.spatial]):
        if adata.uns[Key.uns.spatial][lib].get("images"):
            he = visium_image(adata, library_id=lib)
            out.append(_hide(image_layer(he, name=f"H&E {lib}", image_id=lib, source=source), k == 0))
        spots = spots_layer(adata, library_id=lib, color_by=color, name=f"spots {lib}", source=source)
        out.append(_hide(spots, k == 0))
    return out


def adata_layers(
    adata: ad.AnnData, *, source: str | None = None, regions: Any = None, color_by: str | None = "cell_type"
) -> list[LayerData]:
    """Cells (or Visium spots) of ``adata``, one layer per image, the first image visible.

    With ``regions``, each image's compartments are added under its cells.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_cohort
    >>> a = simulate_cohort(n_patients=2, n_cells=300, seed=0, progress=False)
    >>> layers = adata_layers(a)
    >>> [kw["name"] for _, kw, _ in layers], [kw.get("visible", True) for _, kw, _ in layers]
    (['cells P001_S1_I1', 'cells P002_S1_I1'], [True, False])
    """
    if adata.uns.get(Key.uns.spatial) and Key.obsm.spatial in adata.obsm:
        return _visium_layers(adata, source)
    ids = _image_ids(adata)
    if len(ids) <= 1:
        iid = ids[0] if ids else None
        out = [] if regions is None else [regions_layer(regions, source=source)]
        out.append(cells_layer(adata, color_by=color_by, source=source))
        for _, kw, _ in out:
            kw["metadata"][_keys.IMAGE_ID] = iid
        return out
    out: list[LayerData] = []
    for k, iid in enumerate(ids):
        if regions is not None and _has_image(regions, iid):
            out.append(_hide(regions_layer(regions, image_id=iid, name=f"compartments {iid}"), k == 0))
        out.append(_hide(cells_layer(adata, color_by=color_by, image_id=iid, source=source), k == 0))
    return out


def _has_image(regions: Any, image_id: str) -> bool:
    if Key.obs.image_id not in regions.columns:
        return True
    return bool((regions[Key.obs.image_id].astype(str) == image_id).any())


def pipeline_cells(root: Path) -> ad.AnnData:
    """The cells of every image of a pipeline output (``images/*/*/cells.parquet``), in µm.

    ``obs``: ``cell_id``, ``cell_type`` (categorical, the cohort's categories so an image's
    colours match the others'), ``cn`` when computed, ``image_id``, ``sample_id``.
    """
    frames = []
    for marker in sorted(Path(root).glob("images/*/*/_done.json")):
        record = json.loads(marker.read_text())
        cells = marker.parent / "cells.parquet"
        if not cells.is_file():
            continue
        df = pd.read_parquet(cells)
        df[Key.obs.image_id] = str(record["image_id"])
        df[Key.obs.sample_id] = str(record["sample_id"])
        frames.append(df)
    if not frames:
        raise FileNotFoundError(f"no image of {root} has a result (images/<sample>/<image>/cells.parquet)")
    df = pd.concat(frames, ignore_index=True)
    obs = pd.DataFrame(index=(df[Key.obs.image_id] + ":" + df[Key.obs.cell_id].astype(str)).to_numpy())
    obs[Key.obs.cell_id] = df[Key.obs.cell_id].astype(str).to_numpy()
    for col in (Key.obs.cell_type, Key.obs.cellular_neighborhood):
        if col in df.columns:
            values = df[col].astype(str)
            obs[col] = pd.Categorical(values.to_numpy(), categories=sorted(values.unique()))
    for col in (Key.obs.image_id, Key.obs.sample_id):
        obs[col] = pd.Categorical(df[col].to_numpy(), categories=list(dict.fromkeys(df[col])))
    adata = ad.AnnData(obs=obs)
    adata.obsm[Key.obsm.spatial] = df[["x", "y"]].to_numpy(np.float64)
    return adata


def _sample_sheet(root: Path) -> pd.DataFrame | None:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        sheet = Path(manifest["config"]["samples"])
        df = pd.read_csv(sheet, dtype=str, keep_default_na=False)
    except (OSError, KeyError, TypeError, ValueError):
        return None
    df.attrs["folder"] = sheet.parent
    return df


def pipeline_layers(root: Path) -> list[LayerData]:
    """Layers of a ``spatialpath run`` output: per image its image, compartments and cells."""
    from spatialpath.io import read_pyramid
    from spatialpath.regions import read_geojson

    adata = pipeline_cells(root)
    sheet = _sample_sheet(root)
    rows = {} if sheet is None else {str(r[Key.obs.image_id]): r for _, r in sheet.iterrows()}
    folder = None if sheet is None else Path(sheet.attrs["folder"])
    out: list[LayerData] = []
    for k, iid in enumerate(_image_ids(adata)):
        row = rows.get(iid)
        image_path = _path(row, "image_path", folder)
        if image_path is not None:
            levels = read_pyramid(image_path)
            names = [f"{iid} {c}" for c in levels[0]["c"].values]
            layer = image_layer(levels if len(levels) > 1 else levels[0], name=names, image_id=iid)
            out.append(_hide(layer, k == 0))
        regions_path = _path(row, "regions_path", folder)
        if regions_path is not None:
            regions = read_geojson(regions_path, image_id=iid)
            out.append(_hide(regions_layer(regions, name=f"compartments {iid}", source=regions_path), k == 0))
        out.append(_hide(cells_layer(adata, image_id=iid, source=str(root)), k == 0))
    return out


def _path(row: pd.Series | None, column: str, folder: Path | None) -> str | None:
    if row is None or folder is None or not str(row.get(column, "") or ""):
        return None
    p = Path(str(row[column]))
    p = p if p.is_absolute() else folder / p
    return str(p) if p.exists() else None
