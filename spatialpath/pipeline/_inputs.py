"""One image of the sample sheet: its cells (AnnData in µm) and its compartments (GeoDataFrame).

The technology of a row picks the reader (Visium, Xenium, CosMx and MERSCOPE
read their instrument folders, an ``.h5ad`` in the data model for ``simulated``, else
:func:`spatialpath.io.read_cell_table`); no file is parsed here. A row whose ``path`` holds many
images (``image_column``) reads the table once per process (cached) and keeps the image's rows.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd

from spatialpath.keys import Key
from spatialpath.model import get_image_metadata, set_image_metadata
from spatialpath.pipeline._config import PipelineConfig

__all__ = ["InputError", "input_files", "read_image_cells", "read_image_regions"]


class InputError(ValueError):
    """An image of the sample sheet that cannot be read; the message starts with its sheet line."""


def _where(config: PipelineConfig, row: pd.Series) -> str:
    sheet = config.samples.name
    return f"{sheet}:{row.name} (image {row[Key.obs.image_id]!r})"


def _get(row: pd.Series, col: str) -> Any:
    """A row's value, None when the column is absent or the cell empty."""
    value = row.get(col)
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def input_files(row: pd.Series) -> dict[str, Path]:
    """The files of one image by role (``cells``, ``image``, ``mask``, ``regions``), for fingerprints.

    Parameters
    ----------
    row
        A row of ``config.sample_sheet`` (``path``, and ``image_path``, ``mask_path``,
        ``regions_path`` when present).

    Examples
    --------
    >>> input_files(pd.Series({"path": "/d/cells.csv", "mask_path": None}))
    {'cells': PosixPath('/d/cells.csv')}
    """
    roles = {"path": "cells", "image_path": "image", "mask_path": "mask", "regions_path": "regions"}
    return {role: Path(v) for col, role in roles.items() if (v := _get(row, col)) is not None}


@lru_cache(maxsize=2)
def _table(path: str, mtime_ns: int) -> pd.DataFrame:
    """A multi-image cell table as read by ``read_cell_table`` (separator and decimal sniffed)."""
    from spatialpath.io._cell_files import _read_text

    return _read_text(Path(path))


def _read(config: PipelineConfig, row: pd.Series) -> ad.AnnData:
    from spatialpath import io

    tech, path, image_id = row["technology"], Path(row["path"]), str(row[Key.obs.image_id])
    pixel_size = _get(row, "pixel_size_um")
    image_column = _get(row, "image_column")
    if tech == "visium":
        return io.read_visium(path, library_id=image_id, load_images=False)
    if tech == "xenium":
        return io.read_xenium(path, image_id=image_id)
    if tech == "cosmx":
        return io.read_cosmx(path, pixel_size_um=pixel_size, image_id=image_id)
    if tech == "merscope":
        return io.read_merscope(path, image_id=image_id)
    if tech == "simulated":
        adata = ad.read_h5ad(path)
        if image_column is not None:
            adata = adata[adata.obs[image_column].astype(str).to_numpy() == image_id].copy()
        return adata
    columns: dict[str, Any] = {Key.obs.patient_id: None, Key.obs.sample_id: None}  # the sheet's ids rule
    if config.phenotype.column is not None:
        columns[Key.obs.cell_type] = config.phenotype.column
    source: Any = path
    if image_column is not None:
        table = _table(str(path), path.stat().st_mtime_ns)
        source = table[table[image_column].astype(str).to_numpy() == image_id]
        columns[Key.obs.image_id] = image_column
    adata = io.read_cell_table(
        source, pixel_size_um=pixel_size, image_id=image_id, columns=columns, technology=tech
    )
    if image_column is not None:  # a DataFrame has no file name: record it
        meta = get_image_metadata(adata, image_id)
        set_image_metadata(adata, meta.model_copy(update={"source_files": [str(path)]}))
    return adata


def _cell_types(config: PipelineConfig, adata: ad.AnnData) -> None:
    pheno = config.phenotype
    obs = adata.obs
    if pheno.workflow is not None:
        from spatialpath.io import phenotype

        gates = pd.read_csv(pheno.gates, encoding="utf-8-sig") if pheno.gates is not None else None
        phenotype(adata, gates, pheno.workflow, log=pheno.log, key_added=Key.obs.cell_type)
    elif pheno.column is not None and pheno.column != Key.obs.cell_type and pheno.column in obs:
        obs[Key.obs.cell_type] = obs[pheno.column]  # readers without a cell-type role (Xenium, ...)
    if Key.obs.cell_type not in obs:
        what = f"column {pheno.column!r}" if pheno.column else "cell-type column"
        raise ValueError(
            f"no {what} in the cells; set phenotype.column to one of {list(map(str, obs.columns))[:30]}, "
            "or give phenotype.workflow (+ gates)"
        )
    obs[Key.obs.cell_type] = obs[Key.obs.cell_type].astype(str).astype("category")


def read_image_cells(config: PipelineConfig, row: pd.Series) -> ad.AnnData:
    """The cells of one sample-sheet row in the data model, ids and metadata attached.

    Parameters
    ----------
    config
        From :func:`spatialpath.pipeline.load_config`.
    row
        A row of ``config.sample_sheet`` (its name is the sheet line).

    Returns
    -------
    AnnData with ``obsm["spatial"]`` in µm, categorical ``obs`` ``patient_id``, ``sample_id``,
    ``image_id`` (the sheet's values, which rule over id columns of the file: those are kept
    under their own names), every metadata column of the sheet, and ``cell_type`` per the
    ``phenotype`` section; the image's metadata record names the sheet's patient and sample.

    Raises
    ------
    InputError
        When the reader, the phenotyping or the cell-type column fails; the message starts with
        ``<sheet>:<line> (image '<id>')`` and the original error is chained.

    Examples
    --------
    >>> import tempfile
    >>> from spatialpath.pipeline import load_config, prepare_demo_cohort
    >>> yaml = prepare_demo_cohort(tempfile.mkdtemp(), n_patients=2, n_cells=300, progress=False)
    >>> config = load_config(yaml)
    >>> row = config.sample_sheet.iloc[0]
    >>> cells = read_image_cells(config, row)
    >>> cells.n_obs, cells.obs[["patient_id", "sample_id", "image_id", "arm"]].iloc[0].tolist()
    (300, ['P001', 'P001_S1', 'P001_S1_I1', 'control'])
    """
    try:
        adata = _read(config, row)
        if adata.n_obs == 0:
            raise ValueError("no cells")
        _cell_types(config, adata)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{_where(config, row)}: {e}") from e
    obs, image_id = adata.obs, str(row[Key.obs.image_id])
    for key in (Key.obs.patient_id, Key.obs.sample_id, Key.obs.image_id):
        obs[key] = pd.Categorical([str(row[key])] * adata.n_obs)
    for col in config.metadata_columns:
        value = _get(row, col)
        if col in obs and not (obs[col].astype(str) == str(value)).all():
            warnings.warn(
                f"{_where(config, row)}: the sample sheet's {col!r} replaces the cells' own {col!r} column",
                UserWarning,
                stacklevel=2,
            )
        obs[col] = pd.Categorical([value] * adata.n_obs)
    images = adata.uns.get(Key.uns.spatialpath, {}).get(Key.uns.images, {})
    if image_id in images:
        meta = get_image_metadata(adata, image_id)
        ids = {k: str(row[k]) for k in (Key.obs.patient_id, Key.obs.sample_id)}
        set_image_metadata(adata, meta.model_copy(update=ids))
    return adata


def read_image_regions(config: PipelineConfig, row: pd.Series, cells: ad.AnnData) -> Any:
    """The compartments of one image (µm) per the ``compartments`` section, checked against its cells.

    ``source: cells`` derives the tissue outline (:func:`spatialpath.regions.tissue_from_cells`);
    ``masks`` reads ``mask_path`` (:func:`spatialpath.io.read_image`, channel ``mask_channel``;
    pixel size from the sheet, else the file) into :func:`spatialpath.regions.from_mask`;
    ``geojson`` reads ``regions_path`` (:func:`spatialpath.regions.read_geojson`). With
    ``margins``, :func:`spatialpath.regions.margin_bands` adds the invasive-margin bands. The
    result passes :func:`spatialpath.regions.validate_regions` with the cells (units, geometry).

    Parameters
    ----------
    config
        From :func:`spatialpath.pipeline.load_config`.
    row
        A row of ``config.sample_sheet``.
    cells
        The row's cells (:func:`read_image_cells`), for the checks.

    Returns
    -------
    geopandas.GeoDataFrame
        ``image_id``, ``compartment`` and ``geometry`` (µm), one row per compartment.

    Raises
    ------
    InputError
        When reading or checking fails; the message starts with the sheet line and image.

    Examples
    --------
    >>> import tempfile
    >>> from spatialpath.pipeline import load_config, prepare_demo_cohort
    >>> yaml = prepare_demo_cohort(tempfile.mkdtemp(), n_patients=2, n_cells=300, progress=False)
    >>> config = load_config(yaml)
    >>> row = config.sample_sheet.iloc[0]
    >>> cells = read_image_cells(config, row)
    >>> regions = read_image_regions(config, row, cells)
    >>> regions["compartment"].tolist(), regions.area.round().tolist()  # µm²; tissue = tumour + stroma
    (['tissue', 'tumour', 'stroma'], [67251.0, 27005.0, 40246.0])
    """
    from spatialpath import regions as rg

    comp, image_id = config.compartments, str(row[Key.obs.image_id])
    pixel_size = _get(row, "pixel_size_um")
    try:
        if comp.source == "cells":
            regions = rg.tissue_from_cells(
                cells, resolution_um=comp.resolution_um, closing_radius_um=comp.closing_radius_um
            )
        elif comp.source == "masks":
            from spatialpath.io import read_image

            image = read_image(row["mask_path"], pixel_size_um=pixel_size)
            ch = comp.mask_channel
            mask = image.isel(c=ch) if isinstance(ch, int) else image.sel(c=ch)
            regions = rg.from_mask(
                mask.compute(), categories=comp.categories, image_id=image_id, background=comp.background
            )
        else:
            units = {"pixel_size_um": pixel_size} if comp.geojson_units == "px" else {}
            keys = {"classification_key": comp.classification_key} if comp.classification_key else {}
            regions = rg.read_geojson(row["regions_path"], image_id=image_id, **units, **keys)
        if comp.margins is not None:
            regions = rg.margin_bands(regions, tumour=comp.margins.tumour, widths_um=comp.margins.widths_um)
        rg.validate_regions(regions, cells)
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise InputError(f"{_where(config, row)}: compartments: {e}") from e
    return regions
