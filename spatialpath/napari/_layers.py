"""napari layers of spatialpath data, as LayerData tuples ``(data, add_kwargs, layer_type)``.

Every function here takes plain data (AnnData, DataArray, GeoDataFrame) and returns what
``viewer._add_layer_from_data(*layer_data)`` (or a reader / sample-data contribution) needs,
without importing napari. Everything is in the shared µm frame:

- points (cells, spots) and shapes (compartments) hold µm directly, in napari's (row, column) =
  (y, x) order: ``points = obsm["spatial"][:, ::-1]``;
- images and masks hold pixels with ``scale`` = pixel size (µm) and ``translate`` = the µm position
  of pixel (0, 0) (y, x);
- a registered modality is placed by the layer ``affine`` (its :class:`~spatialpath.align.Transform`
  in (y, x) order), without resampling: ``world = affine · (data · scale + translate)``;
- ``metadata`` carries the data behind the layer under the keys of :mod:`spatialpath.napari._keys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from anndata import AnnData

from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.napari import _keys
from spatialpath.napari._colors import compartment_colors, point_colors, rgba
from spatialpath.napari._layer_base import UNITS, LayerData, layer_metadata, transform_to_affine
from spatialpath.napari._layers_points import DEFAULT_CELL_DIAMETER_UM, cells_layer, image_cells, spots_layer

if TYPE_CHECKING:  # pragma: no cover
    from spatialpath.align import Transform

__all__ = [
    "DEFAULT_CELL_DIAMETER_UM",
    "UNITS",
    "LayerData",
    "cell_type_labels_layer",
    "cells_layer",
    "image_layer",
    "labels_layer",
    "regions_layer",
    "spots_layer",
    "transform_to_affine",
]

#: longest side (pixels) of the thumbnail contrast limits are computed from.
THUMBNAIL_PX = 1024
_RGB = (["R", "G", "B"], ["R", "G", "B", "A"])


def _grid(arr: xr.DataArray, what: str) -> tuple[float, float, float]:
    """(pixel size, origin y, origin x) in µm of an image or mask."""
    ps = arr.attrs.get(Key.attrs.pixel_size_um)
    if ps is None or not np.isfinite(float(ps)) or float(ps) <= 0:
        raise DataModelError(
            f"the {what} has no attrs['pixel_size_um'] (got {ps!r}); build it with "
            "spatialpath.model.make_image/make_labels(..., pixel_size_um=...) so it can be shown in µm"
        )
    oy = float(arr["y"][0]) if "y" in arr.coords and arr.sizes.get("y", 0) else 0.0
    ox = float(arr["x"][0]) if "x" in arr.coords and arr.sizes.get("x", 0) else 0.0
    return float(ps), oy, ox


def _placement(arr: xr.DataArray, what: str, transform: Transform | None) -> dict[str, Any]:
    ps, oy, ox = _grid(arr, what)
    kw: dict[str, Any] = {"scale": (ps, ps), "translate": (oy, ox), "units": UNITS}
    affine = transform_to_affine(transform)
    if affine is not None:
        kw["affine"] = affine
    return kw


def _thumbnail(levels: Sequence[xr.DataArray]) -> np.ndarray | None:
    """A small (c, y, x) numpy view for contrast limits, never from level 0 of a pyramid.

    The coarsest level of a pyramid; a strided subsample of an in-memory (numpy) single level;
    None for a lazy (dask) single level, whose pixels are not read.
    """
    coarse = levels[-1]
    if len(levels) == 1 and not isinstance(coarse.data, np.ndarray):
        return None
    step = max(1, int(np.ceil(max(coarse.sizes["y"], coarse.sizes["x"]) / THUMBNAIL_PX)))
    return np.asarray(coarse.data[:, ::step, ::step])


def _dtype_range(dtype: np.dtype) -> list[float]:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return [float(max(info.min, 0)), float(info.max)]
    return [0.0, 1.0]


def _contrast(levels: Sequence[xr.DataArray]) -> list[list[float]]:
    """Per-channel (0.5, 99.9) percentiles of the thumbnail; the dtype's range without one."""
    n = levels[0].sizes["c"]
    thumb = _thumbnail(levels)
    if thumb is None:
        return [_dtype_range(levels[0].dtype)] * n
    out = []
    for ch in thumb.reshape(n, -1).astype(np.float64):
        ch = ch[np.isfinite(ch)]
        lo, hi = np.percentile(ch, [0.5, 99.9]) if ch.size else (0.0, 1.0)
        if hi <= lo:
            hi = ch.max() if ch.size and ch.max() > lo else lo + 1.0
        out.append([float(lo), float(hi)])
    return out


def image_layer(
    image: xr.DataArray | Sequence[xr.DataArray],
    *,
    transform: Transform | None = None,
    contrast_limits: Sequence[float] | Sequence[Sequence[float]] | None = None,
    name: str | Sequence[str] | None = None,
    visible_channels: int | Sequence[str] = 3,
    image_id: str | None = None,
    source: str | None = None,
) -> LayerData:
    """An Image layer (one per channel) of a ``(c, y, x)`` image or a pyramid, in µm.

    Parameters
    ----------
    image
        A DataArray ``(c, y, x)`` with µm coordinates and ``attrs["pixel_size_um"]``, or a list of
        them, finest first (:func:`spatialpath.io.read_pyramid`): shown ``multiscale``.
    transform
        The image's frame → the shared frame, shown through the layer ``affine`` (affine only).
    contrast_limits
        ``(lo, hi)`` for all channels or one per channel. Default: the (0.5, 99.9) percentiles of
        each channel of the **coarsest** level (a strided thumbnail of an in-memory image), or the
        dtype's range (``[0, 1]`` for floats) for a lazy single-level image; level 0 of a pyramid is
        never read.
    name
        Layer names; default the channel names. 8-bit ``R, G, B(, A)`` images are one RGB layer.
    visible_channels
        The first ``n`` channels, or these channel names, are visible; the others are hidden.
    image_id, source
        Stored in ``metadata``; default ``attrs["image_id"]`` and ``attrs["source"]``.

    Examples
    --------
    >>> from spatialpath.model import make_image
    >>> img = make_image(np.arange(2 * 4 * 4).reshape(2, 4, 4), channels=["DAPI", "CD8"], pixel_size_um=0.5)
    >>> data, kw, kind = image_layer(img)
    >>> kind, kw["name"], kw["scale"], kw["channel_axis"], kw["contrast_limits"][1][1] > 16
    ('image', ['DAPI', 'CD8'], (0.5, 0.5), 0, True)
    """
    levels = list(image) if isinstance(image, list | tuple) else [image]
    if not levels or any(not isinstance(lv, xr.DataArray) or lv.dims != Key.image_dims for lv in levels):
        raise DataModelError(
            "image_layer needs a DataArray with dims ('c', 'y', 'x') or a list of them (a pyramid, finest "
            "first, as read by spatialpath.io.read_pyramid); build one with spatialpath.model.make_image"
        )
    base = levels[0]
    channels = (
        [str(c) for c in base["c"].values]
        if "c" in base.coords
        else [f"ch{i}" for i in range(base.sizes["c"])]
    )
    kw = _placement(base, "image", transform)
    kw["metadata"] = layer_metadata(
        "image", image_id or base.attrs.get(Key.attrs.image_id), source or base.attrs.get("source")
    )
    multiscale = len(levels) > 1
    kw["multiscale"] = multiscale
    if channels in _RGB and base.dtype == np.uint8:
        data = [lv.data.transpose(1, 2, 0) for lv in levels]
        kw.update(rgb=True, name=name or str(base.name or kw["metadata"][_keys.IMAGE_ID] or "image"))
        kw["contrast_limits"] = list(contrast_limits) if contrast_limits is not None else [0.0, 255.0]
        return (data if multiscale else data[0]), kw, "image"
    if contrast_limits is None:
        limits = _contrast(levels)
    elif np.ndim(contrast_limits) == 1:
        limits = [[float(v) for v in contrast_limits]] * len(channels)
    else:
        limits = [[float(v) for v in cl] for cl in contrast_limits]
    if len(limits) != len(channels) or any(len(cl) != 2 for cl in limits):
        raise DataModelError(
            f"contrast_limits must be one (lo, hi) pair or one per channel ({len(channels)}), "
            f"got {contrast_limits!r}"
        )
    if isinstance(visible_channels, int):
        visible = [i < visible_channels for i in range(len(channels))]
    else:
        visible = [c in set(visible_channels) for c in channels]
    names = [name] if isinstance(name, str) else list(name) if name is not None else channels
    if len(channels) == 1:
        data = [lv.data[0] for lv in levels]
        kw.update(name=names[0], contrast_limits=limits[0], visible=visible[0], colormap="gray")
    else:
        data = [lv.data for lv in levels]
        kw.update(name=names, contrast_limits=limits, visible=visible, channel_axis=0, blending="additive")
    return (data if multiscale else data[0]), kw, "image"


def labels_layer(
    labels: xr.DataArray,
    *,
    transform: Transform | None = None,
    name: str | None = None,
    image_id: str | None = None,
    source: str | None = None,
) -> LayerData:
    """A Labels layer of a ``(y, x)`` mask (instance labels or class codes) in µm.

    A class mask with ``attrs["categories"]`` gets a ``features`` table naming each value.

    Examples
    --------
    >>> from spatialpath.model import make_labels
    >>> m = make_labels(np.array([[0, 1], [2, 2]]), pixel_size_um=2.0, origin_um=(10.0, 0.0))
    >>> data, kw, kind = labels_layer(m)
    >>> kind, kw["scale"], kw["translate"], kw["metadata"]["spatialpath_kind"]
    ('labels', (2.0, 2.0), (0.0, 10.0), 'labels')
    """
    if not isinstance(labels, xr.DataArray) or labels.dims != Key.labels_dims:
        raise DataModelError(
            "labels must be a DataArray with dims ('y', 'x'); build one with spatialpath.model.make_labels"
        )
    kw = _placement(labels, "label mask", transform)
    image_id = image_id or labels.attrs.get(Key.attrs.image_id)
    kw["metadata"] = layer_metadata("labels", image_id, source or labels.attrs.get("source"))
    kw["name"] = name or "labels"
    cats = labels.attrs.get(Key.attrs.categories)
    if cats is not None:
        kw["features"] = {"index": np.arange(len(cats)), "name": np.asarray([str(c) for c in cats])}
    return labels.data, kw, "labels"


def cell_type_labels_layer(
    labels: xr.DataArray,
    adata: AnnData,
    key: str = "cell_type",
    *,
    label_key: str = "label",
    image_id: str | None = None,
    transform: Transform | None = None,
    name: str | None = None,
    source: str | None = None,
) -> LayerData:
    """An instance mask shown as cell types: each cell's label painted with its type's colour.

    The colormap is a ``{label: colour}`` mapping, which napari turns into a
    ``DirectLabelColormap``; colours are ``uns[f"{key}_colors"]`` as for :func:`cells_layer`.
    Cells are matched to the mask by ``obs[label_key]`` within ``image_id`` (default the mask's
    ``attrs["image_id"]``); labels without a cell are transparent. ``features`` lists each label's
    type (napari shows it under the cursor).

    Examples
    --------
    >>> import anndata as ad, pandas as pd
    >>> from spatialpath.model import make_labels
    >>> m = make_labels(np.array([[0, 1], [2, 2]]), pixel_size_um=1.0)
    >>> a = ad.AnnData(obs=pd.DataFrame({"cell_type": pd.Categorical(["T", "B"]), "label": [1, 2]}))
    >>> a.uns["cell_type_colors"] = ["#0000ff", "#ff0000"]  # B, T
    >>> data, kw, kind = cell_type_labels_layer(m, a)
    >>> kw["colormap"][1], kw["colormap"][2], kw["colormap"][None]
    ('#ff0000', '#0000ff', 'transparent')
    """
    _, kw, _ = labels_layer(labels, transform=transform, image_id=image_id, source=source)
    image_id = kw["metadata"][_keys.IMAGE_ID]
    cells = image_cells(adata, image_id)
    if label_key not in cells.obs.columns:
        raise DataModelError(
            f"obs[{label_key!r}] is missing: it must hold each cell's integer value in the label mask "
            "(pass label_key= if the column has another name)"
        )
    _, legend = point_colors(cells, key)
    values = np.asarray(cells.obs[label_key], dtype=np.int64)
    hexes = np.array([*legend.values(), "#808080"], dtype=object)
    codes = cells.obs[key].cat.codes.to_numpy()
    colour_of = hexes[np.where(codes < 0, len(legend), codes)]
    cmap: dict[Any, Any] = dict(zip(values.tolist(), colour_of.tolist(), strict=True))
    cmap[None] = "transparent"
    cmap[0] = "transparent"
    kw.update(
        name=name or key.replace("_", " "),
        colormap=cmap,
        features={"index": values, key: cells.obs[key].astype(str).to_numpy()},
    )
    kw["metadata"].update({_keys.KIND: "cell_types", _keys.ADATA: cells, "color_by": key, "legend": legend})
    return labels.data, kw, "labels"


def regions_layer(
    regions: Any,
    *,
    image_id: str | None = None,
    name: str | None = None,
    edge_width_um: float | None = None,
    source: str | None = None,
) -> LayerData:
    """A Shapes layer of compartment polygons (µm), edged in each compartment's colour.

    Uses :func:`spatialpath.regions.to_napari_shapes`: one polygon per ring (holes are shapes with
    ``hole=True``); features ``compartment`` and ``hole``; ``metadata[REGIONS]`` is the
    GeoDataFrame shown. ``edge_width_um`` defaults to 1/400 of the regions' extent (≥ 2 µm).

    Examples
    --------
    >>> import shapely
    >>> from spatialpath.regions import make_regions
    >>> r = make_regions(["tumour", "stroma"], [shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)])
    >>> data, kw, kind = regions_layer(r)
    >>> kind, len(data), kw["edge_color"][0].tolist()
    ('shapes', 2, [0.8392156958580017, 0.15294118225574493, 0.1568627506494522, 1.0])
    """
    from spatialpath.regions import to_napari_shapes

    shapes = to_napari_shapes(regions, image_id=image_id)
    if image_id is not None and Key.obs.image_id in regions.columns:
        regions = regions[regions[Key.obs.image_id].astype(str) == str(image_id)]
    comps = list(shapes["properties"][Key.obs.compartment])
    colours = compartment_colors(comps)
    edge = rgba([colours[c] for c in comps]) if comps else np.zeros((0, 4), np.float32)
    if edge_width_um is None:
        x0, y0, x1, y1 = regions.total_bounds if len(regions) else (0.0, 0.0, 0.0, 0.0)
        extent = float(np.nanmax([x1 - x0, y1 - y0, 0.0]))
        edge_width_um = max(2.0, extent / 400)
    kw = {
        "name": name or "compartments",
        "shape_type": shapes["shape_type"],
        "edge_color": edge,
        "face_color": "transparent",
        "edge_width": float(edge_width_um),
        "features": {k: np.asarray(v) for k, v in shapes["properties"].items()},
        "units": UNITS,
        "metadata": layer_metadata(
            "compartments", image_id, source, **{_keys.REGIONS: regions, "legend": colours}
        ),
    }
    return shapes["data"], kw, "shapes"
