"""``manifest.json`` of a pipeline run: the provenance manifest plus the cohort's own sections.

:class:`CohortManifest` extends :class:`spatialpath.provenance.Manifest` (same keys, same
meaning: ``command``, ``parameters``, ``seeds``, ``environment``, ``inputs``, ``outputs``,
times) with ``config``, ``blinding``, ``images`` (the per-image status table, with each stored
result's files and hashes from its marker), ``exclusions`` (the merged exclusion log) and
``notes``. The environment lists every installed distribution, not only the result-affecting
ones. Input files are hashed through the run's hash cache (``_input_hashes.json``), so a large
cohort is not re-read. See ``docs/pipeline-outputs.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field

from spatialpath.pipeline._config import PipelineConfig
from spatialpath.pipeline._store import ImageKey, ImageResult
from spatialpath.provenance import FileRecord, Manifest, atomic_write, environment, file_record, utc_now

__all__ = ["CohortManifest", "full_environment", "input_records", "write_cohort_manifest"]


class CohortManifest(Manifest):
    """Schema of a pipeline run's ``manifest.json``: the provenance manifest plus cohort sections."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(default_factory=dict)
    blinding: dict[str, Any] = Field(default_factory=dict)
    images: list[dict[str, Any]] = Field(default_factory=list)
    exclusions: list[dict[str, Any]] = Field(default_factory=list)
    notes: dict[str, Any] = Field(default_factory=dict)


def full_environment() -> dict[str, Any]:
    """:func:`spatialpath.provenance.environment` plus ``installed``: every distribution's version.

    Examples
    --------
    >>> env = full_environment()
    >>> env["installed"]["numpy"] == env["dependencies"]["numpy"]
    True
    """
    env = environment()
    installed: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            installed.setdefault(str(name).lower().replace("_", "-"), str(dist.version))
    env["installed"] = dict(sorted(installed.items()))
    return env


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return path.stat().st_size


def input_records(config: PipelineConfig) -> tuple[list[FileRecord], dict[tuple[str, str], dict[str, str]]]:
    """File records of the config, the sample sheet and every image's input files.

    Hashes come from the output folder's hash cache (:class:`~spatialpath.pipeline._hashing.HashCache`;
    a folder input hashes to the digest of its files). Returns the records (each file once)
    and, per ``(sample_id, image_id)``, its input files by role -> SHA-256.
    """
    from spatialpath.pipeline._hashing import HashCache
    from spatialpath.pipeline._inputs import input_files

    cache = HashCache.in_folder(config.output)
    seen: dict[str, FileRecord] = {}

    def record(path: Path) -> FileRecord:
        key = str(path.resolve())
        if key not in seen:
            seen[key] = FileRecord(path=key, size_bytes=_size(path), sha256=cache.hash_file(path))
        return seen[key]

    for p in (config.config_path, config.samples):
        if p is not None and Path(p).exists():
            record(Path(p))
    per_image: dict[tuple[str, str], dict[str, str]] = {}
    try:
        sheet = config.sample_sheet
    except RuntimeError:
        sheet = pd.DataFrame()
    for _, row in sheet.iterrows():
        files = {}
        for role, path in input_files(row).items():
            if path.exists():
                files[role] = record(path).sha256
        per_image[(str(row["sample_id"]), str(row["image_id"]))] = files
    with contextlib.suppress(OSError):  # a read-only output folder: the hashes are still recorded
        cache.save()
    return list(seen.values()), per_image


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN/NA as null, numpy scalars as Python)."""
    out = []
    for rec in df.astype(object).to_dict("records"):
        row = {}
        for k, v in rec.items():
            if v is None or (not isinstance(v, str | list | dict) and pd.isna(v)):
                row[str(k)] = None
            elif isinstance(v, np.generic):
                row[str(k)] = v.item()
            else:
                row[str(k)] = v
        out.append(row)
    return out


def write_cohort_manifest(
    path: str | os.PathLike[str],
    config: PipelineConfig,
    *,
    results: Mapping[ImageKey, ImageResult],
    image_status: pd.DataFrame,
    exclusions: pd.DataFrame,
    blinding: Mapping[str, Any],
    outputs: Mapping[str, Path],
    started_at: str,
    notes: Mapping[str, Any] | None = None,
    command: str | None = None,
) -> CohortManifest:
    """Write ``manifest.json`` of a pipeline run atomically (replacing an earlier one).

    Parameters
    ----------
    path
        The manifest file (``<output>/manifest.json``).
    config
        The run's configuration.
    results
        The stored results of the images in the tables (their markers give fingerprints, seeds,
        timings and the files with their SHA-256).
    image_status
        One row per image of the sheet (see :func:`~spatialpath.pipeline._outputs.read_results`).
    exclusions
        The merged exclusion log (:meth:`~spatialpath.pipeline._exclusions.ExclusionLog.merge`).
    blinding
        :func:`~spatialpath.pipeline._blinding.blinding_record` of the run.
    outputs
        Cohort-level files written, by role (recorded relative to the output folder).
    started_at, notes, command
        Start time, remarks (e.g. why Excel was skipped), the command (default
        ``spatialpath run <config>``).
    """
    path = Path(path)
    root = path.resolve().parent
    inputs, per_image_inputs = input_records(config)
    images = _records(image_status)
    for rec in images:
        key = ImageKey(rec["sample_id"], rec["image_id"])
        rec["inputs"] = per_image_inputs.get(tuple(key), {})
        res = results.get(key)
        if res is not None:
            m = res.marker
            rec["result"] = {
                "folder": Path(os.path.relpath(res.folder, root)).as_posix(),
                "fingerprint": m.fingerprint,
                "written_at": m.written_at,
                "spatialpath_version": m.spatialpath_version,
                "timings": m.timings,
                "files": [f.model_dump(mode="json") for f in m.files],
            }
    config_record = {
        "path": None if config.config_path is None else str(config.config_path),
        "samples": str(config.samples),
        "output": str(config.output),
        "outputs": config.outputs.model_dump(mode="json"),
        "blinding": config.blinding.model_dump(mode="json"),
        "cluster": config.cluster.model_dump(mode="json"),
    }
    status_counts = image_status["status"].value_counts().to_dict() if len(image_status) else {}
    manifest = CohortManifest(
        command=command
        or f"spatialpath run {config.config_path if config.config_path is not None else '<config>'}",
        parameters=json.loads(json.dumps(config.parameters_for_hash(), default=str)),
        seeds={
            "seed": config.seed,
            "images": {f"{r['sample_id']}/{r['image_id']}": r["seed"] for r in images},
        },
        environment=full_environment(),
        inputs=inputs,
        outputs=[file_record(p, relative_to=root) for p in outputs.values()],
        started_at=started_at,
        finished_at=utc_now(),
        config=config_record,
        blinding=dict(blinding),
        images=images,
        exclusions=_records(exclusions),
        notes={
            "n_images": len(image_status),
            "status_counts": {str(k): int(v) for k, v in status_counts.items()},
            **dict(notes or {}),
        },
    )
    text = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=False, default=str) + "\n"
    with atomic_write(path, overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return manifest
