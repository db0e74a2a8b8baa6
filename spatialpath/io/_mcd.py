"""Imaging mass cytometry: every acquisition (ROI) of a Fluidigm/Standard BioTools ``.mcd`` file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from spatialpath.io._common import ReaderError, check_path
from spatialpath.io._image_folder import resolve_pixel_size
from spatialpath.model import make_image

__all__ = ["read_mcd"]

PathLike = str | os.PathLike[str]
_PIXEL_FROM = "MCD AblationDistanceBetweenShotsX/Y (readimc Acquisition.pixel_size_x_um/_y_um)"


def _panel_names(panel: PathLike | pd.DataFrame) -> tuple[dict[str, str], set[str]]:
    """Metal tag -> target name, and the metals marked ``keep == 0``, from a steinbock or IMC panel."""
    df = panel if isinstance(panel, pd.DataFrame) else pd.read_csv(check_path(panel, what="panel CSV"))
    for metal_col, name_col in (("channel", "name"), ("Metal Tag", "Target")):
        if metal_col in df and name_col in df:
            break
    else:
        raise ReaderError(
            "a panel needs columns 'channel' and 'name' (steinbock) or 'Metal Tag' and 'Target' "
            f"(IMC segmentation pipeline); found {list(df.columns)}"
        )
    names = {
        str(m): str(n)
        for m, n in zip(df[metal_col], df[name_col], strict=True)
        if pd.notna(m) and pd.notna(n)
    }
    dropped = set()
    if "keep" in df:
        dropped = {
            str(m) for m, k in zip(df[metal_col], df["keep"], strict=True) if pd.notna(k) and int(k) == 0
        }
    return names, dropped


def _channel_names(acq: Any, panel: dict[str, str] | None) -> list[str]:
    """Panel target name per channel, else the MCD channel label, else the metal tag; made unique."""
    names = []
    for metal, label in zip(acq.channel_names, acq.channel_labels, strict=True):
        if panel is not None and metal in panel:
            names.append(panel[metal])
        else:
            names.append(str(label).strip() or metal)
    repeated = {n for n in names if names.count(n) > 1}
    return [f"{n} ({m})" if n in repeated else n for n, m in zip(names, acq.channel_names, strict=True)]


def _select(all_acqs: list[Any], stem: str, wanted: Iterable[int | str] | None, path: Path) -> list[Any]:
    if wanted is None:
        return all_acqs
    wanted = [wanted] if isinstance(wanted, int | str) else list(wanted)
    out = []
    for w in wanted:
        hits = [a for a in all_acqs if w in (a.id, str(a.id), a.description, f"{stem}_{a.id:03d}")]
        if not hits:
            known = ", ".join(f"{a.id} ({a.description})" for a in all_acqs)
            raise ValueError(
                f"acquisition {w!r} is not in {path.name}; its acquisitions are: {known}. Pass ids "
                "(int), descriptions (e.g. 'ROI_001') or image ids (e.g. f'{stem}_001')"
            )
        out.extend(h for h in hits if h not in out)
    return out


def read_mcd(
    path: PathLike,
    *,
    acquisitions: Iterable[int | str] | int | str | None = None,
    panel: PathLike | pd.DataFrame | None = None,
    pixel_size_um: float | None = None,
) -> dict[str, xr.DataArray]:
    """Read the acquisitions (ROIs) of an IMC ``.mcd`` file, each as a ``(c, y, x)`` image in µm.

    Uses `readimc <https://github.com/BodenmillerGroup/readimc>`_ (``pip install "spatialpath[mcd]"``).
    Panoramas and before/after-ablation images are not read.

    Parameters
    ----------
    path
        The ``.mcd`` file.
    acquisitions
        Which acquisitions: ids (``1``), descriptions (``"ROI_001"``) or image ids
        (``"<file stem>_001"``); default all, in file order.
    panel
        Optional panel (a CSV path or DataFrame), steinbock (``channel``, ``name``, ``keep``) or
        IMC segmentation pipeline (``Metal Tag``, ``Target``). Channels are named by the panel's
        target; channels with ``keep == 0`` are dropped. Metals missing from the panel keep
        their MCD label.
    pixel_size_um
        Overrides the MCD's pixel size (with a warning if they differ by more than 1 %).

    Returns
    -------
    dict from image id to image. The image id is ``f"{file stem}_{acquisition id:03d}"``,
    steinbock's name for the same ROI (so it matches the ``Image`` column of steinbock tables,
    without ``.tiff``). Channel names (coordinate ``c``) are the panel targets if ``panel`` is
    given, else the channel labels typed into the MCD panel (e.g. ``"Cytoker_651((3356))Pr141"``),
    falling back to the metal when a label is empty; the non-index coordinates ``metal``
    (``"Pr141"``) and ``label`` (the raw MCD label) are always there. The pixel size is the ablation
    spot spacing ``AblationDistanceBetweenShotsX/Y`` of the acquisition in the MCD XML (1 µm on
    Hyperion systems). ``attrs`` also hold ``acquisition_id``, ``acquisition_description`` and
    ``slide_id``. Data are float32 numpy arrays (readimc reads whole acquisitions).

    Raises
    ------
    ImportError
        If readimc is not installed.
    ReaderError
        If the file is not a readable MCD or an acquisition's data are missing or truncated.
    ValueError
        If a requested acquisition does not exist (the message lists them), or the MCD has no
        ablation spacing and no ``pixel_size_um`` is given.

    Examples
    --------
    >>> read_mcd("/nonexistent/run.mcd")
    Traceback (most recent call last):
    ...
    FileNotFoundError: MCD file not found: /nonexistent/run.mcd (check the path and the current folder)
    """
    p = check_path(path, what="MCD file")
    try:
        from readimc import MCDFile
    except ImportError:
        raise ImportError('reading .mcd files needs readimc: pip install "spatialpath[mcd]"') from None
    names_map, dropped = _panel_names(panel) if panel is not None else (None, set())
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    out: dict[str, xr.DataArray] = {}
    try:
        mcd = MCDFile(p)
        mcd.open()
    except Exception as e:  # readimc raises OSError, ValueError, ParseError... on bad files
        raise ReaderError(f"{p.name}: not a readable MCD file (truncated or corrupt?): {e}") from e
    with mcd:
        all_acqs = [a for slide in mcd.slides for a in slide.acquisitions]
        for acq in _select(all_acqs, stem, acquisitions, p):
            image_id = f"{stem}_{acq.id:03d}"
            try:
                data = mcd.read_acquisition(acq)
            except Exception as e:
                raise ReaderError(
                    f"{p.name}: acquisition {acq.id} ({acq.description}) cannot be read: {e}. "
                    "If the run was interrupted, read its .txt export instead"
                ) from e
            psx, psy = acq.pixel_size_x_um, acq.pixel_size_y_um
            if psx is not None and psy is not None and abs(psx - psy) > 0.01 * max(psx, psy):
                raise ReaderError(f"{p.name}: acquisition {acq.id} has non-square pixels ({psx} x {psy} µm)")
            name = f"{p.name} acquisition {acq.id}"
            ps, ps_from = resolve_pixel_size(
                psx, _PIXEL_FROM, pixel_size_um, name, "no ablation spacing in the MCD"
            )
            keep = np.array([m not in dropped for m in acq.channel_names])
            names = np.array(_channel_names(acq, names_map))
            image = make_image(
                data[keep], channels=names[keep].tolist(), pixel_size_um=ps, image_id=image_id, source=str(p)
            )
            image = image.assign_coords(
                metal=("c", np.array(acq.channel_names)[keep].tolist()),
                label=("c", np.array(acq.channel_labels)[keep].tolist()),
            )
            image.attrs.update(
                acquisition_id=int(acq.id),
                acquisition_description=str(acq.description),
                slide_id=int(acq.slide.id),
                channels_from="panel target" if names_map is not None else "MCD channel labels",
                pixel_size_from=ps_from,
            )
            out[image_id] = image
    return out
