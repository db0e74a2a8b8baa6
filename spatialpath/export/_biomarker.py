"""Per-image biomarker tables: the long metrics table with ids, QC and metadata, and its wide pivot."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import shapely
from anndata import AnnData

from spatialpath._version import __version__
from spatialpath.export._aggregate import aggregate_samples
from spatialpath.export._schema import ID_COLUMNS, LONG_COLUMNS, METRIC_COLUMNS, STATUSES
from spatialpath.export._wide import image_columns, wide_column_map, wide_table
from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.regions._schema import TISSUE

__all__ = ["biomarker_table", "build_long", "image_qc", "normalize_samples"]

_IMG = Key.obs.image_id
#: obs columns never taken as per-image metadata.
_NOT_METADATA = frozenset(
    {Key.obs.cell_id, Key.obs.label, Key.obs.area_px, Key.obs.area_um2, Key.obs.compartment}
)


def normalize_samples(
    samples: AnnData | Sequence[AnnData] | Mapping[str, AnnData], library_key: str
) -> list[AnnData]:
    """Return the cells as a list of AnnData, each with ``obs[library_key]``; image ids unique overall."""
    if isinstance(samples, AnnData):
        items = [samples]
    elif isinstance(samples, Mapping):
        items = []
        for image_id, adata in samples.items():
            if library_key not in adata.obs:
                adata = adata.copy()
                adata.obs[library_key] = pd.Categorical([str(image_id)] * adata.n_obs)
            elif set(adata.obs[library_key].astype(str)) != {str(image_id)}:
                raise DataModelError(
                    f"samples[{image_id!r}] holds obs[{library_key!r}] values "
                    f"{sorted(set(adata.obs[library_key].astype(str)))[:5]}; a mapping's key must be "
                    "the one image id of its AnnData (or pass a list of AnnData instead)"
                )
            items.append(adata)
    elif isinstance(samples, Sequence) and all(isinstance(a, AnnData) for a in samples):
        items = list(samples)
    else:
        raise DataModelError(
            f"samples must be an AnnData, a list of AnnData or a mapping image_id -> AnnData, "
            f"got {type(samples).__name__}"
        )
    if not items:
        raise DataModelError("samples is empty; pass at least one AnnData")
    seen: dict[str, int] = {}
    for i, adata in enumerate(items):
        if library_key not in adata.obs:
            raise DataModelError(
                f"samples[{i}] has no obs[{library_key!r}]; add the image id column or pass "
                "library_key= naming it"
            )
        for image in pd.unique(adata.obs[library_key].astype(str)):
            if image in seen:
                raise DataModelError(
                    f"image id {image!r} occurs in samples[{seen[image]}] and samples[{i}]; "
                    "image ids must be unique across the inputs"
                )
            seen[image] = i
    return items


def normalize_regions(regions: Any, images: Sequence[str]) -> Any:
    """One GeoDataFrame with an ``image_id`` column, or None (see :func:`biomarker_table`)."""
    if regions is None:
        return None
    import geopandas as gpd

    if isinstance(regions, Mapping):
        parts = []
        for image_id, gdf in regions.items():
            if _IMG in gdf.columns and set(gdf[_IMG].astype(str)) - {str(image_id)}:
                raise DataModelError(f"regions[{image_id!r}] has rows of other images in its 'image_id'")
            parts.append(gdf.assign(**{_IMG: str(image_id)}))
        regions = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry")
    if not isinstance(regions, gpd.GeoDataFrame):
        raise DataModelError(
            f"regions must be None, a GeoDataFrame or a mapping image_id -> GeoDataFrame, "
            f"got {type(regions).__name__}"
        )
    if _IMG not in regions.columns:
        if len(images) != 1:
            raise DataModelError(
                "regions has no 'image_id' column but the cells hold several images; add the "
                "column or pass a mapping image_id -> GeoDataFrame"
            )
        regions = regions.assign(**{_IMG: images[0]})
    if Key.obs.compartment not in regions.columns:
        raise DataModelError("regions lacks the 'compartment' column (tissue, tumour, stroma...)")
    unknown = sorted(set(regions[_IMG].astype(str)) - set(images))
    if unknown:
        raise DataModelError(
            f"regions hold image id(s) {unknown[:5]} that no sample has; check the ids or subset "
            "the regions to the images you pass"
        )
    return regions.assign(**{_IMG: regions[_IMG].astype(str)})


def _area_mm2(regions: Any, image: str, compartment: str) -> float:
    rows = regions[(regions[_IMG] == image) & (regions[Key.obs.compartment].astype(str) == compartment)]
    if rows.empty:
        return np.nan
    return float(shapely.union_all(np.asarray(rows.geometry)).area) / 1e6


def _tissue_areas(metrics: pd.DataFrame) -> dict[str, float]:
    """Tissue area (mm²) per image as the metrics engine used it: its ``tissue`` rows' ``area_mm2``."""
    rows = metrics[metrics["compartment"].astype(str) == TISSUE]
    areas = pd.to_numeric(rows["area_mm2"], errors="coerce").groupby(rows[_IMG].astype(str)).max()
    return {str(k): float(v) for k, v in areas.items() if np.isfinite(v) and v > 0}


_FRACTION = "fraction_in_compartment"


def structural_zero_fractions(
    frame: pd.DataFrame, adata: AnnData, regions: Any, compute: Any, cluster_key: str, library_key: str
) -> pd.DataFrame:
    """``fraction_in_compartment`` of an annotated image without the compartment: a structural 0.

    An image with regions (its tissue annotated) but no polygon of the compartment the fraction
    refers to (default tumour) has 0 cells there, just as its ``tumour_area_mm2`` is 0: its
    ``compartment_absent`` rows become value ``0`` with ``n_cells_a = 0`` and ``n_cells_b`` the
    type's tissue count (status ``ok``; ``zero_denominator`` and NaN when the type has no tissue
    cell), so pooling a sample (``Σ n_cells_a / Σ n_cells_b``) counts that image's cells in the
    denominator. The tissue counts are the engine's ``count`` rows of compartment ``tissue``.
    Images without any region (or whose tissue is absent) keep ``compartment_absent``.
    """
    absent = (frame["metric"].astype(str) == _FRACTION) & (
        frame["status"].astype(str) == "compartment_absent"
    )
    if regions is None or not absent.any():
        return frame
    absent &= frame[_IMG].astype(str).isin(set(regions[_IMG].astype(str)))
    if not absent.any():
        return frame
    counts = compute(adata, regions, metrics=["count"], cluster_key=cluster_key, library_key=library_key)
    tissue = counts[(counts["compartment"].astype(str) == TISSUE) & (counts["status"].astype(str) == "ok")]
    n_tissue = pd.Series(
        pd.to_numeric(tissue["value"]).to_numpy(),
        index=pd.MultiIndex.from_arrays([tissue[_IMG].astype(str), tissue["cell_type"].astype(str)]),
    )
    keys = pd.MultiIndex.from_arrays(
        [frame.loc[absent, _IMG].astype(str), frame.loc[absent, "cell_type"].astype(str)]
    )
    n = n_tissue.reindex(keys).to_numpy()
    known = np.isfinite(n)
    rows = frame.index[absent][known]
    n = n[known].astype(np.int64)
    out = frame.copy()
    for c in ("n_cells_a", "n_cells_b"):
        out[c] = pd.array(pd.to_numeric(out[c]), dtype="Int64")
    out.loc[rows, "value"] = np.where(n > 0, 0.0, np.nan)
    out.loc[rows, "n_cells_a"] = 0
    out.loc[rows, "n_cells_b"] = n
    out.loc[rows, "status"] = np.where(n > 0, "ok", "zero_denominator")
    return out


def _default_cn_key() -> str:
    """The ``cn_key`` ``cn_frequency`` reads by default (its registry default)."""
    from spatialpath.metrics import REGISTRY

    return str(REGISTRY["cn_frequency"].defaults.get("cn_key", "cn"))


def regions_provenance(regions: Any) -> Any:
    """How the regions were made, for the manifest: ``regions.attrs["spatialpath"]``.

    ``{"source": "polygons", "provenance": {...}}`` for one GeoDataFrame (source, pixel size,
    ``tissue_from_cells`` settings, margin widths... as recorded by ``spatialpath.regions``), or
    ``{"source": "polygons", "per_image": {image_id: {...}}}`` for a mapping; None without regions
    (the ``tissue_from_cells`` record replaces it). Values are made JSON-safe (``str`` fallback).
    """
    if regions is None:
        return None
    from spatialpath.regions._schema import region_meta

    if isinstance(regions, Mapping):
        record: dict[str, Any] = {
            "source": "polygons",
            "per_image": {str(k): region_meta(g) for k, g in regions.items()},
        }
    else:
        record = {"source": "polygons", "provenance": region_meta(regions)}
    return json.loads(json.dumps(record, default=str))


def image_qc(
    adata: AnnData,
    regions: Any,
    *,
    metrics: pd.DataFrame,
    library_key: str,
    min_cells: int,
    min_tissue_mm2: float,
    tumour_compartment: str = "tumour",
    tissue_source: str = "regions",
) -> pd.DataFrame:
    """Per-image QC: ``n_cells_total``, tissue and tumour areas (mm²), ``evaluable`` and ``qc_note``.

    ``tissue_area_mm2`` is the area the metrics engine used for compartment ``tissue`` (the
    ``area_mm2`` of ``metrics``' tissue rows: the ``tissue`` regions, else the union of the
    non-derived compartments, see :func:`spatialpath.metrics.implicit_tissue`), so QC and the
    densities agree; ``tissue_source`` names it. Without one, the image metadata
    ``tissue_area_um2`` is used, else it is missing. ``tumour_area_mm2`` is the union of the
    user's ``tumour_compartment`` polygons (``0`` with regions but no tumour, NaN without regions).
    """
    images = adata.obs[library_key].astype(str)
    counts = images.value_counts(sort=False)
    meta = adata.uns.get(Key.uns.spatialpath, {}).get(Key.uns.images, {})
    used = _tissue_areas(metrics)
    records = []
    for image in pd.unique(images):
        has_regions = regions is not None and bool((regions[_IMG] == image).any())
        tissue = used.get(image, np.nan)
        source = tissue_source if np.isfinite(tissue) else "missing"
        if source == "missing" and "tissue_area_um2" in meta.get(image, {}):
            tissue, source = float(meta[image]["tissue_area_um2"]) / 1e6, "image_metadata"
        tumour = _area_mm2(regions, image, tumour_compartment) if has_regions else np.nan
        if has_regions and np.isnan(tumour):
            tumour = 0.0  # regions drawn, no tumour polygon: a structural zero
        n = int(counts[image])
        notes = []
        if n < min_cells:
            notes.append(f"n_cells_total {n} < min_cells {min_cells}")
        if not tissue >= min_tissue_mm2:  # NaN fails
            notes.append(
                "tissue area missing" if np.isnan(tissue) else f"tissue {tissue:.4g} mm2 < {min_tissue_mm2}"
            )
        records.append((image, n, tissue, source, tumour, not notes, "; ".join(notes) or np.nan))
    cols = [_IMG, "n_cells_total", "tissue_area_mm2", "tissue_area_source", "tumour_area_mm2"]
    return pd.DataFrame(records, columns=[*cols, "evaluable", "qc_note"]).astype(
        {"n_cells_total": np.int64, "evaluable": bool, "qc_note": object}
    )


def _union_categories(items: list[AnnData], key: str) -> list[AnnData]:
    """Give every input the same ``obs[key]`` categories: their union in first-seen order.

    (Categories of the first input in their order, then each later input's new ones in theirs.)
    Inputs lacking the column, or not categorical, are left for ``compute`` to refuse. Changed
    inputs are shallow copies (``obs``, ``obsm``, ``uns``; no ``X``): the caller's data is untouched.
    """
    cols = [a.obs[key] for a in items if key in a.obs]
    if len(items) < 2 or not all(isinstance(c.dtype, pd.CategoricalDtype) for c in cols):
        return items
    union = list(dict.fromkeys(c for col in cols for c in col.cat.categories))
    out = []
    for adata in items:
        col = adata.obs.get(key)
        if col is None or list(col.cat.categories) == union:
            out.append(adata)
            continue
        obs = adata.obs.copy()
        obs[key] = col.cat.set_categories(union)
        out.append(AnnData(obs=obs, obsm=dict(adata.obsm), uns=adata.uns))
    return out


def image_ids(adata: AnnData, library_key: str) -> pd.DataFrame:
    """``patient_id`` and ``sample_id`` of each image: from ``obs``, else the image metadata."""
    images = adata.obs[library_key].astype(str)
    meta = adata.uns.get(Key.uns.spatialpath, {}).get(Key.uns.images, {})
    out = pd.DataFrame({_IMG: pd.unique(images)})
    for key in ID_COLUMNS[:2]:
        if key in adata.obs:
            col = adata.obs[key].astype(object).groupby(images.to_numpy(), sort=False)
            if (col.nunique(dropna=False) > 1).any():
                raise DataModelError(f"obs[{key!r}] varies within an image; each image has one {key}")
            out[key] = out[_IMG].map(col.first()).map(lambda v: np.nan if pd.isna(v) else str(v))
        else:
            out[key] = [meta.get(i, {}).get(key, np.nan) for i in out[_IMG]]
    return out[list(ID_COLUMNS)]


def image_metadata(
    adata: AnnData, library_key: str, cluster_key: str, metadata: Sequence[str] | None
) -> tuple[pd.DataFrame, set[str]]:
    """Per-image metadata columns and the default-candidate columns that vary within an image."""
    images = adata.obs[library_key].astype(str).to_numpy()
    excluded = {library_key, cluster_key, *ID_COLUMNS, *LONG_COLUMNS, *_NOT_METADATA}
    explicit = metadata is not None
    cols = list(metadata) if explicit else [c for c in adata.obs.columns if c not in excluded]
    if explicit:
        clash = [c for c in cols if c in LONG_COLUMNS]
        if clash:
            raise DataModelError(f"metadata column(s) {clash} are biomarker-table columns; rename them")
        missing = [c for c in cols if c not in adata.obs]
        if missing:
            raise DataModelError(
                f"metadata column(s) {missing} are not in obs (columns: {list(adata.obs.columns)[:15]})"
            )
    n_values = adata.obs[cols].groupby(images, sort=False, observed=True).nunique(dropna=False)
    varying = {c for c in cols if (n_values[c] > 1).any()}
    if explicit and varying:
        raise DataModelError(
            f"metadata column(s) {sorted(varying)} vary within an image; only per-image columns "
            "(arm, timepoint...) can be carried: drop them from metadata="
        )
    keep = [c for c in cols if c not in varying]
    first = ~pd.Series(images).duplicated().to_numpy()
    out = adata.obs.loc[first, keep].reset_index(drop=True)
    out.insert(0, _IMG, images[first])
    return out, varying


def _concat_metadata(frames: list[pd.DataFrame], varying: set[str]) -> pd.DataFrame:
    cols = [c for f in frames for c in f.columns if c not in varying]
    cols = list(dict.fromkeys(cols))
    out = pd.concat([f.reindex(columns=cols) for f in frames], ignore_index=True)
    for c in cols:  # keep categoricals categorical across inputs (categories in first-seen order)
        parts = [f[c] for f in frames if c in f]
        if len(parts) < len(frames) or not all(isinstance(p.dtype, pd.CategoricalDtype) for p in parts):
            continue
        cats = list(dict.fromkeys(x for p in parts for x in p.cat.categories))
        ordered = all(p.cat.ordered for p in parts)
        if ordered and any(
            [x for x in cats if x in set(p.cat.categories)] != list(p.cat.categories) for p in parts
        ):
            raise DataModelError(f"obs[{c!r}] is ordered with conflicting category orders across samples")
        out[c] = pd.Categorical(out[c].astype(object), categories=cats, ordered=ordered)
    return out


def build_long(
    metrics: pd.DataFrame, ids: pd.DataFrame, qc: pd.DataFrame, meta: pd.DataFrame
) -> pd.DataFrame:
    """Join the metrics frame with per-image ids, QC and metadata, in the documented column order."""
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise DataModelError(
            f"the metrics frame lacks column(s) {missing}; spatialpath.metrics.compute must return "
            f"exactly {list(METRIC_COLUMNS)}"
        )
    m = metrics[list(METRIC_COLUMNS)].copy()
    bad = sorted(set(m["status"].dropna().astype(str)) - set(STATUSES)) + (
        ["<missing>"] if m["status"].isna().any() else []
    )
    if bad:
        raise DataModelError(f"metrics statuses {bad} are not in {list(STATUSES)}")
    for c in ("compartment", "metric", "cell_type", "cell_type_b", "unit", "status", "parameters"):
        col = m[c].astype(object)
        m[c] = col.where(col.notna() & (col.astype(str) != ""), np.nan).map(
            lambda v: v if isinstance(v, float) else str(v)
        )
    m[_IMG] = m[_IMG].astype(str)
    m["value"] = pd.to_numeric(m["value"]).astype(np.float64)
    m["area_mm2"] = pd.to_numeric(m["area_mm2"]).astype(np.float64)
    for c in ("n_cells_a", "n_cells_b"):
        m[c] = pd.array(pd.to_numeric(m[c]), dtype="Int64")
    unknown = sorted(set(m[_IMG]) - set(ids[_IMG]))
    if unknown:
        raise DataModelError(f"metrics rows name image(s) {unknown[:5]} that the samples do not hold")
    m["spatialpath_version"] = __version__
    long = m.merge(ids, on=_IMG, how="left").merge(qc, on=_IMG, how="left").merge(meta, on=_IMG, how="left")
    order = {image: i for i, image in enumerate(ids[_IMG])}
    long = long.iloc[np.argsort(long[_IMG].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
    return long[[*LONG_COLUMNS, *[c for c in meta.columns if c != _IMG]]]


def biomarker_table(
    samples: AnnData | Sequence[AnnData] | Mapping[str, AnnData],
    regions: Any = None,
    *,
    metrics: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    cluster_key: str = Key.obs.cell_type,
    library_key: str = Key.obs.image_id,
    metadata: Sequence[str] | None = None,
    aggregate: Literal["sample"] | None = None,
    aggregation_rules: Mapping[str, str] | None = None,
    min_cells: int = 100,
    min_tissue_mm2: float = 0.01,
    tumour_compartment: str = "tumour",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute the biomarker metrics of every image and return the long and wide tables.

    Parameters
    ----------
    samples
        The cells: one AnnData holding many images (``obs[library_key]``), a list of AnnData
        (image ids unique across the list), or a mapping ``image_id -> AnnData`` of one image
        each (``obs[library_key]`` is filled from the key when absent). Several inputs share one
        set of ``obs[cluster_key]`` categories, their union in first-seen order, so a type absent
        from one input is a structural zero there.
    regions
        Compartment polygons in µm: one GeoDataFrame with ``image_id``, ``compartment`` and
        ``geometry`` columns (``image_id`` may be omitted for a single image), a mapping
        ``image_id -> GeoDataFrame``, or None: the tissue of each image is derived from its cells
        with :func:`spatialpath.regions.tissue_from_cells` (default parameters, recorded in
        ``attrs["biomarker_table"]["regions"]``), so only ``tissue`` metrics are computed. An
        image without a ``tissue`` region gets the union of its non-derived compartments
        (:func:`spatialpath.metrics.implicit_tissue`).
    metrics
        Metric names passed to ``spatialpath.metrics.compute`` (None: its default set).
    params
        Per-metric parameters passed to ``spatialpath.metrics.compute``
        (``{"fraction_within_radius": {"radius_um": 30}}``); None: registry defaults.
    cluster_key, library_key
        Cell-type and image columns of ``obs``.
    metadata
        Per-image ``obs`` columns to carry (e.g. ``("arm", "timepoint")``). None: every ``obs``
        column constant within every image, other than the keys and per-cell columns.
    aggregate
        None: one wide row per image (a lossless pivot of the long table). ``"sample"``: one
        wide row per ``sample_id``, pooling evaluable images (see ``docs/biomarker-tables.md``).
    aggregation_rules
        Pooling rule per metric name (``"sum"``, ``"density"`` or ``"ratio"``) overriding the
        defaults chosen by unit.
    min_cells, min_tissue_mm2
        QC minimums: an image is ``evaluable`` when it has at least ``min_cells`` cells and at
        least ``min_tissue_mm2`` mm² of tissue (a missing area fails); the tissue area is the one
        the metrics used (``area_mm2`` of the ``tissue`` rows). Set them from the
        statistical analysis plan; rows of non-evaluable images are kept, flagged.
    tumour_compartment
        Region compartment whose area is ``tumour_area_mm2``.

    Returns
    -------
    ``(long, wide)``. ``long`` has the columns of ``_schema.LONG_COLUMNS`` then the metadata;
    ``long.attrs["biomarker_table"]`` records the parameters (``write_tables`` puts them in the
    manifest). ``wide`` is described in :func:`~spatialpath.export.wide_table`.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> t = simulate_tissue(n_cells=500, seed=0)
    >>> regions = t.regions[t.regions["kind"] != "neighbourhood"].rename(columns={"name": "compartment"})
    >>> long, wide = biomarker_table(t.adata, regions, metrics=["density"])
    >>> list(long.columns[:4]), len(wide)
    (['patient_id', 'sample_id', 'image_id', 'compartment'], 1)
    >>> wide.loc[0, "status__density__tumour__CD8_T"]
    'ok'
    """
    if aggregate not in (None, "sample"):
        raise ValueError(f"aggregate must be None or 'sample', got {aggregate!r}")
    from spatialpath.metrics import compute  # lazy: the metrics engine is optional at import

    items = _union_categories(normalize_samples(samples, library_key), cluster_key)
    if "cn_frequency" in (metrics or ()):  # CN labels: one category set too (the union)
        cn_key = (params or {}).get("cn_frequency", {}).get("cn_key", _default_cn_key())
        items = _union_categories(items, str(cn_key))
    all_images = [i for a in items for i in pd.unique(a.obs[library_key].astype(str))]
    regions_record: Any = regions_provenance(regions)
    regions = normalize_regions(regions, all_images)
    derived: list[Any] = []
    if regions is None:  # the tissue of each image from its cells (recorded in attrs)
        from spatialpath.regions import tissue_from_cells

        derived = [tissue_from_cells(a, library_key=library_key) for a in items]
        made = derived[0].attrs.get(Key.uns.spatialpath, {})
        regions_record = {"source": "tissue_from_cells", **made.get("tissue_from_cells", {})}

    frames, ids, qcs, metas, varying = [], [], [], [], set()
    for k, adata in enumerate(items):
        images = list(pd.unique(adata.obs[library_key].astype(str)))
        sub = None if regions is None else regions[regions[_IMG].isin(images)]
        kw: dict[str, Any] = {"cluster_key": cluster_key, "library_key": library_key}
        if metrics is not None:
            kw["metrics"] = list(metrics)
        if params:
            kw["params"] = params
        frame = compute(adata, derived[k] if regions is None else sub, **kw)
        if regions is not None:
            frame = structural_zero_fractions(frame, adata, sub, compute, cluster_key, library_key)
        frames.append(frame)
        ids.append(image_ids(adata, library_key))
        qcs.append(
            image_qc(
                adata,
                sub,
                metrics=frame,
                library_key=library_key,
                min_cells=min_cells,
                min_tissue_mm2=min_tissue_mm2,
                tumour_compartment=tumour_compartment,
                tissue_source="regions" if regions is not None else "tissue_from_cells",
            )
        )
        meta, var = image_metadata(adata, library_key, cluster_key, metadata)
        metas.append(meta)
        varying |= var
    long = build_long(
        pd.concat(frames, ignore_index=True),
        pd.concat(ids, ignore_index=True),
        pd.concat(qcs, ignore_index=True),
        _concat_metadata(metas, varying),
    )
    cmap = wide_column_map(long, reserved=image_columns(long))
    if aggregate is None:
        wide = wide_table(long, column_map=cmap)
    else:
        wide = aggregate_samples(long, cmap, rules=aggregation_rules)
    params = {
        "metrics": None if metrics is None else list(metrics),
        "cluster_key": cluster_key,
        "library_key": library_key,
        "metadata": [c for c in long.columns if c not in LONG_COLUMNS],
        "aggregate": aggregate,
        "aggregation_rules": dict(aggregation_rules or {}),
        "min_cells": min_cells,
        "min_tissue_mm2": min_tissue_mm2,
        "tumour_compartment": tumour_compartment,
        "regions": regions_record,
    }
    long.attrs["biomarker_table"] = json.loads(json.dumps(params))
    wide.attrs["biomarker_table"] = long.attrs["biomarker_table"]
    return long, wide
