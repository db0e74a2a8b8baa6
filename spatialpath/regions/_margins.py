"""Invasive-margin bands around the tumour border, and the Immunoscore convention.

The tumour **border** is the boundary of the tumour compartment minus the image frame (recorded by
:func:`from_mask` in ``attrs["spatialpath"]["frame_um"]``): where the tumour is cut by the edge of
the field nothing is known about a margin. The bands are the points within a distance of the
border (shapely buffers; about 10 s for a ±50 µm band around the 5,500-vertex pixel-edge tumour of a
0.65 mm² inForm field):

- ``margin_inner``: tumour points within ``inner`` µm of the border;
- ``margin_outer``: non-tumour points within ``outer`` µm of the border, clipped to the ``tissue``
  compartment when there is one (else to the frame when it is known);
- ``margin``: their union; ``tumour_core``: the tumour minus the inner band.

Immunoscore (Galon et al. 2006, Science 313:1960; Pagès et al. 2018, Lancet 391:2128) counts CD3+
and CD8+ cells in the tumour core (CT) and in the invasive margin (IM), "a region 1 mm wide centred
on the border": ±500 µm, :func:`immunoscore_bands`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import shapely

from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.regions._membership import check_regions
from spatialpath.regions._schema import (
    MARGIN,
    MARGIN_INNER,
    MARGIN_OUTER,
    TISSUE,
    TUMOUR,
    TUMOUR_CORE,
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


def frame_of(regions, image: str | None, frame: Any = None) -> Any:
    """The image frame (a box, µm) of one image: ``frame`` or the one recorded by :func:`from_mask`."""
    if isinstance(frame, Mapping):
        frame = frame.get(image if image is not None else "")
    if frame is None:
        frames = region_meta(regions).get("frame_um") or {}
        frame = frames.get(image if image is not None else "") or (
            next(iter(frames.values())) if len(frames) == 1 else None
        )
    if frame is None or isinstance(frame, shapely.Geometry):
        return frame
    return shapely.box(*map(float, frame))


def tumour_border(tumour_geom: Any, frame: Any = None) -> Any:
    """The tumour's boundary line minus the parts lying on the image frame.

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
        Regions table with a ``tumour`` compartment (per image when there is ``image_id``).
    tumour
        Name of the tumour compartment (e.g. ``"Tumor"`` for inForm).
    widths_um
        Band widths (µm) inside and outside the border; 0 gives an empty band.
    tissue
        Compartment the outer band is clipped to when present.
    frame
        Image frame(s) in µm (box bounds ``(x0, y0, x1, y1)``, a polygon, or a mapping image → one);
        default the frame recorded by :func:`from_mask`.
    quad_segs
        Buffer segments per quarter circle.

    Returns
    -------
    A copy of ``regions`` with rows :data:`MARGIN_INNER`, :data:`MARGIN_OUTER`, :data:`MARGIN`
    and :data:`TUMOUR_CORE` added per image (replacing earlier ones); the parameters in
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
    base = regions[~regions[Key.obs.compartment].astype(str).isin(new)]
    comps, geoms, imgs = [], [], []
    for image in image_ids(base):
        tum = union_of(base, tumour, image)
        if tum.is_empty:
            where = "" if image is None else f" in image {image!r}"
            raise DataModelError(
                f"no {tumour!r} compartment{where}; compartments are "
                f"{sorted(set(base[Key.obs.compartment].astype(str)))}: pass tumour=<name>"
            )
        box = frame_of(base, image, frame)
        band_in, band_out = _bands(tum, box, inner, outer, quad_segs)
        clip = union_of(base, tissue, image) if tissue is not None else shapely.Polygon()
        clip = box if clip.is_empty else clip
        if clip is not None:
            band_out = shapely.intersection(band_out, clip)
        parts = (band_in, band_out, shapely.union_all([band_in, band_out]), shapely.difference(tum, band_in))
        comps += list(new)
        geoms += [_polygonal(g) for g in parts]
        imgs += [image] * len(new)
    added = make_regions(comps, geoms, image_id=None if image_ids(base) == [None] else imgs)
    out = pd.concat([base, added], ignore_index=True)
    meta = region_meta(regions)
    meta["margin_bands"] = {"tumour": tumour, "widths_um": [inner, outer], "tissue": tissue}
    out.attrs[Key.uns.spatialpath] = meta
    return out


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
