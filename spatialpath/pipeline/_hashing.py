"""Input hashes (cached by path, size and mtime) and the fingerprint of one image's computation.

A **fingerprint** is the SHA-256 of the canonical JSON of everything an image's result depends
on: its parameters, the SHA-256 of each input file (by role, e.g. ``{"cells": ..., "image":
...}``, so moving the cohort folder changes nothing) and the versions of spatialpath, Python
(major.minor) and every result-affecting dependency (:data:`spatialpath.provenance.RESULT_DEPENDENCIES`).

Hashing large images on every run would be slow, so :class:`HashCache` remembers
``(absolute path, size, mtime_ns) -> sha256`` in a JSON file in the output folder. What the
cache can and cannot see:

- a change of size or modification time (any ordinary edit, copy without ``-p``, re-export)
  is detected and the file is re-read;
- a content change that keeps **both** the size and the nanosecond mtime (an in-place edit
  followed by ``touch -d``/``os.utime`` back to the old time, or a tool that preserves mtime)
  is **not** detected unless ``verify="hash"``, which re-reads every file;
- an entry is trusted only when the file's mtime is more than :data:`RACY_NS` older than the
  moment it was hashed, so a file rewritten within the file system's timestamp granularity
  right after hashing is re-read ("racily clean" entries, as in git's index).

The cache file is replaced atomically and its read-merge-write is serialised with an advisory
lock (``fcntl.flock``; without it, on platforms lacking ``fcntl``, concurrent savers can lose
each other's new entries, which costs a re-read, never a wrong hash).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from spatialpath._version import __version__
from spatialpath.provenance import atomic_write, environment, sha256_file

__all__ = [
    "CACHE_NAME",
    "RACY_NS",
    "HashCache",
    "canonical_json",
    "fingerprint",
    "package_versions",
]

#: name of the hash cache inside the output folder.
CACHE_NAME = "_input_hashes.json"
#: a cache entry is trusted only if the file's mtime is this much older than its hashing time.
RACY_NS = 2_000_000_000
_SHA = re.compile(r"^[0-9a-f]{64}$")
_SCHEMA = 1


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    env = environment()
    out = {"spatialpath": __version__, "python": "{}.{}".format(*sys.version_info[:2])}
    out.update(env["dependencies"])
    return tuple(sorted(out.items()))


def package_versions() -> dict[str, str]:
    """Versions that enter every fingerprint.

    spatialpath, Python (major.minor) and each installed result-affecting dependency
    (:data:`spatialpath.provenance.RESULT_DEPENDENCIES`).

    Examples
    --------
    >>> v = package_versions()
    >>> {"spatialpath", "python", "numpy", "pandas"} <= set(v)
    True
    """
    return dict(_versions())


def _canonical(obj: Any, where: str) -> Any:
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, enum.Enum):
        return _canonical(obj.value, where)
    if hasattr(obj, "model_dump"):  # pydantic models (the pipeline config)
        return _canonical(obj.model_dump(mode="json"), where)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(dataclasses.asdict(obj), where)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"{where} has the key {k!r} of type {type(k).__name__}: fingerprinted mappings need "
                    "str keys (so 1 and '1' cannot be confused); convert the keys with str()"
                )
            out[k] = _canonical(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, list | tuple):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, set | frozenset):
        items = [_canonical(v, f"{where}{{}}") for v in obj]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, os.PathLike):
        return Path(obj).as_posix()
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):  # numpy scalars and arrays
        return _canonical(obj.tolist(), where)
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__name__}, which has no canonical JSON form; "
        "pass plain values (str, int, float, bool, None, lists, str-keyed dicts, paths, numpy values)"
    )


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of ``obj``: sorted keys, no whitespace, ASCII, shortest floats.

    Tuples become lists, sets sorted lists, paths POSIX strings, numpy values Python values,
    pydantic models their JSON dump. ``1`` and ``1.0`` stay different (``1`` vs ``1.0``).

    Raises
    ------
    TypeError
        For a value without a canonical form or a mapping with a non-str key (the message names
        where it is).

    Examples
    --------
    >>> canonical_json({"b": (1, 2.5), "a": None})
    '{"a":null,"b":[1,2.5]}'
    """
    value = _canonical(obj, "parameters")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)


def fingerprint(
    parameters: Mapping[str, Any],
    inputs: Mapping[str, str],
    versions: Mapping[str, str] | None = None,
) -> str:
    """SHA-256 (hex) of the canonical JSON of parameters, input hashes and package versions.

    Parameters
    ----------
    parameters
        Every parameter the image's result depends on (key order does not matter).
    inputs
        Input role -> SHA-256 hex of the file (see :meth:`HashCache.hash_inputs`). Roles, not
        paths, so that moving the cohort folder does not change the fingerprint.
    versions
        Package versions; defaults to :func:`package_versions`.

    Raises
    ------
    ValueError
        If an input hash is not 64 lowercase hex digits.

    Examples
    --------
    >>> h = "0" * 64
    >>> fingerprint({"a": 1, "b": 2}, {"cells": h}, {"x": "1"}) == fingerprint(
    ...     {"b": 2, "a": 1}, {"cells": h}, {"x": "1"})
    True
    >>> fingerprint({"a": 1}, {"cells": h}, {"x": "1"}) == fingerprint({"a": 2}, {"cells": h}, {"x": "1"})
    False
    """
    for role, digest in inputs.items():
        if not isinstance(digest, str) or not _SHA.match(digest):
            raise ValueError(
                f"inputs[{role!r}] = {digest!r} is not a SHA-256 hex digest (64 lowercase hex digits); "
                "hash the file with HashCache.hash_file or spatialpath.provenance.sha256_file"
            )
    payload = {
        "schema": _SCHEMA,
        "parameters": _canonical(parameters, "parameters"),
        "inputs": dict(inputs),
        "versions": dict(package_versions() if versions is None else versions),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: atomic replace only
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class HashCache:
    r"""SHA-256 of input files, cached by ``(absolute path, size, mtime_ns)`` in a JSON file.

    Parameters
    ----------
    path
        The cache file, conventionally ``<output>/_input_hashes.json`` (see :meth:`in_folder`).
        A missing or unreadable file starts an empty cache (with a warning when unreadable).

    Attributes
    ----------
    reads
        Number of files this object has read to hash them (cache misses).

    Examples
    --------
    >>> import os, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> f = d / "cells.csv"
    >>> _ = f.write_text("x,y\\n1,2\\n")
    >>> os.utime(f, ns=(0, 0))  # an old file: its cache entry is trusted
    >>> cache = HashCache.in_folder(d)
    >>> a = cache.hash_file(f); b = cache.hash_file(f)
    >>> a == b, cache.reads
    (True, 1)
    >>> cache.save().name
    '_input_hashes.json'
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.reads = 0
        self._entries: dict[str, dict[str, Any]] = self._load(warn=True)
        self._new: dict[str, dict[str, Any]] = {}

    @classmethod
    def in_folder(cls, folder: str | os.PathLike[str]) -> HashCache:
        """The cache of an output folder: ``<folder>/_input_hashes.json``."""
        return cls(Path(folder) / CACHE_NAME)

    def _load(self, *, warn: bool = False) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            if warn:
                warnings.warn(f"ignoring the unreadable hash cache {self.path}: {err}", stacklevel=3)
            return {}
        if not isinstance(data, dict) or data.get("schema_version") != _SCHEMA:
            return {}
        entries = data.get("entries", {})
        return {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}

    def hash_file(self, path: str | os.PathLike[str], *, verify: Literal["stat", "hash"] = "stat") -> str:
        r"""SHA-256 of a file, from the cache when its path, size and mtime_ns are unchanged.

        ``verify="hash"`` always re-reads the file (and refreshes the entry). A folder input
        (Visium, Xenium, CosMx, MERSCOPE outputs) hashes to the SHA-256 of the sorted lines
        ``"<relative path>\0<sha256>\n"`` of its files, each cached on its own; names starting
        with ``.`` are skipped.

        Raises
        ------
        ValueError
            For an unknown ``verify``.
        FileNotFoundError
            If the file does not exist.
        """
        if verify not in ("stat", "hash"):
            raise ValueError(
                f"verify={verify!r}; use 'stat' (trust size+mtime) or 'hash' (re-read every file)"
            )
        p = Path(path).resolve()
        if p.is_dir():
            return self._hash_dir(p, verify)
        st = p.stat()
        key = str(p)
        entry = self._new.get(key) or self._entries.get(key)
        if (
            verify == "stat"
            and entry is not None
            and entry.get("size") == st.st_size
            and entry.get("mtime_ns") == st.st_mtime_ns
            and isinstance(entry.get("hashed_at_ns"), int)
            and st.st_mtime_ns + RACY_NS < entry["hashed_at_ns"]
            and isinstance(entry.get("sha256"), str)
        ):
            return entry["sha256"]
        started = time.time_ns()
        digest = sha256_file(p)
        self.reads += 1
        after = p.stat()
        if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns):  # unchanged while read
            self._new[key] = {
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": digest,
                "hashed_at_ns": started,
            }
        return digest

    def _hash_dir(self, folder: Path, verify: Literal["stat", "hash"]) -> str:
        lines = []
        for dirpath, dirnames, files in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in files:
                if not name.startswith("."):
                    f = Path(dirpath) / name
                    lines.append(f"{f.relative_to(folder).as_posix()}\0{self.hash_file(f, verify=verify)}\n")
        return hashlib.sha256("".join(sorted(lines)).encode("utf-8")).hexdigest()

    def hash_inputs(
        self, inputs: Mapping[str, str | os.PathLike[str]], *, verify: Literal["stat", "hash"] = "stat"
    ) -> dict[str, str]:
        """Hash each input file: role -> SHA-256 (the ``inputs`` argument of :func:`fingerprint`)."""
        return {role: self.hash_file(p, verify=verify) for role, p in inputs.items()}

    def save(self) -> Path:
        """Merge the new entries into the file on disk and replace it atomically.

        Entries written meanwhile by other processes are kept (the merge runs under a file lock).
        """
        with _locked(self.path.with_name(self.path.name + ".lock")):
            merged = self._load()
            merged.update(self._new)
            text = json.dumps({"schema_version": _SCHEMA, "entries": merged}, sort_keys=True, indent=0)
            with atomic_write(self.path, overwrite=True) as tmp:
                tmp.write_text(text + "\n", encoding="utf-8")
        self._entries = merged
        self._new = {}
        return self.path
