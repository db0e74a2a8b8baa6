"""Vizgen MERSCOPE outputs: cells, transcripts and mosaic images, in µm.

MERSCOPE writes cell centres (``center_x/center_y`` of ``cell_metadata.csv``) and transcripts
(``global_x/global_y`` of ``detected_transcripts.csv``) in µm in one global frame with y
pointing down, the data model's frame: no conversion is needed. Mosaic images map to it by
``images/micron_to_mosaic_pixel_transform.csv`` (pixel = transform · µm).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr
from anndata import AnnData

from spatialpath.io._common import PathLike, ReaderError, check_path
from spatialpath.io._st_common import EXACT, build_cells, find_file, map_frame, order_transcripts, read_table
from spatialpath.model import ImageMetadata, make_image

__all__ = ["merscope_image", "read_merscope", "read_merscope_transcripts"]

_BY_GENE = ("cell_by_gene.csv", "*cell_by_gene*.csv*")
_METADATA = ("cell_metadata.csv", "*cell_metadata*.csv*")
_TRANSCRIPTS = ("detected_transcripts.parquet", "detected_transcripts.csv", "*detected_transcripts*.csv*")
_TRANSFORM = "images/micron_to_mosaic_pixel_transform.csv"


def _read_ids_first(path: Path) -> pd.DataFrame:
    """Read a CSV whose first column is the cell id (EntityID: up to 38 digits, kept as text)."""
    first = pd.read_csv(path, nrows=0).columns[0]
    df = pd.read_csv(path, dtype={first: str}, index_col=0, **EXACT)
    df.index = pd.Index(df.index.astype(str), name=None)
    return df


def _transform(folder: Path) -> np.ndarray | None:
    f = folder / _TRANSFORM
    if not f.is_file():
        return None
    # Vizgen writes space-separated numbers; tabs, repeated or trailing spaces, commas and CRLF
    # line ends (files re-saved by other tools) are read alike.
    try:
        m = np.loadtxt(io.StringIO(f.read_text().replace(",", " ")), ndmin=2)
    except ValueError as e:
        raise ReaderError(f"{f} is not a matrix of numbers ({e})") from None
    if m.shape != (3, 3) or not np.isclose(m[0, 0], m[1, 1]) or m[0, 1] != 0 or m[1, 0] != 0:
        raise ReaderError(f"{f} must be a 3 × 3 scale-and-shift matrix (pixel = M · µm), got {m.tolist()}")
    return m


def read_merscope(path: PathLike, *, image_id: str | None = None) -> AnnData:
    r"""Read the cells of a MERSCOPE region folder into the µm data model.

    Parameters
    ----------
    path
        Region output folder with ``cell_by_gene.csv`` (cells × genes, first column the cell
        EntityID) and ``cell_metadata.csv`` (``fov``, ``volume``, ``center_x``, ``center_y``,
        ``min_x`` ... ``max_y`` in µm); optionally ``images/`` with the mosaic TIFFs and
        ``micron_to_mosaic_pixel_transform.csv``.
    image_id
        Default the folder name.

    Returns
    -------
    AnnData: cells (``obs_names`` = EntityID, as text: older IDs have 38 digits) × genes
    (float32 CSR; ``var["feature_types"]`` marks ``Blank-*`` codewords), the columns of
    ``cell_metadata.csv`` in ``obs``, ``obsm["spatial"]`` = ``(center_x, center_y)`` µm, and
    the metadata record (mosaic pixel size and shape when ``images/`` has them).

    Raises
    ------
    FileNotFoundError
        If ``cell_by_gene.csv`` or ``cell_metadata.csv`` is missing.
    ReaderError
        If a cell of ``cell_by_gene.csv`` has no metadata row.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> big = "40951783403982682273285375368232495429"
    >>> _ = (d / "cell_by_gene.csv").write_text(f"cell,Gfap,Blank-1\n{big},4,0\n17,1,1\n")
    >>> _ = (d / "cell_metadata.csv").write_text(
    ...     f",fov,volume,center_x,center_y\n{big},0,800.5,6410.25,4790.5\n17,0,600.0,6420.0,4800.0\n"
    ... )
    >>> a = read_merscope(d)
    >>> a.obs_names[0] == big, a.obsm["spatial"].tolist(), a.X.toarray().tolist()
    (True, [[6410.25, 4790.5], [6420.0, 4800.0]], [[4.0, 0.0], [1.0, 1.0]])
    """
    folder = check_path(path, kind="dir", what="MERSCOPE region folder")
    by_gene, meta_file = find_file(folder, _BY_GENE), find_file(folder, _METADATA)
    for f, name, what in ((by_gene, "cell_by_gene.csv", "counts per cell and gene"),
                          (meta_file, "cell_metadata.csv", "cell centres in µm")):  # fmt: skip
        if f is None:
            raise FileNotFoundError(f"{name} not found in {folder}: it holds the {what}")
    counts = _read_ids_first(by_gene)
    obs = _read_ids_first(meta_file)
    missing = ~counts.index.isin(obs.index)
    if missing.any():
        raise ReaderError(
            f"{int(missing.sum())} cells of {by_gene.name} have no row in {meta_file.name} "
            f"(first: {list(counts.index[missing][:3])})"
        )
    obs = obs.loc[counts.index]
    genes = pd.Index(counts.columns.astype(str))
    var = pd.DataFrame(
        {"feature_types": np.where(genes.str.startswith("Blank-"), "Blank Codeword", "Gene Expression")},
        index=genes,
    )
    m, shape, images = _transform(folder), None, sorted((folder / "images").glob("mosaic_*.tif"))
    if m is not None and images:
        import tifffile

        with tifffile.TiffFile(images[0]) as tf:
            shape = tuple(int(v) for v in tf.series[0].shape[-2:])
    meta = ImageMetadata(
        image_id=image_id or folder.name,
        technology="merscope",
        pixel_size_um=1.0 / m[0, 0] if m is not None else None,
        shape_px=shape,
        origin_um=(-m[0, 2] / m[0, 0], -m[1, 2] / m[1, 1]) if m is not None else (0.0, 0.0),
        source_files=[str(by_gene), str(meta_file), *(str(f) for f in images)],
    )
    X = sp.csr_matrix(counts.to_numpy(np.float32))
    xy = obs[["center_x", "center_y"]].to_numpy(np.float64)
    return build_cells(xy, X=X, var=var, obs=obs, meta=meta, source=str(folder))


def read_merscope_transcripts(path: PathLike, *, lazy: bool = True) -> Any:
    r"""Read MERSCOPE ``detected_transcripts`` as a transcripts table in µm, lazily by default.

    Parameters
    ----------
    path
        The region folder, or the transcripts file (CSV, gzipped CSV or Parquet).
    lazy
        Return a :class:`dask.dataframe.DataFrame` (a plain CSV is split into 64 MB
        partitions, a gzipped one is a single partition); ``False`` reads into pandas.

    Returns
    -------
    DataFrame with ``x_um`` (= ``global_x``), ``y_um`` (= ``global_y``), ``gene``,
    ``cell_id`` (text EntityID, ``None`` when ``-1`` or when the file has no ``cell_id``
    column), then the vendor columns (``global_z`` is the z-plane index, not µm;
    ``x``/``y`` are FOV pixel positions).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "detected_transcripts.csv").write_text(
    ...     ",barcode_id,global_x,global_y,global_z,x,y,fov,gene,transcript_id,cell_id\n"
    ...     "0,3,6400.5,4966.25,0.0,10.0,20.0,0,Gfap,t1,17\n1,8,6401.0,4967.0,1.0,11.0,21.0,0,Mlc1,t2,-1\n"
    ... )
    >>> read_merscope_transcripts(d, lazy=False)[["x_um", "y_um", "gene", "cell_id"]].values.tolist()
    [[6400.5, 4966.25, 'Gfap', '17'], [6401.0, 4967.0, 'Mlc1', None]]
    """
    p = check_path(path, kind="any", what="MERSCOPE transcripts")
    f = find_file(p, _TRANSCRIPTS) if p.is_dir() else p
    if f is None:
        raise FileNotFoundError(f"no detected_transcripts.csv or .parquet in {p}")
    df = read_table(f, lazy=lazy, dtype={"cell_id": str, "gene": str})
    need = {"global_x", "global_y", "gene"} - set(df.columns)
    if need:
        raise ReaderError(
            f"{f} lacks the columns {sorted(need)}; is it a MERSCOPE detected_transcripts file?"
        )

    def convert(t: pd.DataFrame) -> pd.DataFrame:
        out = t.drop(columns=[c for c in t.columns if str(c).startswith("Unnamed")])
        out["x_um"] = out["global_x"].astype(np.float64)
        out["y_um"] = out["global_y"].astype(np.float64)
        out["gene"] = out["gene"].astype(str)
        if "cell_id" in out:
            cid = out["cell_id"].astype(str)
            out["cell_id"] = cid.astype(object).where(~cid.isin(["-1", "nan", "<NA>", ""]), None)
        else:
            out["cell_id"] = pd.Series([None] * len(out), index=out.index, dtype=object)
        return order_transcripts(out)

    return map_frame(df, convert)


def merscope_image(path: PathLike, stain: str = "DAPI", z: int = 0) -> xr.DataArray:
    r"""Open a MERSCOPE mosaic (``images/mosaic_{stain}_z{z}.tif``) lazily as a DataArray in µm.

    The pixel size and origin come from ``images/micron_to_mosaic_pixel_transform.csv``
    (``pixel = M · µm``): pixel size ``1 / M[0, 0]``, pixel (0, 0) at
    ``(−M[0, 2], −M[1, 2]) / M[0, 0]`` µm.

    Parameters
    ----------
    path
        The MERSCOPE output folder (with ``images/``).
    stain
        Stain name in the mosaic file name (``"DAPI"``, ``"PolyT"``, ``"Cellbound1"``...).
    z
        Z plane index in the mosaic file name.

    Returns
    -------
    xarray.DataArray
        ``(c, y, x)`` image with one channel named ``stain``, dask-backed, in µm.

    Raises
    ------
    FileNotFoundError
        If the mosaic or the transform file is missing.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "images").mkdir()
    >>> tifffile.imwrite(d / "images" / "mosaic_DAPI_z0.tif", np.zeros((4, 5), np.uint16))
    >>> m = "10 0 -50\n0 10 -20\n0 0 1\n"  # 10 px per µm; pixel (0, 0) at (5, 2) µm
    >>> _ = (d / "images" / "micron_to_mosaic_pixel_transform.csv").write_text(m)
    >>> img = merscope_image(d)
    >>> img.attrs["pixel_size_um"], img.x.values[:2].tolist(), img.y.values[:2].tolist()
    (0.1, [5.0, 5.1], [2.0, 2.1])
    """
    import dask.array as da
    import tifffile
    import zarr

    folder = check_path(path, kind="dir", what="MERSCOPE region folder")
    f = folder / "images" / f"mosaic_{stain}_z{z}.tif"
    if not f.is_file():
        found = sorted(p.name for p in (folder / "images").glob("mosaic_*.tif"))
        raise FileNotFoundError(f"{f} not found (mosaics in images/: {found or 'none'})")
    m = _transform(folder)
    if m is None:
        raise FileNotFoundError(f"{folder / _TRANSFORM} not found: it maps µm to mosaic pixels")
    data = da.from_zarr(zarr.open(tifffile.imread(f, aszarr=True), mode="r"))
    return make_image(
        data,
        channels=[stain],
        pixel_size_um=1.0 / m[0, 0],
        origin_um=(-m[0, 2] / m[0, 0], -m[1, 2] / m[1, 1]),
        image_id=folder.name,
        source=str(f),
    )
