"""De-identification of biomarker tables: keyed pseudonyms, dropped or shifted dates, no paths.

The key is used in memory only: it is never written to a table, the dictionary or the manifest,
and it does not appear in the ``repr`` of :class:`Deidentify`. The same key and value always give
the same pseudonym, so tables de-identified in separate runs with one key still join.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from spatialpath.export._schema import ID_COLUMNS
from spatialpath.model import DataModelError

__all__ = ["Deidentify", "apply_deidentify", "id_pattern", "redact_paths", "scrub"]

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
_PATH_LIKE = re.compile(r"^(/|~|\\\\|[A-Za-z]:[\\/])|[\\/][^\\/]*\.\w{1,6}$")
_PATH_KEYS = ("path", "file", "dir", "folder", "input")
REDACTED = "<redacted>"


@dataclass(frozen=True)
class Deidentify:
    """How to de-identify biomarker tables in :func:`~spatialpath.export.write_tables`.

    Parameters
    ----------
    key
        Secret key of the HMAC-SHA256 pseudonyms, at least 16 bytes (e.g.
        ``secrets.token_hex(32)``, kept by the data custodian). Never written anywhere.
    id_columns
        Columns whose values become pseudonyms: the first ``digest_chars`` hex characters of
        ``HMAC-SHA256(key, value)``. ``image_id`` is included by default because image ids
        usually embed patient or sample ids.
    drop
        Further columns to remove (free text, names, dates kept as text...).
    shift_dates_days
        Shift every date column (datetime dtype, or text that is all ISO dates) by this many
        days; None drops the date columns instead. The shift is not recorded.
    digest_chars
        Length of a pseudonym (16 hex characters = 64 bits; collisions are refused).

    Examples
    --------
    >>> d = Deidentify(key="0123456789abcdef0123")
    >>> d.pseudonym("P001")
    'd12576610be5509d'
    >>> "0123456789" in repr(d)
    False
    """

    key: bytes | str = field(repr=False)
    id_columns: Sequence[str] = ID_COLUMNS
    drop: Sequence[str] = ()
    shift_dates_days: int | None = None
    digest_chars: int = 16

    def __post_init__(self) -> None:
        if len(self._key) < 16:
            raise ValueError(
                "Deidentify key must be at least 16 bytes; make one with secrets.token_hex(32) "
                "and keep it outside the output folder"
            )
        if not 8 <= self.digest_chars <= 64:
            raise ValueError(f"digest_chars must be within 8..64, got {self.digest_chars}")

    @property
    def _key(self) -> bytes:
        return self.key.encode("utf-8") if isinstance(self.key, str) else bytes(self.key)

    def pseudonym(self, value: object) -> str:
        """Keyed hash of one identifier (hex, ``digest_chars`` long)."""
        digest = hmac.new(self._key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()
        return digest[: self.digest_chars]


def redact_paths(obj: Any) -> Any:
    """Replace file paths (and values under path-like keys) in nested parameters by ``<redacted>``.

    Examples
    --------
    >>> redact_paths({"input_path": "x.csv", "unit": "cells/mm2", "src": "/data/P001/cells.h5ad"})
    {'input_path': '<redacted>', 'unit': 'cells/mm2', 'src': '<redacted>'}
    """
    if isinstance(obj, dict):
        return {
            k: REDACTED if any(p in str(k).lower() for p in _PATH_KEYS) else redact_paths(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact_paths(v) for v in obj]
    if isinstance(obj, str) and _PATH_LIKE.search(obj):
        return REDACTED
    return obj


def _replace_ids(obj: Any, mapping: Mapping[str, str], pattern: re.Pattern[str] | None) -> Any:
    """Replace identifiers in every string (dict keys included) of a nested structure.

    A string equal to an original id becomes its replacement; longer ids (4+ characters, see
    :func:`id_pattern`) are also replaced where they occur inside a string.
    """
    if isinstance(obj, dict):
        return {_replace_ids(k, mapping, pattern): _replace_ids(v, mapping, pattern) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_replace_ids(v, mapping, pattern) for v in obj]
    if isinstance(obj, str):
        if obj in mapping:
            return mapping[obj]
        return pattern.sub(lambda m: mapping[m.group(0)], obj) if pattern is not None else obj
    return obj


def id_pattern(originals: Iterable[str]) -> re.Pattern[str] | None:
    """Regex of the original ids of 4+ characters (longest first), found inside longer strings."""
    long_ids = sorted((v for v in set(originals) if len(v) >= 4), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, long_ids))) if long_ids else None


def scrub(obj: Any, mapping: Mapping[str, str], pattern: re.Pattern[str] | None) -> Any:
    """Paths redacted (:func:`redact_paths`), then identifiers replaced (``mapping``) everywhere.

    Used for everything written besides the tables: the manifest parameters (user
    ``parameters=`` included) and the tables' ``attrs`` (Parquet schema metadata).

    Examples
    --------
    >>> scrub({"note": "run for P001", "P002": ["P002"], "f": "/d/P001.csv"},
    ...       {"P001": "aa", "P002": "bb"}, id_pattern(["P001", "P002"]))
    {'note': 'run for aa', 'bb': ['bb'], 'f': '<redacted>'}
    """
    return _replace_ids(redact_paths(obj), mapping, pattern)


def _clean_parameters(text: object, mapping: dict[str, str], pattern: re.Pattern[str] | None) -> object:
    if not isinstance(text, str):
        return text
    try:
        obj = json.loads(text)
    except ValueError:
        return REDACTED
    clean = _replace_ids(redact_paths(obj), mapping, pattern)
    return text if clean == obj else json.dumps(clean, sort_keys=True, separators=(",", ":"))


def _is_date_column(s: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return True
    if s.dtype != object and not isinstance(s.dtype, pd.CategoricalDtype):
        return False
    values = s.dropna().astype(str)
    return len(values) > 0 and bool(values.str.match(_ISO_DATE).all())


def _shift(s: pd.Series, days: int) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s + pd.Timedelta(days=days)
    text = s.astype(object)
    shifted = pd.to_datetime(text) + pd.Timedelta(days=days)
    fmt = [
        np.nan if pd.isna(v) else (d.strftime("%Y-%m-%d") if len(str(v)) == 10 else d.isoformat(sep=" "))
        for v, d in zip(text, shifted, strict=True)
    ]
    return pd.Series(fmt, index=s.index, name=s.name, dtype=object)


def _map_ids(s: pd.Series, mapping: dict[str, str]) -> pd.Series:
    if isinstance(s.dtype, pd.CategoricalDtype):
        renamed = s.cat.rename_categories([mapping.get(str(c), c) for c in s.cat.categories])
        return renamed.cat.reorder_categories(sorted(renamed.cat.categories, key=str))
    return s.map(lambda v: v if pd.isna(v) else mapping[str(v)])


def _deidentify_frames(
    d: Deidentify, frames: list[pd.DataFrame]
) -> tuple[list[pd.DataFrame], dict, dict[str, str], re.Pattern[str] | None]:
    columns = {c for f in frames for c in f.columns}
    unknown = [c for c in (*d.id_columns, *d.drop) if c not in columns]
    if unknown:
        raise DataModelError(
            f"Deidentify names column(s) {unknown} that the tables do not have; fix id_columns/drop"
        )
    originals = sorted({str(v) for f in frames for c in d.id_columns if c in f for v in f[c].dropna()})
    mapping = {v: d.pseudonym(v) for v in originals}
    if len(set(mapping.values())) < len(mapping):
        raise DataModelError("two identifiers share a pseudonym; raise Deidentify.digest_chars")
    pattern = id_pattern(originals)
    out, dropped = [], set(d.drop)
    for f in frames:
        f = f.copy()
        for c in d.id_columns:
            if c in f:
                f[c] = _map_ids(f[c], mapping)
        dates = [c for c in f.columns if c not in d.id_columns and _is_date_column(f[c])]
        for c in dates:
            if d.shift_dates_days is None:
                dropped.add(c)
            else:
                f[c] = _shift(f[c], d.shift_dates_days)
        f = f.drop(columns=[c for c in f.columns if c in dropped])
        if "parameters" in f:
            f["parameters"] = f["parameters"].map(lambda t: _clean_parameters(t, mapping, pattern))
        _refuse_leftover_ids(f, d.id_columns, set(originals), pattern)
        out.append(f)
    record = {
        "method": "HMAC-SHA256 keyed pseudonyms (key not recorded)",
        "digest_chars": d.digest_chars,
        "id_columns": list(d.id_columns),
        "dropped_columns": sorted(dropped),
        "dates_shifted": d.shift_dates_days is not None,
    }
    return out, record, mapping, pattern


def _refuse_leftover_ids(
    f: pd.DataFrame, id_columns: Sequence[str], originals: set[str], pattern: re.Pattern[str] | None
) -> None:
    for c in f.columns:
        if c in id_columns or not (f[c].dtype == object or isinstance(f[c].dtype, pd.CategoricalDtype)):
            continue
        text = f[c].dropna().astype(str)
        if text.isin(originals).any() or (pattern is not None and text.str.contains(pattern).any()):
            raise DataModelError(
                f"column {c!r} still holds an original identifier after de-identification; add it "
                "to Deidentify.id_columns or Deidentify.drop"
            )


def apply_deidentify(
    deidentify: Deidentify | Callable[[pd.DataFrame], pd.DataFrame], long: pd.DataFrame, wide: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], Callable[[Any], Any]]:
    """De-identify both tables consistently.

    Returns the tables, the record for the manifest and the function that cleans anything else
    written (manifest parameters, attrs): paths redacted and original identifiers replaced by
    their pseudonyms (:class:`Deidentify`), or by ``<redacted>`` for a user function (whose
    pseudonyms are unknown; the originals are the input tables' ``patient_id``, ``sample_id``
    and ``image_id`` values).
    """
    if isinstance(deidentify, Deidentify):
        (long_out, wide_out), record, mapping, pattern = _deidentify_frames(deidentify, [long, wide])
    elif callable(deidentify):
        originals = sorted(
            {str(v) for f in (long, wide) for c in ID_COLUMNS if c in f for v in f[c].dropna()}
        )
        mapping, pattern = dict.fromkeys(originals, REDACTED), id_pattern(originals)
        long_out, wide_out = deidentify(long.copy()), deidentify(wide.copy())
        for f in (long_out, wide_out):
            if "parameters" in f:
                f["parameters"] = f["parameters"].map(lambda t: _clean_parameters(t, mapping, pattern))
        record = {"method": f"user function {getattr(deidentify, '__qualname__', type(deidentify).__name__)}"}
    else:
        raise TypeError(f"deidentify must be a Deidentify or a function, got {type(deidentify).__name__}")

    def clean(obj: Any) -> Any:
        return scrub(obj, mapping, pattern)

    long_out.attrs = clean(dict(long.attrs))
    wide_out.attrs = {}
    return long_out, wide_out, record, clean
