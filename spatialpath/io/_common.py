"""Shared pieces of every reader: path checks, errors, and building cells in the data model."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from spatialpath.keys import Key
from spatialpath.model import ImageMetadata, set_image_metadata, validate_cells

__all__ = ["ReaderError", "cells_to_anndata", "check_path", "require_pixel_size"]

PathLike = str | os.PathLike[str]


class ReaderError(ValueError):
    """A file that exists but cannot be read as the format it claims to be."""


def check_path(path: PathLike, *, kind: str = "file", what: str = "input") -> Path:
    """Return ``path`` as a Path, or raise ``FileNotFoundError`` naming what was expected.

    Parameters
    ----------
    path
        The path given by the user.
    kind
        ``"file"``, ``"dir"`` or ``"any"``.
    what
        Words for the message, e.g. ``"Visium output folder"``.

    Examples
    --------
    >>> check_path("/nonexistent/cells.csv", what="cell table")
    Traceback (most recent call last):
    ...
    FileNotFoundError: cell table not found: /nonexistent/cells.csv (check the path and the current folder)
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p} (check the path and the current folder)")
    if kind == "file" and not p.is_file():
        raise FileNotFoundError(f"{what} must be a file, but {p} is a folder")
    if kind == "dir" and not p.is_dir():
        raise FileNotFoundError(f"{what} must be a folder, but {p} is a file")
    return p


def require_pixel_size(pixel_size_um: float | None, *, source: str, argument: str = "pixel_size_um") -> float:
    """Return a validated pixel size, refusing to guess one that is missing.

    Raises
    ------
    ValueError
        If ``pixel_size_um`` is None (the message names the argument to pass) or not positive.
    """
    if pixel_size_um is None:
        raise ValueError(
            f"{source} gives positions in pixels and no pixel size; pass {argument}=<micrometres per pixel> "
            "(from the instrument or publication). spatialpath never guesses a pixel size."
        )
    ps = float(pixel_size_um)
    if not np.isfinite(ps) or ps <= 0:
        raise ValueError(f"{argument} must be a positive number of micrometres, got {pixel_size_um!r}")
    return ps


def cells_to_anndata(
    xy_um: np.ndarray,
    *,
    X: np.ndarray | None = None,
    var_names: Sequence[str] | None = None,
    obs: pd.DataFrame | None = None,
    images: Sequence[ImageMetadata | Mapping[str, Any]] = (),
    image_id: str | None = None,
    categorical: Sequence[str] = (),
    source: str = "table",
) -> ad.AnnData:
    """Build cells in the data model and validate them.

    Parameters
    ----------
    xy_um
        ``(n, 2)`` or ``(n, 3)`` centroids in µm (x = columns, y = rows).
    X, var_names
        Marker values or counts ``(n, n_vars)`` (dense, or scipy sparse kept sparse) and their
        names; default an empty ``(n, 0)`` matrix.
    obs
        Per-cell columns (its index becomes ``obs_names``, as strings). Must have n rows.
    images
        Metadata records, one per image (see :class:`spatialpath.model.ImageMetadata`).
    image_id
        If given and ``obs`` has no ``image_id`` column, every cell gets this image id.
    categorical
        ``obs`` columns to convert to categoricals (cell types, ids).
    source
        Words for error messages (e.g. the file name).

    Returns
    -------
    AnnData with float64 ``obsm["spatial"]``, validated by
    :func:`spatialpath.model.validate_cells` (NaN coordinates and pixel-looking coordinates
    are refused with the fix).

    Examples
    --------
    >>> import numpy as np
    >>> a = cells_to_anndata(np.array([[1.0, 2.0], [3.0, 4.0]]), image_id="roi1")
    >>> a.obs["image_id"].tolist(), a.obsm["spatial"].dtype
    (['roi1', 'roi1'], dtype('float64'))
    """
    xy = np.asarray(xy_um, dtype=np.float64)
    n = xy.shape[0]
    obs = pd.DataFrame(index=pd.RangeIndex(n)) if obs is None else obs.copy()
    if len(obs) != n:
        raise ValueError(f"{source}: {len(obs)} rows of cell metadata for {n} coordinates")
    obs.index = obs.index.astype(str)
    if image_id is not None and Key.obs.image_id not in obs:
        obs[Key.obs.image_id] = image_id
    for col in categorical:
        if col in obs:
            obs[col] = obs[col].astype(str).astype("category")
    if X is None:
        X = np.zeros((n, 0), dtype=np.float32)
    if not sparse.issparse(X):  # counts of spatial transcriptomics stay sparse
        X = np.asarray(X)
    if X.shape[0] != n:
        raise ValueError(f"{source}: {X.shape[0]} rows of marker values for {n} cells")
    names = [str(v) for v in (var_names if var_names is not None else range(X.shape[1]))]
    if len(names) != X.shape[1]:
        raise ValueError(f"{source}: {len(names)} marker names for {X.shape[1]} marker columns")
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=names))
    adata.obsm[Key.obsm.spatial] = xy
    for meta in images:
        set_image_metadata(adata, meta)
    validate_cells(adata, library_key=Key.obs.image_id if Key.obs.image_id in adata.obs else None)
    return adata
