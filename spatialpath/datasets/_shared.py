"""Locate the public example data (``../shared/data``) used by the notebooks, without absolute paths."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV", "shared_data"]

#: environment variable naming the data folder (the folder that holds ``schurch_crc_codex_cells/``...).
DATA_ENV = "SPATIALPATH_DATA"
#: where the data folder is looked for relative to the current folder and each of its parents.
_RELATIVE = Path("..") / "shared" / "data"


def _candidates(root: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    """Data folders to try, in order, each with where it came from."""
    found: list[tuple[str, Path]] = []
    if root is not None:
        found.append(("root=", Path(root).expanduser()))
    env = os.environ.get(DATA_ENV)
    if env:
        found.append((f"${DATA_ENV}", Path(env).expanduser()))
    here = Path.cwd()
    for folder in (here, *here.parents):
        found.append(("../shared/data above the current folder", folder / _RELATIVE))
    return found


def shared_data(*parts: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Path of a file or folder in the public example data.

    The data folder is the first that exists (and holds ``parts``) of: ``root``; the folder
    named by the environment variable ``SPATIALPATH_DATA``; ``../shared/data`` relative to the
    current folder or any of its parents (so a notebook run from ``notebooks/`` and a script run
    from the project root both find it).

    Parameters
    ----------
    *parts
        Path components inside the data folder, e.g. ``"phenoptr_vectra_mif"``,
        ``"TIFF"``. None: the data folder itself.
    root
        A data folder given by the user; looked at first.

    Returns
    -------
    The resolved path (it exists).

    Raises
    ------
    FileNotFoundError
        If no candidate folder holds ``parts``; the message lists every place looked at and
        how to set ``SPATIALPATH_DATA``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     (Path(tmp) / "my_study").mkdir()
    ...     shared_data("my_study", root=tmp).name
    'my_study'
    >>> shared_data("no_such_dataset", root="no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: example data 'no_such_dataset' not found; looked in: ...
    """
    for part in parts:
        if Path(part).is_absolute() or ".." in Path(part).parts:
            raise ValueError(
                f"shared_data parts must be relative names inside the data folder, got {part!r}; "
                "pass the folder itself as root= instead"
            )
    looked: list[str] = []
    seen: set[Path] = set()
    for origin, folder in _candidates(root):
        path = folder.joinpath(*parts)
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        looked.append(f"{resolved} ({origin})")
        if path.exists():
            return resolved
    what = "/".join(parts) if parts else "the data folder"
    raise FileNotFoundError(
        f"example data {what!r} not found; looked in: " + "; ".join(looked) + ". "
        f"Set the environment variable {DATA_ENV} to the folder that holds the example datasets "
        f"(e.g. `export {DATA_ENV}=/path/to/shared/data`), or pass root=... ."
    )
