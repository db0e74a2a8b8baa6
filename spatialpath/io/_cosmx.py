"""NanoString (Bruker) CosMx SMI flat files: cells, transcripts and per-FOV images, in µm.

CosMx gives positions in pixels with y pointing **up** (origin at the bottom left; NanoString's
SMI ReadMe: "the local y-axis coordinates should be inverted to align the transcript positions
to images"). spatialpath stores ``x_um = x_global_px × pixel size`` and
``y_um = −y_global_px × pixel size`` so that y points down, as image rows do. AtoMx versions
differ in orientation: ``flip_y=False`` takes y as pointing down already (``y_um = +y_global_px ×
pixel size``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import tifffile
import xarray as xr
from anndata import AnnData

from spatialpath.io._common import PathLike, ReaderError, check_path, require_pixel_size
from spatialpath.io._st_common import EXACT, build_cells, find_file, map_frame, order_transcripts, read_table
from spatialpath.model import ImageMetadata, make_image, make_labels

__all__ = [
    "COSMX_NSCLC_2022_PIXEL_SIZE_UM",
    "COSMX_PIXEL_SIZE_UM",
    "cosmx_fov_image",
    "read_cosmx",
    "read_cosmx_transcripts",
]

#: µm per pixel of current CosMx instruments (4,256 px square FOVs; AtoMx exports): NanoString's
#: SMI ReadMe of the public releases, e.g. the WTX colon-cancer README ("multiply by 0.12028 µm
#: per pixel"; 0.120280945 in NanoString's own analysis code).
COSMX_PIXEL_SIZE_UM = 0.120280945
#: µm per pixel of the 2022 public NSCLC FFPE release (Lung5/6/9/12/13, He et al. 2022, 5,472 ×
#: 3,648 px FOVs): its SMI Data File ReadMe ("multiply the pixel value by 0.18 um per pixel").
COSMX_NSCLC_2022_PIXEL_SIZE_UM = 0.18

_PATTERNS = {
    "expr": ("*exprMat_file.csv*",),
    "meta": ("*metadata_file.csv*",),
    "tx": ("*tx_file.csv*", "*tx_file.parquet"),
    "fov": ("*fov_positions_file.csv*",),
}


def _files(folder: Path) -> dict[str, Path]:
    found = {}
    for key, patterns in _PATTERNS.items():
        hits = sorted({h for pattern in patterns for h in folder.glob(pattern)})
        if len(hits) > 1:
            raise ReaderError(
                f"{folder} holds several {' or '.join(patterns)} files ({[h.name for h in hits]}); pass one "
                "sample"
            )
        if hits:
            found[key] = hits[0]
    return found


def _flip(flip_y: bool | None) -> bool:
    """``flip_y=None`` is the default: True (CosMx y points up, per NanoString's SMI ReadMe)."""
    return True if flip_y is None else bool(flip_y)


def _y_rule(flip: bool) -> str:
    sign = "-" if flip else "+"
    return f"{sign}y_global_px * pixel_size_um (flip_y={flip}: CosMx y points {'up' if flip else 'down'})"


def _sample_name(files: dict[str, Path], folder: Path) -> str:
    for f in files.values():
        m = re.match(r"(.+?)_(exprMat|metadata|tx|fov_positions)_file", f.name)
        if m:
            return m.group(1)
    return folder.name


def _fov_positions(files: dict[str, Path], ps: float | None = None) -> pd.DataFrame:
    """FOV offsets indexed by FOV, with ``x_global_px``/``y_global_px``.

    Newer AtoMx exports give only ``X_mm``/``Y_mm`` (or ``x_global_mm``): the pixel offsets are
    then ``mm × 1000 / pixel size`` (same orientation as the global pixel columns).
    """
    if "fov" not in files:
        raise FileNotFoundError(
            "no *_fov_positions_file.csv: it gives each FOV's global offset in pixels (and, in AtoMx "
            "exports, in mm, which sets the pixel size)"
        )
    pos = pd.read_csv(files["fov"], **EXACT)
    pos.columns = [c.lower() for c in pos.columns]
    if "fov" not in pos.columns:
        raise ReaderError(f"{files['fov'].name} has no FOV column (columns: {list(pos.columns)})")
    if pos["fov"].duplicated().any():
        raise ReaderError(
            f"{files['fov'].name} lists FOVs {sorted(pos.loc[pos['fov'].duplicated(), 'fov'].unique())[:5]} "
            "more than once (several slides in one export?); export one slide per folder"
        )
    for axis in ("x", "y"):
        px, mm = f"{axis}_global_px", next((c for c in (f"{axis}_global_mm", f"{axis}_mm") if c in pos), None)
        if px not in pos.columns and mm is not None and ps is not None:
            pos[px] = pos[mm].astype(np.float64) * 1000 / ps
    return pos.set_index("fov")


def _pixel_size(files: dict[str, Path], pixel_size_um: float | None) -> float:
    if pixel_size_um is not None:
        return require_pixel_size(pixel_size_um, source="CosMx")
    if "fov" in files:
        pos = _fov_positions(files)
        mm = next((c for c in ("x_global_mm", "x_mm") if c in pos.columns), None)
        if mm is not None and "x_global_px" in pos.columns:
            ok = pos["x_global_px"].abs() > 0
            ratio = 1000 * pos.loc[ok, mm] / pos.loc[ok, "x_global_px"]
            if len(ratio) and np.ptp(ratio) <= 0.01 * abs(ratio.median()):
                return float(ratio.median())
    raise ValueError(
        "the CosMx files do not state their pixel size (no x_global_mm or X_mm column next to x_global_px "
        "in the FOV positions file); "
        f"pass pixel_size_um=COSMX_PIXEL_SIZE_UM ({COSMX_PIXEL_SIZE_UM}, current instruments) or "
        f"COSMX_NSCLC_2022_PIXEL_SIZE_UM ({COSMX_NSCLC_2022_PIXEL_SIZE_UM}, the 2022 NSCLC public release). "
        "spatialpath never guesses a pixel size."
    )


def _cell_names(fov: pd.Series, cell: pd.Series) -> pd.Series:
    return fov.astype(str) + "_" + cell.astype(str)


def _cell_ids(t: pd.DataFrame) -> pd.Series:
    """Cell names: the vendor's ``cell`` column when present, else ``"{fov}_{cell_ID}"``.

    AtoMx's ``cell`` is ``c_<slide>_<fov>_<cell_ID>``: unique across slides.
    """
    if "cell" in t.columns:
        return t["cell"].astype(str)
    return _cell_names(t["fov"], t["cell_ID"])


def _feature_types(names: pd.Index) -> np.ndarray:
    return np.select(
        [names.str.startswith("NegPrb"), names.str.startswith("SystemControl")],
        ["Negative Control Probe", "System Control"],
        "Gene Expression",
    )


def read_cosmx(
    path: PathLike,
    *,
    pixel_size_um: float | None = None,
    image_id: str | None = None,
    flip_y: bool | None = None,
) -> AnnData:
    r"""Read the cells of a CosMx flat-file export into the µm data model.

    With ``*_exprMat_file.csv(.gz)`` and ``*_metadata_file.csv(.gz)`` (the vendor's cell ×
    target counts and cell table) the counts are those of the exprMat file and the centroids
    ``CenterX/Y_global_px``. Without them, cells are built from ``*_tx_file.csv`` (or
    ``*_tx_file.parquet``): counts =
    transcripts per (fov, cell_ID ≠ 0) and target; centroid = centroid of the cell's label in
    ``CellLabels/CellLabels_F###.tif`` when present, else the mean of its transcripts
    (``obs["centroid_from"]`` says which).

    Parameters
    ----------
    path
        Folder with the flat files (one sample).
    pixel_size_um
        µm per pixel; default from the FOV positions file (``x_global_mm / x_global_px``, or
        ``X_mm / x_global_px``). Without it, pass :data:`COSMX_PIXEL_SIZE_UM` or
        :data:`COSMX_NSCLC_2022_PIXEL_SIZE_UM`.
    image_id
        Default the sample prefix of the file names (e.g. ``Lung12``).
    flip_y
        ``True``: CosMx y points up and is negated (``y_um = −y_global_px × pixel size``);
        ``False``: y already points down (``y_um = +y_global_px × pixel size``). ``None`` (the
        default) is ``True``, NanoString's documented orientation; AtoMx versions differ, so
        check an image overlay (:func:`cosmx_fov_image` with the same ``flip_y``) on new exports.

    Returns
    -------
    AnnData: cells × targets (float32 CSR counts; ``var["feature_types"]`` marks ``NegPrb*`` and
    ``SystemControl*``), ``obs`` with ``fov``, ``cell_ID`` and the metadata columns,
    ``obsm["spatial"]`` in µm (y flipped, see above). ``obs_names`` are the vendor's ``cell``
    column (``c_<slide>_<fov>_<cell_ID>``, unique across slides) when the files have it, else
    ``"{fov}_{cell_ID}"``.

    Raises
    ------
    FileNotFoundError
        If neither the exprMat + metadata files nor a tx file is in ``path``.
    ValueError
        If the pixel size is neither given nor stated by the files.
    ReaderError
        If a cell of the exprMat file has no metadata row, or cell names repeat.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> expr = "fov,cell_ID,CD3E,NegPrb1\n1,0,5,1\n1,1,3,0\n1,2,0,1\n"  # cell_ID 0: outside cells
    >>> _ = (d / "S1_exprMat_file.csv").write_text(expr)
    >>> _ = (d / "S1_metadata_file.csv").write_text(
    ...     "fov,cell_ID,Area,CenterX_global_px,CenterY_global_px\n1,1,900,1000,2000\n1,2,800,1100,2050\n"
    ... )
    >>> a = read_cosmx(d, pixel_size_um=0.12)
    >>> a.obs_names.tolist(), a.X.toarray().tolist(), a.obsm["spatial"].round(2).tolist()
    (['1_1', '1_2'], [[3.0, 0.0], [0.0, 1.0]], [[120.0, -240.0], [132.0, -246.0]])
    """
    folder = check_path(path, kind="dir", what="CosMx flat-file folder")
    files = _files(folder)
    ps = _pixel_size(files, pixel_size_um)
    flip = _flip(flip_y)
    if "expr" in files and "meta" in files:
        obs, X, genes = _cells_from_exprmat(files)
        sign = -1.0 if flip else 1.0
        xy = np.c_[obs["CenterX_global_px"], sign * obs["CenterY_global_px"]].astype(np.float64) * ps
        cells_from = files["expr"].name
    elif "tx" in files:
        obs, X, genes, xy = _cells_from_transcripts(folder, files, ps, flip)
        cells_from = files["tx"].name
    else:
        raise FileNotFoundError(
            f"no CosMx cells in {folder}: expected *_exprMat_file.csv and *_metadata_file.csv (cell × target "
            "counts and the cell table), or a *_tx_file.csv to count transcripts per cell"
        )
    var = pd.DataFrame({"feature_types": _feature_types(genes)}, index=genes)
    meta = ImageMetadata(
        image_id=image_id or _sample_name(files, folder),
        technology="cosmx",
        pixel_size_um=ps,
        source_files=[str(f) for f in files.values()],
        extra={"cells_from": cells_from, "y_um": _y_rule(flip)},
    )
    return build_cells(xy, X=X, var=var, obs=obs, meta=meta, source=str(folder))


def _cells_from_exprmat(files: dict[str, Path]) -> tuple[pd.DataFrame, sp.csr_matrix, pd.Index]:
    meta = pd.read_csv(files["meta"], **EXACT)
    by_cell = "cell" in meta.columns  # newer AtoMx: c_<slide>_<fov>_<cell_ID>, unique across slides
    blocks, keys, genes = [], [], None
    for chunk in pd.read_csv(files["expr"], chunksize=100_000, **EXACT):
        chunk = chunk[chunk["cell_ID"] != 0]  # cell_ID 0 = transcripts outside cells, per FOV
        by_cell = by_cell and "cell" in chunk.columns
        genes = pd.Index([c for c in chunk.columns if c not in ("fov", "cell_ID", "cell")])
        blocks.append(sp.csr_matrix(chunk[genes].to_numpy(np.float32)))
        keys.append(chunk["cell"].astype(str) if by_cell else _cell_names(chunk["fov"], chunk["cell_ID"]))
    meta.index = pd.Index(meta["cell"].astype(str) if by_cell else _cell_names(meta["fov"], meta["cell_ID"]))
    if not meta.index.is_unique:
        dup = meta.index[meta.index.duplicated()].unique()[:3].tolist()
        raise ReaderError(
            f"{files['meta'].name}: cells {dup} repeat (several slides with the same fov and cell_ID?); "
            "without a 'cell' column in both files they cannot be told apart: export one slide per folder"
        )
    names = pd.concat(keys).to_numpy()
    missing = ~pd.Index(names).isin(meta.index)
    if missing.any():
        raise ReaderError(
            f"{int(missing.sum())} cells of {files['expr'].name} have no row in {files['meta'].name} "
            f"(first: {list(names[missing][:3])})"
        )
    obs = meta.loc[names]
    if "cell" in obs.columns:  # the vendor's names, also when the exprMat file lacks the column
        obs.index = pd.Index(obs["cell"].astype(str).to_numpy())
    return obs, sp.vstack(blocks).tocsr(), genes


def _cells_from_transcripts(
    folder: Path, files: dict[str, Path], ps: float, flip: bool
) -> tuple[pd.DataFrame, sp.csr_matrix, pd.Index, np.ndarray]:
    cols = {"fov", "cell_ID", "target", "x_global_px", "y_global_px", "cell"}
    if files["tx"].name.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        names = pq.read_schema(files["tx"]).names
        tx = pd.read_parquet(files["tx"], columns=[c for c in names if c in cols])
    else:
        tx = pd.read_csv(
            files["tx"], usecols=lambda c: c in cols, dtype={"target": str, "cell": str}, **EXACT
        )
    genes = pd.Index(np.unique(tx["target"].astype(str)))
    tx = tx[tx["cell_ID"] != 0].sort_values(["fov", "cell_ID"], kind="stable")
    row, cells = pd.factorize(_cell_ids(tx))  # cells ordered by fov, cell_ID
    col = genes.get_indexer(tx["target"].astype(str))
    X = sp.csr_matrix((np.ones(len(tx), np.float32), (row, col)), shape=(len(cells), len(genes)))
    first = pd.DataFrame({"row": row, "fov": tx["fov"].to_numpy(), "cell_ID": tx["cell_ID"].to_numpy()})
    obs = first.drop_duplicates("row").set_index(pd.Index(cells))[["fov", "cell_ID"]]
    xy = (
        np.c_[
            np.bincount(row, tx["x_global_px"].to_numpy()) / np.bincount(row),
            (-1.0 if flip else 1.0) * np.bincount(row, tx["y_global_px"].to_numpy()) / np.bincount(row),
        ]
        * ps
    )
    source = np.full(len(cells), "transcripts", dtype=object)
    for fov in np.unique(obs["fov"]):
        if find_file(folder / "CellLabels", [f"CellLabels_F{fov:03d}.tif"]) is None:
            continue
        lab = cosmx_fov_image(folder, fov, kind="labels", pixel_size_um=ps, flip_y=flip)
        flat = lab.values.ravel()
        idx = np.flatnonzero(flat)
        labels, width = flat[idx], lab.sizes["x"]
        n = np.bincount(labels)
        cx = lab.x.values[0] + ps * np.bincount(labels, idx % width) / np.maximum(n, 1)
        cy = lab.y.values[0] + ps * np.bincount(labels, idx // width) / np.maximum(n, 1)
        sel = np.flatnonzero((obs["fov"].to_numpy() == fov) & (obs["cell_ID"].to_numpy() < len(n)))
        ids = obs["cell_ID"].to_numpy()[sel]
        sel, ids = sel[n[ids] > 0], ids[n[ids] > 0]
        xy[sel] = np.c_[cx[ids], cy[ids]]
        source[sel] = "CellLabels"
    obs["centroid_from"] = pd.Categorical(source)
    return obs, X, genes, xy


def read_cosmx_transcripts(
    path: PathLike, *, pixel_size_um: float | None = None, lazy: bool = True, flip_y: bool | None = None
) -> Any:
    r"""Read a CosMx ``*_tx_file`` (CSV, gzipped CSV, Parquet) as transcripts in µm, lazily by default.

    Parameters
    ----------
    path
        Folder with the flat files, or the tx file itself.
    pixel_size_um
        As in :func:`read_cosmx`.
    lazy
        Return a :class:`dask.dataframe.DataFrame` (a gzipped CSV is one partition; Parquet
        row groups become partitions); ``False`` reads into pandas.
    flip_y
        As in :func:`read_cosmx` (default ``True``: ``y_um`` = −``y_global_px`` × pixel size).

    Returns
    -------
    DataFrame with ``x_um`` (= ``x_global_px`` × pixel size), ``y_um``
    (= −``y_global_px`` × pixel size), ``gene`` (= ``target``), ``cell_id`` (the ``obs_names``
    of :func:`read_cosmx`: the vendor's ``cell`` column when present, else
    ``"{fov}_{cell_ID}"``; ``None`` for ``cell_ID`` 0), then the CosMx columns (``fov``,
    ``cell_ID``, pixel positions, ``z`` slice index, ``CellComp``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "S1_tx_file.csv").write_text(
    ...     "fov,cell_ID,x_global_px,y_global_px,x_local_px,y_local_px,z,target,CellComp\n"
    ...     "1,7,1000,2000,10,20,3,CD3E,Nuclear\n1,0,1005,2010,15,30,2,KRT8,None\n"
    ... )
    >>> tx = read_cosmx_transcripts(d, pixel_size_um=0.12, lazy=False)
    >>> tx[["x_um", "y_um", "gene", "cell_id"]].round(2).values.tolist()
    [[120.0, -240.0, 'CD3E', '1_7'], [120.6, -241.2, 'KRT8', None]]
    """
    p = check_path(path, kind="any", what="CosMx transcripts")
    files = (
        _files(p) if p.is_dir() else {"tx": p, **{k: v for k, v in _files(p.parent).items() if k == "fov"}}
    )
    if "tx" not in files:
        raise FileNotFoundError(f"no *_tx_file.csv in {p}")
    ps = _pixel_size(files, pixel_size_um)
    sign = -1.0 if _flip(flip_y) else 1.0
    text = {"target": str, "CellComp": str, "cell": str}
    df = read_table(files["tx"], lazy=lazy, dtype=None if files["tx"].suffix == ".parquet" else text)

    def convert(t: pd.DataFrame) -> pd.DataFrame:
        out = t.rename(columns={"target": "gene"})
        out["x_um"] = t["x_global_px"].astype(np.float64) * ps
        out["y_um"] = sign * t["y_global_px"].astype(np.float64) * ps
        out["gene"] = out["gene"].astype(str)
        out["cell_id"] = _cell_ids(t).astype(object).where(t["cell_ID"] != 0, None)
        return order_transcripts(out)

    return map_frame(df, convert)


def _crop_origin(f: Path, height: int) -> tuple[float, float]:
    """Local (x, y) px of pixel (0, 0): GDAL georeferencing of a crop, else the full FOV's (0, H)."""
    aux = f.with_name(f.name + ".aux.xml")
    if aux.is_file():
        gt = [float(v) for v in ET.parse(aux).findtext("GeoTransform", "").split(",")]
        scale, tie = (gt[1], -gt[5], gt[2], gt[4]), (0.0, 0.0, gt[0], gt[3])
    elif f.suffix == ".tif":
        with tifffile.TiffFile(f) as tf:
            tags = tf.pages[0].tags
            if 33922 not in tags:
                return 0.0, float(height)
            tp, sc = tags[33922].value, tags.get(33550)
            scale, tie = (*(sc.value[:2] if sc else (1.0, 1.0)), 0.0, 0.0), tuple(tp[:2]) + tuple(tp[3:5])
    else:
        return 0.0, float(height)
    if scale != (1.0, 1.0, 0.0, 0.0) or tie[:2] != (0.0, 0.0):
        raise ReaderError(
            f"{f.name}: only unscaled, unrotated crops are georeferenced here (got {scale}, {tie})"
        )
    return tie[2], tie[3]


def cosmx_fov_image(
    path: PathLike,
    fov: int,
    *,
    kind: str = "labels",
    pixel_size_um: float | None = None,
    flip_y: bool | None = None,
) -> xr.DataArray:
    r"""Return one FOV's cell label mask or composite image, placed in the global µm frame.

    Pixel ``(row, col)`` of the FOV image is at local position ``x = col``, ``y = H − row``
    (H = image height; CosMx's local y points up), i.e. global
    ``(x_fov + col, y_fov + H − row)`` px. A GDAL ``.aux.xml`` sidecar (written when an image
    is cropped, as in Giotto's mini datasets) or GeoTIFF tie-point tags give the crop's local
    origin instead of ``(0, H)``. On the Lung12 mini dataset, 99.99 % of cell transcripts fall
    on their cell's label. With ``flip_y=False`` (y pointing down) pixel ``(row, col)`` is at
    global ``(x_fov + col, y_fov + row)`` px (georeferenced crops are then refused).

    Parameters
    ----------
    path
        Folder with ``CellLabels/``, ``CellComposite/`` and the FOV positions file.
    fov
        FOV number.
    kind
        ``"labels"`` (``CellLabels_F###.tif``, an integer mask of ``cell_ID``) or
        ``"composite"`` (``CellComposite_F###.jpg``, RGB).
    pixel_size_um, flip_y
        As in :func:`read_cosmx`.

    Raises
    ------
    FileNotFoundError
        If the image or the FOV positions file is missing.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "S1_fov_positions_file.csv").write_text("fov,x_global_px,y_global_px\n1,1000,2000\n")
    >>> (d / "CellLabels").mkdir()
    >>> mask = np.array([[0, 7], [7, 7], [0, 0]], np.uint16)  # 3 rows × 2 columns, cell_ID 7
    >>> tifffile.imwrite(d / "CellLabels" / "CellLabels_F001.tif", mask)
    >>> lab = cosmx_fov_image(d, 1, pixel_size_um=0.5)
    >>> lab.dims, lab.values[1].tolist()
    (('y', 'x'), [7, 7])
    >>> lab.x.values.tolist(), lab.y.values.tolist()  # x = (1000 + col) px, y = -(2000 + 3 - row) px
    ([500.0, 500.5], [-1001.5, -1001.0, -1000.5])
    """
    folder = check_path(path, kind="dir", what="CosMx flat-file folder")
    files = _files(folder)
    ps = _pixel_size(files, pixel_size_um)
    sub, stem = {"labels": ("CellLabels", "CellLabels"), "composite": ("CellComposite", "CellComposite")}[
        kind
    ]
    f = find_file(
        folder / sub, [f"{stem}_F{fov:03d}.tif", f"{stem}_F{fov:03d}.jpg", f"{stem}_F{fov:03d}.png"]
    )
    if f is None:
        raise FileNotFoundError(f"no {stem}_F{fov:03d} image in {folder / sub}")
    if kind == "labels":
        data = np.asarray(tifffile.imread(f)).astype(np.int32)
    else:
        from PIL import Image

        with Image.open(f) as im:
            data = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    x_left, y_top = _crop_origin(f, data.shape[-2])
    pos = _fov_positions(files, ps).loc[fov]
    if _flip(flip_y):
        origin = ((pos["x_global_px"] + x_left) * ps, -(pos["y_global_px"] + y_top) * ps)
    elif (x_left, y_top) != (0.0, float(data.shape[-2])):
        raise ReaderError(
            f"{f.name} is a georeferenced crop; with flip_y=False only whole FOV images are placed"
        )
    else:
        origin = (pos["x_global_px"] * ps, pos["y_global_px"] * ps)
    if kind == "labels":
        return make_labels(data, pixel_size_um=ps, origin_um=origin, image_id=f"fov{fov}", source=str(f))
    return make_image(data, channels=["R", "G", "B"], pixel_size_um=ps, origin_um=origin, source=str(f))
