"""One dataset analysed in one process: ``spatialpath demo --input FILE``.

(``spatialpath demo`` without ``--input`` runs the cohort pipeline on the simulated cohort:
:mod:`spatialpath.pipeline._demo_run`.) On a user's ``.h5ad`` file or cell table, or on the
simulated cohort when no input is given (``run_demo()``, in memory, without dask), it
validates the cells, counts cell types per sample,
and writes a tissue map, a density bar chart, the AnnData, the count table (CSV and Parquet),
the neighbourhood enrichment, the biomarker tables (``biomarker_tables/``: long and wide, CSV,
Parquet and Excel, data dictionary and their own ``manifest.json``) and ``manifest.json``.

Regions of the biomarker tables: the simulator's true tissue, tumour and stroma polygons for the
simulated cohort; for ``--input`` data, the tissue of each image from its cells
(:func:`spatialpath.regions.tissue_from_cells`, default parameters), so only ``tissue`` metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd

from spatialpath.keys import Key
from spatialpath.provenance import atomic_write, check_output_path, utc_now, write_manifest

__all__ = ["DemoResult", "run_demo"]

#: sub-folder of the biomarker tables (written by :func:`spatialpath.export.write_tables`).
TABLES_DIR = "biomarker_tables"
#: formats of the biomarker tables (Excel is dropped, with a note, when a table exceeds its limits).
TABLE_FORMATS = ("csv", "parquet", "xlsx")


@dataclass
class DemoResult:
    """What :func:`run_demo` wrote, and the table it computed."""

    out_dir: Path
    outputs: dict[str, Path] = field(default_factory=dict)
    summary: str = ""


def _check_input(input_path: Path) -> None:
    if not input_path.exists():
        raise FileNotFoundError(f"--input {input_path} does not exist")


def _load(
    input_path: Path | None, seed: int, n_patients: int, n_cells: int, table_options: dict[str, Any]
) -> tuple[ad.AnnData, str]:
    if input_path is None:
        from spatialpath.datasets import simulate_cohort

        adata = simulate_cohort(n_patients=n_patients, n_cells=n_cells, seed=seed, progress=True)
        return adata, f"simulated cohort (seed {seed}, {n_patients} patients, {n_cells} cells per image)"
    if input_path.suffix == ".h5ad":
        adata = ad.read_h5ad(input_path)
        if Key.obsm.spatial in adata.obsm:  # already in the data model
            return adata, str(input_path)
    from spatialpath.io import read_cell_table

    adata = read_cell_table(input_path, **table_options)
    if Key.obs.cell_type not in adata.obs:  # e.g. an MCMICRO table before phenotyping
        adata.obs[Key.obs.cell_type] = pd.Categorical(["cell"] * adata.n_obs)
    if Key.obs.image_id not in adata.obs:
        adata.obs[Key.obs.image_id] = pd.Categorical([input_path.stem] * adata.n_obs)
    return adata, str(input_path)


def run_demo(
    out_dir: str | os.PathLike[str] = "demo-output",
    *,
    seed: int = 0,
    n_patients: int = 6,
    n_cells: int = 5_000,
    input_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    command: str | None = None,
    table_options: dict[str, Any] | None = None,
) -> DemoResult:
    """Run the demo job and write its outputs to ``out_dir``.

    Parameters
    ----------
    out_dir
        Output folder (created if missing).
    seed, n_patients, n_cells
        Design of the simulated cohort used when ``input_path`` is None.
    input_path
        Data to use instead of the simulation: an ``.h5ad`` file in the spatialpath data model,
        or any cell table :func:`spatialpath.io.read_cell_table` reads (MCMICRO, steinbock,
        inForm, plain x/y tables). Cells without a cell-type column are counted as ``"cell"``.
    overwrite
        Replace outputs of an earlier run in ``out_dir``.
    command
        The command line recorded in the manifest (default: the equivalent function call).
    table_options
        Keyword arguments for :func:`spatialpath.io.read_cell_table` (``schema``,
        ``pixel_size_um``, ``units``...), recorded in the manifest.

    Returns
    -------
    :class:`DemoResult` with the output paths and the printed summary.
    """
    import matplotlib.pyplot as plt

    from spatialpath import pl
    from spatialpath.export import biomarker_table, cell_counts, write_tables
    from spatialpath.io import write_h5ad, write_table
    from spatialpath.metrics import default_metrics
    from spatialpath.model import validate_cells

    started = utc_now()
    out = Path(out_dir)
    inp = Path(input_path) if input_path is not None else None
    inputs = [inp] if inp is not None else []
    if inp is not None:
        _check_input(inp)
    check_output_path(out, inputs)
    table_options = dict(table_options or {})
    adata, source = _load(inp, seed, n_patients, n_cells, table_options)
    validate_cells(adata, cluster_key=Key.obs.cell_type, library_key=Key.obs.image_id)

    metadata = [c for c in ("arm",) if c in adata.obs]
    level = Key.obs.sample_id if Key.obs.sample_id in adata.obs else Key.obs.image_id

    paths = {
        "tissue_map": out / "tissue_map.png",
        "density_chart": out / "cell_type_density.png",
        "cells": out / "cells.h5ad",
        "counts_csv": out / "cell_counts.csv",
        "counts_parquet": out / "cell_counts.parquet",
    }
    if adata.obs[Key.obs.cell_type].nunique() >= 2:
        paths["enrichment_heatmap"] = out / "nhood_enrichment.png"
        paths["enrichment_csv"] = out / "nhood_enrichment.csv"
    table_paths = _table_paths(out / TABLES_DIR, TABLE_FORMATS)
    _refuse_existing(out, [*paths.values(), *table_paths.values(), out / "manifest.json"], overwrite)

    table = cell_counts(adata, level=level, metadata=metadata)
    enrichment = _enrichment(adata, seed)
    regions, regions_record = _regions(adata, simulated=inp is None)
    long, wide = biomarker_table(adata, regions, metadata=metadata)
    formats, xlsx_note = _table_formats(long, wide)
    images = list(adata.obs[Key.obs.image_id].astype("category").cat.categories)[:6]
    fig = pl.tissue_map(adata, images=images)
    _save_figure(fig, paths["tissue_map"], overwrite, inputs)
    plt.close(fig)
    value = "density_per_mm2" if table["density_per_mm2"].notna().all() else "proportion"
    fig = pl.density_bars(table, value=value, group=metadata[0] if metadata else None)
    _save_figure(fig, paths["density_chart"], overwrite, inputs)
    plt.close(fig)
    if enrichment is not None:
        fig = pl.nhood_heatmap(enrichment, Key.obs.cell_type)
        _save_figure(fig, paths["enrichment_heatmap"], overwrite, inputs)
        plt.close(fig)
        write_table(enrichment.table, paths["enrichment_csv"], overwrite=overwrite, inputs=inputs)
    write_h5ad(adata, paths["cells"], overwrite=overwrite, inputs=inputs)
    write_table(table, paths["counts_csv"], overwrite=overwrite, inputs=inputs)
    write_table(table, paths["counts_parquet"], overwrite=overwrite, inputs=inputs)
    tables_params = {
        "out_dir": TABLES_DIR,
        "regions": regions_record,
        "metrics": default_metrics(),
        "formats": formats,
        **({"xlsx_skipped": xlsx_note} if xlsx_note else {}),
    }
    written = write_tables(
        long,
        wide,
        out / TABLES_DIR,
        formats=formats,
        overwrite=overwrite,
        inputs=inputs,
        parameters={"regions": regions_record},
    )
    # every table file, and the tables' own manifest, is hashed in the demo's manifest too
    paths |= {f"biomarkers_{k}": p for k, p in written.items()}

    params: dict[str, Any] = {"out_dir": str(out), "overwrite": overwrite, "level": level, "value": value}
    if enrichment is not None:
        params["nhood_enrichment"] = {"graph": f"{_DEMO_GRAPH_K}-NN per image", "n_perms": _DEMO_PERMS}
    params["biomarker_tables"] = tables_params | {"biomarker_table": long.attrs["biomarker_table"]}
    if inp is None:
        params |= {"n_patients": n_patients, "n_cells": n_cells}
    else:
        params |= {"table_options": table_options}
    paths["manifest"] = out / "manifest.json"
    write_manifest(
        paths["manifest"],
        command=command or f"spatialpath.run_demo({str(out)!r}, seed={seed}, input_path={input_path!r})",
        parameters=params,
        seeds={"seed": seed} if inp is None else {},
        inputs=inputs,
        outputs=[p for k, p in paths.items() if k != "manifest"],
        started_at=started,
        overwrite=overwrite,
    )
    summary = _summary(adata, table, source, value, metadata, paths, long, wide, xlsx_note)
    return DemoResult(out_dir=out, outputs=paths, summary=summary)


_DEMO_GRAPH_K = 6
_DEMO_PERMS = 1000


def _enrichment(adata: ad.AnnData, seed: int) -> Any:
    """6-NN graph per image and permutation neighbourhood enrichment (None with < 2 cell types)."""
    from spatialpath import gr

    if adata.obs[Key.obs.cell_type].nunique() < 2:
        return None
    gr.knn_graph(adata, _DEMO_GRAPH_K)
    return gr.nhood_enrichment(adata, Key.obs.cell_type, n_perms=_DEMO_PERMS, seed=seed, copy=True)


def _table_paths(tables_dir: Path, formats: tuple[str, ...]) -> dict[str, Path]:
    """The files :func:`spatialpath.export.write_tables` writes in ``tables_dir``."""
    from spatialpath.export._write_tables import _paths

    return _paths(tables_dir, "biomarkers", formats)


def _refuse_existing(out: Path, targets: list[Path], overwrite: bool) -> None:
    """All or nothing: refuse before computing or writing anything when an output exists."""
    existing = [p.relative_to(out).as_posix() for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds {existing[:4]}{' ...' if len(existing) > 4 else ''}; nothing was "
            "written. Pass overwrite=True (or --overwrite) to replace them, or choose another folder"
        )


def _regions(adata: ad.AnnData, *, simulated: bool) -> tuple[Any, dict[str, Any]]:
    """Compartments of the biomarker tables and how they were made (for the manifests)."""
    from spatialpath.regions import tissue_from_cells

    if simulated:
        from spatialpath.datasets import simulation_regions

        regions = simulation_regions(adata)  # true tissue, tumour and stroma of each image
        record = {"source": "simulation truth", "compartments": list(pd.unique(regions["compartment"]))}
    else:
        regions = tissue_from_cells(adata)
        made = regions.attrs[Key.uns.spatialpath]
        record = {"source": made["source"], "compartments": ["tissue"], **made["tissue_from_cells"]}
    return regions, record


def _table_formats(long: pd.DataFrame, wide: pd.DataFrame) -> tuple[list[str], str | None]:
    """All of :data:`TABLE_FORMATS`, or CSV and Parquet with the reason when Excel cannot hold the tables."""
    from spatialpath.export._excel import check_excel

    try:
        check_excel({"long": long, "wide": wide})
    except ValueError as e:
        return [f for f in TABLE_FORMATS if f != "xlsx"], str(e)
    return list(TABLE_FORMATS), None


def _save_figure(fig: Any, path: Path, overwrite: bool, inputs: list[Path]) -> None:
    with atomic_write(path, overwrite=overwrite, inputs=inputs) as tmp:
        fig.savefig(tmp, format="png", dpi=130, metadata={"Software": None}, bbox_inches="tight")


def _summary(
    adata: ad.AnnData,
    table: Any,
    source: str,
    value: str,
    metadata: list[str],
    paths: dict[str, Path],
    long: pd.DataFrame,
    wide: pd.DataFrame,
    xlsx_note: str | None,
) -> str:
    obs = adata.obs
    lines = [
        f"spatialpath demo on {source}",
        f"  {adata.n_obs:,} cells, {obs[Key.obs.image_id].nunique()} images"
        + (f", {obs[Key.obs.sample_id].nunique()} samples" if Key.obs.sample_id in obs else "")
        + (f", {obs[Key.obs.patient_id].nunique()} patients" if Key.obs.patient_id in obs else ""),
    ]
    by = [metadata[0]] if metadata else []
    types = list(pd.unique(table[Key.obs.cell_type]))  # the table's cell-type order
    grouped = table.groupby([*by, Key.obs.cell_type])[value].mean()
    mean = (grouped.unstack(0) if by else grouped.to_frame(value)).reindex(types)
    lines.append(f"  mean {value} per cell type" + (f" by {by[0]}:" if by else ":"))
    lines += ["    " + row for row in mean.round(1).to_string().splitlines()]
    sim = adata.uns.get(Key.uns.simulation, {})
    truth = sim.get("effect")
    if truth and by and len(mean.columns) >= 2:
        ct, arms = truth["cell_type"], list(truth["arms"])
        ratio = mean.loc[ct, arms[1]] / mean.loc[ct, arms[0]]
        planted = 2 ** truth["log2_fold_change_per_arm"]
        design = sim["design"].groupby("arm")["expected_density_per_mm2"].mean()
        lines.append(
            f"  {ct} {value}, {arms[1]} / {arms[0]}: observed {ratio:.2f}; planted arm effect {planted:.2f}, "
            f"{design[arms[1]] / design[arms[0]]:.2f} expected with these patients' random effects"
        )
    lines += _tables_summary(long, wide, by, truth, xlsx_note)
    shown = {k: p for k, p in paths.items() if not k.startswith("biomarkers_") and k != "manifest"}
    shown |= {"biomarker_tables": paths["biomarkers_manifest"].parent, "manifest": paths["manifest"]}
    width = max(map(len, shown))
    lines.append("  outputs:")
    lines += [f"    {k:<{width}} {p}" for k, p in shown.items()]
    return "\n".join(lines)


def _tables_summary(
    long: pd.DataFrame, wide: pd.DataFrame, by: list[str], truth: dict[str, Any] | None, xlsx_note: str | None
) -> list[str]:
    """Shape and QC of the biomarker tables, and the planted effect read from the wide table."""
    from spatialpath.export import wide_column_map
    from spatialpath.export._wide import image_columns

    lines = [
        f"  biomarker tables: wide {len(wide)} rows x {wide.shape[1]:,} columns, long {len(long):,} rows; "
        f"{int(wide['evaluable'].sum())} of {len(wide)} images evaluable"
        + (" (no Excel file: it cannot hold them)" if xlsx_note else "")
    ]
    if truth and by:
        cmap = wide_column_map(long, reserved=image_columns(long))
        key = cmap[
            (cmap["metric"] == "density")
            & (cmap["compartment"] == "tumour")
            & (cmap["cell_type"] == truth["cell_type"])
        ]
        if len(key):
            col = key["column"].iloc[0]
            mean = wide.groupby(by[0], observed=True)[col].mean()
            text = ", ".join(f"{arm} {v:.1f}" for arm, v in mean.items())
            arms = list(truth["arms"])
            if set(arms) <= set(mean.index):
                text += f" cells/mm2 ({arms[1]} / {arms[0]} {mean[arms[1]] / mean[arms[0]]:.2f})"
            lines.append(f"  {truth['cell_type']} density in tumour ({col}), mean by {by[0]}: {text}")
    return lines
