"""The per-image result store of the cohort pipeline: atomic files, then a ``_done.json`` marker.

Layout (see ``docs/pipeline-store.md``)::

    <output>/images/<sample>/<image>/<table>.parquet   one file per table
                                     <figure>.png       one file per figure
                                     _done.json         written LAST: fingerprint, files, seed
    <output>/exclusions/...                             see spatialpath.pipeline._exclusions

An image is **current** when its marker parses, names this image, lists files that all exist
with their recorded size (and SHA-256 with ``verify="hash"``), and holds the requested
fingerprint. Every file is written to a temporary file in the same folder, fsynced and renamed
(:func:`spatialpath.provenance.atomic_write`); the marker is removed before a rewrite starts and
written after every file is in place, so a writer killed at any point leaves the image
"missing", never "current" with partial or mixed files. Temporary files (``.<name>.<random>.tmp
<suffix>``) are ignored, and removed by the next write of that image or by
:meth:`ImageStore.clean_temp`.

Several processes may write **different** images at the same time; one image must have one
writer at a time (the runner guarantees it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spatialpath._version import __version__
from spatialpath.pipeline._hashing import _canonical
from spatialpath.pipeline._ids import ImageKey, _data_error, as_key, check_ids, id_from_name, safe_name
from spatialpath.provenance import _fsync_dir, atomic_write, sha256_file, utc_now

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from spatialpath.pipeline._exclusions import ExclusionLog

__all__ = [
    "MARKER",
    "DoneMarker",
    "ImageKey",
    "ImageResult",
    "ImageStore",
    "Status",
    "as_key",
    "check_ids",
    "id_from_name",
    "safe_name",
]

MARKER = "_done.json"
Status = Literal["current", "stale", "missing", "failed"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TEMP = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")

#: test hook, called as ``hook(stage, final_path, temp_path)`` after a temporary file is complete
#: and before it is renamed (``stage`` is "table", "figure" or "marker"). Tests use it to kill
#: the writer at the worst moment; it is None in normal use.
_TEST_HOOK: Callable[[str, Path, Path], None] | None = None


class FileEntry(BaseModel):
    """A file of an image's result, as listed in its marker."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=_NAME.pattern)
    kind: Literal["table", "figure"]
    key: str
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class DoneMarker(BaseModel):
    """Schema of ``_done.json`` (``schema_version`` 1)."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1
    sample_id: str
    image_id: str
    fingerprint: str
    seed: int | None = None
    files: list[FileEntry]
    timings: dict[str, float] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    spatialpath_version: str = __version__
    written_at: str


@dataclass
class ImageResult:
    """What :meth:`ImageStore.read_result` returns: tables, figure files, extra JSON, marker."""

    tables: dict[str, pd.DataFrame]
    figures: dict[str, Path]
    extra: dict[str, Any]
    marker: DoneMarker
    folder: Path = field(default_factory=Path)


def _check_names(kind: str, names: Iterable[str]) -> None:
    for n in names:
        if not isinstance(n, str) or not _NAME.match(n):
            raise _data_error(
                f"{kind} name {n!r} is not allowed: use letters, digits, '_', '-' and '.', starting "
                "with a letter or digit (names starting with '_' or '.' are reserved by the store)"
            )


def _check_table(name: str, df: Any) -> None:
    if not isinstance(df, pd.DataFrame):
        raise _data_error(f"tables[{name!r}] is a {type(df).__name__}; pass a pandas DataFrame")
    bad = [c for c in df.columns if not isinstance(c, str)]
    if bad:
        raise _data_error(
            f"tables[{name!r}] has non-str column names {bad[:3]!r}: Parquet would turn them into "
            "strings and the table would not read back as written; rename with df.columns.astype(str)"
        )


class ImageStore:
    """Per-image results under ``<root>/images/<sample>/<image>/``.

    Parameters
    ----------
    root
        The output folder of the cohort run.
    figure_format, dpi
        How figures are saved (``Figure.savefig(format=..., dpi=...)``).

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> store = ImageStore(tempfile.mkdtemp())
    >>> store.status(("S1", "img1"), "f1")
    'missing'
    >>> _ = store.write_result(("S1", "img1"), "f1", tables={"counts": pd.DataFrame({"n": [3]})}, seed=7)
    >>> store.status(("S1", "img1"), "f1"), store.status(("S1", "img1"), "f2")
    ('current', 'stale')
    >>> store.read_result(("S1", "img1")).tables["counts"]["n"].tolist()
    [3]
    """

    def __init__(self, root: str | os.PathLike[str], *, figure_format: str = "png", dpi: int = 150) -> None:
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.figure_format = figure_format
        self.dpi = dpi

    @property
    def exclusions(self) -> ExclusionLog:
        """The exclusion log in the same output folder."""
        from spatialpath.pipeline._exclusions import ExclusionLog

        return ExclusionLog(self.root)

    def folder(self, image: Any) -> Path:
        """The folder of an image's result (it may not exist)."""
        k = as_key(image)
        return self.images_dir / safe_name(k.sample_id) / safe_name(k.image_id)

    # -- reading ---------------------------------------------------------------------------------

    def _marker(self, key: ImageKey) -> tuple[DoneMarker | None, str]:
        path = self.folder(key) / MARKER
        try:
            marker = DoneMarker.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None, f"no {MARKER}"
        except (OSError, ValidationError, ValueError) as err:
            return None, f"unreadable {MARKER} ({type(err).__name__})"
        if (marker.sample_id, marker.image_id) != key:
            raise _data_error(
                f"{path} belongs to image {(marker.sample_id, marker.image_id)}, not {tuple(key)}: two IDs "
                "share a folder (they differ only in case on a case-insensitive file system); make "
                "the IDs unique ignoring case (see check_ids)"
            )
        return marker, ""

    def _verify(self, key: ImageKey, verify: str) -> tuple[DoneMarker | None, str]:
        if verify not in ("size", "hash"):
            raise ValueError(f"verify={verify!r}; use 'size' (stat each file) or 'hash' (re-read each file)")
        marker, reason = self._marker(key)
        if marker is None:
            return None, reason
        folder = self.folder(key)
        for f in marker.files:
            p = folder / f.name
            try:
                size = p.stat().st_size
            except FileNotFoundError:
                return None, f"{f.name} is missing"
            if size != f.size_bytes:
                return None, f"{f.name} has {size} bytes, {f.size_bytes} recorded"
            if verify == "hash" and sha256_file(p) != f.sha256:
                return None, f"{f.name} differs from its recorded SHA-256"
        return marker, ""

    def status(self, image: Any, fingerprint: str, *, verify: Literal["size", "hash"] = "size") -> Status:
        """``"current"``, ``"stale"``, ``"missing"`` or ``"failed"``.

        - ``current``: a valid marker with this ``fingerprint``, every listed file present with
          its recorded size (and SHA-256 when ``verify="hash"``);
        - ``stale``: a complete result computed with another fingerprint;
        - ``failed``: not current, and the exclusion log holds a failure with this fingerprint;
        - ``missing``: anything else (no folder, no or unreadable marker, a listed file missing
          or of the wrong size).

        Raises
        ------
        DataModelError
            If the image's folder holds another image's marker (IDs differing only in case).
        """
        key = as_key(image)
        marker, _ = self._verify(key, verify)
        if marker is not None and marker.fingerprint == fingerprint:
            return "current"
        failure = self.exclusions.get(key)
        if failure is not None and failure.get("fingerprint") == fingerprint:
            return "failed"
        return "missing" if marker is None else "stale"

    def read_result(self, image: Any, *, verify: Literal["size", "hash"] = "size") -> ImageResult:
        """Read an image's tables, figure paths, extra JSON and marker.

        Raises
        ------
        FileNotFoundError
            If the image has no complete result (the message says what is missing).
        """
        key = as_key(image)
        marker, reason = self._verify(key, verify)
        folder = self.folder(key)
        if marker is None:
            raise FileNotFoundError(
                f"no complete result for image {tuple(key)} in {folder}: {reason}; run the pipeline "
                "for this image"
            )
        tables = {f.key: pd.read_parquet(folder / f.name) for f in marker.files if f.kind == "table"}
        figures = {f.key: folder / f.name for f in marker.files if f.kind == "figure"}
        return ImageResult(tables=tables, figures=figures, extra=marker.extra, marker=marker, folder=folder)

    def images(self) -> list[ImageKey]:
        """The images with a readable marker (current or stale), sorted."""
        keys = []
        for path in sorted(self.images_dir.glob(f"*/*/{MARKER}")):
            try:
                m = DoneMarker.model_validate_json(path.read_bytes())
            except (OSError, ValidationError, ValueError):
                continue
            keys.append(ImageKey(m.sample_id, m.image_id))
        return sorted(keys)

    # -- writing ---------------------------------------------------------------------------------

    def _write(
        self, folder: Path, name: str, kind: str, key: str, write: Callable[[Path], None]
    ) -> FileEntry:
        final = folder / name
        with atomic_write(final, overwrite=True) as tmp:
            write(tmp)
            entry = FileEntry(
                name=name, kind=kind, key=key, size_bytes=tmp.stat().st_size, sha256=sha256_file(tmp)
            )
            if _TEST_HOOK is not None:
                _TEST_HOOK(kind, final, tmp)
        return entry

    def write_result(
        self,
        image: Any,
        fingerprint: str,
        tables: Mapping[str, pd.DataFrame] | None = None,
        figures: Mapping[str, Figure] | None = None,
        extra: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        timings: Mapping[str, float] | None = None,
    ) -> DoneMarker:
        """Write an image's result atomically; the marker ``_done.json`` comes last.

        Any previous marker is removed first and every other file in the image's folder
        (an older result, temporary debris of a killed writer) is deleted, so the folder holds
        exactly this result. A later successful write clears the image's exclusion record.

        Parameters
        ----------
        image
            ``(sample_id, image_id)`` or an object with those attributes.
        fingerprint
            The fingerprint of the computation (:func:`~spatialpath.pipeline._hashing.fingerprint`).
        tables
            Name -> DataFrame, written as ``<name>.parquet`` (index, dtypes and ``attrs`` kept).
        figures
            Name -> matplotlib Figure, saved as ``<name>.<figure_format>`` (the figure is not closed).
        extra
            JSON-serialisable data stored in the marker (numpy values are converted).
        seed, timings
            Recorded in the marker; ``timings["write_s"]`` is added.

        Raises
        ------
        DataModelError
            For a bad name, a non-DataFrame table or non-str column names.
        """
        started = time.perf_counter()
        key = as_key(image)
        tables, figures = dict(tables or {}), dict(figures or {})
        _check_names("table", tables)
        _check_names("figure", figures)
        for name, df in tables.items():
            _check_table(name, df)
        extra_json = _canonical(dict(extra or {}), "extra")
        names = {f"{n}.parquet" for n in tables} | {f"{n}.{self.figure_format}" for n in figures}

        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        self._marker(key)  # raises if another image owns this folder
        marker_path = folder / MARKER
        if marker_path.exists():
            marker_path.unlink()
            _fsync_dir(folder)
        for child in folder.iterdir():
            if child.name in names:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink(missing_ok=True)

        entries = []
        for name, df in tables.items():
            entries.append(
                self._write(
                    folder,
                    f"{name}.parquet",
                    "table",
                    name,
                    lambda p, df=df: df.to_parquet(p, engine="pyarrow"),
                )
            )
        for name, fig in figures.items():
            entries.append(
                self._write(
                    folder,
                    f"{name}.{self.figure_format}",
                    "figure",
                    name,
                    lambda p, fig=fig: fig.savefig(p, format=self.figure_format, dpi=self.dpi),
                )
            )
        times = {k: float(v) for k, v in (timings or {}).items()}
        times["write_s"] = time.perf_counter() - started
        marker = DoneMarker(
            sample_id=key.sample_id,
            image_id=key.image_id,
            fingerprint=fingerprint,
            seed=None if seed is None else int(seed),
            files=entries,
            timings=times,
            extra=extra_json,
            written_at=utc_now(),
        )
        text = json.dumps(marker.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
        with atomic_write(marker_path, overwrite=True) as tmp:
            tmp.write_text(text, encoding="utf-8")
            if _TEST_HOOK is not None:
                _TEST_HOOK("marker", marker_path, tmp)
        self.exclusions.clear(key)
        return marker

    def invalidate(self, image: Any) -> bool:
        """Remove an image's marker so the next run recomputes it; True if there was one."""
        path = self.folder(image) / MARKER
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def clean_temp(self, *, older_than_s: float = 0.0) -> list[Path]:
        """Delete temporary debris of killed writers anywhere in the output folder.

        Call it from the scheduler before workers start (a worker's temporary file in flight
        looks like debris); ``older_than_s`` spares files modified more recently than that.
        Returns the deleted paths.
        """
        if not self.root.exists():
            return []
        now = time.time()
        removed = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                p = Path(dirpath) / name
                if _TEMP.match(name):
                    try:
                        if now - p.stat().st_mtime >= older_than_s:
                            p.unlink()
                            removed.append(p)
                    except FileNotFoundError:  # removed meanwhile
                        continue
        return sorted(removed)
