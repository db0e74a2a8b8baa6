"""Sample-level wide table: pool the evaluable images of each sample, metric by metric.

Rules (chosen per metric by ``rules``, else :data:`METRIC_RULES`, else by its unit):

- ``"sum"`` (``count``; unit ``cells``): sum of the image values.
- ``"density"`` (``density``; unit ``cells/mm2``): cell-weighted pooling,
  ``Σ n_cells_a / Σ area_mm2``.
- ``"ratio"`` (``proportion``, ``fraction_in_compartment``): ``Σ n_cells_a / Σ n_cells_b``.
- anything else is not pooled: value NaN, status ``not_aggregated`` (a mean of per-image
  statistics such as z-scores or K functions is not the sample's statistic).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from spatialpath.export._schema import QC_COLUMNS
from spatialpath.export._wide import column_index, image_columns
from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["AGGREGATION_RULES", "METRIC_RULES", "UNIT_RULES", "aggregate_samples"]

#: pooling rules by name.
AGGREGATION_RULES = ("sum", "density", "ratio")
#: default rule of the registry's poolable metrics (``spatialpath.metrics``).
METRIC_RULES: dict[str, str] = {
    "count": "sum",
    "density": "density",
    "proportion": "ratio",
    "fraction_in_compartment": "ratio",
}
#: default rule of any other metric by its unit.
UNIT_RULES: dict[str, str] = {
    "cells": "sum",
    "count": "sum",
    "cells/mm2": "density",
    "cells/mm²": "density",
    "cells_per_mm2": "density",
}
#: statuses of image rows whose counts enter a pooled value.
_POOLED_STATUSES = ("ok", "below_min_cells", "zero_denominator")


def _rules(long: pd.DataFrame, rules: Mapping[str, str] | None) -> np.ndarray:
    rules = {**METRIC_RULES, **dict(rules or {})}
    bad = {m: r for m, r in rules.items() if r not in AGGREGATION_RULES}
    if bad:
        raise DataModelError(
            f"aggregation_rules {bad} use unknown rule(s); each metric maps to one of {AGGREGATION_RULES}"
        )
    by_metric = long["metric"].map(rules)
    by_unit = long["unit"].map(UNIT_RULES)
    return by_metric.fillna(by_unit).to_numpy(dtype=object)


def aggregate_samples(
    long: pd.DataFrame, column_map: pd.DataFrame, *, rules: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Pool a long biomarker table per ``sample_id`` into a wide table (see the module rules).

    Only evaluable images are pooled. Per-image metadata constant within every sample is
    kept; metadata varying within a sample is dropped (its names are in
    ``result.attrs["dropped_columns"]``). Status of a pooled cell, first match: no evaluable
    image → ``no_evaluable_image``; metric without rule → ``not_aggregated``; every evaluable
    row ``compartment_absent`` → ``compartment_absent``; any evaluable row ``censored`` →
    ``censored``; no counts or a zero pooled denominator → ``zero_denominator``; else ``ok``.
    Per-metric minimum-cell rules are not re-applied to pooled counts.

    Raises
    ------
    DataModelError
        If ``sample_id`` is missing for some image, or a rule name is unknown.
    """
    sid, img = Key.obs.sample_id, Key.obs.image_id
    if sid not in long or long[sid].isna().any():
        raise DataModelError(
            "aggregate='sample' needs a sample_id for every image; add obs['sample_id'] "
            "(or the image metadata's sample_id), or use aggregate=None for one row per image"
        )
    per_image = image_columns(long)
    images = long[per_image].drop_duplicates(subset=[img]).reset_index(drop=True)
    meta = [c for c in per_image if c not in (img, *QC_COLUMNS)]
    grouped = images.groupby(sid, sort=False)
    keep = [c for c in meta if grouped[c].nunique(dropna=False).max() <= 1]
    out = images.drop_duplicates(subset=[sid])[keep].reset_index(drop=True)
    ev = images[images["evaluable"].astype(bool)]
    g_ev = ev.groupby(sid, sort=False)
    out["n_images"] = out[sid].map(grouped.size()).astype(np.int64)
    out["n_images_evaluable"] = out[sid].map(g_ev.size()).fillna(0).astype(np.int64)
    out["n_cells_total"] = out[sid].map(g_ev["n_cells_total"].sum()).fillna(0).astype(np.int64)
    for c in ("tissue_area_mm2", "tumour_area_mm2"):
        out[c] = out[sid].map(g_ev[c].agg(lambda s: s.sum(min_count=len(s)))).astype(float)
    out["evaluable"] = out["n_images_evaluable"] > 0

    rule = _rules(long, rules)
    row = pd.Index(out[sid]).get_indexer(long[sid])
    col = column_index(long, column_map)
    status = long["status"].to_numpy(dtype=object)
    evaluable = long["evaluable"].to_numpy(dtype=bool)
    value = long["value"].to_numpy(dtype=float, na_value=np.nan)
    a = long["n_cells_a"].to_numpy(dtype=float, na_value=np.nan)
    b = long["n_cells_b"].to_numpy(dtype=float, na_value=np.nan)
    area = long["area_mm2"].to_numpy(dtype=float, na_value=np.nan)
    num = np.where(rule == "sum", value, a)
    den = np.where(rule == "density", area, np.where(rule == "ratio", b, 1.0))
    contrib = evaluable & np.isin(status, _POOLED_STATUSES) & np.isfinite(num) & np.isfinite(den)
    frame = pd.DataFrame(
        {
            "row": row,
            "col": col,
            "num": np.where(contrib, num, 0.0),
            "den": np.where(contrib, den, 0.0),
            "n_contrib": contrib,
            "n_ev": evaluable,
            "n_absent": evaluable & (status == "compartment_absent"),
            "n_censored": evaluable & (status == "censored"),
            "has_rule": pd.notna(rule),
        }
    )
    agg = frame.groupby(["row", "col"], sort=False).sum()
    r, c = (agg.index.get_level_values(i).to_numpy() for i in (0, 1))
    rule_of_col = pd.Series(rule).groupby(col).first().reindex(range(len(column_map))).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = np.where(agg["den"].to_numpy() > 0, agg["num"].to_numpy() / agg["den"].to_numpy(), np.nan)
    is_sum = rule_of_col[c] == "sum"
    pooled = np.where(is_sum & (agg["n_contrib"].to_numpy() > 0), agg["num"].to_numpy(), pooled)
    st = np.select(
        [
            agg["n_ev"].to_numpy() == 0,
            ~agg["has_rule"].to_numpy(dtype=bool),
            agg["n_absent"].to_numpy() == agg["n_ev"].to_numpy(),
            agg["n_censored"].to_numpy() > 0,
            np.isnan(pooled),
        ],
        ["no_evaluable_image", "not_aggregated", "compartment_absent", "censored", "zero_denominator"],
        default="ok",
    ).astype(object)
    pooled = np.where(st == "ok", pooled, np.nan)
    values = np.full((len(out), len(column_map)), np.nan)
    statuses = np.full((len(out), len(column_map)), np.nan, dtype=object)
    values[r, c] = pooled
    statuses[r, c] = st
    value_df = pd.DataFrame(values, columns=list(column_map["column"]))
    status_df = pd.DataFrame(statuses, columns=list(column_map["status_column"]))
    result = pd.concat([out, value_df, status_df], axis=1)
    result.attrs["dropped_columns"] = [c for c in meta if c not in keep]
    return result
