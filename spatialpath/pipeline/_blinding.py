"""Blinded mode: sample-sheet columns (arm, treatment...) withheld from every output until unblinded.

The ``blinding.columns`` of the config name sample-sheet metadata columns. While a run is
**blinded** (the default whenever columns are named), :func:`withhold` removes them from every
table before it is written, figures never group by them, and the manifest's ``blinding`` record
(:func:`blinding_record`) states the mode and what was withheld. ``unblind=True`` (``spatialpath
run --unblind``) puts them back, taking their values from the sample sheet, so unblinding
recomputes nothing (blinding is not part of the per-image fingerprint). See
``docs/pipeline-outputs.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import pandas as pd

from spatialpath.keys import Key

__all__ = ["BlindingMode", "blinded_columns", "blinding_record", "restore", "scrub", "withhold"]

BlindingMode = Literal["blinded", "unblinded", "none"]


def blinded_columns(columns: Iterable[str], *, unblind: bool) -> list[str]:
    """The columns to withhold: ``columns`` while blinded, none once unblinded.

    Examples
    --------
    >>> blinded_columns(["arm"], unblind=False), blinded_columns(["arm"], unblind=True)
    (['arm'], [])
    """
    return [] if unblind else list(dict.fromkeys(columns))


def mode(columns: Sequence[str], *, unblind: bool) -> BlindingMode:
    """``"none"`` without blinding columns, else ``"blinded"`` or ``"unblinded"``.

    Examples
    --------
    >>> mode([], unblind=False), mode(["arm"], unblind=False), mode(["arm"], unblind=True)
    ('none', 'blinded', 'unblinded')
    """
    if not columns:
        return "none"
    return "unblinded" if unblind else "blinded"


def blinding_record(columns: Sequence[str], *, unblind: bool) -> dict[str, Any]:
    """The manifest's ``blinding`` section: the mode, the configured columns and those withheld.

    Examples
    --------
    >>> blinding_record(["arm"], unblind=False)["withheld"]
    ['arm']
    >>> blinding_record(["arm"], unblind=True)["mode"]
    'unblinded'
    """
    m = mode(columns, unblind=unblind)
    notes = {
        "none": "no blinding columns are configured: every sample-sheet column is shown",
        "blinded": "the listed sample-sheet columns were removed from every table, figure and "
        "summary of this run; rerun with --unblind to include them",
        "unblinded": "run with --unblind: the blinding columns are included in the outputs",
    }
    return {
        "mode": m,
        "columns": list(columns),
        "withheld": blinded_columns(columns, unblind=unblind),
        "note": notes[m],
    }


def withhold(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``df`` without ``columns`` (those present); its ``attrs`` are scrubbed of their names too.

    Examples
    --------
    >>> df = pd.DataFrame({"image_id": ["a"], "arm": ["x"], "value": [1.0]})
    >>> withhold(df, ["arm"]).columns.tolist()
    ['image_id', 'value']
    """
    out = df.drop(columns=[c for c in columns if c in df.columns])
    out.attrs = scrub(dict(df.attrs), columns)
    return out


def scrub(obj: Any, columns: Sequence[str]) -> Any:
    """Remove the names ``columns`` from the lists and mapping keys of a JSON-like record.

    Used on ``attrs`` (Parquet schema metadata) and manifest parameters, e.g.
    ``attrs["biomarker_table"]["metadata"]``, which lists the metadata columns of a table.

    Examples
    --------
    >>> scrub({"metadata": ["arm", "site"], "arm": 1}, ["arm"])
    {'metadata': ['site']}
    """
    names = set(columns)
    if not names:
        return obj
    if isinstance(obj, Mapping):
        return {k: scrub(v, columns) for k, v in obj.items() if k not in names}
    if isinstance(obj, list | tuple):
        return [scrub(v, columns) for v in obj if not (isinstance(v, str) and v in names)]
    return obj


def restore(
    df: pd.DataFrame, sheet: pd.DataFrame, columns: Sequence[str], *, order: Sequence[str] = ()
) -> pd.DataFrame:
    """Put the sample sheet's ``columns`` back on a per-image table, joined on sample and image.

    Values come from the sheet (the per-image tables may have been written without them);
    each restored column is categorical, its categories in the sheet's first-seen order.
    ``order`` gives the final order of the metadata columns (others keep their place; the
    restored columns go last when not in ``order``).

    Examples
    --------
    >>> sheet = pd.DataFrame({"sample_id": ["S1", "S2"], "image_id": ["a", "b"], "arm": ["x", "y"]})
    >>> df = pd.DataFrame({"sample_id": ["S2", "S1"], "image_id": ["b", "a"], "value": [1.0, 2.0]})
    >>> restore(df, sheet, ["arm"])["arm"].tolist()
    ['y', 'x']
    """
    keys = [Key.obs.sample_id, Key.obs.image_id]
    wanted = [c for c in columns if c in sheet.columns]
    if not wanted:
        return df
    out = df.drop(columns=[c for c in wanted if c in df.columns])
    right = sheet[keys + wanted].astype(dict.fromkeys(keys, str)).drop_duplicates(subset=keys)
    left = out[keys].astype(str)
    joined = left.merge(right, on=keys, how="left")
    for c in wanted:
        values = joined[c].astype(object).where(joined[c].notna(), None)
        cats = list(dict.fromkeys(v for v in sheet[c].astype(object) if pd.notna(v)))
        out[c] = pd.Categorical(values.to_numpy(), categories=cats)
    if order:
        meta = [c for c in order if c in out.columns]
        rest = [c for c in out.columns if c not in meta]
        out = out[rest + meta]
    return out
