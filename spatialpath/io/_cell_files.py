"""Cell tables on disk: delimited text files, steinbock folders and steinbock ``.h5ad`` files.

:func:`load_table` reads what ``read_cell_table`` is given into a :class:`TableSource`: the
table as a DataFrame plus what the file layout tells about it (a steinbock output's schema,
marker columns, per-image files, shapes and pixel sizes from ``images.csv``). The meaning of
the columns is :mod:`spatialpath.io._cell_schemas`. See ``docs/io-cell-tables.md``.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from spatialpath.io._cell_schemas import add_bbox_centres, steinbock_markers
from spatialpath.io._common import PathLike, ReaderError, check_path

__all__ = ["PIXEL_SIZE_RTOL", "TableSource", "load_table"]

#: id columns read as text (inForm slide ids keep their leading zeros).
_TEXT_COLUMNS = {"Sample Name": str, "Slide ID": str, "Annotation ID": str, "Lab ID": str}
#: a pixel size given by the user may differ this much from the file's before a warning.
PIXEL_SIZE_RTOL = 0.01
#: steinbock's per-image table folders: ``<kind>`` or ``<kind>_<segmentation>``.
_STEINBOCK_KINDS = ("intensities", "regionprops")


class TableSource:
    """A table as read from disk, with what the file layout tells about it."""

    def __init__(self, df: pd.DataFrame, name: str, files: Sequence[Path] = (), stem: str | None = None):
        self.df = df
        self.name = name
        self.files = [str(f) for f in files]
        self.stem = stem
        self.schema: str | None = None
        self.markers: list[str] | None = None
        self.images: dict[str, dict[str, Any]] = {}  # steinbock images.csv, by image id
        self.files_by_image: dict[str, list[str]] = {}
        self.var: pd.DataFrame | None = None


def load_table(path: PathLike | pd.DataFrame, schema: str) -> TableSource:
    """Read ``path`` (a text table, a steinbock folder or ``.h5ad``, or a DataFrame)."""
    if isinstance(path, pd.DataFrame):
        return TableSource(add_bbox_centres(path.reset_index(drop=True)), name="the DataFrame")
    p = check_path(path, kind="any", what="cell table")
    if p.is_dir() or p.suffix == ".h5ad":
        _require_steinbock(schema, f"{p} is a steinbock output (folder or .h5ad)")
        return _load_steinbock_dir(p) if p.is_dir() else _load_steinbock_h5ad(p)
    if p.suffix in (".fcs", ".parquet", ".xlsx", ".zarr"):
        raise ReaderError(f"{p.name}: {p.suffix} files are not read; export the cell table as CSV")
    if p.suffix == ".csv" and p.parent.name.startswith(_STEINBOCK_KINDS):  # one steinbock image
        _require_steinbock(schema, f"{p} is a steinbock table (in {p.parent.name}/)")
        return _load_steinbock_images(p.parent.parent, _segmentation(p.parent), [p.name], name=p.name)
    df = add_bbox_centres(_read_text(p))  # HALO: positions at the bounding-box midpoints
    stem = re.sub(r"\.(csv|tsv|txt)$", "", p.name.removesuffix(".gz"), flags=re.IGNORECASE)
    src = TableSource(df, name=p.name, files=[p], stem=stem.split("--")[0])  # MCMICRO: <sample>--<method>.csv
    if {"Object", "centroid-0"} <= set(df.columns):  # cells.csv of `steinbock export csv`
        src.markers = steinbock_markers(df.columns)
        _attach_steinbock_info(src, p.parent)
    return src


def _require_steinbock(schema: str, what: str) -> None:
    if schema not in ("auto", "steinbock"):
        raise ReaderError(f"{what}; use schema='steinbock' or 'auto'")


# --- delimited text -----------------------------------------------------------------------------


#: candidate separators, in order of preference when several fit equally well.
_SEPARATORS = ("\t", ";", ",")
#: lines (header included) read to choose the separator.
_SNIFF_LINES = 20


def _sniff(p: Path) -> tuple[str, str]:
    """Separator and decimal mark from the header and the first data lines.

    The separator is the candidate (tab, ``;``, ``,``) found the same number of times (> 0) on
    every line read, quoted text left out; of several, the one found most often (ties: that
    order). A ``,`` in a column name of a ``;`` file (inForm's "... Mean (Normalized Counts,
    Total Weighting)") or decimal commas therefore do not make it a comma file. When no
    candidate is consistent: tab, else ``,``, else ``;`` if in the header, else whitespace.
    """
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8", errors="replace") as fh:
        lines = [line.rstrip("\r\n") for _, line in zip(range(_SNIFF_LINES), fh, strict=False)]
    lines = [line for line in lines if line.strip()] or [""]
    unquoted = [re.sub(r'"[^"]*"', "", line) for line in lines]
    counts = {c: [line.count(c) for line in unquoted] for c in _SEPARATORS}
    consistent = [c for c in _SEPARATORS if counts[c][0] > 0 and len(set(counts[c])) == 1]
    if consistent:
        sep = max(consistent, key=lambda c: counts[c][0])  # max() keeps the first of equals
    else:
        sep = next((c for c in ("\t", ",", ";") if counts[c][0] > 0), r"\s+")
    fields = [f.strip() for line in lines[1:] for f in (line.split(sep) if sep != r"\s+" else line.split())]
    comma_decimal = any(re.fullmatch(r"-?\d+,\d+( ?%)?", f) for f in fields)
    point_decimal = any(re.fullmatch(r"-?\d+\.\d+( ?%)?", f) for f in fields)
    return sep, "," if sep != "," and comma_decimal and not point_decimal else "."


def _read_text(p: Path) -> pd.DataFrame:
    sep, decimal = _sniff(p)
    try:
        return pd.read_csv(p, sep=sep, decimal=decimal, dtype=_TEXT_COLUMNS, low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as e:
        raise ReaderError(f"{p.name} could not be read as a delimited text table ({e})") from None


# --- steinbock ----------------------------------------------------------------------------------


def _steinbock_image_id(name: str) -> str:
    return re.sub(r"\.(tiff?|csv)$", "", str(name))


def _segmentation(folder: Path) -> str:
    """``deepcell`` for ``intensities_deepcell``, ``""`` for ``intensities``."""
    return folder.name.partition("_")[2]


def _with_suffix(kind: str, suffix: str) -> str:
    """Steinbock folder names: ``intensities``, or ``intensities_<segmentation>``."""
    return f"{kind}_{suffix}" if suffix else kind


def _load_steinbock_dir(p: Path) -> TableSource:
    """A steinbock folder, or one of its intensities*/regionprops* folders: one image per CSV."""
    if p.name.startswith(_STEINBOCK_KINDS):
        return _load_steinbock_images(p.parent, _segmentation(p), None, name=str(p))
    kinds = [d for d in p.iterdir() if d.is_dir() and d.name.startswith(_STEINBOCK_KINDS)]
    suffixes = sorted({_segmentation(d) for d in kinds})
    if not suffixes:
        raise ReaderError(
            f"{p} is not a steinbock folder: no intensities*/ or regionprops*/ folders found; "
            "pass steinbock's cells.csv or cells.h5ad instead"
        )
    if len(suffixes) > 1:
        options = ", ".join(_with_suffix("intensities", s) for s in suffixes)
        example = p / _with_suffix("intensities", suffixes[0])
        raise ReaderError(
            f"{p} holds steinbock tables of several segmentations ({options}); pass the folder to "
            f"read, e.g. read_cell_table('{example}')"
        )
    return _load_steinbock_images(p, suffixes[0], None, name=str(p))


def _load_steinbock_images(root: Path, suffix: str, names: Sequence[str] | None, *, name: str) -> TableSource:
    """Merge ``regionprops*/<image>.csv`` (positions) with ``intensities*/<image>.csv`` (markers)."""
    props_dir = root / _with_suffix("regionprops", suffix)
    intens_dir = root / _with_suffix("intensities", suffix)
    if names is None:
        names = sorted(f.name for f in props_dir.glob("*.csv"))
        if not names:
            raise ReaderError(f"steinbock folder {root}: no tables in {props_dir.name}/ (the cell positions)")
    frames, markers, files = [], None, {}
    for file_name in names:
        image = _steinbock_image_id(file_name)
        props_file = props_dir / file_name
        if not props_file.is_file():
            raise ReaderError(
                f"steinbock image {image}: its positions are in {props_file}, which was not found"
            )
        df, files[image] = pd.read_csv(props_file), [str(props_file)]
        if intens_dir.is_dir():
            intens_file = intens_dir / file_name
            if not intens_file.is_file():
                raise ReaderError(f"steinbock image {image}: {intens_file} not found next to {props_file}")
            intens = pd.read_csv(intens_file)
            channels = [c for c in intens.columns if c != "Object"]
            if markers is not None and channels != markers:
                raise ReaderError(f"steinbock image {image} has other channels than the images before it")
            df, markers = _merge_steinbock(intens, df, image), channels
            files[image].append(str(intens_file))
        df.insert(0, "Image", image)
        frames.append(df)
    src = TableSource(pd.concat(frames, ignore_index=True), name=name)
    src.schema, src.markers, src.files_by_image = "steinbock", markers or [], files
    _attach_steinbock_info(src, root)
    return src


def _merge_steinbock(intens: pd.DataFrame, props: pd.DataFrame, image: str) -> pd.DataFrame:
    merged = props.merge(intens, on="Object", how="inner", suffixes=("", " (intensity)"), validate="1:1")
    if len(merged) != len(props) or len(merged) != len(intens):
        raise ReaderError(
            f"steinbock image {image}: intensities ({len(intens)} objects) and regionprops ({len(props)}) "
            "list different objects"
        )
    return merged


def _load_steinbock_h5ad(p: Path) -> TableSource:
    """Steinbock's ``export anndata`` file: X = channel means, obs = regionprops and image columns."""
    a = ad.read_h5ad(p)
    obs = a.obs
    if not {"Image", "centroid-0", "centroid-1"} <= set(obs.columns):
        raise ReaderError(
            f"{p.name} is not a steinbock AnnData: its obs needs 'Image', 'centroid-0' and 'centroid-1' "
            f"(found: {list(obs.columns)[:20]}); read other AnnData files with anndata.read_h5ad"
        )
    clash = [v for v in a.var_names if v in obs.columns]
    if clash:
        raise ReaderError(f"{p.name}: channel names {clash} are also obs columns")
    per_image = [c for c in obs.columns if c.startswith("image_") or c == "image"]
    df = obs.drop(columns=per_image).reset_index(drop=True)
    if "Object" not in df.columns:  # obs names are "Object <id> in <image file>"
        ids = pd.Series(a.obs_names).str.extract(r"^Object (\d+)", expand=False)
        df.insert(1, "Object", pd.to_numeric(ids).to_numpy())
    X = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
    src = TableSource(
        pd.concat([df, pd.DataFrame(X, columns=list(a.var_names))], axis=1), name=p.name, files=[p]
    )
    src.schema, src.markers, src.var = "steinbock", list(a.var_names), a.var.copy()
    info = obs[["Image", *[c for c in per_image if c != "image"]]].drop_duplicates("Image")
    info.columns = [c.removeprefix("image_").lower() for c in info.columns]
    src.images = _steinbock_images(info, p.name)
    if not src.images:
        _attach_steinbock_info(src, p.parent)
    return src


def _attach_steinbock_info(src: TableSource, root: Path) -> None:
    """Channel tags from ``panel.csv`` and per-image shape and pixel size from ``images.csv``."""
    panel = root / "panel.csv"
    if panel.is_file() and src.markers and src.var is None:
        names = pd.read_csv(panel)
        if {"name", "channel"} <= set(names.columns):
            channel = dict(zip(names["name"].astype(str), names["channel"].astype(str), strict=False))
            src.var = pd.DataFrame({"channel": [channel.get(m, "") for m in src.markers]}, index=src.markers)
    path = root / "images.csv"
    if path.is_file():
        src.images = _steinbock_images(pd.read_csv(path), str(path))
        for meta in src.images.values():
            meta["files"] = [str(path)]


def _steinbock_images(info: pd.DataFrame, source: str) -> dict[str, dict[str, Any]]:
    """Per image: ``shape_px``, ``pixel_size_um`` = acquisition width in µm / width in pixels, extras."""
    out: dict[str, dict[str, Any]] = {}
    if "image" not in info.columns:
        return out
    for row in info.to_dict("records"):
        meta: dict[str, Any] = {}
        w, h = row.get("width_px", np.nan), row.get("height_px", np.nan)
        wu, hu = row.get("acquisition_width_um", np.nan), row.get("acquisition_height_um", np.nan)
        if pd.notna(w) and pd.notna(h) and w > 0 and h > 0:
            meta["shape_px"] = (int(h), int(w))
            psx, psy = float(wu) / float(w), float(hu) / float(h)
            if psx > 0 and np.isclose(psx, psy, rtol=PIXEL_SIZE_RTOL):  # NaN compares False
                meta["pixel_size_um"] = psx
                meta["pixel_size_source"] = f"{source}: acquisition_width_um / width_px"
        meta["extra"] = {
            k: (v.item() if isinstance(v, np.generic) else v)
            for k, v in row.items()
            if (k.startswith("acquisition_") or k in ("source_file", "recovery_file")) and pd.notna(v)
        }
        out[_steinbock_image_id(row["image"])] = meta
    return out
