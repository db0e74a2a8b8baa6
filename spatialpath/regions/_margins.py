"""Invasive-margin bands around the tumour border, and the Immunoscore convention.

The tumour **border** is the boundary of the tumour compartment minus the image frame (the
``frame`` column of the image's rows, written by :func:`from_mask`; else the frame recorded in
``attrs["spatialpath"]["frame_um"]``): where the tumour is cut by the edge of the field nothing is
known about a margin. The bands are the points within a distance of the border (shapely buffers;
about 10 s for a ±50 µm band around the 5,500-vertex pixel-edge tumour of a 0.65 mm² inForm field):

- ``margin_inner``: tumour points within ``inner`` µm of the border;
- ``margin_outer``: non-tumour points within ``outer`` µm of the border, clipped to the ``tissue``
  compartment when there is one, else to the union of the image's other (non-tumour) compartments
  when there are any, and to the frame when it is known;
- ``margin``: their union; ``tumour_core``: the tumour minus the inner band.

A band or core of zero area (a zero width, a tumour narrower than twice the inner width) gets no
row, and an image without tumour gets no band rows at all (listed in
``attrs["spatialpath"]["margin_bands"]["images_without_tumour"]``, with a warning).

Immunoscore (Galon et al. 2006, Science 313:1960; Pagès et al. 2018, Lancet 391:2128) counts CD3+
and CD8+ cells in the tumour core (CT) and in the invasive margin (IM), "a region 1 mm wide centred
on the border": ±500 µm, :func:`immunoscore_bands`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import shapely

from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.regions._membership import check_regions
from spatialpath.regions._schema import (
    FRAME,
    MARGIN,
    MARGIN_INNER,
    MARGIN_OUTER,
    TISSUE,
    TUMOUR,
    TUMOUR_CORE,
    frame_geometry,
    frame_wkt,
    image_ids,
    make_regions,
    region_meta,
    union_of,
)

__all__ = ["IMMUNOSCORE_WIDTH_UM", "immunoscore_bands", "margin_bands", "tumour_border"]

#: total width (µm) of the Immunoscore invasive margin, centred on the border (Pagès et al. 2018).
IMMUNOSCORE_WIDTH_UM = 1000.0
#: buffer arcs: segments per quarter circle (areas of round bands within 4e-4 of the exact ones).
QUAD_SEGS = 32


def _rows_of(regions, image: str | None):
    if image is None or Key.obs.image_id not in regions.columns:
        return regions
    return regions[regions[Key.obs.image_id].astype(str) == str(image)]


def frame_of(regions, image: str | None, frame: Any = None) -> Any:
    """The image frame (a polygon, µm) of one image, or None when unknown.

    In order: ``frame`` (bounds, a polygon, WKT, or a mapping image → one), the :data:`FRAME`
    column of the image's rows (it survives ``pd.concat``), the frame recorded by :func:`from_mask`
    in ``attrs``.
    """
    if isinstance(frame, Mapping):
        frame = frame.get(image if image is not None else "")
    if frame is not None:
        return frame_geometry(frame)
    if FRAME in regions.columns:
        found = {w for w in map(frame_wkt, _rows_of(regions, image)[FRAME]) if w is not None}
        if len(found) == 1:
            return frame_geometry(found.pop())
        if len(found) > 1 and image is not None:
            raise DataModelError(
                f"rows of image {image!r} have different frames in the {FRAME!r} column "
                f"({sorted(found)[:2]}); are two images sharing one image_id?"
            )
    frames = region_meta(regions).get("frame_um") or {}
    frame = frames.get(image if image is not None else "") or (
        next(iter(frames.values())) if len(frames) == 1 else None
    )
    return frame_geometry(frame)


def tumour_border(tumour_geom: Any, frame: Any = None) -> Any:
    """The tumour's boundary line minus the parts lying on the image frame.

    Parameters
    ----------
    tumour_geom
        The tumour (Multi)Polygon in µm.
    frame
        The image frame polygon in µm; ``None`` keeps the whole boundary.

    Returns
    -------
    shapely.Geometry
        The border as a (Multi)LineString (empty when all of it lies on the frame).

    Examples
    --------
    >>> import shapely
    >>> tumour = shapely.box(0, 0, 5, 10)  # cut by the left, top and bottom of the field
    >>> tumour_border(tumour, shapely.box(0, 0, 20, 10)).length
    10.0
    """
    line = shapely.boundary(tumour_geom)
    if frame is not None and not line.is_empty:
        line = shapely.line_merge(shapely.difference(line, shapely.boundary(frame)))
    return line


def margin_bands(
    regions,
    *,
    tumour: str = TUMOUR,
    widths_um: tuple[float, float] = (500.0, 500.0),
    tissue: str | None = TISSUE,
    frame: Any = None,
    quad_segs: int = QUAD_SEGS,
):
    """Add invasive-margin bands ``widths_um = (inside, outside)`` µm around the tumour border.

    Parameters
    ----------
    regions
        Regions table with a ``tumour`` compartment (per image when there is ``image_id``); images
        without one get no bands (a warning; all images without one is an error).
    tumour
        Name of the tumour compartment (e.g. ``"Tumor"`` for inForm).
    widths_um
        Band widths (µm) inside and outside the border; 0 gives no band row.
    tissue
        Compartment the outer band is clipped to when present; without it the outer band is
        clipped to the union of the image's other (non-tumour) compartments, if any. It is always
        clipped to the frame when the frame is known.
    frame
        Image frame(s) in µm (box bounds ``(x0, y0, x1, y1)``, a polygon, WKT, or a mapping
        image → one); default the ``frame`` column of the image's rows (:func:`from_mask`), else
        the frame recorded in ``attrs``.
    quad_segs
        Buffer segments per quarter circle.

    Returns
    -------
    A copy of ``regions`` with rows :data:`MARGIN_INNER`, :data:`MARGIN_OUTER`, :data:`MARGIN`
    and :data:`TUMOUR_CORE` added per image with a tumour (replacing earlier ones), each only when
    its area is positive; when a frame is known, the ``frame`` column holds it on every row of the
    image. The parameters and ``images_without_tumour`` are in
    ``attrs["spatialpath"]["margin_bands"]``.

    Examples
    --------
    >>> import shapely
    >>> from spatialpath.regions import make_regions
    >>> reg = make_regions(["tumour"], [shapely.box(0, 0, 100, 100)])
    >>> out = margin_bands(reg, widths_um=(10, 20))
    >>> out.set_index("compartment").area.round().to_dict()  # outer: 4·100·20 + π·20²
    {'tumour': 10000.0, 'margin_inner': 3600.0, 'margin_outer': 9256.0, 'margin': 12856.0,
     'tumour_core': 6400.0}
    """
    check_regions(regions)
    inner, outer = (float(w) for w in widths_um)
    if not (np.isfinite(inner) and np.isfinite(outer)) or inner < 0 or outer < 0:
        raise DataModelError(f"widths_um must be two widths ≥ 0 µm (inside, outside), got {widths_um}")
    new = (MARGIN_INNER, MARGIN_OUTER, MARGIN, TUMOUR_CORE)
    base = regions[~regions[Key.obs.compartment].astype(str).isin(new)].copy()
    images = image_ids(base)
    comps, geoms, imgs, frames, no_tumour = [], [], [], [], []
    for image in images:
        tum = union_of(base, tumour, image)
        if tum.is_empty:
            no_tumour.append(image)
            continue
        box = frame_of(base, image, frame)
        band_in, band_out = _bands(tum, box, inner, outer, quad_segs)
        clip = _outer_clip(base, image, tumour, tissue, box)
        if clip is not None:
            band_out = shapely.intersection(band_out, clip)
        parts = (band_in, band_out, shapely.union_all([band_in, band_out]), shapely.difference(tum, band_in))
        wkt = frame_wkt(box)
        for name, part in zip(new, parts, strict=True):
            geom = _polygonal(part)
            if geom.is_empty or not geom.area > 0:
                continue  # no zero-area rows: a missing compartment is "absent" downstream
            comps.append(name)
            geoms.append(geom)
            imgs.append(image)
            frames.append(wkt)
        if wkt is not None:  # every row of the image carries the frame the bands were cut with
            if FRAME not in base.columns:
                base[FRAME] = None
            rows = np.ones(len(base), bool) if image is None else base[Key.obs.image_id].astype(str) == image
            base.loc[rows, FRAME] = wkt
    if len(no_tumour) == len(images):
        raise DataModelError(
            f"no {tumour!r} compartment in regions (compartments: "
            f"{sorted(set(base[Key.obs.compartment].astype(str)))}); pass tumour=<name>"
        )
    if no_tumour:
        warnings.warn(
            f"{len(no_tumour)} image(s) have no {tumour!r} compartment and get no margin bands: "
            f"{no_tumour[:10]} (recorded in attrs['spatialpath']['margin_bands']['images_without_tumour'])",
            UserWarning,
            stacklevel=2,
        )
    added = make_regions(comps, geoms, image_id=None if images == [None] else imgs)
    if FRAME in base.columns or any(f is not None for f in frames):
        added.insert(len(added.columns) - 1, FRAME, frames)
    out = pd.concat([base, added], ignore_index=True) if len(added) else base.reset_index(drop=True)
    meta = region_meta(regions)
    meta["margin_bands"] = {
        "tumour": tumour,
        "widths_um": [inner, outer],
        "tissue": tissue,
        "images_without_tumour": [str(i) for i in no_tumour],
    }
    out.attrs[Key.uns.spatialpath] = meta
    return out


def _outer_clip(base, image: str | None, tumour: str, tissue: str | None, box: Any) -> Any:
    """Where the outer band may lie: the tissue, else the other compartments, within the frame.

    None when nothing bounds it (a lone tumour without frame).
    """
    clip = union_of(base, tissue, image) if tissue is not None else shapely.Polygon()
    if clip.is_empty:
        rows = _rows_of(base, image)
        rows = rows[rows[Key.obs.compartment].astype(str) != str(tumour)]
        clip = shapely.union_all(np.asarray(rows.geometry)) if len(rows) else shapely.Polygon()
    if box is not None:
        return box if clip.is_empty else shapely.intersection(clip, box)
    return None if clip.is_empty else clip


def _bands(tum: Any, frame: Any, inner: float, outer: float, quad_segs: int) -> tuple[Any, Any]:
    """Inner and outer bands by polygon buffers (much faster than buffering the border line).

    Erosion would also eat the tumour from the image frame, so the tumour is first extended by a
    ring outside the frame (wider than the band): only the true border erodes it. Dilation needs no
    such care: for a convex frame the nearest tumour point of any point in the frame lies on the
    true border.
    """
    band_in = band_out = shapely.Polygon()
    if inner > 0:
        ext = tum
        if frame is not None:
            ring = shapely.difference(shapely.buffer(frame, inner * 2 + 1, join_style="mitre"), frame)
            ext = shapely.union(tum, ring)
        band_in = shapely.difference(tum, shapely.buffer(ext, -inner, quad_segs=quad_segs))
    if outer > 0:
        band_out = shapely.difference(shapely.buffer(tum, outer, quad_segs=quad_segs), tum)
    return band_in, band_out


def _polygonal(geom: Any) -> Any:
    """Keep the polygons of an overlay result (drops slivers of lines and points)."""
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in {"Polygon", "MultiPolygon"}]
    if not parts:
        return shapely.MultiPolygon()
    return shapely.union_all(parts) if len(parts) > 1 else parts[0]


def immunoscore_bands(
    regions, *, width_um: float = IMMUNOSCORE_WIDTH_UM, tumour: str = TUMOUR, **kwargs: Any
):
    """The Immunoscore invasive margin: a band ``width_um`` wide centred on the tumour border.

    Immunoscore (Galon et al. 2006, Science 313:1960; validated in Pagès et al. 2018, Lancet
    391:2128) scores CD3+ and CD8+ densities in the tumour core (CT, here :data:`TUMOUR_CORE`) and
    in the invasive margin (IM, here :data:`MARGIN`): 1 mm wide, i.e. ±500 µm around the border.
    This is :func:`margin_bands` with ``widths_um=(width_um / 2, width_um / 2)``; other keyword
    arguments are passed on.

    Parameters
    ----------
    regions
        A regions GeoDataFrame in µm with a ``tumour`` compartment.
    width_um
        Total width of the margin band (µm), centred on the border.
    tumour
        Name of the tumour compartment.
    **kwargs
        Other parameters of :func:`margin_bands` (``frame``, ``library_key``...).

    Examples
    --------
    >>> import shapely
    >>> from spatialpath.regions import make_regions
    >>> boxes = [shapely.box(0, 0, 3000, 3000), shapely.box(0, 0, 6000, 3000)]
    >>> reg = make_regions(["tumour", "tissue"], boxes)
    >>> reg = immunoscore_bands(reg, frame=(0, 0, 6000, 3000))
    >>> round(reg.set_index("compartment").area["margin"] / 3000)  # a 1 mm band along a 3 mm border
    1000
    """
    out = margin_bands(regions, tumour=tumour, widths_um=(width_um / 2, width_um / 2), **kwargs)
    out.attrs[Key.uns.spatialpath]["margin_bands"]["convention"] = "immunoscore"
    return out
