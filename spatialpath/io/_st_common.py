"""Helpers shared by the spatial-omics readers (Visium, Xenium, CosMx, MERSCOPE).

10x count matrices (HDF5 or Matrix Market folder), vendor tables read eagerly (pandas) or
lazily (dask), and assembling cells with a sparse count matrix in the data model.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from spatialpath.io._common import ReaderError, cells_to_anndata, check_path
from spatialpath.model import ImageMetadata

__all__ = [
    "Counts",
    "build_cells",
    "counts_path",
    "find_file",
    "is_lazy",
    "map_frame",
    "read_10x_counts",
    "read_table",
]

#: CSV numbers are parsed exactly as written (the default parser may differ in the last bit).
EXACT = {"float_precision": "round_trip"}
#: the columns every transcripts table starts with (then the vendor's own columns).
TRANSCRIPT_COLUMNS = ("x_um", "y_um", "z_um", "gene", "cell_id")


@dataclass
class Counts:
    """A cells × features count matrix with its row and column names."""

    X: sp.csr_matrix
    barcodes: pd.Index
    var: pd.DataFrame
    attrs: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None


def find_file(folder: Path, candidates: Sequence[str]) -> Path | None:
    """Return the first of ``candidates`` (names or glob patterns) that exists in ``folder``."""
    for name in candidates:
        if any(ch in name for ch in "*?["):
            hits = sorted(folder.glob(name))
            if hits:
                return hits[0]
        elif (folder / name).exists():
            return folder / name
    return None


def counts_path(folder: Path, counts_file: str | Path | None, candidates: Sequence[str], what: str) -> Path:
    """The counts matrix named by the user (relative to ``folder`` or absolute), else the first candidate."""
    if counts_file is not None:
        p = Path(counts_file)
        return check_path(p if p.is_absolute() else folder / p, kind="any", what=f"{what} counts matrix")
    found = find_file(folder, candidates)
    if found is None:
        raise FileNotFoundError(
            f"no counts matrix in {folder}: looked for {', '.join(candidates)} (an .h5 file or a Matrix "
            "Market folder); pass counts_file= to name another one"
        )
    return found


def _text(values: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def read_10x_counts(path: Path) -> Counts:
    """Read a 10x feature-barcode matrix: an ``.h5`` file or a Matrix Market folder.

    The folder holds ``matrix.mtx(.gz)``, ``barcodes.tsv(.gz)`` and ``features.tsv(.gz)``
    (``genes.tsv`` in Cell Ranger 2). Returns barcodes × features counts as float32 CSR
    (scanpy's dtype) and ``var`` with ``gene_ids``, ``feature_types`` (and ``genome`` and any
    other per-feature field of the HDF5 file); ``var_names`` are the feature names, made unique.

    Raises
    ------
    ReaderError
        If the file or folder is not a 10x matrix.
    """
    counts = _read_mex(path) if path.is_dir() else _read_h5(path)
    var = counts.var
    var.index = pd.Index(var.index.astype(str))
    if not var.index.is_unique:
        var.index = ad.utils.make_index_unique(var.index)
    counts.source = path
    return counts


def _attr(value: Any) -> list[Any]:
    arr = np.atleast_1d(value)
    return _text(arr) if arr.dtype.kind in "SOU" else arr.tolist()


def _read_h5(path: Path) -> Counts:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ReaderError(
            f"{path} is not an HDF5 file ({e}); expected a 10x feature-barcode matrix"
        ) from None
    with f:
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
        if "matrix" not in f:
            raise ReaderError(
                f"{path} has no 'matrix' group: it is not a 10x feature-barcode matrix in the Cell Ranger "
                "3+ / Space Ranger / Xenium HDF5 layout (groups found: " + ", ".join(f.keys()) + ")"
            )
        g = f["matrix"]
        n_features, n_barcodes = (int(v) for v in g["shape"][:])
        mat = sp.csc_matrix(
            (g["data"][:].astype(np.float32), g["indices"][:], g["indptr"][:]), shape=(n_features, n_barcodes)
        )
        barcodes = pd.Index(_text(g["barcodes"][:]), name=None)
        feats = g["features"]
        var = pd.DataFrame(index=_text(feats["name"][:]))
        var["gene_ids"] = _text(feats["id"][:])
        var["feature_types"] = _text(feats["feature_type"][:])
        for key in feats:
            ds = feats[key]
            if key in ("name", "id", "feature_type", "_all_tag_keys") or not hasattr(ds, "shape"):
                continue
            if ds.shape == (n_features,):
                vals = ds[:]
                var[key] = _text(vals) if vals.dtype.kind in "SOU" else vals
    return Counts(mat.T.tocsr(), barcodes, var, attrs)


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _read_mex(folder: Path) -> Counts:
    mtx = find_file(folder, ["matrix.mtx.gz", "matrix.mtx"])
    bc = find_file(folder, ["barcodes.tsv.gz", "barcodes.tsv"])
    feat = find_file(folder, ["features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv"])
    missing = [
        n
        for n, p in (("matrix.mtx(.gz)", mtx), ("barcodes.tsv(.gz)", bc), ("features.tsv(.gz)", feat))
        if p is None
    ]
    if missing:
        raise ReaderError(
            f"{folder} is not a 10x Matrix Market folder: missing {', '.join(missing)} "
            "(a MEX folder holds matrix.mtx.gz, barcodes.tsv.gz and features.tsv.gz)"
        )
    with _open_text(mtx) as fh:
        mat = sp.csr_matrix(scipy.io.mmread(fh)).astype(np.float32)  # features × barcodes
    barcodes = pd.read_csv(bc, header=None, sep="\t", dtype=str)[0]
    features = pd.read_csv(feat, header=None, sep="\t", dtype=str)
    if mat.shape != (len(features), len(barcodes)):
        raise ReaderError(
            f"{mtx.name} has shape {mat.shape} (features × barcodes) but {feat.name} lists {len(features)} "
            f"features and {bc.name} {len(barcodes)} barcodes: the files are from different matrices"
        )
    names = features[1] if features.shape[1] > 1 else features[0]
    var = pd.DataFrame(index=names.to_numpy())
    var["gene_ids"] = features[0].to_numpy()
    var["feature_types"] = features[2].to_numpy() if features.shape[1] > 2 else "Gene Expression"
    return Counts(mat.T.tocsr(), pd.Index(barcodes.to_numpy()), var)


def is_lazy(df: Any) -> bool:
    """True for a dask DataFrame."""
    return hasattr(df, "npartitions")


def read_table(
    path: Path,
    *,
    lazy: bool = False,
    columns: Sequence[str] | None = None,
    dtype: Mapping[str, Any] | None = None,
    index_col: int | None = None,
) -> Any:
    """Read a CSV (optionally gzipped) or Parquet table, with pandas or lazily with dask.

    Lazily, a plain CSV is split into 64 MB partitions; a gzipped CSV cannot be split and is
    read as one partition (still only when computed); Parquet keeps its row groups.
    """
    name = path.name.lower()
    parquet = name.endswith((".parquet", ".pq"))
    if lazy:
        import dask.dataframe as dd

        if parquet:
            return dd.read_parquet(path, columns=list(columns) if columns else None)
        blocksize = None if name.endswith(".gz") else "64MB"
        compression = "gzip" if name.endswith(".gz") else None
        return dd.read_csv(
            path, usecols=columns, dtype=dtype, blocksize=blocksize, compression=compression, **EXACT
        )
    if parquet:
        return pd.read_parquet(path, columns=list(columns) if columns else None)
    return pd.read_csv(path, usecols=columns, dtype=dtype, index_col=index_col, **EXACT)


def map_frame(df: Any, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> Any:
    """Apply a per-row-block transform to a pandas DataFrame, or lazily to each dask partition."""
    if is_lazy(df):
        meta = fn(df._meta.copy())
        return df.map_partitions(fn, meta=meta)
    return fn(df)


def order_transcripts(out: pd.DataFrame) -> pd.DataFrame:
    """Put the standard transcript columns first, then the vendor's."""
    first = [c for c in TRANSCRIPT_COLUMNS if c in out.columns]
    return out[first + [c for c in out.columns if c not in first]]


def build_cells(
    xy_um: np.ndarray,
    *,
    X: sp.spmatrix,
    var: pd.DataFrame,
    obs: pd.DataFrame,
    meta: ImageMetadata | Mapping[str, Any],
    source: str,
) -> ad.AnnData:
    """Cells in the data model with a sparse count matrix (validated by ``cells_to_anndata``)."""
    image_id = meta.image_id if isinstance(meta, ImageMetadata) else meta["image_id"]
    base = cells_to_anndata(
        xy_um, obs=obs, images=[meta], image_id=image_id, categorical=["image_id"], source=source
    )
    adata = ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32), obs=base.obs, var=var, uns=base.uns)
    adata.obsm["spatial"] = base.obsm["spatial"]
    return adata
