"""Logic of the "Cell types and markers" widget: colours, legend and shown mask of a cells layer.

Plain functions over an AnnData (and, for :func:`apply_to_layer`, a duck-typed napari Points
layer): no napari or Qt import. Everything is vectorised through category codes, so recolouring
10^6 cells costs one fancy-indexing of a small palette.

- a **categorical** ``obs`` column is coloured by ``uns[f"{key}_colors"]`` (scanpy's convention,
  via :func:`spatialpath.pl._palette.category_colors`); the colours are written to ``uns`` when
  missing so that napari, scanpy and squidpy agree from then on; missing labels are grey;
- a **numeric** ``obs`` column or a **marker** (a ``var_name``, values from ``X``) is coloured by
  a continuous colormap with contrast limits at percentiles of the finite values (NaN: grey).

Examples
--------
>>> from spatialpath.datasets import simulate_tissue
>>> adata = simulate_tissue(seed=0, n_cells=500).adata
>>> rgba = point_colors(adata, "cell_type")
>>> rgba.shape, bool((rgba[:, 3] == 1).all())
((500, 4), True)
>>> legend(adata, "cell_type").columns.tolist()
['category', 'color', 'n_cells']
>>> int(shown_mask(adata, "cell_type", {"Tumour"}).sum()) == int((adata.obs["cell_type"] != "Tumour").sum())
True
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import anndata as ad
import matplotlib as mpl
import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.napari import _keys
from spatialpath.pl._palette import category_colors

__all__ = [
    "NA_COLOR",
    "apply_to_layer",
    "cells_layers",
    "color_keys",
    "is_categorical",
    "layer_adata",
    "legend",
    "marker_values",
    "point_colors",
    "shown_mask",
    "value_limits",
]

#: colour of cells with a missing value (as in :mod:`spatialpath.napari._colors`).
NA_COLOR = "#808080"


def cells_layers(layers: Iterable[Any]) -> list[Any]:
    """The layers whose ``metadata[KIND]`` is ``"cells"`` (spatialpath cells Points layers), in order."""
    return [ly for ly in layers if getattr(ly, "metadata", {}).get(_keys.KIND) == "cells"]


def layer_adata(layer: Any) -> AnnData:
    """The AnnData behind a cells layer (``layer.metadata[ADATA]``), checked against the layer's points.

    Raises
    ------
    DataModelError
        If ``layer`` is None, carries no AnnData, or has another number of points than cells.
    """
    if layer is None:
        raise DataModelError(
            "no cells layer: open a spatialpath output or the sample data, or call "
            "spatialpath.napari.view(adata)"
        )
    adata = getattr(layer, "metadata", {}).get(_keys.ADATA)
    if not isinstance(adata, AnnData):
        raise DataModelError(
            f"layer {getattr(layer, 'name', layer)!r} has no AnnData in metadata[{_keys.ADATA!r}]: "
            "it is not a spatialpath cells layer (make it with spatialpath.napari._layers.cells_layer)"
        )
    if len(layer.data) != adata.n_obs:
        raise DataModelError(
            f"layer {layer.name!r} has {len(layer.data)} points but its AnnData {adata.n_obs} cells; "
            "the points must be the AnnData's rows in order"
        )
    return adata


def color_keys(adata: AnnData) -> list[str]:
    """What points can be coloured by: the ``obs`` columns, then the markers (``var_names``) not shadowed."""
    obs = [str(c) for c in adata.obs.columns]
    return obs + [str(v) for v in adata.var_names if str(v) not in set(obs)]


def is_categorical(adata: AnnData, key: str) -> bool:
    """True when ``key`` is an ``obs`` column coloured by category (categorical, string, object or bool)."""
    if key not in adata.obs.columns:
        if key in adata.var_names:
            return False
        raise DataModelError(
            f"{key!r} is neither an obs column nor a marker (var_name); choose one of "
            f"{color_keys(adata)[:10]}{'...' if len(color_keys(adata)) > 10 else ''}"
        )
    dtype = adata.obs[key].dtype
    return not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def _categorical(adata: AnnData, key: str) -> pd.Categorical:
    col = adata.obs[key]
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.array
    return pd.Categorical(col.astype("string").astype(object))


def categories(adata: AnnData, key: str) -> list[str]:
    """The categories of a categorical (or string/boolean) ``obs`` column, in legend order."""
    return [str(c) for c in _categorical(adata, key).categories]


def _palette(adata: AnnData, key: str, cat: pd.Categorical) -> list[str]:
    """Colours of the categories of ``cat``: ``uns[f"{key}_colors"]`` or tab20 (written when missing)."""
    names = [str(c) for c in cat.categories]
    if isinstance(adata.obs[key].dtype, pd.CategoricalDtype):
        # category_colors refuses missing labels: give it one cell per category, and the stored colours
        probe = ad.AnnData(obs=pd.DataFrame({key: pd.Categorical(cat.categories, categories=cat.categories)}))
        probe.obs_names = [str(i) for i in range(len(names))]
        if Key.uns.colors(key) in adata.uns:
            probe.uns[Key.uns.colors(key)] = adata.uns[Key.uns.colors(key)]
        colors = list(category_colors(probe, key).values())
        stored = adata.uns.get(Key.uns.colors(key))
        if stored is None or len(stored) != len(names):
            adata.uns[Key.uns.colors(key)] = np.array(colors, dtype=object)
        return colors
    cmap = mpl.colormaps["tab20"]
    return [mpl.colors.to_hex(cmap(i % cmap.N)) for i in range(len(names))]


def marker_values(adata: AnnData, key: str) -> np.ndarray:
    """Float values of a numeric ``obs`` column or of the marker ``key`` (a ``var_name``, from ``X``)."""
    if key in adata.obs.columns:
        if is_categorical(adata, key):
            raise DataModelError(
                f"adata.obs[{key!r}] is categorical; it has colours per category, not values"
            )
        return adata.obs[key].to_numpy(dtype=float, na_value=np.nan)
    if key not in adata.var_names:
        is_categorical(adata, key)  # raises the "neither obs nor var" message
    if adata.X is None:
        raise DataModelError(f"marker {key!r}: adata.X is empty; store the marker intensities in X")
    col = adata.X[:, adata.var_names.get_loc(key)]
    col = col.toarray() if sparse.issparse(col) else np.asarray(col)
    return col.ravel().astype(float)


def value_limits(values: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """Contrast limits at ``percentiles`` of the finite values (``(0, 1)`` when none; widened when equal).

    >>> value_limits(np.arange(101.0))
    (1.0, 99.0)
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def point_colors(
    adata: AnnData,
    key: str,
    *,
    cmap: str = "viridis",
    percentiles: tuple[float, float] = (1.0, 99.0),
    limits: tuple[float, float] | None = None,
) -> np.ndarray:
    """RGBA colour of every cell, ``(n_cells, 4)`` float32 in [0, 1].

    Parameters
    ----------
    adata
        The cells.
    key
        An ``obs`` column or a marker (``var_name``). Categorical columns take
        ``uns[f"{key}_colors"]`` (written when missing), numeric ones and markers ``cmap``.
    cmap
        matplotlib colormap of numeric values.
    percentiles, limits
        Contrast limits of numeric values: ``limits`` when given, else these percentiles.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> a = ad.AnnData(obs=pd.DataFrame({"t": pd.Categorical(["x", "y", "x"])}, index=list("012")))
    >>> a.uns["t_colors"] = ["#ff0000", "#0000ff"]
    >>> point_colors(a, "t")[:, :3].tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    na = np.asarray(mpl.colors.to_rgba(NA_COLOR), np.float32)
    if is_categorical(adata, key):
        cat = _categorical(adata, key)
        palette = np.array([mpl.colors.to_rgba(c) for c in _palette(adata, key, cat)] + [na], np.float32)
        return palette[cat.codes]  # code -1 (missing) takes the last row: NA_COLOR
    values = marker_values(adata, key)
    lo, hi = limits if limits is not None else value_limits(values, percentiles)
    ok = np.isfinite(values)
    scaled = np.clip((np.where(ok, values, lo) - lo) / (hi - lo), 0.0, 1.0)
    out = np.asarray(mpl.colormaps[cmap](scaled), np.float32)  # matplotlib's own lookup table
    out[~ok] = na
    return out


def legend(adata: AnnData, key: str) -> pd.DataFrame:
    """One row per category of a categorical ``key``: ``category``, ``color`` (hex) and ``n_cells``.

    Missing labels get a last row ``"NA"`` (grey) when there are any.

    Raises
    ------
    DataModelError
        If ``key`` is numeric or a marker (no categories).
    """
    if not is_categorical(adata, key):
        raise DataModelError(f"{key!r} is numeric: it has a colour scale, not a legend of categories")
    cat = _categorical(adata, key)
    colors = _palette(adata, key, cat)
    counts = np.bincount(cat.codes + 1, minlength=len(colors) + 1)  # bin 0: missing
    table = pd.DataFrame(
        {
            "category": [str(c) for c in cat.categories],
            "color": colors,
            "n_cells": counts[1:].astype(np.int64),
        }
    )
    if counts[0]:
        table.loc[len(table)] = ["NA", NA_COLOR, int(counts[0])]
    return table


def shown_mask(adata: AnnData, key: str, hidden: Iterable[str] = ()) -> np.ndarray:
    """Boolean mask of the cells whose category of ``key`` is not in ``hidden`` (``"NA"``: missing labels).

    Numeric keys have no categories: every cell is shown.
    """
    hidden = {str(h) for h in hidden}
    if not hidden or not is_categorical(adata, key):
        return np.ones(adata.n_obs, bool)
    cat = _categorical(adata, key)
    keep = np.array([str(c) not in hidden for c in cat.categories] + ["NA" not in hidden], bool)
    return keep[cat.codes]


def _blocked(layer: Any, event: str) -> Any:
    """``layer.events.<event>.blocker()`` when the layer has that event (napari), else a no-op context."""
    emitter = getattr(getattr(layer, "events", None), event, None)
    return emitter.blocker() if emitter is not None else nullcontext()


def apply_to_layer(
    layer: Any,
    key: str,
    hidden: Iterable[str] = (),
    *,
    cmap: str = "viridis",
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> dict[str, Any]:
    """Colour a cells layer by ``key`` and hide the ``hidden`` categories.

    Sets ``layer.face_color`` (hidden cells get alpha 0) and ``layer.shown``. Both are needed:
    napari 0.9 ignores ``shown`` when every axis of the points is displayed (2-D points in 2-D,
    ``_PointSliceRequest``), and a transparent point without a border is not drawn. napari redraws
    all points on each of these changes (about 1 s per 10^6 points, most of it napari's per-point
    symbol list), so ``shown`` is applied without a redraw and the colour change redraws once.
    ``layer.metadata["color_by"]`` records ``key``.

    Returns what was applied: ``key``, ``categorical``, ``limits`` (numeric keys) and ``n_shown``.
    """
    adata = layer_adata(layer)
    categorical = is_categorical(adata, key)
    limits = None if categorical else value_limits(marker_values(adata, key), percentiles)
    mask = shown_mask(adata, key, hidden)
    colors = point_colors(adata, key, cmap=cmap, limits=limits)
    colors[~mask, 3] = 0.0
    with _blocked(layer, "set_data"):  # the slice is recomputed; the points are redrawn just below
        layer.shown = mask
    with _blocked(layer, "face_color"):  # napari redraws on the face colours' own event, once
        layer.face_color = colors
    layer.metadata["color_by"] = key
    return {"key": key, "categorical": categorical, "limits": limits, "n_shown": int(mask.sum())}
