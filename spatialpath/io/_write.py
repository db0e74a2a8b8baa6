"""Atomic writers for AnnData and tables (all through :func:`spatialpath.provenance.atomic_write`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from anndata import AnnData

from spatialpath.provenance import atomic_write

__all__ = ["TABLE_FORMATS", "write_h5ad", "write_table"]

PathLike = str | os.PathLike[str]
#: table formats :func:`write_table` infers from the file suffix.
TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


def write_h5ad(
    adata: AnnData, path: PathLike, *, overwrite: bool = False, inputs: Iterable[PathLike] = ()
) -> Path:
    """Write ``adata`` to an ``.h5ad`` file atomically.

    Parameters
    ----------
    adata
        The AnnData to write.
    path
        Output file; must end in ``.h5ad``.
    overwrite
        Replace an existing file (otherwise refuse).
    inputs
        Input files or folders of the analysis: writing inside one of them is refused.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    ValueError
        If the suffix is not ``.h5ad`` or ``path`` lies inside an input folder.

    Examples
    --------
    >>> import tempfile, pathlib, anndata as ad, numpy as np
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "cells.h5ad"
    >>> _ = write_h5ad(ad.AnnData(np.ones((3, 2), np.float32)), p)
    >>> ad.read_h5ad(p).shape
    (3, 2)
    >>> write_h5ad(ad.AnnData(np.ones((3, 2), np.float32)), p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: .../cells.h5ad exists; pass overwrite=True (or --overwrite) to replace it
    """
    path = Path(path)
    if path.suffix != ".h5ad":
        raise ValueError(f"an AnnData file must end in .h5ad, got {path.name!r}")
    with atomic_write(path, overwrite=overwrite, inputs=inputs) as tmp:
        adata.write_h5ad(tmp)
    return path


def write_table(
    df: pd.DataFrame, path: PathLike, *, overwrite: bool = False, inputs: Iterable[PathLike] = ()
) -> Path:
    r"""Write a tidy table atomically, as CSV, TSV or Parquet by the file suffix.

    CSV and TSV are written without the index, UTF-8, with ``\n`` line ends and floats in
    their shortest round-trip form (``0.30000000000000004`` stays exact, ``0.5`` stays short),
    so values survive a round trip and the same table always gives the same bytes. Read them
    back exactly with ``pandas.read_csv(path, float_precision="round_trip")``.
    Parquet is written by pyarrow without the index; it embeds writer metadata, so compare
    Parquet files by value, not by hash.

    Parameters
    ----------
    df
        The table to write.
    path
        Output file; its suffix (:data:`TABLE_FORMATS`) chooses the format.
    overwrite
        Replace an existing file (otherwise refuse).
    inputs
        Input files or folders of the analysis: writing inside one of them is refused.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        For an unknown suffix (the message lists the known ones).
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile, pathlib, pandas as pd
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = write_table(pd.DataFrame({"a": [1, 2]}), p)
    >>> p.read_text()
    'a\n1\n2\n'
    """
    path = Path(path)
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"unknown table format {path.suffix!r} for {path.name!r}; use one of {sorted(TABLE_FORMATS)}"
        )
    with atomic_write(path, overwrite=overwrite, inputs=inputs) as tmp:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False, engine="pyarrow")
        else:
            df.to_csv(
                tmp,
                index=False,
                sep="," if fmt == "csv" else "\t",
                lineterminator="\n",
                encoding="utf-8",
                float_format=_shortest_repr,
            )
    return path


def _shortest_repr(value: float) -> str:
    """Shortest decimal string that reads back as the same float (Python's ``repr``)."""
    return repr(float(value))
