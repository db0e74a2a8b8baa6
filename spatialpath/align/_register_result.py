"""The outcome of :func:`~spatialpath.align.register_images`: transform, QC metrics and figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spatialpath.align._quality import checkerboard, overlay
from spatialpath.align._transform import Transform

__all__ = ["RegistrationResult"]


@dataclass
class RegistrationResult:
    """Outcome of :func:`register_images`.

    ``similarity_before``/``similarity_after``: Pearson correlation (NCC) of the fixed thumbnail and the
    moving thumbnail resampled into it, over their overlap, with the input placement (moving µm taken as
    fixed µm; NaN when they do not overlap) and with ``transform``. ``nmi_after``: normalised mutual
    information (1 = independent, 2 = identical). ``overlap_fraction``: overlap area over the smaller image.
    ``coarse_score``/``runner_up_score``: correlation (2× coarse thumbnail) of the chosen coarse pose and of
    the best distinct pose (−1 if none); their difference is checked against ``min_margin``.
    """

    transform: Transform
    similarity_before: float
    similarity_after: float
    nmi_after: float
    overlap_fraction: float
    candidates: list[dict[str, Any]]
    timings: dict[str, float]
    channels: dict[str, str]
    qc_pixel_size_um: float
    coarse_score: float
    runner_up_score: float
    nonrigid: dict[str, Any] | None
    _fixed_thumb: np.ndarray = field(repr=False)
    _moved_thumb: np.ndarray = field(repr=False)
    _valid: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe QC record (transform included)."""

        def num(v: float) -> float | None:
            return None if not np.isfinite(v) else float(v)

        return {
            "transform": self.transform.to_dict(),
            "similarity_metric": "ncc",
            "similarity_before": num(self.similarity_before),
            "similarity_after": num(self.similarity_after),
            "nmi_after": num(self.nmi_after),
            "overlap_fraction": num(self.overlap_fraction),
            "candidates": [
                {k: (float(v) if isinstance(v, float) else v) for k, v in c.items()} for c in self.candidates
            ],
            "timings_s": {k: float(v) for k, v in self.timings.items()},
            "channels": dict(self.channels),
            "qc_pixel_size_um": float(self.qc_pixel_size_um),
            "coarse_score": num(self.coarse_score),
            "runner_up_score": num(self.runner_up_score),
            "nonrigid": None if self.nonrigid is None else dict(self.nonrigid),
        }

    def plot_checkerboard(self, n: int = 8, ax: Any = None) -> Any:
        """Checkerboard of the fixed thumbnail and the registered moving thumbnail; returns the Figure."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 6)) if ax is None else (ax.figure, ax)
        ax.imshow(
            checkerboard(self._fixed_thumb, self._moved_thumb, self._valid, n), cmap="gray", vmin=0, vmax=1
        )
        ax.set_title(f"fixed / registered moving (NCC {self.similarity_after:.3f})")
        ax.set_axis_off()
        return fig

    def plot_overlay(self, ax: Any = None) -> Any:
        """Fixed (magenta) over the registered moving image (green); returns the Figure."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 6)) if ax is None else (ax.figure, ax)
        ax.imshow(overlay(self._fixed_thumb, self._moved_thumb, self._valid))
        ax.set_title(f"fixed (magenta) / moving (green), overlap {self.overlap_fraction:.0%}")
        ax.set_axis_off()
        return fig

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{k}</td><td>{v:.4g}</td></tr>"
            for k, v in [
                ("similarity before (NCC)", self.similarity_before),
                ("similarity after (NCC)", self.similarity_after),
                ("NMI after", self.nmi_after),
                ("overlap fraction", self.overlap_fraction),
                ("total time (s)", sum(self.timings.values())),
            ]
        )
        return f"<b>RegistrationResult</b><table>{rows}</table>{self.transform._repr_html_()}"
