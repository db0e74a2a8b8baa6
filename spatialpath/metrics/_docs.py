"""``docs/metrics.md``, rendered from the registry (``python -m spatialpath.metrics docs/metrics.md``)."""

from __future__ import annotations

from spatialpath.metrics._registry import COLUMNS, LEVELS, REGISTRY, STATUSES, Metric

__all__ = ["render_metrics_doc"]

_COLUMN_DOCS = {
    "image_id": "image (ROI, core, field) the row belongs to",
    "compartment": "`tissue` (whole tissue) or a compartment of the regions table; overlapping allowed",
    "metric": "registered metric name (sections below)",
    "cell_type": "type A (or the CN label for `neighbourhood` metrics; empty for image-level metrics)",
    "cell_type_b": "type B of a pair metric, else empty",
    "value": "the number; NaN only with a non-ok `status`",
    "unit": "unit of `value`",
    "n_cells_a": "cells behind the value: A cells (or numerator count), as documented per metric",
    "n_cells_b": "B cells, or the denominator count, as documented per metric",
    "area_mm2": "area of the row's compartment from the regions (mm²; NaN when absent)",
    "status": "one of the statuses below",
    "parameters": "canonical JSON (sorted keys) of the metric's parameters, defaults included",
}

_HEADER = """\
# Clinical tumour-microenvironment metrics

<!-- Generated from spatialpath.metrics.REGISTRY: do not edit by hand. Regenerate with
     .venv/bin/python -m spatialpath.metrics docs/metrics.md
     (tests/metrics/test_registry.py fails when this file and the registry differ). -->

`spatialpath.metrics` computes per image, per compartment and per cell type (or type pair) the
numbers a clinical analysis reports: counts, proportions, densities per mm², tumour/stroma
ratios, immune phenotype, nearest-neighbour distances, mixing scores, aggregation and
heterogeneity indices, CN frequencies and cross-function AUCs. Every metric below is declared
once in the registry, with this documentation.

```python
import spatialpath.metrics as spm

table = spm.compute(adata, regions, ["density", "mixing_score"], params={"mixing_score": {"radius_um": 30}})
```

`regions` is a GeoDataFrame (`image_id`, `compartment`, `geometry` in µm); areas come from these
regions (tissue masks or cell-derived tissue polygons), never from a convex hull. Each metric is
also a function of plain data: `spm.density(spm.ImageData.from_arrays(xy, cell_types, {"tissue": polygon}))`.

## Output table

`compute` returns a long table with exactly these columns:

| column | meaning |
|---|---|
"""

_RULES = """
Rules:

- every category of `obs[cluster_key]` appears in every image: counts, proportions and
  densities of an absent type are **0** with status `ok` (structural zeros);
- `value` is NaN only where it is undefined (a distance to an absent type, a ratio with a zero
  denominator, a compartment the image lacks), always with a non-ok status;
- metrics with scope *image* compare compartments (tumour vs stroma) and are reported once per
  image with compartment `tissue`.
"""


_SCOPES = {"image": "once per image (compartment `tissue`)", "compartment": "every compartment"}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _metric_section(m: Metric) -> list[str]:
    lines = [f"### `{m.name}`", "", f"**{_cell(m.label)}.** {_cell(m.definition)}", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| formula | {_cell(m.formula)} |",
        f"| unit | `{m.unit}` |",
        f"| level | {m.level} |",
        f"| scope | {_SCOPES[m.scope]} |",
        f"| in default set | {'yes' if m.default else 'no (name it in `metrics=`)'} |",
        f"| reference | {_cell(m.reference)} |",
    ]
    if m.value_labels:
        codes = ", ".join(f"{k} = {v}" for k, v in m.value_labels.items())
        lines.append(f"| values | {codes} |")
    lines.append("")
    if m.parameters:
        lines += ["| parameter | default | meaning |", "|---|---|---|"]
        lines += [f"| `{p.name}` | `{p.default!r}` | {_cell(p.doc)} |" for p in m.parameters]
    else:
        lines.append("No parameters.")
    lines.append("")
    return lines


def render_metrics_doc() -> str:
    """The Markdown of ``docs/metrics.md``, from :data:`~spatialpath.metrics.REGISTRY`.

    Examples
    --------
    >>> text = render_metrics_doc()
    >>> text.startswith("# Clinical tumour-microenvironment metrics"), "### `density`" in text
    (True, True)
    """
    lines = [_HEADER.rstrip("\n")]
    lines += [f"| `{c}` | {_COLUMN_DOCS[c]} |" for c in COLUMNS]
    lines += ["", "| status | meaning |", "|---|---|"]
    lines += [f"| `{k}` | {_cell(v)} |" for k, v in STATUSES.items()]
    lines += [_RULES.rstrip("\n"), "", "Levels:", ""]
    lines += [f"- `{k}`: {v}" for k, v in LEVELS.items()]
    lines += ["", "## Metrics", "", "| metric | label | unit | level |", "|---|---|---|---|"]
    lines += [
        f"| [`{m.name}`](#{m.name}) | {_cell(m.label)} | `{m.unit}` | {m.level} |" for m in REGISTRY.values()
    ]
    lines.append("")
    for m in REGISTRY.values():
        lines += _metric_section(m)
    return "\n".join(lines).rstrip("\n") + "\n"
