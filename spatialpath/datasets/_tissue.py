"""The result of :func:`simulate_tissue`: cells, lazy image and masks, and region polygons."""

from __future__ import annotations

import html
from typing import Any, NamedTuple

import anndata as ad
import geopandas as gpd
import numpy as np
import shapely
import xarray as xr

from spatialpath.datasets import _profiles as P
from spatialpath.datasets._geometry import Geometry
from spatialpath.datasets._render import CellRenderer, lazy_image, lazy_labels, lazy_zone_mask
from spatialpath.keys import Key
from spatialpath.model import make_image, make_labels

__all__ = ["SimulatedTissue"]

BACKGROUND = 0.05
NOISE_SD = 0.1
#: pixel size of the small raster copy of the neighbourhood mask kept in ``uns["simulation"]``.
_TRUTH_MASK_UM = 10.0


class SimulatedTissue(NamedTuple):
    """A simulated section: cells, lazy image and masks, and region polygons, all in µm.

    Returned by :func:`spatialpath.datasets.simulate_tissue`; unpack it or use the fields.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> t = simulate_tissue(n_cells=500, seed=0)
    >>> t.adata.n_obs, t.image.dims, t.image.sizes["c"], t.labels.dims
    (500, ('c', 'y', 'x'), 12, ('y', 'x'))
    >>> t.regions["name"].tolist()[:3], t.region_mask.attrs["categories"][1]
    (['tissue', 'tumour', 'stroma'], 'tumour_nest')
    >>> adata, image, labels, region_mask, regions = t
    """

    #: cells: ``X`` = marker levels, ``obsm["spatial"]`` in µm, ground truth in ``uns["simulation"]``.
    adata: ad.AnnData
    #: multichannel image ``(c, y, x)``, dask-backed, one task per chunk.
    image: xr.DataArray
    #: nucleus instance labels ``(y, x)``: cell ``obs["label"]`` owns value ``label``.
    labels: xr.DataArray
    #: planted-neighbourhood class mask ``(y, x)``; names of the codes in ``attrs["categories"]``.
    region_mask: xr.DataArray
    #: polygons in µm: the tissue, the tumour/stroma compartments and the planted neighbourhoods.
    regions: gpd.GeoDataFrame

    def _summary(self) -> list[tuple[str, str]]:
        sim = self.adata.uns[Key.uns.simulation]
        effects = ", ".join(f"{k} = {v:g}" for k, v in sim["effects"].items())
        h, w = self.labels.shape
        ps = self.labels.attrs[Key.attrs.pixel_size_um]
        return [
            ("adata", f"{self.adata.n_obs:,} cells × {self.adata.n_vars} markers, obsm['spatial'] in µm"),
            ("image", f"{self.image.sizes['c']} channels × {h:,} × {w:,} px at {ps:g} µm (lazy, dask)"),
            ("labels", "nucleus instance labels (y, x), label = obs['label']"),
            ("region_mask", "planted neighbourhoods: " + ", ".join(self.region_mask.attrs["categories"][1:])),
            ("regions", f"{len(self.regions)} polygons (tissue, compartments, neighbourhoods)"),
            ("truth", f"mode = {sim['mode']}; {effects}"),
        ]

    def __repr__(self) -> str:
        return "SimulatedTissue\n" + "\n".join(f"  {k:<12} {v}" for k, v in self._summary())

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>" for k, v in self._summary()
        )
        return f"<div><b>SimulatedTissue</b><table>{rows}</table></div>"


def coarse_mask(geom: Geometry, x_max: float, y_max: float) -> dict[str, Any]:
    """Neighbourhood codes on a coarse grid (pixel centres at index × _TRUTH_MASK_UM)."""
    ps = _TRUTH_MASK_UM
    xs = np.arange(int(np.ceil(x_max / ps)) + 1) * ps
    ys = np.arange(int(np.ceil(y_max / ps)) + 1) * ps
    gx, gy = np.meshgrid(xs, ys)
    data = np.zeros(gx.shape, np.uint8)
    for k, z in enumerate(P.NEIGHBOURHOODS):
        data[shapely.contains_xy(geom.zones[z], gx, gy)] = k + 1
    return {"data": data, "pixel_size_um": ps, "categories": ["background", *P.NEIGHBOURHOODS]}


def assemble(
    adata: ad.AnnData,
    geom: Geometry,
    regions_wkt: dict[str, Any],
    shape: tuple[int, int],
    pixel_size_um: float,
    chunk_px: int,
    seed_render: int,
    image_id: str,
) -> SimulatedTissue:
    r_nuc = np.sqrt(adata.obs[Key.obs.area_um2].to_numpy() / np.pi)
    renderer = CellRenderer(
        adata.obsm[Key.obsm.spatial],
        r_nuc,
        r_nuc * P.BODY_TO_NUCLEUS,
        adata.X,
        [m in P.NUCLEAR_MARKERS for m in P.MARKERS],
        pixel_size_um=pixel_size_um,
        background=BACKGROUND,
        noise_sd=NOISE_SD,
        seed=seed_render,
    )
    source = "spatialpath.datasets.simulate_tissue"
    image = make_image(
        lazy_image(renderer, shape, chunk_px),
        channels=list(P.MARKERS),
        pixel_size_um=pixel_size_um,
        image_id=image_id,
        source=source,
    )
    labels = make_labels(
        lazy_labels(renderer, shape, chunk_px), pixel_size_um=pixel_size_um, image_id=image_id, source=source
    )
    region_mask = make_labels(
        lazy_zone_mask([geom.zones[z] for z in P.NEIGHBOURHOODS], shape, pixel_size_um, chunk_px),
        pixel_size_um=pixel_size_um,
        categories=["background", *P.NEIGHBOURHOODS],
        image_id=image_id,
        source=source,
    )
    kinds = {"tissue": "tissue", "tumour": "compartment", "stroma": "compartment"}
    regions = gpd.GeoDataFrame(
        {
            "name": list(regions_wkt),
            "kind": [kinds.get(k, "neighbourhood") for k in regions_wkt],
            Key.obs.image_id: image_id,
        },
        geometry=list(regions_wkt.values()),
        crs=None,
    )
    return SimulatedTissue(adata=adata, image=image, labels=labels, region_mask=region_mask, regions=regions)
