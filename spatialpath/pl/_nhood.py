"""Heatmap of a neighbourhood-enrichment result (:func:`spatialpath.gr.nhood_enrichment`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spatialpath.keys import Key

__all__ = ["nhood_heatmap"]

_LABELS = {
    "zscore": "z-score",
    "log2_ratio": "log2(observed / expected edges)",
    "count": "edges",
    "expected": "expected edges",
    "pvalue": "p-value",
    "qvalue": "q-value (BH)",
}
_DIVERGING = {"zscore", "log2_ratio"}


def _fields(adata_or_result: Any, cluster_key: str | None) -> Mapping[str, Any]:
    if isinstance(adata_or_result, AnnData):
        if cluster_key is None:
            raise ValueError("cluster_key is required when plotting from an AnnData")
        key = Key.uns.nhood_enrichment(cluster_key)
        if key not in adata_or_result.uns:
            raise ValueError(
                f"adata.uns[{key!r}] is missing: run "
                f"spatialpath.gr.nhood_enrichment(adata, {cluster_key!r}) first"
            )
        return adata_or_result.uns[key]
    if hasattr(adata_or_result, "to_uns"):
        return adata_or_result.to_uns()
    raise TypeError(f"expected an AnnData or an NhoodEnrichmentResult, got {type(adata_or_result).__name__}")


def _select(fields: Mapping[str, Any], value: str, image: str | None, patient: str | None) -> tuple:
    """The (K, K) matrix of ``value`` (and its q-values) at the requested level, and a title."""
    if image is not None and patient is not None:
        raise ValueError("pass image or patient, not both")
    level, unit, names_key = "", "all images", None
    if image is not None:
        level, unit, names_key = "_per_image", f"image {image}", "images"
    elif patient is not None:
        level, unit, names_key = "_per_patient", f"patient {patient}", "patients"
    if f"{value}{level}" not in fields:
        raise ValueError(f"no {value}{level!s} in the result (values: {sorted(_LABELS)})")
    matrix, q = np.asarray(fields[f"{value}{level}"], float), fields.get(f"qvalue{level}")
    if names_key is not None:
        names = [str(x) for x in fields[names_key]]
        wanted = image if image is not None else patient
        if str(wanted) not in names:
            raise ValueError(f"{names_key[:-1]} {wanted!r} is not in the result ({names[:5]}...)")
        i = names.index(str(wanted))
        matrix, q = matrix[i], None if q is None else q[i]
    return matrix, None if q is None else np.asarray(q, float), unit


def nhood_heatmap(
    adata_or_result: AnnData | Any,
    cluster_key: str | None = None,
    *,
    value: str = "zscore",
    image: str | None = None,
    patient: str | None = None,
    alpha: float | None = 0.05,
    vmax: float | None = None,
    cmap: str = "RdBu_r",
    ax: Axes | None = None,
) -> Figure:
    """Heatmap of neighbourhood enrichment: rows are cell types ``a``, columns neighbour types ``b``.

    Parameters
    ----------
    adata_or_result
        An AnnData after :func:`spatialpath.gr.nhood_enrichment` (read from
        ``uns[f"{cluster_key}_nhood_enrichment"]``) or the result returned with ``copy=True``.
    cluster_key
        Cell-type column (needed with an AnnData).
    value
        ``zscore`` (default), ``log2_ratio``, ``count``, ``expected``, ``pvalue`` or ``qvalue``.
    image, patient
        Plot one image or one patient instead of the pooled (cohort) matrix.
    alpha
        Mark pairs with BH q-value below ``alpha`` with ``*``; ``None`` marks nothing.
    vmax
        Colour limit; default the largest finite absolute value (symmetric for z and log2 ratio).
    cmap
        Colormap; NaN pairs (a type absent) are grey, values beyond the limits (``-inf`` log2
        ratios where no edge is observed) take the end colours.
    ax
        Axes to draw in; default a new figure.

    Returns
    -------
    The matplotlib Figure.

    Examples
    --------
    >>> import numpy as np
    >>> import anndata as ad, pandas as pd
    >>> adata = ad.AnnData(obs=pd.DataFrame({"t": pd.Categorical(["A", "B"])}, index=["0", "1"]))
    >>> adata.uns["t_nhood_enrichment"] = {
    ...     "zscore": np.array([[3.0, -1.0], [-1.0, 2.0]]), "qvalue": np.array([[0.01, 0.5], [0.5, 0.2]]),
    ...     "categories": np.array(["A", "B"], dtype=object)}
    >>> fig = nhood_heatmap(adata, "t")
    >>> [t.get_text() for t in fig.axes[0].texts]
    ['*']
    """
    fields = _fields(adata_or_result, cluster_key)
    matrix, q, unit = _select(fields, value, image, patient)
    if "categories" in fields:
        categories = [str(c) for c in fields["categories"]]
    elif isinstance(adata_or_result, AnnData):
        categories = [str(c) for c in adata_or_result.obs[cluster_key].cat.categories]
    else:
        categories = [str(i) for i in range(matrix.shape[0])]
    finite = matrix[np.isfinite(matrix)]
    if value in _DIVERGING:
        top = vmax if vmax is not None else (float(np.abs(finite).max()) if finite.size else 1.0)
        vmin, top = -(top or 1.0), top or 1.0
    else:
        vmin, top = (0.0, vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0))
    k = len(categories)
    if ax is None:
        # room for the longest category names on both axes, laid out by matplotlib
        label = 0.09 * max((len(c) for c in categories), default=4)
        fig, ax = plt.subplots(figsize=(2.4 + label + 0.45 * k, 1.6 + label + 0.45 * k), layout="constrained")
    else:
        fig = ax.figure
    colormap = plt.get_cmap(cmap).with_extremes(bad="0.85")
    shown = np.clip(matrix, vmin, top)  # -inf (no edge observed) takes the lowest colour; NaN stays grey
    image_ = ax.imshow(np.ma.masked_invalid(shown), cmap=colormap, vmin=vmin, vmax=top)
    ax.set_xticks(range(k), categories, rotation=45, ha="right")
    ax.set_yticks(range(k), categories)
    ax.set_xlabel("neighbour type (b)")
    ax.set_ylabel("cell type (a)")
    ax.set_title(f"neighbourhood enrichment, {unit}")
    fig.colorbar(image_, ax=ax, label=_LABELS.get(value, value), shrink=0.8)
    if alpha is not None and q is not None:
        for a, b in zip(*np.nonzero(np.nan_to_num(q, nan=1.0) < alpha), strict=True):
            ax.text(b, a, "*", ha="center", va="center", color="k", fontsize=12)
    return fig
