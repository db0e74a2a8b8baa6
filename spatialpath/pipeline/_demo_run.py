"""The main job end to end: ``spatialpath demo`` / ``make demo`` runs the cohort pipeline.

:func:`run_demo_cohort` writes the simulated study of :func:`prepare_demo_cohort` (patients in
two arms, CD8 T density planted ``2 ** effect`` times higher in treatment) and runs
:func:`spatialpath.pipeline.run` on it: the same per-image tasks on dask.distributed, resumable
store, blinding and cohort outputs that a trial analyst's ``spatialpath run`` uses. Its summary
compares the CD8 T density in the tissue by arm with the planted effect once the arm is unblinded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from spatialpath.pipeline._demo_cohort import DEMO_BLINDED, prepare_demo_cohort
from spatialpath.pipeline._run import RunResult, run

__all__ = ["DemoRun", "demo_effect", "run_demo_cohort"]

#: the compartment whose density carries the planted effect in the summary.
EFFECT_COMPARTMENT = "tissue"


@dataclass
class DemoRun:
    """What :func:`run_demo_cohort` wrote: the config, the pipeline's result and a printable summary."""

    config: Path
    result: RunResult
    summary: str

    def __repr__(self) -> str:
        return self.summary


def demo_effect(wide: pd.DataFrame, long: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any] | None:
    """The planted arm effect as the cohort wide table shows it, or None when the arm is blinded.

    Parameters
    ----------
    wide, long
        The cohort biomarker tables of the demo run (``tables/biomarkers_wide.*`` and ``_long``).
    truth
        ``inputs/simulation_truth.csv`` (the design: arm, expected density, planted effect).

    Returns
    -------
    ``column`` (the wide column of the effect cell type's tissue density), ``observed`` (mean
    by arm), ``ratio`` (treatment / control of those means), ``planted`` (``2 ** effect``) and
    ``expected`` (the ratio of the design's expected densities, patients' random effects included).

    Examples
    --------
    >>> long = pd.DataFrame({"metric": ["density"], "compartment": ["tissue"], "cell_type": ["CD8 T"],
    ...                      "cell_type_b": [None], "unit": ["cells/mm2"]})
    >>> wide = pd.DataFrame({"arm": ["control", "treatment"], "density__tissue__CD8_T": [10.0, 21.0]})
    >>> truth = pd.DataFrame({"arm": ["control", "treatment"], "effect_cell_type": "CD8 T",
    ...                       "planted_log2_fold_change": 1.0, "expected_density_per_mm2": [10.0, 20.0]})
    >>> effect = demo_effect(wide, long, truth)
    >>> effect["ratio"], effect["planted"], effect["expected"]
    (2.1, 2.0, 2.0)
    """
    from spatialpath.export import wide_column_map
    from spatialpath.export._wide import image_columns

    if DEMO_BLINDED not in wide:
        return None
    cell_type = str(truth["effect_cell_type"].iloc[0])
    cmap = wide_column_map(long, reserved=image_columns(long))
    hit = cmap[
        (cmap["metric"] == "density")
        & (cmap["compartment"] == EFFECT_COMPARTMENT)
        & (cmap["cell_type"] == cell_type)
    ]
    if hit.empty:
        return None
    column = str(hit["column"].iloc[0])
    arms = list(pd.unique(truth[DEMO_BLINDED].astype(str)))
    observed = wide.groupby(wide[DEMO_BLINDED].astype(str))[column].mean().reindex(arms)
    expected = truth.groupby(truth[DEMO_BLINDED].astype(str))["expected_density_per_mm2"].mean()
    return {
        "cell_type": cell_type,
        "column": column,
        "arms": arms,
        "observed": observed,
        "ratio": float(observed.iloc[-1] / observed.iloc[0]),
        "planted": float(2.0 ** truth["planted_log2_fold_change"].iloc[0]),
        "expected": float(expected[arms[-1]] / expected[arms[0]]),
    }


def _summary(config: Path, result: RunResult, design: str) -> str:
    from spatialpath.export import read_tables

    out = result.output
    lines = [f"spatialpath demo: the cohort pipeline on a {design}", f"  {result!r}", f"  config: {config}"]
    long, wide = read_tables(out / "tables", "parquet")
    lines.append(
        f"  cohort biomarker tables: wide {len(wide)} rows x {wide.shape[1]:,} columns, long "
        f"{len(long):,} rows; {int(wide['evaluable'].sum())} of {len(wide)} images evaluable"
    )
    truth = pd.read_csv(config.parent / "inputs" / "simulation_truth.csv")
    effect = demo_effect(wide, long, truth)
    if effect is None:
        lines.append(
            f"  '{DEMO_BLINDED}' is blinded in every table and figure; rerun with --unblind to compare "
            "the arms (nothing is recomputed)"
        )
    else:
        means = ", ".join(f"{arm} {v:.1f}" for arm, v in effect["observed"].items())
        lines.append(
            f"  {effect['cell_type']} density in {EFFECT_COMPARTMENT} ({effect['column']}), mean by "
            f"{DEMO_BLINDED}: {means} cells/mm2; {effect['arms'][-1]} / {effect['arms'][0]} "
            f"{effect['ratio']:.2f} (planted {effect['planted']:.2f}, {effect['expected']:.2f} expected "
            "with these patients' random effects)"
        )
    lines += ["  outputs:", f"    tables   {out / 'tables'}", f"    figures  {out / 'figures'}"]
    lines.append(f"    manifest {out / 'manifest.json'}")
    return "\n".join(lines)


def run_demo_cohort(
    out_dir: str | os.PathLike[str] = "demo-output",
    *,
    seed: int = 0,
    n_patients: int = 8,
    n_cells: int = 3_000,
    n_perms: int = 200,
    n_workers: int | None = None,
    client: Any = None,
    unblind: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> DemoRun:
    """Write the simulated demo cohort to ``out_dir`` and run the cohort pipeline on it.

    Parameters
    ----------
    out_dir
        Folder of the study: ``run.yaml`` and ``inputs/`` (:func:`prepare_demo_cohort`), and the
        pipeline's outputs in ``results/`` (``docs/pipeline-outputs.md``).
    seed, n_patients, n_cells, n_perms
        The cohort's seed (also the pipeline's), patients (one image each, alternating arms),
        cells per image and permutations of the neighbourhood enrichment.
    n_workers, client
        Workers of the local dask cluster (default: sized to the machine), or a running
        ``distributed.Client`` to use instead.
    unblind
        Write the arm into the cohort tables and figures (it is blinded by default, as in a trial).
    overwrite
        Rewrite the inputs of an earlier demo in ``out_dir``; the pipeline then recomputes only
        what changed (nothing, for the same seed and sizes).
    progress
        Progress bars.

    Returns
    -------
    DemoRun
        The config path, the pipeline's :class:`~spatialpath.pipeline.RunResult` and the summary.

    Raises
    ------
    FileExistsError
        If ``out_dir`` holds a demo and ``overwrite`` is False (nothing is written).
    """
    config = prepare_demo_cohort(
        out_dir,
        seed=seed,
        n_patients=n_patients,
        n_cells=n_cells,
        n_perms=n_perms,
        overwrite=overwrite,
        progress=progress,
    )
    result = run(config, client=client, n_workers=n_workers, unblind=unblind, progress=progress)
    design = f"simulated cohort (seed {seed}, {n_patients} patients, {n_cells:,} cells per image)"
    return DemoRun(config, result, _summary(config, result, design))
