"""The exclusion log: one JSON record per failed image, merged into one table by the scheduler.

Workers write **one file per failed image**, atomically
(``<output>/exclusions/<sample>/<image>.json``, folder names as in
:func:`~spatialpath.pipeline._store.safe_name`), so concurrent failures cannot corrupt each
other and an image appears at most once. The scheduler calls :meth:`ExclusionLog.merge` at the
end of a run to write ``<output>/exclusions.json`` and ``<output>/exclusions.csv``. A later
successful write of the image (:meth:`~spatialpath.pipeline._store.ImageStore.write_result`)
removes its record.
"""

from __future__ import annotations

import json
import os
import socket
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

from spatialpath.pipeline._store import ImageKey, as_key, safe_name
from spatialpath.provenance import atomic_write, utc_now

__all__ = ["COLUMNS", "ExclusionLog", "error_type"]

#: columns of the merged table, in order.
COLUMNS = [
    "sample_id",
    "image_id",
    "error_type",
    "message",
    "timestamp",
    "fingerprint",
    "seed",
    "host",
    "pid",
    "traceback",
]


def error_type(error: BaseException) -> str:
    """The exception's class name, qualified by its module unless it is a builtin.

    Examples
    --------
    >>> error_type(ValueError("x")), error_type(json.JSONDecodeError("m", "d", 0))
    ('ValueError', 'json.decoder.JSONDecodeError')
    """
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class ExclusionLog:
    """Failure records of the images of one output folder.

    Examples
    --------
    >>> import tempfile
    >>> log = ExclusionLog(tempfile.mkdtemp())
    >>> try:
    ...     raise ValueError("no cells in image")
    ... except ValueError as err:
    ...     rec = log.record(("S1", "img1"), err, fingerprint="f1")
    >>> rec["error_type"], rec["message"], "raise ValueError" in rec["traceback"]
    ('ValueError', 'no cells in image', True)
    >>> log.merge()[["sample_id", "image_id", "error_type"]].values.tolist()
    [['S1', 'img1', 'ValueError']]
    >>> log.clear(("S1", "img1")), log.records()
    (True, [])
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.folder = self.root / "exclusions"

    def path(self, image: Any) -> Path:
        """The record file of an image (it may not exist)."""
        k = as_key(image)
        return self.folder / safe_name(k.sample_id) / f"{safe_name(k.image_id)}.json"

    def record(
        self,
        image: Any,
        error: BaseException,
        fingerprint: str | None = None,
        *,
        seed: int | None = None,
        traceback_text: str | None = None,
    ) -> dict[str, Any]:
        """Write (or replace) the failure record of an image and return it.

        Parameters
        ----------
        image
            ``(sample_id, image_id)`` or an object with those attributes.
        error
            The exception; its full traceback (with chained causes) is formatted from
            ``error.__traceback__``.
        fingerprint, seed
            Of the failed computation.
        traceback_text
            The traceback text when ``error`` has lost its traceback (e.g. an exception
            unpickled from a remote worker, with the worker's formatted traceback).
        """
        key = as_key(image)
        text = traceback_text if traceback_text is not None else "".join(traceback.format_exception(error))
        rec = {
            "sample_id": key.sample_id,
            "image_id": key.image_id,
            "error_type": error_type(error),
            "message": str(error),
            "timestamp": utc_now(),
            "fingerprint": fingerprint,
            "seed": None if seed is None else int(seed),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "traceback": text,
        }
        with atomic_write(self.path(key), overwrite=True) as tmp:
            tmp.write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
        return rec

    def get(self, image: Any) -> dict[str, Any] | None:
        """The failure record of an image, or None (also for an unreadable record)."""
        try:
            rec = json.loads(self.path(image).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) else None

    def clear(self, image: Any) -> bool:
        """Remove an image's failure record; True if there was one."""
        p = self.path(image)
        try:
            p.unlink()
        except FileNotFoundError:
            return False
        return True  # the (possibly empty) sample folder stays: a concurrent writer may be using it

    def records(self, images: Any = None) -> list[dict[str, Any]]:
        """All readable failure records sorted by (sample_id, image_id), optionally only ``images``."""
        wanted = None if images is None else {as_key(i) for i in images}
        out = []
        for p in sorted(self.folder.glob("*/*.json")):
            if p.name.startswith("."):
                continue
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(rec, dict) or not {"sample_id", "image_id"} <= set(rec):
                continue
            if wanted is None or ImageKey(rec["sample_id"], rec["image_id"]) in wanted:
                out.append(rec)
        return sorted(out, key=lambda r: (r["sample_id"], r["image_id"]))

    def table(self, images: Any = None) -> pd.DataFrame:
        """The records as a DataFrame with :data:`COLUMNS`, one row per failed image."""
        return pd.DataFrame(self.records(images), columns=COLUMNS)

    def merge(self, images: Any = None) -> pd.DataFrame:
        """Write ``exclusions.json`` and ``exclusions.csv`` in the output folder (scheduler side).

        ``images`` restricts the log to the images of this run (records of images no longer in
        the cohort are left out). Returns the merged table.
        """
        records = self.records(images)
        df = pd.DataFrame(records, columns=COLUMNS)
        payload = {"schema_version": 1, "n_excluded": len(records), "records": records}
        with atomic_write(self.root / "exclusions.json", overwrite=True) as tmp:
            tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        with atomic_write(self.root / "exclusions.csv", overwrite=True) as tmp:
            df.to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8")
        return df
