"""``compute``: every requested metric, per image and compartment, as one long table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import shapely
from anndata import AnnData

from spatialpath.keys import Key
from spatialpath.metrics._image import TISSUE, ImageData, implicit_tissue
from spatialpath.metrics._registry import COLUMNS, REGISTRY, Metric, canonical_parameters, get_metric
from spatialpath.model import DataModelError, validate_categorical
from spatialpath.regions._membership import cell_membership, compartment_areas
from spatialpath.regions._validate import validate_regions

__all__ = ["compute", "default_metrics"]


def default_metrics() -> list[str]:
    """Names of the metrics ``compute(metrics=None)`` runs (those needing no extra input).

    Examples
    --------
    >>> default_metrics()[:3]
    ['count', 'proportion', 'density']
    """
    return [name for name, m in REGISTRY.items() if m.default]


def _check_request(
    metrics: Sequence[str] | None, params: Mapping[str, Mapping[str, Any]] | None
) -> list[tuple[Metric, dict[str, Any]]]:
    if isinstance(metrics, str):
        raise DataModelError(
            f"metrics must be a list of names, got the string {metrics!r}; use [{metrics!r}]"
        )
    names = default_metrics() if metrics is None else list(dict.fromkeys(metrics))
    if not names:
        raise DataModelError("metrics is empty: pass metric names (see spatialpath.metrics.REGISTRY) or None")
    chosen = [get_metric(n) for n in names]
    params = dict(params or {})
    stray = sorted(set(params) - set(names))
    if stray:
        raise DataModelError(
            f"params given for metric(s) {stray} that are not computed; computed: {names}. Add them to "
            "metrics=[...] or remove their params"
        )
    for name, p in params.items():
        if not isinstance(p, Mapping):
            raise DataModelError(
                f"params[{name!r}] must be a dict of parameter values, got {type(p).__name__}"
            )
    return [(m, m.resolve(params.get(m.name))) for m in chosen]


def _with_tissue(regions) -> Any:
    """Regions with a ``"tissue"`` row for every image that has none (:func:`implicit_tissue`)."""
    comp = regions[Key.obs.compartment].astype(str)
    by = Key.obs.image_id if Key.obs.image_id in regions.columns else None
    groups = regions.groupby(regions[by].astype(str)) if by else [(None, regions)]
    extra = []
    for image, sub in groups:
        names = sub[Key.obs.compartment].astype(str)
        if not (names == TISSUE).any():
            geom = implicit_tissue(list(names), list(sub.geometry))
            if geom is None:  # only derived compartments (margin bands...): no tissue
                continue
            extra.append({**({by: image} if by else {}), Key.obs.compartment: TISSUE, "geometry": geom})
    out = regions.assign(**{Key.obs.compartment: comp})
    if extra:
        import geopandas as gpd

        out = pd.concat([out, gpd.GeoDataFrame(extra, geometry="geometry")], ignore_index=True)
        out = gpd.GeoDataFrame(out, geometry="geometry")
    return out


def _check_units(regions, adata: AnnData, library_key: str | None) -> None:
    """Refuse regions in pixels over cells in µm: regions far larger than the cells, cells in a corner.

    (Regions smaller than the cells' extent are legitimate, e.g. a tumour annotation, so only this
    direction, the one of QuPath pixel exports with pixels under 1 µm, is refused here;
    :func:`spatialpath.regions.validate_regions` checks both directions on request.)
    """
    xy = np.asarray(adata.obsm[Key.obsm.spatial], float)[:, :2]
    per_image = library_key is not None and Key.obs.image_id in regions.columns
    labels = adata.obs[library_key].astype(str).to_numpy() if per_image else None
    groups = regions.groupby(regions[Key.obs.image_id].astype(str)) if per_image else [(None, regions)]
    for image, sub in groups:
        cells = xy if labels is None else xy[labels == image]
        if len(cells) < 2:
            continue
        x0, y0, x1, y1 = sub.total_bounds
        ratio = max(x1 - x0, y1 - y0) / max(np.ptp(cells[:, 0]), np.ptp(cells[:, 1]), 1e-12)
        inside = np.mean(
            (cells[:, 0] >= x0) & (cells[:, 0] <= x1) & (cells[:, 1] >= y0) & (cells[:, 1] <= y1)
        )
        corner = np.mean((cells[:, 0] <= x0 + (x1 - x0) / ratio) & (cells[:, 1] <= y0 + (y1 - y0) / ratio))
        if ratio > 1.5 and corner > 0.9 and inside > 0.9:
            where = "" if image is None else f" of image {image!r}"
            raise DataModelError(
                f"the regions{where} span {ratio:.3g}× the cells' extent and the cells sit in their low "
                "corner: "
                "the regions are probably in pixels while obsm['spatial'] is in µm; read them with "
                "spatialpath.regions.read_geojson(path, pixel_size_um=...) or scale them by the pixel size"
            )


def compute(
    adata: AnnData,
    regions,
    metrics: Sequence[str] | None = None,
    *,
    cluster_key: str = Key.obs.cell_type,
    library_key: str | None = Key.obs.image_id,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Compute registered metrics per image and compartment as one long (tidy) table.

    Parameters
    ----------
    adata
        Cells with ``obsm["spatial"]`` in µm and categorical ``obs[cluster_key]``.
    regions
        GeoDataFrame with ``image_id`` (matching ``obs[library_key]``), ``compartment`` and
        ``geometry`` (µm); compartments may overlap. An image without a ``"tissue"`` row gets the
        union of its non-derived compartments as its tissue (:func:`implicit_tissue`: margin bands
        and the tumour core are left out; with only those, ``"tissue"`` is absent). Areas come
        from these polygons, never a convex hull.
    metrics
        Names in :data:`~spatialpath.metrics.REGISTRY`; ``None``: :func:`default_metrics`.
    cluster_key
        Cell-type column; every category is reported in every image (structural zeros).
    library_key
        Image column; ``None`` treats all cells as one image ``"all"``.
    params
        ``{metric: {parameter: value}}`` overriding the registered defaults.

    Returns
    -------
    DataFrame with exactly the columns :data:`~spatialpath.metrics.COLUMNS`: one row per image,
    compartment (``"tissue"`` first, then the regions' compartments in order), metric, and
    cell type / type pair / CN as the metric's level says. ``value`` is NaN only with a non-ok
    ``status``; ``parameters`` is the canonical JSON of the metric's parameters.

    Raises
    ------
    DataModelError
        Unknown metric or parameter, a refused parameter value, a cell-type parameter that is not a
        category, missing columns, or a regions table without ``image_id`` for several images.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> from spatialpath.datasets import simulate_tissue
    >>> adata = simulate_tissue(seed=0, n_cells=1000).adata
    >>> wkt = adata.uns["simulation"]["regions_wkt"]
    >>> names = ["tissue", "tumour", "stroma"]
    >>> regions = gpd.GeoDataFrame({"image_id": "sim_0", "compartment": names},
    ...                            geometry=[shapely.from_wkt(wkt[k]) for k in names])
    >>> t = compute(adata, regions, ["count", "density"])
    >>> t.groupby("compartment", sort=False)["value"].size().to_dict()
    {'tissue': 16, 'tumour': 16, 'stroma': 16}
    >>> int(t.query("metric == 'count' and compartment == 'tissue'")["value"].sum())
    1000
    """
    request = _check_request(metrics, params)
    if Key.obsm.spatial not in adata.obsm:
        raise DataModelError("adata.obsm['spatial'] is missing: cell positions (x, y) in µm are needed")
    xy_all = np.asarray(adata.obsm[Key.obsm.spatial], dtype=float)
    if xy_all.ndim != 2 or xy_all.shape[1] < 2 or not np.isfinite(xy_all[:, :2]).all():
        raise DataModelError("adata.obsm['spatial'] must be (n_cells, 2) finite positions in µm")
    validate_categorical(adata, cluster_key, allow_empty_categories=True)
    cats = tuple(str(c) for c in adata.obs[cluster_key].cat.categories)
    for m, p in request:
        for par in m.parameters:
            if par.cell_type and p[par.name] not in cats:
                raise DataModelError(
                    f"params[{m.name!r}][{par.name!r}] = {p[par.name]!r} is not a category of "
                    f"obs[{cluster_key!r}]: expected one of {list(cats)[:20]}; set "
                    f"params={{{m.name!r}: {{{par.name!r}: ...}}}}"
                )
    label_keys = sorted({p["cn_key"] for m, p in request if "cn_key" in p})
    for key in label_keys:
        if key not in adata.obs:
            raise DataModelError(
                f"adata.obs[{key!r}] (CN labels) is missing: run "
                "spatialpath.gr.cellular_neighborhoods(adata) or set "
                "params={'cn_frequency': {'cn_key': <obs column>}}"
            )
        validate_categorical(adata, key, allow_empty_categories=True)
    if library_key is not None and library_key not in adata.obs:
        raise DataModelError(
            f"adata.obs[{library_key!r}] is missing: it names each cell's image; pass library_key=None "
            "for a single image"
        )
    validate_regions(regions)  # schema, valid polygons of positive area
    _check_units(regions, adata, library_key)
    images = (
        ["all"] if library_key is None else [str(c) for c in pd.unique(adata.obs[library_key].astype(str))]
    )
    if library_key is not None and isinstance(adata.obs[library_key].dtype, pd.CategoricalDtype):
        present = set(images)
        images = [str(c) for c in adata.obs[library_key].cat.categories if str(c) in present]
    has_image = Key.obs.image_id in regions.columns
    if not has_image and len(images) > 1:
        raise DataModelError(
            f"regions has no 'image_id' column but the cells come from {len(images)} images; add "
            "regions['image_id'] naming each polygon's image"
        )
    regions = _with_tissue(regions)
    compartments = [TISSUE, *[c for c in dict.fromkeys(regions[Key.obs.compartment]) if c != TISSUE]]
    member = cell_membership(adata, regions, library_key=library_key if has_image else None)
    areas = compartment_areas(regions)
    areas.index = areas.index.map(lambda k: tuple(map(str, k)) if isinstance(k, tuple) else str(k))
    geoms = _geometries(regions, has_image)

    codes_all = adata.obs[cluster_key].cat.codes.to_numpy().astype(np.int64)
    image_of = (
        np.zeros(adata.n_obs, object)
        if library_key is None
        else adata.obs[library_key].astype(str).to_numpy()
    )
    member_arr = member.reindex(columns=compartments, fill_value=False).to_numpy()
    frames = []
    for image in images:
        rows = np.flatnonzero(image_of == image) if library_key is not None else np.arange(adata.n_obs)
        rows = rows[member_arr[rows].any(axis=1)]
        gkey = image if has_image else None
        img_geoms = {c: geoms[(gkey, c)] for c in compartments if (gkey, c) in geoms}
        labels = {}
        for key in label_keys:
            col = adata.obs[key]
            labels[key] = (
                col.cat.codes.to_numpy()[rows].astype(np.int64),
                tuple(str(c) for c in col.cat.categories),
            )
        data = ImageData(
            image_id=image,
            categories=cats,
            xy=xy_all[rows, :2],
            codes=codes_all[rows],
            membership={c: member_arr[rows, i] for i, c in enumerate(compartments)},
            geometry=img_geoms,
            labels=labels,
            areas_mm2={c: float(areas[(image, c) if has_image else c]) for c in img_geoms},
        )
        for metric, p in request:
            pjson = canonical_parameters(p)
            where = [TISSUE] if metric.scope == "image" else compartments
            for comp in where:
                out = pd.DataFrame(metric.func(data, comp, **p))
                area = data.area_mm2(comp)
                out.insert(0, "image_id", image)
                out.insert(1, "compartment", comp)
                out.insert(2, "metric", metric.name)
                out["unit"], out["area_mm2"], out["parameters"] = metric.unit, area, pjson
                frames.append(out)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    for col in ("n_cells_a", "n_cells_b"):
        table[col] = pd.array(table[col].astype("float64"), dtype="Int64") if len(table) else table[col]
    table["value"] = table["value"].astype(float)
    return table[list(COLUMNS)]


def _geometries(regions, has_image: bool) -> dict[tuple[str | None, str], Any]:
    keys = [Key.obs.image_id, Key.obs.compartment] if has_image else [Key.obs.compartment]
    out = {}
    for key, sub in regions.groupby([regions[k].astype(str) for k in keys], sort=False):
        key = key if has_image else (None, key[0])
        out[tuple(key)] = shapely.union_all(np.asarray(sub.geometry))
    return out
