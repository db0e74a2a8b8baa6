"""10x Visium (Space Ranger) outputs in micrometres, drawable unchanged by scanpy and squidpy."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from anndata import AnnData
from PIL import Image

from spatialpath.io._common import PathLike, ReaderError, check_path
from spatialpath.io._st_common import build_cells, counts_path, find_file, read_10x_counts
from spatialpath.keys import Key
from spatialpath.model import ImageMetadata, make_image

__all__ = [
    "VISIUM_SPOT_DIAMETER_FULLRES_UM",
    "VISIUM_SPOT_PITCH_UM",
    "read_visium",
    "read_visium_positions",
    "visium_image",
]

#: µm spanned by ``spot_diameter_fullres``: 10x defines it as "the number of pixels that span the
#: diameter of a theoretical 65 µm spot in the original, full-resolution image" (Space Ranger
#: spatial outputs documentation). The printed spot is 55 µm; spot centres are 100 µm apart.
VISIUM_SPOT_DIAMETER_FULLRES_UM = 65.0
#: µm between neighbouring spot centres of the Visium (SD) hexagonal array (10x).
VISIUM_SPOT_PITCH_UM = 100.0
#: relative tolerance of the spacing check: neighbouring spots (bins) must lie within 5 % of the
#: array pitch (SD) or of ``bin_size_um`` (HD) once converted to µm, else the scale is refused.
_SPACING_TOLERANCE = 0.05
#: sampled spots (bins) whose nearest neighbour is measured by the spacing check.
_SPACING_SAMPLE = 10_000
_HD_BARCODE = re.compile(r"^s_(\d+)um_")

_POSITIONS = ("tissue_positions.csv", "tissue_positions_list.csv", "tissue_positions.parquet")
_POSITION_COLUMNS = ["in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
_COUNTS = (
    "filtered_feature_bc_matrix.h5",
    "filtered_feature_bc_matrix",
    "raw_feature_bc_matrix.h5",
    "raw_feature_bc_matrix",
    "filtered_probe_bc_matrix.h5",
    "raw_probe_bc_matrix.h5",
)
_RESOLUTIONS = ("hires", "lowres")


def _outs(path: PathLike) -> Path:
    p = check_path(path, kind="dir", what="Visium (Space Ranger) output folder")
    if not (p / "spatial").is_dir() and (p / "outs" / "spatial").is_dir():
        return p / "outs"
    return p


def _spatial_files(outs: Path) -> tuple[Path, Path]:
    spatial = outs / "spatial"
    positions = find_file(spatial, _POSITIONS) if spatial.is_dir() else None
    binned = sorted(p.name for p in (outs / "binned_outputs").glob("square_*um") if p.is_dir())
    if positions is None and binned:
        raise FileNotFoundError(
            f"{outs} is a Visium HD output: its spots are bins, one table per bin size; read one bin size, "
            f"e.g. read_visium({outs / 'binned_outputs' / binned[0]!s}) (bin sizes: {', '.join(binned)})"
        )
    if positions is None:
        raise FileNotFoundError(
            f"no spot positions in {spatial}: expected spatial/tissue_positions.csv (Space Ranger >= 2.0) or "
            "spatial/tissue_positions_list.csv (1.x), the table of each spot's barcode, in_tissue, array "
            "row/col and full-resolution pixel position"
        )
    scalefactors = spatial / "scalefactors_json.json"
    if not scalefactors.is_file():
        raise FileNotFoundError(
            f"{scalefactors} not found: Space Ranger's scale factors are needed to convert spot positions "
            "from full-resolution pixels to micrometres (spot_diameter_fullres spans 65 µm) and to place the "
            "hires/lowres images (tissue_*_scalef)"
        )
    return positions, scalefactors


def _read_scalefactors(path: Path) -> dict[str, float]:
    try:
        sf = json.loads(path.read_text())
        d = float(sf["spot_diameter_fullres"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ReaderError(
            f"{path} is not a Space Ranger scale-factor file with spot_diameter_fullres ({e})"
        ) from None
    if not np.isfinite(d) or d <= 0:
        raise ReaderError(f"{path}: spot_diameter_fullres must be a positive number of pixels, got {d}")
    out = {k: float(v) for k, v in sf.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for key in ("microns_per_pixel", "bin_size_um"):
        if key in sf and not (key in out and np.isfinite(out[key]) and out[key] > 0):
            raise ReaderError(f"{path}: {key} must be a positive number, got {sf[key]!r}")
    return out


def _bin_size_um(sf: dict[str, float], barcodes: pd.Index) -> float | None:
    """Visium HD bin size in µm (``bin_size_um``, else the ``s_008um_`` barcodes); None for Visium SD."""
    if "bin_size_um" in sf:
        return sf["bin_size_um"]
    sizes = {m.group(1) for m in map(_HD_BARCODE.match, barcodes[:1000]) if m}
    return float(sizes.pop()) if len(sizes) == 1 and len(barcodes) else None


def _um_per_fullres_px(sf: dict[str, float], bin_um: float | None) -> tuple[float, str]:
    """µm per full-resolution pixel and the rule that gave it.

    ``microns_per_pixel`` (Visium HD) when present; else ``bin_size / spot_diameter_fullres`` (in
    HD ``spot_diameter_fullres`` is the bin size in pixels); else, Visium SD,
    ``65 / spot_diameter_fullres``.
    """
    if "microns_per_pixel" in sf:
        return sf["microns_per_pixel"], "microns_per_pixel"
    if bin_um is not None:
        return bin_um / sf["spot_diameter_fullres"], "bin_size_um / spot_diameter_fullres"
    return VISIUM_SPOT_DIAMETER_FULLRES_UM / sf["spot_diameter_fullres"], "65 / spot_diameter_fullres"


def _check_spacing(
    pos: pd.DataFrame, um_per_px: float, bin_um: float | None, sf: dict[str, float], sf_file: Path
) -> float | None:
    """Median nearest-neighbour spacing (µm) of the spots, checked against the array's geometry.

    Each sampled spot's nearest neighbour (in µm) is compared with the distance its
    ``array_row``/``array_col`` imply: ``100 µm × sqrt((Δcol/2)² + (Δrow·√3/2)²)`` on the Visium SD
    hexagonal array, ``bin_size × sqrt(Δcol² + Δrow²)`` on a Visium HD grid (for a full array:
    a median spacing of 100 µm, or of the bin size). A median ratio off by more than 5 % means
    the scale factors do not convert these positions to µm, and raises :class:`ReaderError`.
    Returns the spacing in µm implied by the median ratio (None with fewer than 2 spots).
    """
    from scipy.spatial import cKDTree

    xy = pos[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(np.float64) * um_per_px
    grid = pos[["array_col", "array_row"]].to_numpy(np.float64)
    ok = np.isfinite(xy).all(axis=1) & np.isfinite(grid).all(axis=1)
    xy, grid = xy[ok], grid[ok]
    if len(xy) < 2:
        return None
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(xy), size=min(len(xy), _SPACING_SAMPLE), replace=False))
    dist, nearest = cKDTree(xy).query(xy[sample], k=2)
    dcol, drow = np.abs(grid[nearest[:, 1]] - grid[sample]).T
    if bin_um is None:
        pitch, expected = (
            VISIUM_SPOT_PITCH_UM,
            VISIUM_SPOT_PITCH_UM * np.hypot(dcol / 2, drow * np.sqrt(3) / 2),
        )
    else:
        pitch, expected = bin_um, bin_um * np.hypot(dcol, drow)
    keep = expected > 0
    if not keep.any():
        return None
    spacing = float(np.median(dist[keep, 1] / expected[keep])) * pitch
    if abs(spacing / pitch - 1) > _SPACING_TOLERANCE:
        kind = f"Visium HD {bin_um:g} µm bins" if bin_um is not None else "Visium (SD) spots"
        factors = {k: sf[k] for k in ("spot_diameter_fullres", "microns_per_pixel", "bin_size_um") if k in sf}
        raise ReaderError(
            f"{sf_file}: the scale factors {factors} give {um_per_px:.6g} µm per full-resolution pixel and "
            f"a median spacing of {spacing:.4g} µm between neighbouring spots, but {kind} are "
            f"{pitch:g} µm apart (tolerance 5 %): the positions would be mis-scaled; check that the "
            "scale-factor file belongs to these positions"
        )
    return spacing


def _positions_um(
    positions_file: Path, sf_file: Path
) -> tuple[pd.DataFrame, dict[str, float], float, dict[str, Any]]:
    """Positions table, scale factors, µm per full-resolution pixel and how it was found (checked)."""
    sf = _read_scalefactors(sf_file)
    pos = _read_positions(positions_file)
    bin_um = _bin_size_um(sf, pos.index)
    um_per_px, rule = _um_per_fullres_px(sf, bin_um)
    spacing = _check_spacing(pos, um_per_px, bin_um, sf, sf_file)
    info: dict[str, Any] = {"um_per_fullres_pixel": um_per_px, "um_per_fullres_pixel_from": rule}
    if bin_um is not None:
        info["bin_size_um"] = bin_um
    if spacing is not None:
        info["median_neighbour_spacing_um"] = spacing
    return pos, sf, um_per_px, info


def _read_positions(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        pos = pd.read_parquet(path).set_index("barcode")
    else:
        with open(path) as fh:
            header = fh.readline().split(",")[0].strip().lower() == "barcode"
        pos = pd.read_csv(path, header=0 if header else None, index_col=0)
    if pos.shape[1] != 5:
        raise ReaderError(
            f"{path} has {pos.shape[1] + 1} columns; expected barcode + {', '.join(_POSITION_COLUMNS)}"
        )
    pos.columns = _POSITION_COLUMNS  # Space Ranger's order: ... pxl_row_in_fullres, pxl_col_in_fullres
    pos.index = pos.index.astype(str)
    pos.index.name = None
    return pos


def read_visium_positions(path: PathLike) -> pd.DataFrame:
    r"""Read every spot of a Visium slide (in and out of tissue) with its position in µm.

    Parameters
    ----------
    path
        Space Ranger ``outs`` folder (or the folder holding ``outs/``).

    Returns
    -------
    DataFrame indexed by barcode with ``in_tissue``, ``array_row``, ``array_col``,
    ``pxl_row_in_fullres``, ``pxl_col_in_fullres`` (as in the file) and ``x_um``, ``y_um``
    (= full-resolution pixel × µm per pixel, found as in :func:`read_visium`).

    Raises
    ------
    ReaderError
        If the scale factors do not give neighbouring spots 100 µm apart (Visium HD bins
        ``bin_size_um`` apart) within 5 %.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "spatial"
    >>> d.mkdir()
    >>> _ = (d / "tissue_positions_list.csv").write_text("AAA-1,1,0,0,100,100\nCCC-1,1,0,2,100,200\n")
    >>> _ = (d / "scalefactors_json.json").write_text(json.dumps({"spot_diameter_fullres": 65.0}))
    >>> read_visium_positions(d.parent)[["x_um", "y_um"]].to_numpy().tolist()
    [[100.0, 100.0], [200.0, 100.0]]
    """
    positions_file, sf_file = _spatial_files(_outs(path))
    pos, _, um_per_px, _ = _positions_um(positions_file, sf_file)
    pos["x_um"] = pos["pxl_col_in_fullres"].to_numpy(np.float64) * um_per_px
    pos["y_um"] = pos["pxl_row_in_fullres"].to_numpy(np.float64) * um_per_px
    return pos


def read_visium(
    path: PathLike,
    *,
    library_id: str | None = None,
    counts_file: PathLike | None = None,
    load_images: bool = True,
) -> AnnData:
    r"""Read a 10x Visium (or Visium HD, one bin size) Space Ranger output folder into the µm data model.

    Spot positions are converted from full-resolution pixels to µm with, in this order:
    ``microns_per_pixel`` of ``scalefactors_json.json`` (Visium HD); else
    ``bin_size_um / spot_diameter_fullres`` (Visium HD, where ``spot_diameter_fullres`` is the
    bin size in pixels); else ``65 / spot_diameter_fullres`` (Visium SD,
    :data:`VISIUM_SPOT_DIAMETER_FULLRES_UM`). The result is checked: neighbouring spots must be
    100 µm apart (SD) or ``bin_size_um`` apart (HD) within 5 %, else :class:`ReaderError`.
    ``uns["spatial"][library_id]`` follows the scanpy/squidpy layout with scale factors
    rescaled to the µm coordinates (``tissue_*_scalef`` = image pixels per µm,
    ``spot_diameter_fullres`` = 65, or the bin size in µm for HD), so ``scanpy.pl.spatial`` and
    ``squidpy.pl.spatial_scatter`` draw this AnnData exactly as they draw scanpy's own reader's.
    Get the H&E as a µm-framed DataArray with :func:`visium_image`.

    Parameters
    ----------
    path
        Space Ranger ``outs`` folder (or the folder holding ``outs/``) with ``spatial/``
        (``tissue_positions.csv``, ``tissue_positions_list.csv`` or ``tissue_positions.parquet``,
        ``scalefactors_json.json``, ``tissue_hires_image.png``, ``tissue_lowres_image.png``) and a
        counts matrix. For Visium HD, one bin size: ``outs/binned_outputs/square_008um`` (the
        ``outs`` folder itself is refused with the list of bin sizes).
    library_id
        Key in ``uns["spatial"]`` and ``obs["image_id"]``; default the HDF5 file's
        ``library_ids`` attribute (as scanpy), else the folder name.
    counts_file
        Counts matrix, relative to ``path`` or absolute: an ``.h5`` file or a Matrix Market
        folder. Default the first of ``filtered_feature_bc_matrix.h5``,
        ``filtered_feature_bc_matrix/``, ``raw_feature_bc_matrix.h5``, ``raw_feature_bc_matrix/``.
    load_images
        Load the hires and lowres PNGs into ``uns["spatial"][library_id]["images"]``.

    Returns
    -------
    AnnData: spots in the matrix × features (float32 CSR counts), ``obs_names`` = barcodes,
    ``obs`` with ``in_tissue``, ``array_row``, ``array_col``, the pixel positions and
    ``image_id``; ``obsm["spatial"]`` in µm; ``uns["spatial"]`` and the metadata record
    ``uns["spatialpath"]["images"][library_id]`` (pixel size of the hires image, else lowres).

    Raises
    ------
    FileNotFoundError
        If the positions, the scale factors or the counts matrix are missing (the message
        names the file and what it is for).
    ReaderError
        If a file is malformed, no matrix barcode has a position, or the scale factors do not
        give the array's spacing (100 µm, or the HD bin size) within 5 %.

    Examples
    --------
    >>> import json, tempfile, pathlib, numpy as np, scipy.io, scipy.sparse as sp
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "spatial").mkdir()
    >>> (d / "filtered_feature_bc_matrix").mkdir()
    >>> _ = (d / "spatial" / "tissue_positions.csv").write_text(
    ...     "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres\n"
    ...     "AAA-1,1,0,0,100,100\nCCC-1,1,0,2,100,240\n"
    ... )
    >>> sf = {"spot_diameter_fullres": 91.0, "tissue_hires_scalef": 0.2, "tissue_lowres_scalef": 0.05}
    >>> _ = (d / "spatial" / "scalefactors_json.json").write_text(json.dumps(sf))
    >>> mex = d / "filtered_feature_bc_matrix"
    >>> scipy.io.mmwrite(mex / "matrix.mtx", sp.coo_matrix(np.array([[1, 0], [2, 3]])))  # genes × spots
    >>> _ = (mex / "barcodes.tsv").write_text("AAA-1\nCCC-1\n")
    >>> feats = "G1\tGeneA\tGene Expression\nG2\tGeneB\tGene Expression\n"
    >>> _ = (mex / "features.tsv").write_text(feats)
    >>> a = read_visium(d, library_id="demo")
    >>> a.obsm["spatial"].round(2).tolist()  # 100 and 240 px × 65/91 µm per px
    [[71.43, 71.43], [171.43, 71.43]]
    >>> a.uns["spatial"]["demo"]["scalefactors"]["tissue_hires_scalef"]  # hires px per µm = 0.2 × 91/65
    0.28
    """
    outs = _outs(path)
    positions_file, sf_file = _spatial_files(outs)
    pos, sf, um_per_px, scale_info = _positions_um(positions_file, sf_file)
    counts = read_10x_counts(counts_path(outs, counts_file, _COUNTS, "Visium"))

    has_pos = counts.barcodes.isin(pos.index)
    if not has_pos.any():
        raise ReaderError(
            f"none of the {len(has_pos)} barcodes of {counts.source} is in {positions_file}: "
            "the counts and the positions come from different Space Ranger runs"
        )
    if not has_pos.all():
        warnings.warn(
            f"{int((~has_pos).sum())} of {len(has_pos)} barcodes of {counts.source.name} have no position in "
            f"{positions_file.name} and are dropped (first: {list(counts.barcodes[~has_pos][:3])})",
            UserWarning,
            stacklevel=2,
        )
    barcodes = counts.barcodes[has_pos]
    obs = pos.loc[barcodes].copy()
    xy = obs[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(np.float64) * um_per_px

    if library_id is None:
        ids = counts.attrs.get("library_ids")
        library_id = ids[0] if ids else (outs.parent.name if outs.name == "outs" else outs.name)
    library_id = str(library_id)

    images, shapes, files = {}, {}, [str(positions_file), str(sf_file), str(counts.source)]
    for res in _RESOLUTIONS:
        f = outs / "spatial" / f"tissue_{res}_image.png"
        if f.is_file() and f"tissue_{res}_scalef" in sf:
            with Image.open(f) as im:
                rgb = im if im.mode in ("RGB", "RGBA", "L", "LA") else im.convert("RGB")
                shapes[res] = (rgb.height, rgb.width, len(rgb.getbands()))
                if load_images:
                    images[res] = np.asarray(rgb)
            files.append(str(f))
    # spot (SD: 65 µm by 10x's definition) or bin (HD: bin_size_um) diameter, in µm
    spot_um = sf["spot_diameter_fullres"] * um_per_px if "bin_size_um" in scale_info else None
    scalefactors = {"spot_diameter_fullres": spot_um or VISIUM_SPOT_DIAMETER_FULLRES_UM}
    for key in ("tissue_hires_scalef", "tissue_lowres_scalef"):
        if key in sf:
            scalefactors[key] = sf[key] / um_per_px  # image pixels per µm
    if "fiducial_diameter_fullres" in sf:
        scalefactors["fiducial_diameter_fullres"] = sf["fiducial_diameter_fullres"] * um_per_px

    res = next((r for r in _RESOLUTIONS if r in shapes), None)
    meta = ImageMetadata(
        image_id=library_id,
        technology="visium",
        pixel_size_um=um_per_px / sf[f"tissue_{res}_scalef"] if res else um_per_px,
        shape_px=shapes[res][:2] if res else None,
        channels=_channel_names(shapes[res][2]) if res else [],
        source_files=files,
        extra={
            "image": res or "none (positions in full-resolution pixels)",
            **scale_info,
            "spaceranger_scalefactors": sf,
        },
    )
    adata = build_cells(
        xy, X=counts.X[np.flatnonzero(has_pos)], var=counts.var, obs=obs, meta=meta, source=str(outs)
    )
    attrs = counts.attrs
    adata.uns[Key.uns.spatial] = {
        library_id: {
            "images": images,
            "scalefactors": scalefactors,
            "metadata": {
                k: attrs[k][0] for k in ("chemistry_description", "software_version") if attrs.get(k)
            },
        }
    }
    return adata


def _channel_names(n: int) -> list[str]:
    return {1: ["gray"], 2: ["gray", "A"], 3: ["R", "G", "B"], 4: ["R", "G", "B", "A"]}[n]


def visium_image(
    adata: AnnData, resolution: str | None = None, *, library_id: str | None = None
) -> xr.DataArray:
    """Return a Visium H&E stored by :func:`read_visium` as a DataArray in the µm frame of the spots.

    The pixel size is ``1 / tissue_{resolution}_scalef`` of the µm-consistent scale factors,
    i.e. ``(65 / spot_diameter_fullres) / tissue_hires_scalef`` of Space Ranger's; pixel centres
    are at ``index × pixel size`` (scanpy's convention), so the spot at ``obsm["spatial"]``
    lies in pixel ``round(position / pixel size)``. No pixel data are copied.

    Parameters
    ----------
    adata
        Output of :func:`read_visium` (with ``load_images=True``).
    resolution
        ``"hires"`` or ``"lowres"``; default hires when present.
    library_id
        Which library of ``uns["spatial"]``; needed only when there are several.

    Raises
    ------
    KeyError
        If the library or the image is missing (the message lists what there is).
    ValueError
        If the scale factors are in pixels (an AnnData from scanpy's or squidpy's reader).

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> a = ad.AnnData(np.zeros((1, 1)))
    >>> sf = {"spot_diameter_fullres": 65.0, "tissue_hires_scalef": 0.25}
    >>> a.uns["spatial"] = {"lib": {"images": {"hires": np.zeros((4, 6, 3), np.uint8)}, "scalefactors": sf}}
    >>> img = visium_image(a)
    >>> img.dims, img.attrs["pixel_size_um"], img.x.values[:3].tolist()
    (('c', 'y', 'x'), 4.0, [0.0, 4.0, 8.0])
    """
    libraries = adata.uns.get(Key.uns.spatial, {})
    if library_id is None:
        if len(libraries) != 1:
            raise KeyError(f"pass library_id=, one of {list(libraries)} (uns['spatial'] of this AnnData)")
        library_id = next(iter(libraries))
    if library_id not in libraries:
        raise KeyError(f"no library {library_id!r} in uns['spatial'] (libraries: {list(libraries)})")
    lib: dict[str, Any] = libraries[library_id]
    images, sf = lib.get("images", {}), lib.get("scalefactors", {})
    if resolution is None:
        resolution = next((r for r in _RESOLUTIONS if r in images), "hires")
    if resolution not in images:
        raise KeyError(
            f"no {resolution!r} image for library {library_id!r} (images: {list(images)}); "
            "read the folder with read_visium(..., load_images=True)"
        )
    record = adata.uns.get(Key.uns.spatialpath, {}).get(Key.uns.images, {}).get(library_id, {})
    in_um = np.isclose(float(sf.get("spot_diameter_fullres", np.nan)), VISIUM_SPOT_DIAMETER_FULLRES_UM) or (
        "um_per_fullres_pixel" in record.get("extra", {})  # read by read_visium (Visium HD: bin size in µm)
    )
    if not in_um:
        raise ValueError(
            f"the scale factors of library {library_id!r} are in full-resolution pixels "
            f"(spot_diameter_fullres = {sf.get('spot_diameter_fullres')}, not 65 µm): this AnnData was not "
            "read by spatialpath.io.read_visium, which stores them in µm"
        )
    arr = np.asarray(images[resolution])
    data = arr.transpose(2, 0, 1) if arr.ndim == 3 else arr
    return make_image(
        data,
        channels=_channel_names(1 if arr.ndim == 2 else arr.shape[2]),
        pixel_size_um=1.0 / float(sf[f"tissue_{resolution}_scalef"]),
        image_id=str(library_id),
        source=f"visium {resolution}",
    )
