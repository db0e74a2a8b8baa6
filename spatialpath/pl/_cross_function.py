"""Curves of a point-pattern function with their envelopes (:func:`spatialpath.gr.cross_function`)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["cross_function_curves"]

_YLABEL = {"K": "K(r) (µm²)", "L": "L(r) (µm)", "G": "G(r)", "J": "J(r)", "g": "g(r)"}


def cross_function_curves(
    result,
    pairs: Sequence[tuple[str, str]] | None = None,
    *,
    image: str | None = None,
    centred: bool | None = None,
    envelope: str = "global",
    ax: Axes | None = None,
) -> Figure:
    """Plot observed curves against the theoretical value and the null's envelope.

    Parameters
    ----------
    result
        A :class:`~spatialpath.gr.CrossFunctionResult` (``cross_function(..., copy=True)``).
    pairs
        ``(a, b)`` pairs to draw (default: all, at most 12).
    image
        The image (required when the result has several).
    centred
        Subtract the theoretical curve (``L(r) − r`` etc.); default for K and L.
    envelope
        ``"global"`` (the extreme-rank-length envelope: the curve leaves it somewhere iff the
        global test rejects), ``"pointwise"`` or ``"none"``.
    ax
        Axes to draw in (default: a new figure).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, shapely
    >>> from spatialpath.datasets import simulate_tissue
    >>> from spatialpath.gr import cross_function
    >>> t = simulate_tissue(seed=0, n_cells=2000)
    >>> tissue = shapely.from_wkt(t.adata.uns["simulation"]["regions_wkt"]["tissue"])
    >>> res = cross_function(t.adata, "cell_type", "L", "CD8 T", ["Tumour", "CD8 T"], r_max=80,
    ...                      window=tissue, n_perms=99, copy=True, progress=False)  # fmt: skip
    >>> fig = cross_function_curves(res)
    >>> len(fig.axes[0].lines)  # two curves and the theoretical one
    3
    """
    if envelope not in ("global", "pointwise", "none"):
        raise ValueError(f"envelope must be 'global', 'pointwise' or 'none', got {envelope!r}")
    pairs = list(pairs) if pairs is not None else result.pairs[:12]
    centred = result.kind in ("K", "L") if centred is None else centred
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    colors = plt.get_cmap("tab10" if len(pairs) <= 10 else "tab20")
    r = result.r
    for k, (a, b) in enumerate(pairs):
        curve = result.curve(a, b, image=image)
        theo = curve["theoretical"].to_numpy()
        shift = theo if centred else 0.0
        color = colors(k % colors.N)
        label = a if a == b else f"{a} → {b}"
        if "global_p" in curve.attrs:
            label += f" (p = {curve.attrs['global_p']:.3g})"
        ax.plot(r, curve["observed"] - shift, color=color, lw=1.8, label=label)
        lo_key, hi_key = (
            ("global_lo", "global_hi") if envelope == "global" else ("pointwise_lo", "pointwise_hi")
        )
        if envelope != "none" and lo_key in curve:
            lo = np.clip(curve[lo_key].to_numpy(), -1e300, 1e300)
            hi = np.clip(curve[hi_key].to_numpy(), -1e300, 1e300)
            ax.fill_between(r, lo - shift, hi - shift, color=color, alpha=0.15, lw=0)
    first = result.curve(*pairs[0], image=image)["theoretical"].to_numpy()
    ax.plot(r, first - (first if centred else 0.0), color="0.3", ls="--", lw=1, label="CSR / independence")
    name = _YLABEL[result.kind]
    ax.set_xlabel("r (µm)")
    ax.set_ylabel(f"{name} − theoretical" if centred else name)
    null = result.null or "no null"
    ax.set_title(f"{result.kind}, {result.correction} correction, {null} ({envelope} envelope)", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return fig
