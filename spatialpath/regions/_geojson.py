"""Regions from and to GeoJSON: QuPath annotation exports (pixels) and spatialpath's own files (µm).

QuPath writes a FeatureCollection (or a list of Features) of annotations whose class is
``properties.classification.name`` (or, unclassified, ``properties.name``), with coordinates in
**pixels** of the full-resolution image, origin at the top-left corner of the top-left pixel. A
QuPath coordinate ``u`` is ``origin + (u - ½)·h`` µm in spatialpath's frame, where pixel centres
are at ``origin + index·h``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
import shapely.geometry

from spatialpath.io._common import check_path, require_pixel_size
from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.provenance import atomic_write
from spatialpath.regions._membership import check_regions
from spatialpath.regions._schema import make_regions

__all__ = ["read_geojson", "write_geojson"]

#: properties tried, in order, for a feature's compartment (dotted = nested).
CLASSIFICATION_KEYS = ("compartment", "classification.name", "name")
_POLYGONAL = {"Polygon", "MultiPolygon"}


def _features(doc: Any, path: os.PathLike | str) -> list[dict]:
    if isinstance(doc, list):
        return [f for f in doc if isinstance(f, dict)]
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        return list(doc.get("features") or [])
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        return [doc]
    raise DataModelError(
        f"{path} is not a GeoJSON FeatureCollection, Feature or list of Features "
        f"(top-level type {doc.get('type') if isinstance(doc, dict) else type(doc).__name__!r})"
    )


def _lookup(props: dict, key: str) -> Any:
    value: Any = props
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def read_geojson(
    path: str | os.PathLike[str],
    *,
    pixel_size_um: float | None = None,
    origin_um: tuple[float, float] = (0.0, 0.0),
    classification_key: str | Sequence[str] = CLASSIFICATION_KEYS,
    image_id: str | None = None,
    unclassified: str = "unclassified",
):
    """Read polygon annotations (QuPath export or :func:`write_geojson`) as a regions table in µm.

    Parameters
    ----------
    path
        A ``.geojson``/``.json`` file.
    pixel_size_um
        µm per pixel of coordinates in pixels (QuPath); None reads the coordinates as µm.
    origin_um
        ``(x, y)`` µm of the centre of pixel ``(0, 0)`` (with ``pixel_size_um``).
    classification_key
        Property (dotted for nested, e.g. ``"classification.name"``) or properties tried in order
        for each feature's compartment; default :data:`CLASSIFICATION_KEYS`.
    image_id
        Adds an ``image_id`` column (the file's own ``image_id`` properties are used otherwise).
    unclassified
        Compartment of features without any of the properties.

    Returns
    -------
    GeoDataFrame, one row per (image, compartment): features of one class are united. Points and
    lines (e.g. QuPath detections as points) are skipped.

    Raises
    ------
    DataModelError
        If the file holds no Polygon/MultiPolygon feature.

    Examples
    --------
    >>> import json, pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "qupath.geojson"
    >>> square = {"type": "Polygon", "coordinates": [[[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]]}
    >>> feat = {"type": "Feature", "geometry": square,
    ...         "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}}  # fmt: skip
    >>> _ = p.write_text(json.dumps({"type": "FeatureCollection", "features": [feat]}))
    >>> r = read_geojson(p, pixel_size_um=0.5)
    >>> r.compartment.tolist(), r.area.tolist(), r.total_bounds.tolist()
    (['Tumor'], [2500.0], [-0.25, -0.25, 49.75, 49.75])
    """
    p = check_path(path, what="GeoJSON file")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataModelError(f"{p} is not valid JSON ({err}); expected a GeoJSON FeatureCollection") from None
    keys = [classification_key] if isinstance(classification_key, str) else list(classification_key)
    rows: dict[tuple[str | None, str], list] = {}
    kinds: set[str] = set()
    for feat in _features(doc, p):
        geom = feat.get("geometry")
        if not geom:
            continue
        kinds.add(str(geom.get("type")))
        if geom.get("type") not in _POLYGONAL:
            continue
        props = feat.get("properties") or {}
        names = [_lookup(props, k) for k in keys]
        comp = next((str(n) for n in names if n not in (None, "")), unclassified)
        img = image_id if image_id is not None else props.get(Key.obs.image_id)
        key = (None if img is None else str(img), comp)
        rows.setdefault(key, []).append(shapely.from_geojson(json.dumps(geom)))
    if not rows:
        raise DataModelError(
            f"{p} holds no Polygon or MultiPolygon feature (geometry types: {sorted(kinds) or 'none'}); "
            "export annotations (not detections as points) from QuPath: File > Export objects as GeoJSON"
        )
    geoms = [shapely.make_valid(shapely.union_all(g)) for g in rows.values()]
    if pixel_size_um is not None:
        h = require_pixel_size(pixel_size_um, source=str(p))
        shift = np.array([origin_um[0] - 0.5 * h, origin_um[1] - 0.5 * h])
        geoms = [shapely.transform(g, lambda xy: xy * h + shift) for g in geoms]
    images = [img for img, _ in rows]
    with_images = any(img is not None for img in images)
    meta = {"source": "geojson", "path": str(p), "pixel_size_um": pixel_size_um}
    return make_regions(
        [c for _, c in rows],
        geoms,
        image_id=[str(i) for i in images] if with_images else None,
        meta=meta,
    )


def write_geojson(
    regions,
    path: str | os.PathLike[str],
    *,
    pixel_size_um: float | None = None,
    origin_um: tuple[float, float] = (0.0, 0.0),
    overwrite: bool = False,
) -> None:
    """Write a regions table as a GeoJSON FeatureCollection, atomically.

    Each row becomes an annotation feature with properties ``compartment``, ``image_id`` (when
    present) and ``classification.name`` (so QuPath shows the class). Coordinates are µm, or
    QuPath pixels with ``pixel_size_um`` (the inverse of :func:`read_geojson`).

    Parameters
    ----------
    regions
        A regions GeoDataFrame in µm.
    path
        Output ``.geojson`` file.
    pixel_size_um
        Write QuPath pixel coordinates (µm per pixel; pixel ``(0, 0)``'s square spans
        ``[0, 1]`` px) instead of µm.
    origin_um
        ``(x, y)`` µm of the centre of pixel ``(0, 0)`` (with ``pixel_size_um``).
    overwrite
        Replace an existing file (otherwise refuse).

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import pathlib, tempfile, shapely
    >>> from spatialpath.regions import make_regions
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "regions.geojson"
    >>> write_geojson(make_regions(["tumour"], [shapely.box(0, 0, 3, 2)]), p)
    >>> read_geojson(p).area.tolist()
    [6.0]
    """
    check_regions(regions)
    geoms = list(regions.geometry)
    if pixel_size_um is not None:
        h = require_pixel_size(pixel_size_um, source="write_geojson")
        shift = np.array([origin_um[0] - 0.5 * h, origin_um[1] - 0.5 * h])
        geoms = [shapely.transform(g, lambda xy: (xy - shift) / h) for g in geoms]
    has_image = Key.obs.image_id in regions.columns
    features = []
    for i, (comp, geom) in enumerate(zip(regions[Key.obs.compartment].astype(str), geoms, strict=True)):
        props: dict[str, Any] = {"objectType": "annotation", Key.obs.compartment: comp}
        if has_image:
            props[Key.obs.image_id] = str(regions[Key.obs.image_id].iloc[i])
        props["classification"] = {"name": comp}
        features.append({"type": "Feature", "geometry": shapely.geometry.mapping(geom), "properties": props})
    doc = {"type": "FeatureCollection", "features": features}
    with atomic_write(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(doc))
