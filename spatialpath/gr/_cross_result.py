"""The result of :func:`spatialpath.gr.cross_function`: curves, envelopes, tests and tidy tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["THEORY", "CrossFunctionResult"]

#: what each function equals under complete spatial randomness / independence.
THEORY = {
    "K": "πr²",
    "L": "r",
    "G": "1 − exp(−λ_b π r²)",
    "J": "1",
    "g": "1",
}
#: units of the function values (AUC is in these units × µm).
UNITS = {"K": "um^2", "L": "um", "G": "1", "J": "1", "g": "1"}


@dataclass(frozen=True, eq=False)
class CrossFunctionResult:
    """Observed curves of one function for type pairs ``(a, b)`` in each image, with their null.

    Arrays are ``(n_images, n_pairs, n_r)`` (curves) or ``(n_images, n_pairs)`` (summaries), in the
    order of ``images`` and ``pairs``; entries are NaN where the function is undefined (an empty
    type, no cell far enough from the border at that r, r = 0 of g). Envelope and test fields are
    ``None`` when no null was run.

    Attributes
    ----------
    kind, correction, null
        The function (K, L, G, J, g), the edge correction used and the null model.
    r
        Distances (µm).
    observed, theoretical
        The estimate and its value under CSR (:data:`THEORY`).
    null_mean
        Mean of the permuted/simulated curves.
    pointwise_lo, pointwise_hi, pointwise_p
        Pointwise envelopes at level ``alpha`` and Monte-Carlo p-values per r.
    global_lo, global_hi, global_p
        Global extreme-rank-length envelope at level ``alpha`` and the global test's p-value.
    auc
        Area between the observed and theoretical curves over ``r`` (trapezoidal rule, NaN
        points left out), in the function's units × µm.
    """

    kind: str
    correction: str
    null: str | None
    r: np.ndarray
    images: list[str]
    pairs: list[tuple[str, str]]
    observed: np.ndarray
    theoretical: np.ndarray
    auc: np.ndarray
    n_a: np.ndarray
    n_b: np.ndarray
    area_um2: np.ndarray
    n_outside: np.ndarray
    window_source: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    null_mean: np.ndarray | None = None
    pointwise_lo: np.ndarray | None = None
    pointwise_hi: np.ndarray | None = None
    pointwise_p: np.ndarray | None = None
    global_lo: np.ndarray | None = None
    global_hi: np.ndarray | None = None
    global_p: np.ndarray | None = None

    def _index(self, image: str | None, a: str, b: str) -> tuple[int, int]:
        if image is None:
            if len(self.images) != 1:
                raise KeyError(f"several images: pass image= one of {self.images[:5]}")
            image = self.images[0]
        try:
            return self.images.index(str(image)), self.pairs.index((str(a), str(b)))
        except ValueError:
            raise KeyError(
                f"no curve for image {image!r} and pair ({a!r}, {b!r}); pairs: {self.pairs[:6]}"
            ) from None

    def curve(self, a: str, b: str, image: str | None = None) -> pd.DataFrame:
        """One pair's curve in one image: ``r``, observed, theoretical and envelopes."""
        gi, pi = self._index(image, a, b)
        cols = {"r": self.r, "observed": self.observed[gi, pi], "theoretical": self.theoretical[gi, pi]}
        for name in ("null_mean", "pointwise_lo", "pointwise_hi", "pointwise_p", "global_lo", "global_hi"):
            value = getattr(self, name)
            if value is not None:
                cols[name] = value[gi, pi]
        df = pd.DataFrame(cols)
        df.attrs.update({"a": a, "b": b, "image": self.images[gi], "auc": float(self.auc[gi, pi])})
        if self.global_p is not None:
            df.attrs["global_p"] = float(self.global_p[gi, pi])
        return df

    def table(self) -> pd.DataFrame:
        """Tidy long table: one row per image, pair and r."""
        n_g, n_p, m = self.observed.shape
        cols: dict[str, Any] = {
            self.params.get("library_key") or "image_id": np.repeat(self.images, n_p * m),
            "a": np.tile(np.repeat([p[0] for p in self.pairs], m), n_g),
            "b": np.tile(np.repeat([p[1] for p in self.pairs], m), n_g),
            "function": self.kind,
            "correction": self.correction,
            "r_um": np.tile(self.r, n_g * n_p),
            "observed": self.observed.ravel(),
            "theoretical": self.theoretical.ravel(),
        }
        for name in ("null_mean", "pointwise_lo", "pointwise_hi", "pointwise_p", "global_lo", "global_hi"):
            value = getattr(self, name)
            if value is not None:
                cols[name] = value.ravel()
        return pd.DataFrame(cols)

    def summary(self) -> pd.DataFrame:
        """One row per image and pair: AUC, global p-value, cell counts, window (for biomarker tables)."""
        n_g, n_p = self.auc.shape
        out = pd.DataFrame(
            {
                self.params.get("library_key") or "image_id": np.repeat(self.images, n_p),
                "a": np.tile([p[0] for p in self.pairs], n_g),
                "b": np.tile([p[1] for p in self.pairs], n_g),
                "function": self.kind,
                "correction": self.correction,
                "null": self.null or "none",
                "auc": self.auc.ravel(),
                "auc_units": f"{UNITS[self.kind]}*um".replace("1*um", "um"),
                "global_p": self.global_p.ravel() if self.global_p is not None else np.nan,
                "n_a": self.n_a.ravel().astype(np.int64),
                "n_b": self.n_b.ravel().astype(np.int64),
                "window_area_um2": np.repeat(self.area_um2, n_p),
                "n_outside_window": np.repeat(self.n_outside, n_p).astype(np.int64),
                "window": np.repeat(self.window_source, n_p),
                "r_max_um": float(self.r[-1]),
                "n_perms": self.params.get("n_perms") or 0,
            }
        )
        return out

    def to_uns(self) -> dict[str, Any]:
        """What :func:`~spatialpath.gr.cross_function` writes to ``adata.uns`` (h5ad-safe)."""
        return {
            "params": {k: v for k, v in self.params.items() if v is not None},
            "r": np.asarray(self.r),
            "summary": self.summary(),
            "curves": self.table(),
        }

    def to_squidpy_ripley(self, cluster_key: str, categories: list[str]) -> dict[str, Any] | None:
        """The ``squidpy.gr.ripley`` layout of the univariate curves of one image.

        ``{mode}_stat`` holds the observed curves, ``sims_stat`` the null mean of each type (one
        "simulation" per type), ``pvalues`` the pointwise p-values; ``None`` when there are
        several images or no univariate pair.
        """
        uni = [k for k, (a, b) in enumerate(self.pairs) if a == b]
        if len(self.images) != 1 or not uni:
            return None
        types = [self.pairs[k][0] for k in uni]
        m = len(self.r)
        stat = pd.DataFrame(
            {
                "bins": np.tile(self.r, len(uni)),
                cluster_key: pd.Categorical(np.repeat(types, m), categories=categories),
                "stats": self.observed[0, uni].ravel(),
            }
        )
        sims = self.null_mean[0, uni] if self.null_mean is not None else self.theoretical[0, uni]
        sims_stat = pd.DataFrame(
            {
                "bins": np.tile(self.r, len(uni)),
                "simulations": np.repeat(np.arange(len(uni)), m),
                "stats": sims.ravel(),
            }
        )
        p = self.pointwise_p[0, uni] if self.pointwise_p is not None else np.full((len(uni), m), np.nan)
        return {f"{self.kind}_stat": stat, "sims_stat": sims_stat, "bins": np.asarray(self.r), "pvalues": p}

    def __repr__(self) -> str:
        test = f", null={self.null} ({self.params.get('n_perms')} draws)" if self.null else ""
        return (
            f"CrossFunctionResult({self.kind}, correction={self.correction}{test}: "
            f"{len(self.images)} image(s) × {len(self.pairs)} pair(s) × {len(self.r)} r "
            f"up to {self.r[-1]:.4g} µm)"
        )

    def _repr_html_(self) -> str:
        head = self.summary().head(20).to_html(index=False, float_format=lambda v: f"{v:.4g}")
        return f"<p><b>{self!r}</b></p>{head}"
