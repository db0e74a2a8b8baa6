"""spatialpath → SpatialData: images, labels, compartments and cell tables as spatialdata elements."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from anndata import AnnData

from spatialpath._version import __version__
from spatialpath.align._apply import apply_transform
from spatialpath.align._transform import Transform
from spatialpath.io._spatialdata import (
    CIRCLES_SUFFIX,
    INSTANCE_KEY,
    REGION_KEY,
    SDATA_ATTRS_KEY,
    TABLE_UNS_KEY,
    XY,
    check_coordinate_system,
    grid_matrix,
    import_spatialdata,
    json_safe,
)
from spatialpath.keys import Key
from spatialpath.model import DataModelError, validate_image, validate_labels

__all__ = ["to_spatialdata"]

_KINDS = ("images", "labels", "shapes", "tables")


def to_spatialdata(
    *,
    images: Mapping[str, xr.DataArray] | None = None,
    labels: Mapping[str, xr.DataArray] | None = None,
    shapes: Mapping[str, Any] | None = None,
    tables: Mapping[str, AnnData] | None = None,
    transforms: Mapping[str, Transform] | None = None,
    coordinate_system: str = "global",
    displacement: Literal["refuse", "bake"] = "refuse",
    cell_radius_um: float = 5.0,
) -> Any:
    """Build a :class:`spatialdata.SpatialData` from spatialpath objects, without resampling pixels.

    Needs the ``spatialdata`` extra (spatialdata 0.7). Inputs are never modified.

    Parameters
    ----------
    images, labels
        µm DataArrays by element name (:func:`spatialpath.model.make_image` / ``make_labels``). Each
        becomes an Image2D/Labels2D element whose transformation to ``coordinate_system`` is its µm
        pixel grid (``Scale(pixel_size)`` then ``Translation``), followed by its transform if any.
    shapes
        GeoDataFrames (µm; polygons, or points with a ``radius`` column), e.g. compartments; kept
        with their columns and ``attrs``.
    tables
        AnnData cells or spots by name. A table with ``obsm["spatial"]`` (µm) also gets a circles
        element ``"<name>_circles"`` (one circle per cell, indexed by ``obs_names``) that it annotates
        (spatialdata ``region`` / ``region_key`` / ``instance_key``); ``obsm`` is kept.
    transforms
        By element name (a table's name for its cells): the :class:`~spatialpath.align.Transform` from
        the element's frame (its name or its ``image_id``) into ``coordinate_system``. Its affine part
        is written as a spatialdata ``Affine``; the element's own frame is kept as a second coordinate
        system named ``transform.source``.
    coordinate_system
        Name of the shared µm coordinate system.
    displacement
        What to do with a transform that has a displacement field (spatialdata 0.7 stores affine
        transformations only): ``"refuse"`` raises; ``"bake"`` resamples/maps the element into
        ``coordinate_system`` with :func:`spatialpath.align.apply_transform` and records the transform
        in ``sdata.attrs["spatialpath"]["baked"]`` (and the element's ``attrs``/``uns``).
    cell_radius_um
        Circle radius of cells without a positive ``obs["area_um2"]`` (radius = √(area/π) otherwise).

    Returns
    -------
    spatialdata.SpatialData, with ``attrs["spatialpath"]`` recording units, coordinate system, the
    elements' spatialpath ``attrs`` and any baked transforms.

    Raises
    ------
    ImportError
        If spatialdata is not installed.
    DataModelError
        An image or mask without µm coordinates; a transform that names no element, starts from
        another frame or ends elsewhere than ``coordinate_system``; a displacement field with
        ``displacement="refuse"``.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialpath.model import make_image
    >>> img = make_image(np.zeros((1, 4, 4)), channels=["DAPI"], pixel_size_um=0.5)
    >>> sdata = to_spatialdata(images={"dapi": img})
    >>> from spatialdata.transformations import get_transformation
    >>> get_transformation(sdata.images["dapi"], "global").to_affine_matrix(("x", "y"), ("x", "y"))[0]
    array([ 0.5 ,  0.  , -0.25])
    """
    sd = import_spatialdata()
    cs = check_coordinate_system(coordinate_system)
    if displacement not in ("refuse", "bake"):
        raise DataModelError(f"displacement must be 'refuse' or 'bake', got {displacement!r}")
    if not (np.isfinite(cell_radius_um) and cell_radius_um > 0):
        raise DataModelError(f"cell_radius_um must be a positive number of µm, got {cell_radius_um!r}")
    groups = {k: dict(v or {}) for k, v in zip(_KINDS, (images, labels, shapes, tables), strict=True)}
    checked = _check_transforms(dict(transforms or {}), groups, cs, displacement)
    record: dict[str, Any] = {"version": __version__, "units": Key.unit, "coordinate_system": cs}
    record["elements"], record["baked"] = {}, {}

    def bake(name: str, obj: Any) -> tuple[Any, Transform | None]:
        t = checked.get(name)
        if t is None or not _has_displacement(t):
            return obj, t
        record["baked"][name] = json.loads(t.to_json())
        try:
            return apply_transform(obj, t), None
        except DataModelError as e:
            raise DataModelError(f"cannot bake transforms[{name!r}] into {name!r}: {e}") from None

    out: dict[str, dict[str, Any]] = {k: {} for k in _KINDS}
    for kind in ("images", "labels"):
        for name, arr in groups[kind].items():
            _check_raster(name, arr, kind)
            arr, t = bake(name, arr)
            _check_raster(name, arr, kind)  # a baked raster must still be a µm grid
            out[kind][name] = _raster(arr, kind, t, cs)
            attrs = {k: v for k, v in arr.attrs.items() if k != "transform"}
            record["elements"][name] = {"kind": kind, "attrs": json_safe(attrs)}
    for name, gdf in groups["shapes"].items():
        gdf, t = bake(name, _check_shapes(name, gdf))
        out["shapes"][name] = _shapes(name, gdf, t, cs)
    for name, adata in groups["tables"].items():
        if not isinstance(adata, AnnData):
            raise DataModelError(f"tables[{name!r}] must be an AnnData, got {type(adata).__name__}")
        if name in checked and Key.obsm.spatial not in adata.obsm:
            raise DataModelError(
                f"transforms[{name!r}] is given but table {name!r} has no obsm['spatial'] to place in "
                f"{cs!r}; add the cells' µm positions or drop the transform"
            )
        table, t = bake(name, adata)
        out["tables"][name], circles = _table(name, table, t, cs, cell_radius_um)
        if circles is not None:
            out["shapes"][name + CIRCLES_SUFFIX] = circles
    sdata = sd.SpatialData(**out)
    sdata.attrs[SDATA_ATTRS_KEY] = json_safe(record)
    return sdata


def _has_displacement(t: Transform) -> bool:
    return getattr(t, "displacement", None) is not None


def _frames(obj: Any) -> set[str]:
    """Frame names an element answers to besides its name: its image_id(s)."""
    if isinstance(obj, xr.DataArray):
        ids = [obj.attrs.get(Key.attrs.image_id)]
    elif isinstance(obj, AnnData):
        ids = obj.obs[Key.obs.image_id].unique().tolist() if Key.obs.image_id in obj.obs else []
    else:
        cols = getattr(obj, "columns", [])
        ids = obj[Key.obs.image_id].unique().tolist() if Key.obs.image_id in cols else []
    return {str(i) for i in ids if i is not None}


def _check_transforms(
    transforms: dict[str, Any], groups: dict[str, dict[str, Any]], cs: str, displacement: str
) -> dict[str, Transform]:
    owners = {name: obj for g in groups.values() for name, obj in g.items()}
    for name, t in transforms.items():
        if name not in owners:
            raise DataModelError(
                f"transforms[{name!r}] names no element; transforms are keyed by element name, one of "
                f"{sorted(owners)}"
            )
        if not isinstance(t, Transform):
            raise DataModelError(
                f"transforms[{name!r}] must be a spatialpath.align.Transform, got {type(t).__name__}"
            )
        frames = {name} | _frames(owners[name])
        if t.source not in frames or t.target != cs:
            hint = " (is it the inverse? use .inverse())" if t.target in frames and t.source == cs else ""
            raise DataModelError(
                f"transforms[{name!r}] maps frame {t.source!r} → {t.target!r}, but element {name!r} is in "
                f"frame {sorted(frames)} (its name or image_id) and must be mapped into the coordinate "
                f"system {cs!r}{hint}; build it as Transform(..., source={name!r}, target={cs!r})"
            )
        if _has_displacement(t) and displacement == "refuse":
            raise DataModelError(
                f"transforms[{name!r}] has a displacement field (a non-rigid transform), but spatialdata "
                "0.7 stores affine transformations only. Pass displacement='bake' to resample the element "
                f"into {cs!r} (the transform is recorded in sdata.attrs['{SDATA_ATTRS_KEY}']['baked']), "
                f"or write only the affine part: transforms={{{name!r}: t.affine}}"
            )
    return dict(transforms)


def _check_raster(name: str, arr: Any, kind: str) -> None:
    what = f"{kind}[{name!r}]"
    try:
        if kind == "images":
            validate_image(arr)
            if arr.dims != Key.image_dims:
                raise DataModelError(
                    f"image dims must be {Key.image_dims}; 3-D (c, z, y, x) is not supported"
                )
        else:
            validate_labels(arr)
    except DataModelError as e:
        raise DataModelError(f"{what}: {e}") from None


def _raster(arr: xr.DataArray, kind: str, t: Transform | None, cs: str) -> Any:
    from spatialdata.models import Image2DModel, Labels2DModel
    from spatialdata.transformations import Affine, Scale, Sequence, Translation

    ps = float(arr.attrs[Key.attrs.pixel_size_um])
    x0, y0 = float(arr["x"].values[0]), float(arr["y"].values[0])
    shift = grid_matrix(ps, (x0, y0))[:2, 2]  # pixel centre i at intrinsic i + 0.5 (see _spatialdata)
    grid = Sequence([Scale([ps, ps], axes=XY), Translation(shift, axes=XY)])
    transformations = {cs: grid}
    if t is not None:
        transformations[cs] = Sequence([grid, Affine(t.matrix, input_axes=XY, output_axes=XY)])
        if t.source != cs:
            transformations[t.source] = grid
    data = arr.data  # the raw (numpy or dask) array: parse() would convert a DataArray's data in place
    if kind == "images":
        return Image2DModel.parse(
            data, dims=arr.dims, c_coords=[str(c) for c in arr["c"].values], transformations=transformations
        )
    return Labels2DModel.parse(data, dims=arr.dims, transformations=transformations)


def _check_shapes(name: str, gdf: Any) -> Any:
    import geopandas as gpd

    if not isinstance(gdf, gpd.GeoDataFrame):
        raise DataModelError(f"shapes[{name!r}] must be a GeoDataFrame (µm), got {type(gdf).__name__}")
    if not len(gdf):
        raise DataModelError(f"shapes[{name!r}] is empty; spatialdata refuses empty Shapes elements")
    return gdf


def _shapes(name: str, gdf: Any, t: Transform | None, cs: str) -> Any:
    from spatialdata.models import ShapesModel

    out = gdf.copy()
    out.attrs = json_safe({k: copy.deepcopy(v) for k, v in gdf.attrs.items() if k != "transform"})
    if out.geometry.name != "geometry":
        out = out.rename_geometry("geometry")
    try:
        return ShapesModel.parse(out, transformations=_vector_transformations(t, cs))
    except (ValueError, KeyError) as e:
        raise DataModelError(f"shapes[{name!r}] is not a valid spatialdata Shapes element: {e}") from None


def _vector_transformations(t: Transform | None, cs: str) -> dict[str, Any]:
    from spatialdata.transformations import Affine, Identity

    if t is None:
        return {cs: Identity()}
    out = {cs: Affine(t.matrix, input_axes=XY, output_axes=XY)}
    if t.source != cs:
        out[t.source] = Identity()
    return out


def _table(name: str, adata: AnnData, t: Transform | None, cs: str, radius_um: float) -> tuple[AnnData, Any]:
    from spatialdata.models import ShapesModel, TableModel

    table = adata.copy()
    table.uns.pop(TableModel.ATTRS_KEY, None)  # a foreign annotation is replaced
    table.uns.pop(TABLE_UNS_KEY, None)
    if Key.obsm.spatial not in table.obsm:
        return TableModel.parse(table), None
    xy = np.asarray(table.obsm[Key.obsm.spatial], dtype=np.float64)[:, :2]
    if not np.all(np.isfinite(xy)):
        raise DataModelError(f"tables[{name!r}].obsm['spatial'] has NaN or infinite positions")
    for col in (REGION_KEY, INSTANCE_KEY):
        if col in table.obs:
            raise DataModelError(
                f"tables[{name!r}].obs already has a column {col!r}, which to_spatialdata adds to link the "
                "cells to their circles; rename or drop it"
            )
    if Key.obs.image_id in table.obs and table.obs[Key.obs.image_id].nunique() > 1:
        warnings.warn(
            f"table {name!r} holds cells of {table.obs[Key.obs.image_id].nunique()} images in one circles "
            "element: their positions overlap unless all images share one µm frame; split the table per "
            "image for separate elements",
            UserWarning,
            stacklevel=3,
        )
    ids = table.obs_names.astype(str) if table.obs_names.is_unique else np.arange(table.n_obs).astype(str)
    area = table.obs[Key.obs.area_um2].to_numpy(float) if Key.obs.area_um2 in table.obs else None
    ok = area is not None and bool(np.all(np.isfinite(area) & (area > 0)))
    radius = np.sqrt(area / np.pi) if ok else np.full(table.n_obs, float(radius_um))
    circles_name = name + CIRCLES_SUFFIX
    circles = ShapesModel.parse(
        xy, geometry=0, radius=radius, index=ids, transformations=_vector_transformations(t, cs)
    )
    table.obs[REGION_KEY] = pd.Categorical([circles_name] * table.n_obs)
    table.obs[INSTANCE_KEY] = np.asarray(ids, dtype=object)
    table.uns[TABLE_UNS_KEY] = {
        "circles": circles_name,
        "added_obs": [REGION_KEY, INSTANCE_KEY],
        "radius": Key.obs.area_um2 if ok else float(radius_um),
    }
    parsed = TableModel.parse(table, region=circles_name, region_key=REGION_KEY, instance_key=INSTANCE_KEY)
    return parsed, circles
