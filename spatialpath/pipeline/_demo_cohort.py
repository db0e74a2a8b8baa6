"""The demo cohort: a simulated study on disk, ready for ``spatialpath run``.

:func:`prepare_demo_cohort` writes what a real study would hand over: one ``.h5ad`` of cells
per image, its compartments as GeoJSON, a sample sheet with the patients' arms and a
``run.yaml``. ``spatialpath.pipeline.run(prepare_demo_cohort(folder))`` is then the whole demo,
and it exercises the real job (readers, per-image workers, store, blinding, cohort outputs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from spatialpath.keys import Key
from spatialpath.provenance import atomic_write

__all__ = ["DEMO_BLINDED", "prepare_demo_cohort"]

#: the sample-sheet column the demo blinds.
DEMO_BLINDED = "arm"


def _config(seed: int, n_perms: int, metrics: list[str] | None) -> dict[str, Any]:
    return {
        "version": 1,
        "samples": "inputs/samples.csv",
        "output": "results",
        "seed": seed,
        "graph": {"method": "knn", "n_neighbors": 6},
        "statistics": {"nhood_enrichment": {"n_perms": n_perms}},
        "compartments": {"source": "geojson"},
        "metrics": metrics,
        "outputs": {"formats": ["csv", "parquet", "xlsx"], "figures": True},
        "blinding": {"columns": [DEMO_BLINDED]},
    }


def prepare_demo_cohort(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    n_patients: int = 8,
    n_cells: int = 3_000,
    effect: float = 1.0,
    n_perms: int = 200,
    metrics: list[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a simulated cohort with a planted arm effect, and its pipeline config; return the config.

    The cohort is :func:`spatialpath.datasets.simulate_cohort` (patients alternate between arms
    ``control`` and ``treatment``; CD8 T density multiplied by ``2 ** effect`` in treatment,
    with patient and sample random effects). Files in ``out_dir``::

        run.yaml                          the pipeline config (output: results/)
        inputs/samples.csv                one row per image: ids, cells, regions, arm
        inputs/cells/<image>.h5ad         the image's cells in the data model (no arm column)
        inputs/regions/<image>.geojson    the simulator's true tissue, tumour and stroma (µm)
        inputs/simulation_truth.csv       the design: arm, random effects, expected CD8 T density

    The sheet's technology is ``simulated`` (read as an ``.h5ad`` in the data model); the arm
    is only in the sheet, and ``run.yaml`` blinds it (``blinding.columns: [arm]``), as a study
    would; the config computes the neighbourhood enrichment (``n_perms`` permutations) and
    ``metrics`` (None: the default metrics).

    Parameters
    ----------
    out_dir
        Folder to write (created if missing).
    seed, n_patients, n_cells, effect
        The cohort's seed, number of patients (one sample and one image each), cells per image
        and planted log2 fold change of CD8 T density in the treatment arm.
    n_perms, metrics
        Written into ``run.yaml``.
    overwrite
        Replace the files of an earlier call.
    progress
        Progress bar while simulating.

    Returns
    -------
    The path of ``run.yaml``.

    Raises
    ------
    FileExistsError
        If ``run.yaml`` exists and ``overwrite`` is False (nothing is written).

    Examples
    --------
    >>> import tempfile
    >>> from spatialpath.pipeline import load_config
    >>> cfg = load_config(prepare_demo_cohort(tempfile.mkdtemp(), n_patients=2, n_cells=300, progress=False))
    >>> cfg.sample_sheet[["image_id", "technology", "arm"]].values.tolist()
    [['P001_S1_I1', 'simulated', 'control'], ['P002_S1_I1', 'simulated', 'treatment']]
    >>> cfg.blinding.columns
    ['arm']
    """
    import yaml

    from spatialpath.datasets import simulate_cohort, simulation_regions
    from spatialpath.io import write_h5ad
    from spatialpath.regions import write_geojson

    out = Path(out_dir)
    config_path = out / "run.yaml"
    if config_path.exists() and not overwrite:
        raise FileExistsError(
            f"{config_path} exists; nothing was written. Pass overwrite=True to replace the demo cohort"
        )
    cohort = simulate_cohort(
        n_patients=n_patients, n_cells=n_cells, effect=effect, seed=seed, progress=progress
    )
    regions = simulation_regions(cohort)
    design: pd.DataFrame = cohort.uns[Key.uns.simulation]["design"]
    inputs = out / "inputs"
    images_meta = cohort.uns[Key.uns.spatialpath][Key.uns.images]
    colors_key = Key.uns.colors(Key.obs.cell_type)
    rows = []
    for rec in design.to_dict("records"):
        image = str(rec[Key.obs.image_id])
        cells = cohort[cohort.obs[Key.obs.image_id].astype(str).to_numpy() == image].copy()
        cells.obs = cells.obs.drop(columns=[DEMO_BLINDED])  # the arm is in the sample sheet only
        for key in (Key.obs.patient_id, Key.obs.sample_id, Key.obs.image_id):
            cells.obs[key] = pd.Categorical(cells.obs[key].astype(str))
        cells.uns = {Key.uns.spatialpath: {Key.uns.images: {image: images_meta[image]}}}
        if colors_key in cohort.uns:
            cells.uns[colors_key] = list(cohort.uns[colors_key])
        cells_path = inputs / "cells" / f"{image}.h5ad"
        regions_path = inputs / "regions" / f"{image}.geojson"
        write_h5ad(cells, cells_path, overwrite=overwrite)
        sub = regions[regions[Key.obs.image_id].astype(str) == image].reset_index(drop=True)
        write_geojson(sub, regions_path, overwrite=overwrite)
        rows.append(
            {
                Key.obs.patient_id: rec[Key.obs.patient_id],
                Key.obs.sample_id: rec[Key.obs.sample_id],
                Key.obs.image_id: image,
                "path": cells_path.relative_to(inputs).as_posix(),
                "technology": "simulated",
                "regions_path": regions_path.relative_to(inputs).as_posix(),
                DEMO_BLINDED: rec[DEMO_BLINDED],
            }
        )
    with atomic_write(inputs / "samples.csv", overwrite=overwrite) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, lineterminator="\n")
    with atomic_write(inputs / "simulation_truth.csv", overwrite=overwrite) as tmp:
        truth = design.assign(
            effect_cell_type=cohort.uns[Key.uns.simulation]["effect"]["cell_type"],
            planted_log2_fold_change=float(effect),
        )
        truth.to_csv(tmp, index=False, lineterminator="\n")
    text = "# spatialpath demo cohort (spatialpath.pipeline.prepare_demo_cohort)\n" + yaml.safe_dump(
        _config(seed, n_perms, metrics), sort_keys=False
    )
    with atomic_write(config_path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return config_path
