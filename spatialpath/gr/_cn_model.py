"""The fitted cellular-neighbourhood model and the cell order every CN computation follows.

:class:`CellularNeighborhoods` holds the frozen centroids of a fit and what is needed to compute
windows the same way on new images; :meth:`~CellularNeighborhoods.to_dict` /
:meth:`~CellularNeighborhoods.from_dict` make it plain JSON (``adata.uns``, ``.h5ad``, files).
``_canonical`` is the row order (image name, then ``obs_names``) in which windows are clustered,
so that the fit recorded in the model is reproducible whatever the row order of the AnnData; the
fit (:mod:`spatialpath.gr._cellular_neighborhoods`) and :func:`~spatialpath.gr.cn_mixing` share it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from anndata import AnnData

from spatialpath.gr._utils import Groups
from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["CellularNeighborhoods"]

_FORMAT = "spatialpath.CellularNeighborhoods"


@dataclass(frozen=True, eq=False)
class CellularNeighborhoods:
    """A fitted CN model: frozen centroids and what is needed to compute windows the same way.

    ``centroids[c]`` is the mean window of CN ``c`` (``names[c]``, numbered by decreasing number
    of fitting cells) over ``cell_types`` (counts, or fractions with ``normalize``);
    ``tissue_frequencies`` (f̄) is the fraction of each type among all fitting cells;
    ``n_cells[c]`` the fitting cells in CN ``c``; ``random_state = seed + restart`` reproduces
    the chosen ``MiniBatchKMeans`` fit (with ``kmeans_kwargs``, under ``sklearn_version``).
    """

    cell_types: tuple[str, ...]
    centroids: np.ndarray
    tissue_frequencies: np.ndarray
    n_cells: np.ndarray
    n_neighbors: int | None
    radius: float | None
    normalize: bool
    seed: int = 0
    restart: int = 0
    n_restarts: int = 1
    inertia: float = float("nan")
    kmeans_kwargs: dict[str, Any] = field(default_factory=dict)
    sklearn_version: str = sklearn.__version__
    cluster_key: str = Key.obs.cell_type
    library_key: str = ""
    n_images: int = 1

    @property
    def names(self) -> list[str]:
        """CN labels ``CN1``, ``CN2``, ..."""
        return [f"CN{i + 1}" for i in range(len(self.centroids))]

    @property
    def enrichment(self) -> pd.DataFrame:
        """log2 enrichment (CNs × types): ``log2(((c + f̄) / Σ(c + f̄)) / f̄)`` (Schürch et al.)."""
        shifted = self.centroids + self.tissue_frequencies
        fc = np.log2(shifted / shifted.sum(axis=1, keepdims=True) / self.tissue_frequencies)
        return pd.DataFrame(fc, index=pd.Index(self.names, name="cn"), columns=list(self.cell_types))

    def window(self) -> str:
        """The window in words."""
        unit = "fractions" if self.normalize else "counts"
        if self.n_neighbors is not None:
            return f"{self.n_neighbors} nearest cells (centre included), {unit}"
        return f"cells within {self.radius:g} µm (centre included), {unit}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary without ``None`` (so ``adata.write_h5ad`` stores it too)."""
        window = (
            {"n_neighbors": self.n_neighbors} if self.n_neighbors is not None else {"radius": self.radius}
        )
        return {
            "format": _FORMAT, "format_version": 1, "cell_types": list(self.cell_types), "names": self.names,
            "centroids": self.centroids.tolist(), "tissue_frequencies": self.tissue_frequencies.tolist(),
            "n_cells": self.n_cells.tolist(), "window": window, "normalize": self.normalize,
            "kmeans": {"seed": self.seed, "restart": self.restart, "n_restarts": self.n_restarts,
                       "inertia": self.inertia, "kwargs": dict(self.kmeans_kwargs),
                       "sklearn_version": self.sklearn_version},
            "fit": {"cluster_key": self.cluster_key, "library_key": self.library_key,
                    "n_images": self.n_images},
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellularNeighborhoods:
        """Rebuild a model from :meth:`to_dict` (also after a JSON or h5ad round trip)."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(
                "not a CellularNeighborhoods dictionary (no format == 'spatialpath.CellularNeighborhoods'); "
                "pass model.to_dict() or adata.uns['cn']['model']"
            )
        km, fit, win = d["kmeans"], d["fit"], d["window"]
        py = lambda v: v.item() if hasattr(v, "item") else v  # noqa: E731  numpy scalars from h5ad
        return cls(
            cell_types=tuple(str(t) for t in d["cell_types"]),
            centroids=np.asarray(d["centroids"], np.float64).reshape(len(d["names"]), len(d["cell_types"])),
            tissue_frequencies=np.asarray(d["tissue_frequencies"], np.float64),
            n_cells=np.asarray(d["n_cells"], np.int64),
            n_neighbors=int(win["n_neighbors"]) if "n_neighbors" in win else None,
            radius=float(win["radius"]) if "radius" in win else None,
            normalize=bool(d["normalize"]),
            seed=int(km["seed"]), restart=int(km["restart"]), n_restarts=int(km["n_restarts"]),
            inertia=float(km["inertia"]), kmeans_kwargs={str(k): py(v) for k, v in km["kwargs"].items()},
            sklearn_version=str(km["sklearn_version"]), cluster_key=str(fit["cluster_key"]),
            library_key=str(fit["library_key"]), n_images=int(fit["n_images"]),
        )  # fmt: skip

    def __repr__(self) -> str:
        top = self.enrichment.idxmax(axis=1)
        lines = [
            f"CellularNeighborhoods: {len(self.names)} CNs × {len(self.cell_types)} cell types "
            f"({self.cluster_key!r}); window: {self.window()}",
            f"fitted on {int(self.n_cells.sum()):,} cells in {self.n_images} image(s); "
            f"MiniBatchKMeans(random_state={self.seed + self.restart}), sklearn {self.sklearn_version}",
        ]
        lines += [
            f"  {n}: {int(c):,} cells, most enriched {top[n]}"
            for n, c in zip(self.names, self.n_cells, strict=True)
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        table = self.enrichment.assign(n_cells=self.n_cells).round(2).to_html()
        return f"<pre>{html.escape(repr(self).splitlines()[0])}</pre>{table}"


def _canonical(adata: AnnData, groups: Groups) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rows sorted by image name then ``obs_name``; the bounds of each image and the image names."""
    if not adata.obs_names.is_unique:
        dup = adata.obs_names[adata.obs_names.duplicated()].unique()[:5].tolist()
        raise DataModelError(
            f"adata.obs_names are not unique (e.g. {dup}): CN labels are put back by cell name; "
            "run adata.obs_names_make_unique() first"
        )
    by_name = np.argsort(np.asarray(adata.obs_names, dtype=str), kind="stable")
    image_order = np.argsort(np.asarray(groups.names, dtype=str), kind="stable")
    rank = np.empty(groups.n, np.int64)
    rank[image_order] = np.arange(groups.n)
    order = by_name[np.argsort(rank[groups.codes[by_name]], kind="stable")]
    bounds = np.concatenate([[0], np.cumsum(groups.sizes()[image_order])])
    return order, bounds, [groups.names[i] for i in image_order]
