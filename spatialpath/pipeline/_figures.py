"""Cohort figures of a pipeline run: the per-image enrichment grid and densities by group.

Both take the cohort tables as written (blinded columns already withheld), so they can only
show what the tables show: the enrichment grid names images and cell types, never metadata;
:func:`density_by_group` needs the group column, which a blinded run does not have (the runner
does not call it while blinded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from spatialpath.keys import Key

__all__ = ["density_by_group", "enrichment_grid"]

#: largest width or height of a grid figure (inches); panels shrink to fit.
MAX_INCHES = 30.0


def _grid(n: int, ncols: int | None) -> tuple[int, int]:
    cols = ncols or max(1, math.ceil(math.sqrt(n)))
    return cols, max(1, math.ceil(n / cols))


def enrichment_grid(
    nhood: pd.DataFrame,
    *,
    value: str = "zscore",
    vmax: float | None = None,
    ncols: int | None = None,
    panel_inches: float = 1.4,
    cmap: str = "RdBu_r",
) -> Figure:
    """Small multiples of neighbourhood enrichment, one heatmap per image, on one colour scale.

    Parameters
    ----------
    nhood
        The cohort's long enrichment table: ``image_id``, ``cluster_a``, ``cluster_b`` and
        ``value`` (one row per image and ordered pair of cell types).
    value
        Column to show (``zscore``; any numeric column such as ``count``).
    vmax
        Colour limit, shared by every panel (symmetric ``[-vmax, vmax]``). None: the 99th
        percentile of ``|value|`` over the cohort, so one extreme image does not wash out the rest.
    ncols
        Panels per row (None: about square).
    panel_inches
        Panel size; panels shrink so the figure stays within 30 inches (100+ images fit).
    cmap
        A diverging colour map.

    Returns
    -------
    The Figure: panel rows are cell types ``a``, columns neighbour types ``b`` (labelled on the
    first panel), titles are the image ids, one colour bar.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"image_id": ["i1"] * 4 + ["i2"] * 4, "cluster_a": list("AABB") * 2,
    ...                   "cluster_b": list("ABAB") * 2, "zscore": [3.0, -1, -1, 2, 1, 0, 0, 1]})  # fmt: skip
    >>> fig = enrichment_grid(t)
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['i1', 'i2']
    """
    img = Key.obs.image_id
    missing = [c for c in (img, "cluster_a", "cluster_b", value) if c not in nhood.columns]
    if missing:
        raise ValueError(
            f"the enrichment table lacks column(s) {missing}; pass the cohort table with image_id, "
            f"cluster_a, cluster_b and {value!r}"
        )
    if nhood.empty:
        raise ValueError("the enrichment table is empty: no image has a neighbourhood enrichment")
    images = list(pd.unique(nhood[img].astype(str)))
    types = list(dict.fromkeys([*nhood["cluster_a"].astype(str), *nhood["cluster_b"].astype(str)]))
    k = len(types)
    pos = {t: i for i, t in enumerate(types)}
    cube = np.full((len(images), k, k), np.nan)
    ii = pd.Index(images).get_indexer(nhood[img].astype(str))
    aa = nhood["cluster_a"].astype(str).map(pos).to_numpy()
    bb = nhood["cluster_b"].astype(str).map(pos).to_numpy()
    cube[ii, aa, bb] = pd.to_numeric(nhood[value], errors="coerce").to_numpy(dtype=float)
    finite = np.abs(cube[np.isfinite(cube)])
    if vmax is None:
        vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    cols, rows = _grid(len(images), ncols)
    size = min(panel_inches, MAX_INCHES / max(cols, rows))
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * size + 1.2, rows * size + 0.6), squeeze=False, layout="constrained"
    )
    font = max(4.0, min(8.0, 6.0 * size / 1.4))
    im = None
    for n, ax in enumerate(axes.flat):
        if n >= len(images):
            ax.set_axis_off()
            continue
        im = ax.imshow(cube[n], cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(images[n], fontsize=font)
        if n == 0:
            ax.set_xticks(range(k), types, rotation=90, fontsize=font * 0.8)
            ax.set_yticks(range(k), types, fontsize=font * 0.8)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    label = {"zscore": "neighbourhood enrichment z-score"}.get(value, value)
    fig.colorbar(im, ax=axes, shrink=min(1.0, 4.0 / rows + 0.3), label=label)
    fig.suptitle(f"{label}: {len(images)} images (rows: cell type, columns: neighbour type)", fontsize=9)
    return fig


def density_by_group(
    long: pd.DataFrame,
    group: str,
    *,
    metric: str = "density",
    compartment: str | None = None,
    cell_types: Sequence[str] | None = None,
    ncols: int = 4,
) -> Figure:
    """Per-image values of one metric by group (e.g. arm): points per image, mean ± SEM per group.

    Parameters
    ----------
    long
        The cohort's long biomarker table, with the ``group`` column.
    group
        Per-image column to group by; its categories give the order.
    metric, compartment
        Rows shown (status ``ok`` only); compartment None: ``tissue`` when present, else the first.
    cell_types
        Panels (None: every cell type of those rows, in table order).
    ncols
        Panels per row.

    Returns
    -------
    The Figure, one panel per cell type; x is the group, points are images (spread
    deterministically), the black bar and whiskers the group mean ± standard error.

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "arm": ["x", "x", "y", "y"],
    ...     "metric": "density", "compartment": "tissue", "cell_type": "T", "status": "ok",
    ...     "unit": "cells/mm2", "value": [1.0, 2.0, 4.0, 5.0]})  # fmt: skip
    >>> density_by_group(long, "arm").axes[0].get_xticklabels()[1].get_text()
    'y'
    """
    if group not in long.columns:
        raise ValueError(f"the table has no column {group!r} to group by (a blinded run withholds it)")
    rows = long[(long["metric"] == metric) & (long["status"] == "ok")]
    if rows.empty:
        raise ValueError(f"no rows of metric {metric!r} with status ok to plot")
    comps = list(pd.unique(rows["compartment"].astype(str)))
    compartment = compartment or ("tissue" if "tissue" in comps else comps[0])
    rows = rows[rows["compartment"].astype(str) == compartment]
    types = list(cell_types) if cell_types is not None else list(pd.unique(rows["cell_type"].astype(str)))
    col = long[group]
    levels = (
        [str(c) for c in col.cat.categories]
        if isinstance(col.dtype, pd.CategoricalDtype)
        else sorted(set(col.dropna().astype(str)))
    )
    levels = [g for g in levels if (rows[group].astype(str) == g).any()]
    cols, nrows = _grid(len(types), min(ncols, max(1, len(types))))
    fig, axes = plt.subplots(
        nrows, cols, figsize=(2.6 * cols, 2.4 * nrows), squeeze=False, layout="constrained"
    )
    unit = str(rows["unit"].dropna().iloc[0]) if rows["unit"].notna().any() else ""
    for n, ax in enumerate(axes.flat):
        if n >= len(types):
            ax.set_axis_off()
            continue
        sub = rows[rows["cell_type"].astype(str) == types[n]]
        for x, g in enumerate(levels):
            v = sub.loc[sub[group].astype(str) == g, "value"].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            if not v.size:
                continue
            spread = np.linspace(-0.18, 0.18, v.size) if v.size > 1 else np.zeros(1)
            ax.scatter(x + spread, v, s=14, alpha=0.7, color=f"C{x}", edgecolor="none", zorder=2)
            sem = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0
            ax.errorbar(x, v.mean(), yerr=sem, fmt="_", color="black", markersize=22, capsize=4, zorder=3)
        ax.set_xticks(range(len(levels)), levels, fontsize=8)
        ax.set_xlim(-0.6, len(levels) - 0.4)
        ax.set_title(types[n], fontsize=9)
        if n % cols == 0:
            ax.set_ylabel(f"{metric} ({unit})" if unit else metric, fontsize=8)
    fig.suptitle(f"{metric} in {compartment} by {group}: images (points), mean ± SEM", fontsize=9)
    return fig
