"""Cell-table schemas: what the columns of MCMICRO, steinbock, inForm and plain x/y tables mean.

The schemas :func:`spatialpath.io.read_cell_table` knows, the columns each one needs, the
common names of position and id columns, and :func:`detect_schema`, which picks a schema from
the column names. Parsing a table by its schema is :mod:`spatialpath.io._cell_parsers`;
files are :mod:`spatialpath.io._cell_files`. See ``docs/io-cell-tables.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from spatialpath.io._common import ReaderError

__all__ = [
    "DEFAULT_TECHNOLOGY",
    "REQUIRED",
    "ROLES",
    "SCHEMAS",
    "UNIT_NAMES",
    "add_bbox_centres",
    "detect_schema",
    "find_xy",
    "id_columns",
    "list_columns",
    "position_units",
    "steinbock_markers",
]

#: schemas :func:`spatialpath.io.read_cell_table` reads (besides ``"auto"``).
SCHEMAS = ("mcmicro", "steinbock", "inform", "xy")

#: what each schema needs, in words (used in error messages and the docs).
REQUIRED = {
    "mcmicro": "'CellID' and 'X_centroid', 'Y_centroid' (or 'X_position', 'Y_position')",
    "steinbock": "'Object' and 'centroid-0', 'centroid-1' (or a steinbock folder, an intensities*/ CSV "
    "with its regionprops*/ partner, or cells.h5ad)",
    "inform": "'Cell X Position' and 'Cell Y Position'",
    "xy": "one x and one y column with a common name (x, X_um, cell_x, centroid_x, x_position, "
    "Location_Center_X, ...), or columns={'x': ..., 'y': ...}",
}

#: technology recorded in the image metadata when ``technology=`` is not given.
DEFAULT_TECHNOLOGY = {"mcmicro": "other", "steinbock": "imc", "inform": "vectra", "xy": "other"}

#: keys of the ``columns=`` argument; the first two are positions, "markers" is a list of columns.
ROLES = ("x", "y", "cell_type", "image_id", "sample_id", "patient_id", "cell_id", "compartment", "markers")

#: names of length units (lower case) -> "um" or "px".
UNIT_NAMES = dict.fromkeys(("um", "micron", "microns"), "um") | dict.fromkeys(("px", "pixel", "pixels"), "px")

# --- common column names (compared after _norm: lower case, µ -> u, letters and digits only) ---

_UNIT_SUFFIX: dict[str, str | None] = {"": None} | UNIT_NAMES
#: x/y column stems ({a} = x or y), each also with a unit suffix: "x", "X_um", "cell_x [px]", ...
_POSITION_STEMS = [p + "{a}" for p in ("", "cell", "centroid", "pos", "position", "center", "centre")] + [
    "locationcenter{a}",
    *("{a}" + s for s in ("centroid", "position", "center", "centre", "coord", "coordinate", "location")),
    *("{a}" + s for s in ("bboxcentre", "bboxcenter")),  # added by add_bbox_centres (HALO)
]
#: normalised position-column name -> units stated by the name (None: not stated).
_POSITION_NAMES = {
    axis: {stem.format(a=axis) + suf: unit for stem in _POSITION_STEMS for suf, unit in _UNIT_SUFFIX.items()}
    for axis in ("x", "y")
}
_ID_NAMES = {
    # "class" / "classification": QuPath's cell classification (≤ 0.3 / ≥ 0.4)
    "cell_type": {"celltype", "celltypes", "cellphenotype", "phenotype", "type", "class", "classification"},
    "image_id": {"imageid", "image", "imagename", "imagenumber", "roi", "roiid", "fov", "fovid", "core"}
    | {"coreid", "fieldid", "libraryid"},
    "sample_id": {"sampleid", "sample", "slide", "slideid", "specimen", "specimenid"},
    "patient_id": {"patientid", "patient", "donor", "donorid", "subject", "subjectid", "case", "caseid"},
    "cell_id": {"cellid", "objectid", "object", "objectnumber", "cellnumber"},
    "compartment": {"compartment", "tissuecategory", "tissuecompartment"},
}

#: MCMICRO (mcquant) morphology columns; every other numeric column is a marker intensity.
MCMICRO_MORPHOLOGY = frozenset(
    {"Area", "MajorAxisLength", "MinorAxisLength", "Eccentricity", "Solidity", "Extent", "Orientation"}
    | {"Perimeter", "EquivalentDiameter", "ConvexArea", "FilledArea", "EulerNumber", "Z_centroid"}
)
#: scikit-image regionprops names steinbock writes (``-0``, ``-1`` suffixes stripped before lookup).
STEINBOCK_REGIONPROPS = frozenset(
    {"area", "area_bbox", "area_convex", "area_filled", "axis_major_length", "axis_minor_length", "bbox"}
    | {"centroid", "centroid_local", "centroid_weighted", "eccentricity", "equivalent_diameter_area"}
    | {"euler_number", "extent", "feret_diameter_max", "orientation", "perimeter", "perimeter_crofton"}
    | {"solidity", "major_axis_length", "minor_axis_length", "convex_area", "filled_area", "bbox_area"}
    | {"equivalent_diameter", "label", "moments_hu", "inertia_tensor", "inertia_tensor_eigvals"}
)


def _norm(name: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower().replace("µ", "u").replace("μ", "u"))


def list_columns(cols: Iterable[Any], limit: int = 40) -> str:
    """Column names for an error message: quoted, comma-separated, at most ``limit`` of them."""
    cols = [str(c) for c in cols]
    more = f" ... and {len(cols) - limit} more" if len(cols) > limit else ""
    return ", ".join(map(repr, cols[:limit])) + more


def _schema_table() -> str:
    return "; ".join(f"{name}: {req}" for name, req in REQUIRED.items())


def find_xy(columns: Sequence[str]) -> dict[str, list[str]]:
    """The columns with a common x or y position name, by axis."""
    return {axis: [c for c in columns if _norm(c) in _POSITION_NAMES[axis]] for axis in ("x", "y")}


def position_units(column: str, axis: str) -> str | None:
    """Units (``"um"``, ``"px"``) stated by the name of a position column, or None."""
    return _POSITION_NAMES[axis].get(_norm(column))


#: image-id names that give way to an ``Image`` column: QuPath's ``ROI`` column is the object's shape
#: type ("Polygon", "Ellipse"), not a region of interest.
_IMAGE_NAMES_BELOW_IMAGE = {"roi"}


def id_columns(columns: Iterable[Any], role: str) -> list[Any]:
    """The columns whose names are a common name of ``role`` (``"cell_type"``, ``"image_id"``, ...).

    For ``image_id``, an ``Image`` column wins over a ``ROI`` column (QuPath exports have both;
    their ``ROI`` is the shape type).

    Examples
    --------
    >>> id_columns(["Image", "Name", "Class", "ROI", "Centroid X µm"], "image_id")
    ['Image']
    >>> id_columns(["Image", "Name", "Class", "ROI", "Centroid X µm"], "cell_type")
    ['Class']
    """
    hits = [c for c in columns if _norm(c) in _ID_NAMES[role]]
    if role == "image_id" and any(_norm(c) == "image" for c in hits):
        hits = [c for c in hits if _norm(c) not in _IMAGE_NAMES_BELOW_IMAGE]
    return hits


#: HALO object tables: the bounding box of each object, ``XMin``, ``XMax``, ``YMin``, ``YMax``.
_BBOX_ENDS = ("min", "max")


def add_bbox_centres(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``x_bbox_centre``/``y_bbox_centre`` at the bounding-box midpoints of a HALO table.

    Only for a table with ``XMin``, ``XMax``, ``YMin``, ``YMax`` (numeric; optionally with a unit:
    ``XMin (µm)``) and no x/y position column of a common name; otherwise ``df`` is returned
    unchanged. The midpoint of inclusive pixel indices is the centre pixel's index, so pixel
    positions follow the data model's convention. The new names carry the unit of the box
    columns when they state one (``x_bbox_centre_um``); HALO's plain ``XMin`` ... are pixels unless
    stated, so a table without units needs ``pixel_size_um=`` (or ``units="um"`` if exported in µm).

    Examples
    --------
    >>> halo = pd.DataFrame({"Object Id": [1], "XMin": [10], "XMax": [14], "YMin": [0], "YMax": [5]})
    >>> add_bbox_centres(halo)[["x_bbox_centre", "y_bbox_centre"]].values.tolist()
    [[12.0, 2.5]]
    """
    found_xy = find_xy([str(c) for c in df.columns])
    if found_xy["x"] or found_xy["y"]:
        return df
    box: dict[tuple[str, str], Any] = {}
    for axis in ("x", "y"):
        for end in _BBOX_ENDS:
            names = {f"{axis}{end}{suffix}" for suffix in _UNIT_SUFFIX}
            hits = [c for c in df.columns if _norm(c) in names]
            if len(hits) != 1 or not pd.api.types.is_numeric_dtype(df[hits[0]]):
                return df
            box[axis, end] = hits[0]
    units = {_UNIT_SUFFIX[_norm(c)[4:]] for c in box.values()}
    if len(units) > 1:
        raise ReaderError(
            f"the bounding-box columns {list(box.values())} state different units; rename them or pass "
            "columns={'x': ..., 'y': ...}"
        )
    unit = units.pop()
    out = df.copy()
    for axis in ("x", "y"):
        name = f"{axis}_bbox_centre" + (f"_{unit}" if unit else "")
        lo, hi = (df[box[axis, end]].to_numpy(dtype=float) for end in _BBOX_ENDS)
        out[name] = (lo + hi) / 2
    return out


def steinbock_markers(columns: Iterable[str]) -> list[str]:
    """Channel columns of a combined steinbock table: everything but Image, Object and regionprops."""
    return [
        c
        for c in columns
        if c not in ("Image", "Object") and re.sub(r"(-\d+)+$", "", c) not in STEINBOCK_REGIONPROPS
    ]


def detect_schema(columns: Sequence[str], *, xy_given: bool = False) -> str:
    """Return the schema whose columns ``columns`` has (see ``docs/io-cell-tables.md``).

    The tool-specific schemas (inform, mcmicro, steinbock) are tried first; exactly one must
    match. When none does, the table is ``"xy"`` if ``xy_given`` (the x and y columns are named
    by ``columns=``) or exactly one x and one y column are found among common names.

    Raises
    ------
    ReaderError
        If several schemas match, or none does; the message lists the columns found and
        the columns each schema needs.

    Examples
    --------
    >>> detect_schema(["CellID", "CD3", "X_centroid", "Y_centroid", "Area"])
    'mcmicro'
    >>> detect_schema(["x", "y", "cellType"])
    'xy'
    """
    cols = set(columns)
    matches = []
    if {"Cell X Position", "Cell Y Position"} <= cols:
        matches.append("inform")
    if "CellID" in cols and ({"X_centroid", "Y_centroid"} <= cols or {"X_position", "Y_position"} <= cols):
        matches.append("mcmicro")
    if {"Object", "centroid-0", "centroid-1"} <= cols:
        matches.append("steinbock")
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ReaderError(
            f"the table matches several schemas ({', '.join(matches)}); pass schema= one of them. "
            f"Columns found: {list_columns(columns)}. Schemas and their required columns: {_schema_table()}"
        )
    found = find_xy(columns)
    if xy_given or (len(found["x"]) == 1 and len(found["y"]) == 1):
        return "xy"
    if len(found["x"]) > 1 or len(found["y"]) > 1:
        raise ReaderError(
            f"ambiguous position columns: x could be {found['x']}, y could be {found['y']}; name them "
            "with columns={'x': ..., 'y': ...} (and schema='xy'). Columns found: " + list_columns(columns)
        )
    raise ReaderError(
        f"unrecognised cell table: no schema matches its columns. Columns found: {list_columns(columns)}. "
        f"Schemas and their required columns: {_schema_table()}. Name the position columns with "
        "columns={'x': ..., 'y': ...} to read it as a plain 'xy' table."
    )
