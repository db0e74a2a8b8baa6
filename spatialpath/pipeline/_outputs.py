"""The cohort-level outputs of a pipeline run: tables, figures and ``manifest.json``.

At the end of a run the runner calls :func:`write_cohort_outputs`. It reads each successful
image's result from the store, concatenates the per-image ``metrics`` rows into the cohort's
long biomarker table, pivots it to the wide table (one row per image) and writes both with
their data dictionary (:func:`spatialpath.export.write_tables`), writes the cohort tables of
neighbourhood enrichment and CN frequencies, draws the cohort figures and writes the manifest.
Blinded columns (``blinding.columns``) are withheld from all of it unless ``unblind=True``
(:mod:`spatialpath.pipeline._blinding`). Layout and contents: ``docs/pipeline-outputs.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spatialpath.export._schema import LONG_COLUMNS
from spatialpath.keys import Key
from spatialpath.pipeline._blinding import blinded_columns, blinding_record, restore, scrub, withhold
from spatialpath.pipeline._config import PipelineConfig
from spatialpath.pipeline._exclusions import ExclusionLog
from spatialpath.pipeline._store import ImageKey, ImageResult, ImageStore, as_key
from spatialpath.provenance import atomic_write, utc_now

__all__ = [
    "FIGURES_DIR",
    "OK_STATUSES",
    "TABLES_DIR",
    "CohortTables",
    "cohort_tables",
    "read_results",
    "write_cohort_outputs",
]

#: sub-folders of the output folder owned by :func:`write_cohort_outputs` (rewritten each run).
TABLES_DIR = "tables"
FIGURES_DIR = "figures"
#: runner statuses of an image whose result is in the store.
OK_STATUSES = ("computed", "skipped")
#: per-image statistics tables gathered into cohort tables: store table name -> output stem.
STAT_TABLES = {
    "nhood_zscore": "nhood_zscore",
    "interaction_test": "interaction_test",
    "cn_frequencies": "cn_frequencies",
}
_IDS = (Key.obs.patient_id, Key.obs.sample_id, Key.obs.image_id)


@dataclass
class CohortTables:
    """The cohort's tables as written (blinded columns already withheld or restored)."""

    long: pd.DataFrame
    wide: pd.DataFrame
    statistics: dict[str, pd.DataFrame] = field(default_factory=dict)
    images: pd.DataFrame = field(default_factory=pd.DataFrame)


def read_results(
    store: ImageStore, images: Sequence[Any], statuses: pd.DataFrame
) -> tuple[dict[ImageKey, ImageResult], pd.DataFrame]:
    """Read the result of every image whose status is computed or skipped.

    Returns the results by key and the per-image status table: one row per image of
    ``images`` (in that order) with ``sample_id, image_id, status, seconds, fingerprint``
    (from ``statuses``; ``status`` is ``"missing"`` for an image it does not list),
    ``in_tables`` (its rows are in the cohort tables), ``n_cells``, ``seed`` and ``note``
    (why an image is not in the tables).
    """
    keys = [as_key(i) for i in images]
    st = statuses.copy()
    st[Key.obs.sample_id] = st[Key.obs.sample_id].astype(str)
    st[Key.obs.image_id] = st[Key.obs.image_id].astype(str)
    by_key = st.drop_duplicates(subset=[Key.obs.sample_id, Key.obs.image_id], keep="last").set_index(
        [Key.obs.sample_id, Key.obs.image_id]
    )
    results: dict[ImageKey, ImageResult] = {}
    rows = []
    for k in keys:
        rec = by_key.loc[tuple(k)].to_dict() if tuple(k) in by_key.index else {}
        status = str(rec.get("status", "missing"))
        row = {
            Key.obs.sample_id: k.sample_id,
            Key.obs.image_id: k.image_id,
            "status": status,
            "seconds": _float(rec.get("seconds")),
            "fingerprint": None if pd.isna(rec.get("fingerprint", np.nan)) else str(rec["fingerprint"]),
            "in_tables": False,
            "n_cells": None,
            "seed": None,
            "note": None,
        }
        if status in OK_STATUSES:
            try:
                res = store.read_result(k)
            except FileNotFoundError as err:
                row["note"] = f"result unreadable: {err}"
            else:
                if "metrics" not in res.tables:
                    row["note"] = "the stored result has no 'metrics' table"
                else:
                    results[k] = res
                    row["in_tables"] = True
                    row["n_cells"] = res.extra.get("n_cells")
                    row["seed"] = res.marker.seed
        else:
            row["note"] = "failed: see the exclusion log" if status == "failed" else f"status {status}"
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(rows[0]) if rows else [Key.obs.sample_id, Key.obs.image_id])
    if len(table):
        table["n_cells"] = pd.array(table["n_cells"], dtype="Int64")
        table["seed"] = pd.array(table["seed"], dtype="Int64")
    return results, table


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _sheet(config: PipelineConfig) -> pd.DataFrame | None:
    try:
        return config.sample_sheet
    except RuntimeError:  # built in Python without a sheet: metadata as the per-image tables hold it
        return None


def _categorical_metadata(long: pd.DataFrame, sheet: pd.DataFrame | None, meta: Sequence[str]) -> None:
    """Metadata columns as categoricals, categories in the sample sheet's (else first-seen) order."""
    for c in meta:
        if c not in long.columns:
            continue
        values = long[c].astype(object).where(long[c].notna(), None)
        seen = [v for v in values if v is not None]
        first = [] if sheet is None or c not in sheet else [v for v in sheet[c].astype(object) if pd.notna(v)]
        cats = list(dict.fromkeys([*(str(v) for v in first), *(str(v) for v in seen)]))
        long[c] = pd.Categorical([None if v is None else str(v) for v in values], categories=cats)


def _cohort_long(
    config: PipelineConfig, results: Mapping[ImageKey, ImageResult], withheld: list[str], unblind: bool
) -> pd.DataFrame:
    frames = [r.tables["metrics"] for r in results.values()]
    long = pd.concat(frames, ignore_index=True)
    sheet = _sheet(config)
    blind = list(config.blinding.columns)
    meta_order = config.metadata_columns if sheet is not None else []
    # blinded columns never come from the per-image tables: from the sheet, and only when unblinded
    long = long.drop(columns=[c for c in blind if c in long.columns])
    if unblind and blind and sheet is not None:
        long = restore(long, sheet, blind, order=meta_order)
    meta = [c for c in long.columns if c not in LONG_COLUMNS]
    _categorical_metadata(long, sheet, meta)
    attrs = next((f.attrs for f in frames if f.attrs.get("biomarker_table")), {})
    long.attrs = scrub(dict(attrs), withheld)
    if "biomarker_table" in long.attrs:
        long.attrs["biomarker_table"] = {**long.attrs["biomarker_table"], "metadata": meta}
    return long


def _statistics(
    results: Mapping[ImageKey, ImageResult], per_image: pd.DataFrame, withheld: list[str]
) -> dict[str, pd.DataFrame]:
    """Cohort tables of the per-image statistics, with ids and the (visible) per-image metadata."""
    out = {}
    for name, stem in STAT_TABLES.items():
        frames = [r.tables[name] for r in results.values() if name in r.tables]
        if not frames:
            continue
        df = pd.concat(frames, ignore_index=True)
        df = df.drop(columns=[c for c in per_image.columns if c != Key.obs.image_id and c in df.columns])
        df[Key.obs.image_id] = df[Key.obs.image_id].astype(str)
        joined = per_image.merge(df, on=Key.obs.image_id, how="right")
        out[stem] = withhold(joined, withheld).reset_index(drop=True)
    if "interaction_test" in out:  # the cohort-level test: each pair's share of significant images
        from spatialpath.gr import interaction_summary

        out["interaction_summary"] = interaction_summary(out["interaction_test"])
    return out


def cohort_tables(
    config: PipelineConfig,
    results: Mapping[ImageKey, ImageResult],
    image_status: pd.DataFrame,
    *,
    unblind: bool,
) -> CohortTables:
    """The cohort's long, wide and statistics tables from the per-image results (nothing written).

    The long table is the concatenation of the images' ``metrics`` tables in ``results`` order,
    blinded columns removed (and, with ``unblind``, restored from the sample sheet), metadata
    columns categorical. The wide table is its pivot (:func:`spatialpath.export.wide_table`).
    """
    from spatialpath.export import wide_table

    withheld = blinded_columns(config.blinding.columns, unblind=unblind)
    if not results:
        empty = pd.DataFrame(columns=list(LONG_COLUMNS))
        return CohortTables(long=empty, wide=pd.DataFrame(), statistics={}, images=image_status)
    long = _cohort_long(config, results, withheld, unblind)
    wide = wide_table(long)
    wide.attrs = dict(long.attrs)
    per_image_cols = [c for c in long.columns if c in _IDS or c not in LONG_COLUMNS]
    per_image = long[per_image_cols].drop_duplicates(subset=[Key.obs.image_id])
    return CohortTables(
        long=long, wide=wide, statistics=_statistics(results, per_image, withheld), images=image_status
    )


def _table_formats(tables: CohortTables, formats: Sequence[str]) -> tuple[list[str], str | None]:
    """The configured formats, without xlsx (and the reason) when Excel cannot hold a table."""
    from spatialpath.export._excel import check_excel

    formats = list(dict.fromkeys(formats))
    if "xlsx" not in formats:
        return formats, None
    try:
        check_excel({"long": tables.long, "wide": tables.wide, **tables.statistics})
    except ValueError as e:
        return [f for f in formats if f != "xlsx"], str(e)
    return formats, None


def _write_statistics(tables: CohortTables, out: Path, formats: Sequence[str]) -> dict[str, Path]:
    from spatialpath.export._excel import write_xlsx
    from spatialpath.io import write_table

    written = {}
    for stem, df in tables.statistics.items():
        for fmt in ("csv", "parquet"):
            if fmt in formats:
                written[f"{stem}_{fmt}"] = write_table(df, out / f"{stem}.{fmt}", overwrite=True)
    if "xlsx" in formats and tables.statistics:
        path = out / "statistics.xlsx"
        with atomic_write(path, overwrite=True) as tmp:
            write_xlsx(tmp, tables.statistics)
        written["statistics_xlsx"] = path
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_write(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=130, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return path


def density_group(config: PipelineConfig, long: pd.DataFrame, *, unblind: bool) -> str | None:
    """The column the densities figure groups by (None: no such figure).

    The first blinding column once unblinded; ``arm`` when nothing is blinded; never a
    withheld column (None while blinded).
    """
    blind = [c for c in config.blinding.columns if c in long.columns]
    if config.blinding.columns and not unblind:
        return None
    if blind:
        return blind[0]
    return "arm" if "arm" in long.columns else None


def _write_figures(
    config: PipelineConfig, tables: CohortTables, out: Path, *, unblind: bool
) -> dict[str, Path]:
    from spatialpath.pipeline._figures import density_by_group, enrichment_grid

    written = {}
    nhood = tables.statistics.get("nhood_zscore")
    if nhood is not None and len(nhood):
        written["figure_nhood_grid"] = _save(enrichment_grid(nhood), out / "nhood_zscore_grid.png")
    group = density_group(config, tables.long, unblind=unblind) if len(tables.long) else None
    if group is not None and (tables.long["metric"] == "density").any():
        fig = density_by_group(tables.long, group)
        written["figure_density_by_group"] = _save(fig, out / f"density_by_{_slug(group)}.png")
    return written


def _slug(name: str) -> str:
    from spatialpath.export import sanitize_label

    return sanitize_label(name).lower()


def _remove_stale(folder: Path, keep: set[Path]) -> list[Path]:
    """Delete the files of an owned output folder that this run did not write.

    E.g. an unblinded figure left by an earlier ``--unblind`` run: the folder then holds this
    run's outputs only, so a blinded rerun cannot leave withheld values behind.
    """
    removed = []
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.resolve() not in keep:
                p.unlink()
                removed.append(p)
    return removed


def write_cohort_outputs(
    config: PipelineConfig,
    store: ImageStore,
    images: Sequence[ImageKey],
    statuses: pd.DataFrame,
    exclusions: ExclusionLog,
    *,
    unblind: bool,
) -> dict[str, Path]:
    r"""Write the cohort tables, figures and ``manifest.json`` of a run into ``config.output``.

    Parameters
    ----------
    config
        The run's configuration (:func:`spatialpath.pipeline.load_config`).
    store
        The per-image results (:class:`~spatialpath.pipeline._store.ImageStore`).
    images
        Every image of the sample sheet, in sheet order.
    statuses
        One row per image: ``sample_id, image_id, status`` (``computed``, ``skipped`` or
        ``failed``), ``seconds``, ``fingerprint``.
    exclusions
        The exclusion log (merged here into ``exclusions.json`` / ``.csv``).
    unblind
        Include the ``blinding.columns`` in the outputs; False withholds them everywhere.

    Returns
    -------
    Paths written by role: ``long_csv``, ``wide_parquet``, ``xlsx``, ``dictionary_csv``,
    ``tables_manifest`` (the tables' own manifest), ``nhood_zscore_csv``...,
    ``figure_nhood_grid``, ``figure_density_by_group`` (only when a group may be shown),
    ``exclusions_json``, ``exclusions_csv``, per-image figures as ``image_figure/<sample>/<image>/<name>``
    and ``manifest``.

    Examples
    --------
    What :func:`spatialpath.pipeline.run` does after its image tasks, here without a cluster: two
    simulated images, the density metric only, CSV tables, no figures.

    >>> import pathlib, tempfile
    >>> import pandas as pd
    >>> from spatialpath.pipeline import load_config, prepare_demo_cohort
    >>> from spatialpath.pipeline._run import _plan
    >>> from spatialpath.pipeline._store import ImageStore
    >>> from spatialpath.pipeline._tasks import process_image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = prepare_demo_cohort(folder, n_patients=2, n_cells=300, progress=False)
    >>> _ = (folder / "fast.yaml").write_text(
    ...     "version: 1\nsamples: inputs/samples.csv\noutput: results\n"
    ...     "compartments:\n  source: geojson\nmetrics: [density]\n"
    ...     "outputs:\n  formats: [csv]\n  figures: false\n")
    >>> config = load_config(folder / "fast.yaml")
    >>> store = ImageStore(config.output)
    >>> plan = _plan(config, store)
    >>> records = [process_image(config, p["row"], p["fp"], p["seed"], cohort_cn=False)
    ...            | {"fingerprint": p["fp"]} for p in plan.values()]
    >>> statuses = pd.DataFrame(records)
    >>> out = write_cohort_outputs(config, store, list(plan), statuses, store.exclusions, unblind=False)
    >>> sorted(out)
    ['dictionary_csv', 'exclusions_csv', 'exclusions_json', 'long_csv', 'manifest', 'tables_manifest',
     'wide_csv']
    >>> pd.read_csv(out["wide_csv"])[["image_id", "n_cells_total"]].values.tolist()
    [['P001_S1_I1', 300], ['P002_S1_I1', 300]]
    """
    from spatialpath.export import write_tables
    from spatialpath.pipeline._manifest import write_cohort_manifest

    started = utc_now()
    root = Path(config.output)
    blinding = blinding_record(config.blinding.columns, unblind=unblind)
    results, image_status = read_results(store, images, statuses)
    tables = cohort_tables(config, results, image_status, unblind=unblind)
    formats, xlsx_note = _table_formats(tables, config.outputs.formats)
    written: dict[str, Path] = {}
    tables_dir, figures_dir = root / TABLES_DIR, root / FIGURES_DIR
    notes: dict[str, Any] = {}
    if xlsx_note:
        notes["xlsx_skipped"] = xlsx_note
    if len(tables.long):
        parts = write_tables(
            tables.long,
            tables.wide,
            tables_dir,
            formats=formats,
            overwrite=True,
            name="biomarkers",
            parameters={"blinding": blinding, "images_in_tables": int(tables.images["in_tables"].sum())},
        )
        written |= {("tables_manifest" if k == "manifest" else k): p for k, p in parts.items()}
        written |= _write_statistics(tables, tables_dir, formats)
    else:
        notes["tables"] = "no image has a result: no cohort table was written"
    if config.outputs.figures and len(tables.long):
        written |= _write_figures(config, tables, figures_dir, unblind=unblind)
    keep = {p.resolve() for p in written.values()}
    stale = _remove_stale(tables_dir, keep) + _remove_stale(figures_dir, keep)
    if stale:
        notes["removed_stale"] = [p.relative_to(root).as_posix() for p in stale]
    excluded = exclusions.merge(images)
    written["exclusions_json"] = exclusions.root / "exclusions.json"
    written["exclusions_csv"] = exclusions.root / "exclusions.csv"
    for k, res in results.items():
        for name, path in res.figures.items():
            written[f"image_figure/{k.sample_id}/{k.image_id}/{name}"] = path
    written["manifest"] = root / "manifest.json"
    write_cohort_manifest(
        written["manifest"],
        config,
        results=results,
        image_status=tables.images,
        exclusions=excluded,
        blinding=blinding,
        outputs={k: p for k, p in written.items() if k != "manifest" and not k.startswith("image_figure/")},
        started_at=started,
        notes=notes,
    )
    return written
