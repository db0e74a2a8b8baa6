"""``simulate_cohort``: patients in arms, with patient random effects and a planted arm effect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from spatialpath.datasets import _profiles as P
from spatialpath.datasets._simulate import Mode, simulate_tissue
from spatialpath.keys import Key

__all__ = ["simulate_cohort"]


def simulate_cohort(
    n_patients: int = 8,
    samples_per_patient: int = 1,
    arms: Sequence[str] = ("control", "treatment"),
    effect: float = 1.0,
    *,
    effect_cell_type: str = "CD8 T",
    images_per_sample: int = 1,
    patient_sd: float = 0.3,
    sample_sd: float = 0.1,
    n_cells: int = 5_000,
    mode: Mode = "planted",
    seed: int = 0,
    progress: bool = True,
    **tissue_kw: Any,
) -> ad.AnnData:
    """Simulate a cohort of tissue images with a known arm effect, in one AnnData.

    Patients are assigned to ``arms`` in turn (patient 1 to ``arms[0]``, patient 2 to
    ``arms[1]``, ...). The density of ``effect_cell_type`` in every neighbourhood of every image
    is multiplied by ``2 ** (effect * treated + u_patient + e_sample)``, where ``treated`` is 1
    outside the reference arm ``arms[0]`` (each later arm ``j`` gets ``j * effect``),
    ``u_patient ~ N(0, patient_sd)`` is shared by all images of a patient and
    ``e_sample ~ N(0, sample_sd)`` by all images of a sample (log2 scale). Each image is a
    :func:`simulate_tissue` with its own seed derived from ``(seed, patient, sample, image)``,
    so adding patients changes no existing image.

    Parameters
    ----------
    n_patients, samples_per_patient, images_per_sample
        Size of the design: ``patient_id`` > ``sample_id`` > ``image_id``.
    arms
        Arm names; the first is the reference.
    effect
        Planted log2 fold change of ``effect_cell_type`` density per arm step.
    effect_cell_type
        One of :data:`CELL_TYPES`.
    patient_sd, sample_sd
        Standard deviations (log2) of the patient and sample random effects.
    n_cells
        Cells per image.
    mode
        ``"planted"`` or ``"null"`` (see :func:`simulate_tissue`; the arm and random effects
        are applied in both).
    seed
        Cohort seed.
    progress
        Show a progress bar.
    **tissue_kw
        Passed to :func:`simulate_tissue` (e.g. ``cd8_exclusion``, ``tumour_fraction``).

    Returns
    -------
    AnnData with every image's cells; ``obs`` has ``patient_id``, ``sample_id``, ``image_id``,
    ``arm`` and ``cell_type``. ``uns["simulation"]`` holds ``design`` (one row per image: ids,
    arm, random effects, log2 multiplier and the expected ``effect_cell_type`` density per mm²
    of tissue), ``effect``, ``images`` (each image's own ground truth) and ``cells``.

    Examples
    --------
    >>> cohort = simulate_cohort(n_patients=4, n_cells=500, progress=False)
    >>> cohort.obs.groupby("arm", observed=True)["patient_id"].nunique().to_dict()
    {'control': 2, 'treatment': 2}
    """
    if n_patients < 1 or samples_per_patient < 1 or images_per_sample < 1:
        raise ValueError("n_patients, samples_per_patient and images_per_sample must all be >= 1")
    arms = [str(a) for a in arms]
    if len(arms) < 1 or len(set(arms)) != len(arms):
        raise ValueError(f"arms must be one or more distinct names, got {arms}")
    if effect_cell_type not in P.CELL_TYPES:
        raise ValueError(f"effect_cell_type must be one of {list(P.CELL_TYPES)}, got {effect_cell_type!r}")
    if patient_sd < 0 or sample_sd < 0:
        raise ValueError("patient_sd and sample_sd must be >= 0")
    if "density" in tissue_kw and tissue_kw["density"] is not None:
        base = tissue_kw.pop("density").copy()
    else:
        tissue_kw.pop("density", None)
        base = P.density_table()
    base = P.apply_effects(
        base, tissue_kw.pop("cd8_exclusion", None), tissue_kw.pop("macrophage_border_enrichment", None)
    )

    parts, design, truths = [], [], {}
    bar = tqdm(
        total=n_patients * samples_per_patient * images_per_sample,
        desc="simulating cohort",
        disable=not progress,
    )
    for p in range(n_patients):
        patient_id = f"P{p + 1:03d}"
        arm_idx = p % len(arms)
        u = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, p))).normal(0, patient_sd)
        for s in range(samples_per_patient):
            sample_id = f"{patient_id}_S{s + 1}"
            e = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, p, s))).normal(0, sample_sd)
            log2_mult = effect * arm_idx + u + e
            dens = base.copy()
            dens[effect_cell_type] *= 2.0**log2_mult
            for i in range(images_per_sample):
                image_id = f"{sample_id}_I{i + 1}"
                tis = simulate_tissue(
                    np.random.SeedSequence(seed, spawn_key=(2, p, s, i)),
                    n_cells=n_cells,
                    mode=mode,
                    density=dens,
                    image_id=image_id,
                    sample_id=sample_id,
                    patient_id=patient_id,
                    **tissue_kw,
                )
                a = tis.adata
                a.obs["arm"] = arms[arm_idx]
                truth = a.uns[Key.uns.simulation]
                tissue_area = a.uns[Key.uns.spatialpath][Key.uns.images][image_id]["tissue_area_um2"]
                zone_area = np.array([truth["zone_area_um2"][z] for z in P.NEIGHBOURHOODS])
                expected = float(
                    zone_area @ truth["density_per_mm2"][effect_cell_type].to_numpy() / tissue_area
                )
                design.append(
                    {
                        Key.obs.patient_id: patient_id,
                        Key.obs.sample_id: sample_id,
                        Key.obs.image_id: image_id,
                        "arm": arms[arm_idx],
                        "patient_effect_log2": float(u),
                        "sample_effect_log2": float(e),
                        "log2_multiplier": float(log2_mult),
                        "expected_density_per_mm2": expected,
                    }
                )
                truths[image_id] = {k: v for k, v in truth.items() if k != "cells"}
                parts.append(a)
                bar.update()
    bar.close()
    return _combine(parts, design, truths, arms, effect, effect_cell_type, seed, mode)


def _combine(
    parts: list[ad.AnnData],
    design: list[dict[str, Any]],
    truths: dict[str, Any],
    arms: list[str],
    effect: float,
    effect_cell_type: str,
    seed: int,
    mode: str,
) -> ad.AnnData:
    cells = pd.concat([a.uns[Key.uns.simulation]["cells"] for a in parts])
    images = {k: v for a in parts for k, v in a.uns[Key.uns.spatialpath][Key.uns.images].items()}
    out = ad.concat(parts, axis=0, merge="same", uns_merge=None)
    for key in (Key.obs.patient_id, Key.obs.sample_id, Key.obs.image_id):
        out.obs[key] = pd.Categorical(
            out.obs[key].astype(str), categories=[d[key] for d in _unique(design, key)]
        )
    out.obs["arm"] = pd.Categorical(out.obs["arm"].astype(str), categories=arms)
    out.obs[Key.obs.cell_type] = pd.Categorical(
        out.obs[Key.obs.cell_type].astype(str), categories=list(P.CELL_TYPES)
    )
    out.uns[Key.uns.colors(Key.obs.cell_type)] = list(P.CELL_TYPE_COLORS)
    out.uns[Key.uns.spatialpath] = {Key.uns.images: images}
    out.uns[Key.uns.simulation] = {
        "mode": mode,
        "seed": int(seed),
        "effect": {"log2_fold_change_per_arm": float(effect), "cell_type": effect_cell_type, "arms": arms},
        "design": pd.DataFrame(design),
        "images": truths,
        "cells": cells,
    }
    return out


def _unique(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault(r[key], r)
    return list(seen.values())
