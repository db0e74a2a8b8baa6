"""The plugin's reader: spatialpath outputs and images readable in µm, as napari layers.

:func:`get_reader` decides from cheap checks (file names, HDF5 keys, TIFF tags; never pixels)
whether a path is spatialpath's, and returns None otherwise so napari's other readers keep
their files:

- a ``spatialpath run`` output folder (``manifest.json`` and ``images/<sample>/<image>/``, see
  ``docs/pipeline-store.md``), or a ``spatialpath demo`` folder holding one (``results/``);
- a ``spatialpath demo --input`` output folder (``cells.h5ad`` and ``manifest.json``);
- an ``.h5ad`` with ``uns["spatialpath"]`` (other AnnData files are left to other readers);
- a TIFF whose pixel size spatialpath can read (OME-TIFF, Vectra/inForm, PhenoImager, SVS):
  pyramids open multiscale, lazily; contrast limits come from the coarsest level only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spatialpath.napari._layers import LayerData, image_layer

__all__ = ["get_reader", "read_h5ad_layers", "read_image_layers", "read_output_folder"]

PathOrPaths = str | os.PathLike[str] | list[str] | tuple[str, ...]
_TIFF = (".tif", ".tiff")


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """The reader of ``path`` when it is spatialpath's, else None (never raises).

    Examples
    --------
    >>> get_reader("not-there.h5ad") is None
    True
    """
    try:
        paths = [path] if isinstance(path, str | os.PathLike) else list(path)
        kinds = [_kind(Path(p)) for p in paths]
    except Exception:  # a reader probe must never raise: napari then tries the next reader
        return None
    if not paths or any(k is None for k in kinds):
        return None
    return _read


def _kind(p: Path) -> str | None:
    if p.is_dir():
        return "folder" if _output_root(p) is not None or _demo_input_folder(p) else None
    if not p.is_file():
        return None
    name = p.name.lower()
    if name.endswith(".h5ad"):
        return "h5ad" if _has_spatialpath_uns(p) else None
    if name.endswith(_TIFF):
        return "image" if _readable_tiff(p) else None
    return None


def _has_spatialpath_uns(p: Path) -> bool:
    """True when the file is HDF5 with ``uns/spatialpath`` (X is never read)."""
    import h5py

    try:
        with h5py.File(p, "r") as f:
            return "uns" in f and "spatialpath" in f["uns"]
    except OSError:
        return False


def _readable_tiff(p: Path) -> bool:
    """True when spatialpath reads the TIFF's pixel size (tags and metadata only)."""
    from spatialpath.io._image import _inspect_tiff, _sniff

    try:
        if _sniff(p) != "tiff":
            return False
        _inspect_tiff(p, 0, None, None)
    except Exception:  # no pixel size, not a TIFF, unsupported layout
        return False
    return True


def _output_root(p: Path) -> Path | None:
    """The ``spatialpath run`` output folder at ``p`` (or ``p/results`` of a demo), else None."""
    for root in (p, p / "results"):
        if (root / "images").is_dir() and next((root / "images").glob("*/*/_done.json"), None) is not None:
            return root
        manifest = root / "manifest.json"
        if manifest.is_file() and (root / "images").is_dir():
            try:
                if str(json.loads(manifest.read_text()).get("command", "")).startswith("spatialpath run"):
                    return root
            except (OSError, ValueError):
                continue
    return None


def _demo_input_folder(p: Path) -> bool:
    return (p / "cells.h5ad").is_file() and (p / "manifest.json").is_file()


def _read(path: PathOrPaths) -> list[LayerData]:
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    out: list[LayerData] = []
    for p in map(Path, paths):
        kind = _kind(p)
        if kind == "folder":
            out += read_output_folder(p)
        elif kind == "h5ad":
            out += read_h5ad_layers(p)
        elif kind == "image":
            out += read_image_layers(p)
    return out


def read_image_layers(path: str | os.PathLike[str], **kwargs: Any) -> list[LayerData]:
    """One Image layer per channel of an image file, multiscale when it is pyramidal.

    Pyramid levels are opened lazily with :func:`spatialpath.io.read_pyramid` (a single level with
    :func:`spatialpath.io.read_image`); contrast limits come from the coarsest level (see
    :func:`~spatialpath.napari._layers.image_layer`), so level 0 of a
    pyramid is never read. ``kwargs`` go to ``image_layer``.
    """
    from spatialpath.io import read_image, read_pyramid

    levels = read_pyramid(path)
    # one level: read_image gives numpy up to 256 MiB (contrast from a thumbnail), dask beyond
    image = levels if len(levels) > 1 else read_image(path)
    return [image_layer(image, source=str(path), **kwargs)]


def read_h5ad_layers(path: str | os.PathLike[str], *, regions: Any = None) -> list[LayerData]:
    """The cells (or Visium spots and their H&E) of a spatialpath ``.h5ad``.

    One layer per image (``obs["image_id"]``); images have separate frames, so only the first is
    visible. ``regions`` (a GeoDataFrame) adds a compartments layer per image.
    """
    import anndata as ad

    from spatialpath.napari._reader_folders import adata_layers

    return adata_layers(ad.read_h5ad(path), source=str(path), regions=regions)


def read_output_folder(path: str | os.PathLike[str]) -> list[LayerData]:
    """The layers of a ``spatialpath run`` or ``spatialpath demo`` output folder.

    A pipeline output gives, per image, its cells from the store (``cells.parquet``: cell types,
    cellular neighbourhoods) and, when the sample sheet named in ``manifest.json`` is still
    there, its compartments (``regions_path``) and image (``image_path``). A ``demo --input``
    folder gives the cells of its ``cells.h5ad``.
    """
    from spatialpath.napari._reader_folders import pipeline_layers

    p = Path(path)
    root = _output_root(p)
    if root is not None:
        return pipeline_layers(root)
    return read_h5ad_layers(p / "cells.h5ad")
