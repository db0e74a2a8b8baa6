"""10x Xenium Onboard Analysis outputs: cells, transcripts and the morphology image, in µm.

Xenium writes every coordinate in µm (origin at the top-left of the morphology image, y down),
which is the data model's frame: no conversion is needed. The pixel size of the morphology
image is ``pixel_size`` of ``experiment.xenium`` (0.2125 µm on current instruments).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from anndata import AnnData

from spatialpath.io._common import PathLike, ReaderError, check_path
from spatialpath.io._image import _inspect_tiff, _level_image
from spatialpath.io._st_common import (
    build_cells,
    counts_path,
    find_file,
    map_frame,
    order_transcripts,
    read_10x_counts,
    read_table,
)
from spatialpath.io._tiff_meta import open_tiff, pixel_size
from spatialpath.model import ImageMetadata

__all__ = ["read_xenium", "read_xenium_transcripts", "xenium_image"]

_CELLS = ("cells.parquet", "cells.csv.gz", "cells.csv")
_COUNTS = ("cell_feature_matrix.h5", "cell_feature_matrix")
_TRANSCRIPTS = ("transcripts.parquet", "transcripts.csv.gz", "transcripts.csv")
_IMAGES = ("morphology_focus/*.ome.tif", "morphology_focus.ome.tif", "morphology_mip.ome.tif")
_EXPERIMENT_KEYS = ("run_name", "region_name", "panel_name", "analysis_sw_version", "instrument_sw_version")
#: values of ``cell_id`` that mean "not in a cell" (XOA >= 1.3 writes a string, older -1).
_UNASSIGNED = {"UNASSIGNED", "-1", ""}


def _experiment(folder: Path) -> dict[str, Any]:
    f = folder / "experiment.xenium"
    return json.loads(f.read_text()) if f.is_file() else {}


def _as_text(s: pd.Series) -> pd.Series:
    if s.dtype == object and len(s) and isinstance(s.iloc[0], bytes):
        s = s.str.decode("utf-8")
    return s.astype(str)


def _image_files(folder: Path) -> list[Path]:
    for pattern in _IMAGES:
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits
    return []


def read_xenium(
    path: PathLike, *, counts_file: PathLike | None = None, image_id: str | None = None
) -> AnnData:
    r"""Read the cells of a Xenium output folder into the µm data model.

    Parameters
    ----------
    path
        Xenium Onboard Analysis output folder with ``cells.parquet`` (or ``cells.csv.gz``),
        ``cell_feature_matrix.h5`` (or the ``cell_feature_matrix/`` MEX folder) and
        ``experiment.xenium``.
    counts_file
        Another counts matrix (relative to ``path`` or absolute).
    image_id
        Default ``region_name`` of ``experiment.xenium``, else the folder name.

    Returns
    -------
    AnnData: cells (``obs_names`` = ``cell_id``) × features, float32 CSR counts (every
    feature of the matrix; ``var["feature_types"]`` tells genes from negative controls),
    the other columns of ``cells.parquet`` in ``obs``, ``obsm["spatial"]`` =
    ``(x_centroid, y_centroid)`` µm, and the metadata record (pixel size of
    ``experiment.xenium``, shape of the morphology image).

    Raises
    ------
    FileNotFoundError
        If the cell table or the counts matrix is missing.
    ReaderError
        If a matrix barcode has no row in the cell table, or the centroid columns are missing.

    Examples
    --------
    >>> import json, tempfile, pathlib, numpy as np, pandas as pd, scipy.io, scipy.sparse as sp
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "experiment.xenium").write_text(json.dumps({"pixel_size": 0.2125, "region_name": "r1"}))
    >>> cells = pd.DataFrame({"cell_id": ["aaa-1", "bbb-1"], "x_centroid": [10.5, 20.0]})
    >>> cells["y_centroid"] = [5.0, 7.25]
    >>> cells.to_parquet(d / "cells.parquet")
    >>> (d / "cell_feature_matrix").mkdir()
    >>> scipy.io.mmwrite(d / "cell_feature_matrix" / "matrix.mtx", sp.coo_matrix(np.array([[3, 0], [1, 2]])))
    >>> _ = (d / "cell_feature_matrix" / "barcodes.tsv").write_text("aaa-1\nbbb-1\n")
    >>> _ = (d / "cell_feature_matrix" / "features.tsv").write_text(
    ...     "E1\tCD3E\tGene Expression\nN1\tNegControlProbe_1\tNegative Control Probe\n"
    ... )
    >>> a = read_xenium(d)
    >>> a.obsm["spatial"].tolist(), a.X.toarray().tolist(), a.obs["image_id"].iloc[0]
    ([[10.5, 5.0], [20.0, 7.25]], [[3.0, 1.0], [0.0, 2.0]], 'r1')
    """
    folder = check_path(path, kind="dir", what="Xenium output folder")
    cells_file = find_file(folder, _CELLS)
    if cells_file is None:
        raise FileNotFoundError(
            f"no cell table in {folder}: expected cells.parquet or cells.csv.gz (cell_id, x_centroid, "
            "y_centroid in µm, transcript_counts, ...)"
        )
    cpath = counts_path(folder, counts_file, _COUNTS, "Xenium")
    counts = read_10x_counts(cpath)
    cells = read_table(cells_file)
    missing = {"cell_id", "x_centroid", "y_centroid"} - set(cells.columns)
    if missing:
        raise ReaderError(f"{cells_file} lacks the columns {sorted(missing)}; is it a Xenium cells table?")
    cells.index = pd.Index(_as_text(cells.pop("cell_id")).to_numpy())
    absent = ~counts.barcodes.isin(cells.index)
    if absent.any():
        raise ReaderError(
            f"{int(absent.sum())} cells of {cpath.name} have no row in {cells_file.name} "
            f"(first: {list(counts.barcodes[absent][:3])}): the files come from different runs"
        )
    obs = cells.loc[counts.barcodes]
    xy = obs[["x_centroid", "y_centroid"]].to_numpy(np.float64)
    obs = obs.drop(columns=["x_centroid", "y_centroid"])

    exp = _experiment(folder)
    images = _image_files(folder)
    shape = None
    if images:
        import tifffile

        with tifffile.TiffFile(images[0]) as tf:
            shape = tuple(int(v) for v in tf.series[0].shape[-2:])
    image_id = image_id or str(exp.get("region_name") or folder.name)
    meta = ImageMetadata(
        image_id=image_id,
        technology="xenium",
        pixel_size_um=exp.get("pixel_size"),
        shape_px=shape if exp.get("pixel_size") else None,
        source_files=[str(f) for f in (cells_file, cpath, *images)],
        extra={k: str(exp[k]) for k in _EXPERIMENT_KEYS if k in exp},
    )
    return build_cells(xy, X=counts.X, var=counts.var, obs=obs, meta=meta, source=str(folder))


def read_xenium_transcripts(path: PathLike, *, lazy: bool = True, min_qv: float | None = None) -> Any:
    """Read Xenium transcripts as a table in µm, lazily by default.

    Parameters
    ----------
    path
        The output folder (``transcripts.parquet``, else ``transcripts.csv.gz``) or the file.
    lazy
        Return a :class:`dask.dataframe.DataFrame` (nothing is read until ``.compute()``;
        Parquet row groups become partitions). ``False`` reads into pandas.
    min_qv
        Keep transcripts with ``qv >= min_qv`` (10x's counts matrix uses 20). Needs the ``qv``
        column: a table without it raises :class:`ReaderError` (never an unfiltered table).

    Returns
    -------
    DataFrame with ``x_um``, ``y_um``, ``z_um`` (= ``x/y/z_location``), ``gene``
    (= ``feature_name``), ``cell_id`` (``None`` when not in a cell; otherwise the
    ``obs_names`` of :func:`read_xenium`), then the other Xenium columns (``qv``,
    ``overlaps_nucleus``, ``transcript_id``, ...).

    Raises
    ------
    FileNotFoundError
        If there is no transcripts file.
    ReaderError
        If a required column is missing, or ``min_qv`` is given and there is no ``qv`` column.

    Examples
    --------
    >>> import tempfile, pathlib, pandas as pd
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> pd.DataFrame({
    ...     "cell_id": ["aaa-1", "UNASSIGNED"], "feature_name": ["CD3E", "EPCAM"],
    ...     "x_location": [1.0, 2.0], "y_location": [3.0, 4.0], "z_location": [5.0, 6.0], "qv": [40.0, 10.0],
    ... }).to_parquet(d / "transcripts.parquet")
    >>> tx = read_xenium_transcripts(d).compute()
    >>> tx[["x_um", "y_um", "gene", "cell_id"]].values.tolist()
    [[1.0, 3.0, 'CD3E', 'aaa-1'], [2.0, 4.0, 'EPCAM', None]]
    """
    p = check_path(path, kind="any", what="Xenium transcripts")
    f = find_file(p, _TRANSCRIPTS) if p.is_dir() else p
    if f is None:
        raise FileNotFoundError(f"no transcripts in {p}: expected transcripts.parquet or transcripts.csv.gz")
    df = read_table(f, lazy=lazy)
    need = {"x_location", "y_location", "feature_name", "cell_id"} - set(df.columns)
    if need:
        raise ReaderError(f"{f} lacks the columns {sorted(need)}; is it a Xenium transcripts table?")
    if min_qv is not None and "qv" not in df.columns:
        raise ReaderError(
            f"min_qv={min_qv} filters on the Phred quality column 'qv', but {f.name} has none (columns: "
            f"{', '.join(map(str, df.columns))}); pass min_qv=None to keep every transcript"
        )

    def convert(t: pd.DataFrame) -> pd.DataFrame:
        if min_qv is not None:
            t = t[t["qv"] >= min_qv]
        out = t.rename(
            columns={"x_location": "x_um", "y_location": "y_um", "z_location": "z_um", "feature_name": "gene"}
        )
        out["gene"] = _as_text(out["gene"])
        cid = _as_text(out["cell_id"])
        out["cell_id"] = cid.astype(object).where(~cid.isin(_UNASSIGNED), None)
        return order_transcripts(out)

    return map_frame(df, convert)


def xenium_image(path: PathLike, *, level: int = 0) -> xr.DataArray:
    """Open the Xenium morphology focus image lazily (dask) as a DataArray in µm.

    Reads ``morphology_focus/*.ome.tif`` (XOA >= 2.0, one file per stain), else
    ``morphology_focus.ome.tif`` or ``morphology_mip.ome.tif`` (XOA 1.x). XOA >= 2 writes a
    multi-file OME-TIFF: the OME-XML of ``morphology_focus_0000.ome.tif`` lists every stain and
    links the other files by UUID, so that file alone is opened when its series has every
    channel; otherwise (independent single-stain files, or a linked file missing) each file is
    opened and each channel kept once, in file order, with a warning for channels whose file is
    missing.

    The pixel size is ``pixel_size`` of ``experiment.xenium`` (else the OME
    ``PhysicalSizeX``) times the pyramid level's downsampling. Levels are placed as by
    :func:`~spatialpath.io.read_pyramid`: level 0 pixel centres at ``index × pixel size``; level
    *k* (pixel size ``ps_k``) has its pixel (0, 0) centred at ``(ps_k − ps_0) / 2``, so every level
    covers the same µm extent.

    Parameters
    ----------
    path
        The Xenium output folder.
    level
        Pyramid level (0 = full resolution).

    Raises
    ------
    FileNotFoundError
        If there is no morphology focus or MIP image.
    ReaderError
        If no pixel size is recorded, the level does not exist, the image is a z-stack, or the
        files are not on one pixel grid.

    Examples
    --------
    >>> import json, tempfile, pathlib, numpy as np, tifffile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "experiment.xenium").write_text(json.dumps({"pixel_size": 0.2125}))
    >>> tifffile.imwrite(d / "morphology_focus.ome.tif", np.zeros((8, 10), np.uint16), ome=True)
    >>> img = xenium_image(d)
    >>> img.sizes["y"], img.sizes["x"], img.attrs["pixel_size_um"], img.c.values.tolist()
    (8, 10, 0.2125, ['morphology_focus'])
    """
    folder = check_path(path, kind="dir", what="Xenium output folder")
    files = _image_files(folder)
    if not files:
        raise FileNotFoundError(f"no morphology image in {folder}: looked for {', '.join(_IMAGES)}")
    ps = _experiment(folder).get("pixel_size")
    first = _morphology_series(files[0], level, ps, folder)
    if all(first.present) and first.files >= {f.resolve() for f in files}:
        # one series has every channel (XOA >= 2: the first file's OME-XML links the others by UUID)
        parts = [_morphology_level(first, level, ps)]
    else:  # files with one image each (or a linked file missing): stack them, each channel once
        parts, seen, lost = [], set(), {}
        for f in files:
            info = first if f == files[0] else _morphology_series(f, level, ps, folder)
            img = _morphology_level(info, level, ps)
            names = [str(c) for c in img.c.values]
            keep = [i for i, c in enumerate(names) if info.present[i] and c not in seen]
            lost.update({c: f.name for i, c in enumerate(names) if not info.present[i]})
            seen.update(names[i] for i in keep)
            if keep:
                parts.append(img.isel(c=keep))
        missing = {c: f for c, f in lost.items() if c not in seen}
        if not parts:
            raise ReaderError(f"no channel of {', '.join(f.name for f in files)} could be read")
        if missing:
            warnings.warn(
                f"channels {sorted(missing)} of the morphology image are missing (a file their OME-XML "
                "links to could not be read) and are left out",
                UserWarning,
                stacklevel=2,
            )
    try:
        image = (
            parts[0] if len(parts) == 1 else xr.concat(parts, dim="c", join="exact", combine_attrs="override")
        )
    except ValueError as e:
        raise ReaderError(
            f"the morphology images {', '.join(f.name for f in files)} are not on one pixel grid ({e})"
        ) from None
    image.attrs.update(image_id=folder.name, source=str(files[0]))
    return image


@dataclass
class _Morphology:
    """A morphology OME-TIFF series: its file, which channels have pixel data, and which files hold them."""

    path: Path
    present: list[bool]
    files: set[Path]


def _morphology_series(f: Path, level: int, ps: float | None, folder: Path) -> _Morphology:
    with open_tiff(f) as tf:
        series = tf.series[0]
        if "Z" in series.axes:
            raise ReaderError(f"{f.name} is a z-stack ({series.axes}); use morphology_focus images (2-D)")
        if level >= len(series.levels):
            raise ReaderError(
                f"{f.name} has {len(series.levels)} pyramid levels; level {level} does not exist"
            )
        pages = list(series.pages)
        n_c = int(np.prod([n for a, n in zip(series.axes, series.shape, strict=True) if a not in "YX"]))
        present = (
            [p is not None for p in pages] if len(pages) == n_c else [all(p is not None for p in pages)] * n_c
        )
        files = {Path(p.parent.filehandle.path).resolve() for p in pages if p is not None}
        file_ps = pixel_size(tf, 0)[0]
    if ps is None and file_ps is None:
        raise ReaderError(
            f"no pixel size: {folder / 'experiment.xenium'} is missing and the OME metadata has none"
        )
    return _Morphology(f, present, files)


def _morphology_level(m: _Morphology, level: int, ps: float | None) -> xr.DataArray:
    """One level as a lazy DataArray on read_pyramid's µm grid (shared code: ``_level_image``).

    Level k's pixel (0, 0) is centred at ``(ps_k - ps_0) / 2``; channels are named from the
    OME-XML, else from the file name.
    """
    info = _inspect_tiff(m.path, 0, None, ps)
    if info.channels_from.startswith("default"):
        stem = m.path.name.split(".")[0]
        n_c = len(info.channels)
        names = [stem] if n_c == 1 else [f"{stem}_{i}" for i in range(n_c)]
        info = replace(info, channels=names, channels_from="file name")
    image = _level_image(info, level, "default")
    if ps is not None:
        image.attrs["pixel_size_from"] = "experiment.xenium pixel_size"
    return image
