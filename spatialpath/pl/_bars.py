"""Bar charts of per-cell-type values (densities, proportions) from a tidy table."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from spatialpath.keys import Key

__all__ = ["density_bars"]

_UNITS = {"density_per_mm2": "cells / mm²", "proportion": "fraction of cells", "n_cells": "cells"}


def density_bars(
    table: pd.DataFrame,
    *,
    value: str = "density_per_mm2",
    group: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Bar chart of a value per cell type: the mean over rows, with each row shown as a dot.

    Parameters
    ----------
    table
        Long table with a ``cell_type`` column and ``value`` (e.g. from
        :func:`spatialpath.export.cell_counts`), one row per unit (image or sample) and type.
    value
        Column to plot.
    group
        Optional column (e.g. ``arm``) splitting each cell type into side-by-side bars.
    colors
        Colour per cell type (used when ``group`` is None) or per group.

    Returns
    -------
    The matplotlib Figure.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"cell_type": ["A", "B"], "density_per_mm2": [10.0, 20.0]})
    >>> density_bars(t).axes[0].get_ylabel()
    'density_per_mm2 (cells / mm²)'
    """
    for col in (Key.obs.cell_type, value, *([group] if group else [])):
        if col not in table:
            raise ValueError(f"table has no column {col!r} (columns: {list(table.columns)})")
    types = list(pd.unique(table[Key.obs.cell_type].astype(str)))
    if isinstance(table[Key.obs.cell_type].dtype, pd.CategoricalDtype):
        types = [str(c) for c in table[Key.obs.cell_type].cat.categories if str(c) in set(types)]
    groups = [None] if group is None else [str(g) for g in pd.unique(table[group].astype(str))]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(types) * max(1, len(groups) * 0.6)), 3.8))
    width = 0.8 / len(groups)
    x = np.arange(len(types))
    rng = np.random.default_rng(0)  # jitter of the dots only
    for gi, g in enumerate(groups):
        sub = table if g is None else table[table[group].astype(str) == g]
        offs = x - 0.4 + width * (gi + 0.5)
        means = [sub.loc[sub[Key.obs.cell_type].astype(str) == t, value].mean() for t in types]
        if g is None:
            bar_colors = [colors.get(t, "C0") for t in types] if colors else ["C0"] * len(types)
        else:
            bar_colors = [colors.get(g, f"C{gi}") if colors else f"C{gi}"] * len(types)
        ax.bar(offs, means, width=width * 0.95, color=bar_colors, alpha=0.85, label=g)
        for ti, t in enumerate(types):
            vals = sub.loc[sub[Key.obs.cell_type].astype(str) == t, value].to_numpy(dtype=float)
            if len(vals) > 1:
                ax.scatter(
                    offs[ti] + rng.uniform(-width / 4, width / 4, len(vals)), vals, s=8, color="k", zorder=3
                )
    ax.set_xticks(x, types, rotation=35, ha="right")
    unit = _UNITS.get(value)
    ax.set_ylabel(f"{value} ({unit})" if unit else value)
    if group is not None:
        ax.legend(title=group, frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
