"""Atomic outputs and the run manifest: one schema for the whole package.

Every file spatialpath writes goes through :func:`atomic_write`: the content is written to a
temporary file in the target folder, flushed to disk (``fsync``) and renamed onto the target,
so a crash or an exception never leaves a partial file. An existing file is never replaced
unless ``overwrite=True``, and nothing is written inside a folder the run reads from.

:func:`write_manifest` records what is needed to reproduce a run: package, Python and
dependency versions, the command and its parameters, seeds, input and output files with their
size and SHA-256, and start and end times.

"Reproducible" means value-identical tables and byte-identical CSV files for the same inputs
and parameters. Parquet and Excel files embed writer metadata: compare their values, not
their hashes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from spatialpath._version import __version__

__all__ = [
    "RESULT_DEPENDENCIES",
    "FileRecord",
    "Manifest",
    "atomic_write",
    "check_output_path",
    "environment",
    "file_record",
    "sha256_file",
    "utc_now",
    "write_manifest",
]

#: distributions whose version can change a result; recorded in every manifest.
RESULT_DEPENDENCIES: tuple[str, ...] = (
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "scikit-image",
    "numba",
    "llvmlite",
    "anndata",
    "scanpy",
    "squidpy",
    "xarray",
    "dask",
    "distributed",
    "geopandas",
    "shapely",
    "tifffile",
    "imagecodecs",
    "zarr",
    "pyarrow",
    "h5py",
    "matplotlib",
    "pydantic",
    "pyyaml",
    "openpyxl",
    "statsmodels",
    "spatialdata",
    "readimc",
)

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks.

    Parameters
    ----------
    path
        The file to hash.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def utc_now() -> str:
    """Return the current time in UTC as ISO 8601 with seconds, e.g. ``2026-01-01T12:00:00+00:00``.

    Examples
    --------
    >>> from datetime import datetime
    >>> t = utc_now()
    >>> datetime.fromisoformat(t).utcoffset().total_seconds(), len(t), t[-6:]
    (0.0, 25, '+00:00')
    """
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def check_output_path(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Refuse an output path that is an input or lies inside an input folder.

    A file given as input makes its whole folder an input folder.

    Parameters
    ----------
    path
        The output file or folder.
    inputs
        Input files and folders of the run.

    Returns
    -------
    pathlib.Path
        ``path`` made absolute.

    Raises
    ------
    ValueError
        If ``path`` is an input or lies inside an input folder.

    Examples
    --------
    >>> check_output_path("/out/table.csv", inputs=["/data/cells.csv"]).name
    'table.csv'
    """
    target = Path(path).resolve()
    for inp in inputs:
        src = Path(inp).resolve()
        folder = src if src.is_dir() else src.parent
        if target == src or folder in target.parents:
            raise ValueError(
                f"refusing to write {target}: it is inside the input folder {folder}. "
                "Inputs are never written to; choose an output folder outside it."
            )
    return target


@contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[Path]:
    """Write a file atomically: yield a temporary path, then move it onto ``path``.

    Write to the yielded path (it has the same suffix as ``path``, so writers that infer the
    format from the suffix work). When the block ends without an exception, the file is
    flushed to disk and renamed onto ``path``; on an exception the temporary file is removed
    and ``path`` is left as it was.

    Parameters
    ----------
    path
        Final location. Its folder is created if missing.
    overwrite
        Replace an existing file. Without it an existing file raises ``FileExistsError``
        (checked before writing and again, race-free, at the rename).
    inputs
        Input files or folders of the run: writing inside them is refused.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    ValueError
        If ``path`` lies inside an input folder.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_write(out) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> out.read_text()
    'hello'
    """
    target = check_output_path(path, inputs)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True (or --overwrite) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"the writer did not create the temporary file for {target}")
        if tmp.is_file():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600: give the usual permissions
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # fails if target appeared meanwhile: never clobbers
            tmp.unlink()
        _fsync_dir(target.parent)
    except BaseException:
        if tmp.is_file():
            tmp.unlink()
        raise


def _umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class FileRecord(BaseModel):
    """A file read or written by a run.

    Attributes
    ----------
    path
        POSIX path, relative to the manifest's folder for outputs.
    size_bytes
        File size.
    sha256
        Hex SHA-256 of the content.

    Examples
    --------
    >>> r = FileRecord(path="tables/a.txt", size_bytes=3, sha256="ba7816bf" + "0" * 56)
    >>> r.model_dump()["size_bytes"], FileRecord.model_validate_json(r.model_dump_json()) == r
    (3, True)
    """

    path: str
    size_bytes: int
    sha256: str


def file_record(
    path: str | os.PathLike[str], *, relative_to: str | os.PathLike[str] | None = None
) -> FileRecord:
    """Return the path (relative to ``relative_to`` when inside it), size and SHA-256 of a file.

    Parameters
    ----------
    path
        The file.
    relative_to
        A folder: record the path relative to it when the file lies inside it (else absolute).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "tables").mkdir()
    >>> _ = (d / "tables" / "a.txt").write_bytes(b"abc")
    >>> r = file_record(d / "tables" / "a.txt", relative_to=d)
    >>> r.path, r.size_bytes, r.sha256[:16]  # SHA-256 of b"abc" (FIPS 180-2 test vector)
    ('tables/a.txt', 3, 'ba7816bf8f01cfea')
    """
    p = Path(path)
    shown = p
    if relative_to is not None:
        try:
            shown = p.resolve().relative_to(Path(relative_to).resolve())
        except ValueError:
            shown = p.resolve()
    return FileRecord(path=shown.as_posix(), size_bytes=p.stat().st_size, sha256=sha256_file(p))


def environment() -> dict[str, Any]:
    """Return the Python version, platform and the version of every result-affecting dependency.

    Examples
    --------
    >>> import sys, numpy as np
    >>> env = environment()
    >>> env["python"] == sys.version.split()[0], env["dependencies"]["numpy"] == np.__version__
    (True, True)
    >>> sorted(env)
    ['dependencies', 'implementation', 'platform', 'python']
    """
    deps = {}
    for name in RESULT_DEPENDENCIES:
        try:
            deps[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "dependencies": deps,
    }


class Manifest(BaseModel):
    """Schema of ``manifest.json`` (``schema_version`` 1).

    Built and written by :func:`write_manifest`; read one back with ``Manifest.model_validate_json``.
    Unknown fields are refused.

    Examples
    --------
    >>> m = Manifest(command="spatialpath demo", parameters={"n_perms": 5}, seeds={"seed": 0},
    ...              started_at="2026-01-01T12:00:00+00:00", finished_at="2026-01-01T12:00:05+00:00")
    >>> m.schema_version, sorted(m.environment), m.inputs
    (1, ['dependencies', 'implementation', 'platform', 'python'], [])
    >>> Manifest.model_validate_json(m.model_dump_json()) == m
    True
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    spatialpath_version: str = __version__
    command: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    seeds: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=environment)
    inputs: list[FileRecord] = Field(default_factory=list)
    outputs: list[FileRecord] = Field(default_factory=list)
    started_at: str
    finished_at: str


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths, tuples and sets into JSON-ready values."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    return obj


def write_manifest(
    path: str | os.PathLike[str],
    *,
    command: str,
    parameters: Mapping[str, Any] | None = None,
    seeds: Mapping[str, Any] | None = None,
    inputs: Sequence[str | os.PathLike[str]] = (),
    outputs: Sequence[str | os.PathLike[str]] = (),
    started_at: str,
    finished_at: str | None = None,
    redact_paths: bool = False,
    overwrite: bool = False,
) -> Manifest:
    r"""Write ``manifest.json`` describing a run, atomically.

    Parameters
    ----------
    path
        The manifest file (conventionally ``<out_dir>/manifest.json``).
    command
        The command line or function call that produced the outputs.
    parameters, seeds
        Every parameter and seed of the run (JSON-serialisable after numpy/path conversion).
    inputs, outputs
        Files read and written; each is recorded with size and SHA-256. Outputs are recorded
        relative to the manifest's folder.
    started_at, finished_at
        ISO 8601 times (see :func:`utc_now`); ``finished_at`` defaults to now.
    redact_paths
        Record input files by file name only (for de-identified outputs).
    overwrite
        Replace an existing manifest.

    Returns
    -------
    The manifest that was written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "t.csv").write_text("a\n1\n")
    >>> m = write_manifest(d / "manifest.json", command="demo", outputs=[d / "t.csv"], started_at=utc_now())
    >>> m.outputs[0].path, m.outputs[0].size_bytes
    ('t.csv', 4)
    """
    out_dir = Path(path).resolve().parent
    in_records = []
    for p in inputs:
        rec = file_record(p)
        if redact_paths:
            rec.path = Path(rec.path).name
        in_records.append(rec)
    manifest = Manifest(
        command=command,
        parameters=_jsonable(dict(parameters or {})),
        seeds=_jsonable(dict(seeds or {})),
        inputs=in_records,
        outputs=[file_record(p, relative_to=out_dir) for p in outputs],
        started_at=started_at,
        finished_at=finished_at or utc_now(),
    )
    text = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"
    with atomic_write(path, overwrite=overwrite, inputs=inputs) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return manifest
