"""Points layers of cells and Visium spots (µm, napari's (y, x) order), without napari."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.napari import _keys
from spatialpath.napari._colors import point_colors
from spatialpath.napari._layer_base import UNITS, LayerData, layer_metadata, transform_to_affine

if TYPE_CHECKING:  # pragma: no cover
    from spatialpath.align import Transform

__all__ = ["DEFAULT_CELL_DIAMETER_UM", "cells_layer", "image_cells", "spots_layer"]

#: point diameter when ``obs["area_um2"]`` is absent: a typical cell.
DEFAULT_CELL_DIAMETER_UM = 10.0


def image_cells(adata: AnnData, image_id: str | None) -> AnnData:
    """The cells of ``image_id`` (a copy), or ``adata`` itself when it holds only that image."""
    if image_id is None or Key.obs.image_id not in adata.obs.columns:
        return adata
    ids = adata.obs[Key.obs.image_id].astype(str).to_numpy()
    keep = ids == str(image_id)
    if keep.all():
        return adata
    if not keep.any():
        raise DataModelError(f"no cell has obs['image_id'] == {image_id!r}; images: {sorted(set(ids))[:10]}")
    sub = adata[keep].copy()
    # AnnData drops unused categories (and trims their uns colours) when subsetting: keep the
    # full categories and palette so a type has the same colour in every image's layer
    for col, values in adata.obs.items():
        if isinstance(values.dtype, pd.CategoricalDtype):
            sub.obs[col] = pd.Categorical(sub.obs[col], categories=values.cat.categories)
            colors = adata.uns.get(Key.uns.colors(str(col)))
            if colors is not None:
                sub.uns[Key.uns.colors(str(col))] = colors
    return sub


def _positions(adata: AnnData) -> np.ndarray:
    xy = adata.obsm.get(Key.obsm.spatial)
    xy = None if xy is None else np.asarray(xy, dtype=np.float64)
    if xy is None or xy.ndim != 2 or xy.shape[1] < 2:
        raise DataModelError(
            "adata.obsm['spatial'] must hold the centroids in µm as an (n_cells, 2) float array, x then y; "
            f"got {None if xy is None else xy.shape}"
        )
    return np.ascontiguousarray(xy[:, 1::-1])  # (x, y) -> napari's (y, x)


def _default_size(adata: AnnData) -> float:
    area = adata.obs.get(Key.obs.area_um2)
    if area is not None:
        a = np.asarray(area, dtype=np.float64)
        a = a[np.isfinite(a) & (a > 0)]
        if a.size:
            return float(2 * np.sqrt(np.median(a) / np.pi))
    return DEFAULT_CELL_DIAMETER_UM


def _color_key(adata: AnnData, color_by: str | None) -> str | None:
    """``color_by``, or None when the default ``cell_type`` column is absent."""
    if (
        color_by == Key.obs.cell_type
        and color_by not in adata.obs.columns
        and color_by not in adata.var_names
    ):
        return None
    return color_by


def _points(
    kind: str, adata: AnnData, color_by: str | None, image_id: str | None, name: str, size: float,
    transform: Transform | None, source: str | None,
) -> LayerData:  # fmt: skip
    cells = image_cells(adata, image_id)
    data = _positions(cells)
    face, legend = point_colors(cells, _color_key(cells, color_by))
    kw: dict[str, Any] = {
        "name": name,
        "size": float(size),
        "face_color": face,
        "border_width": 0.0,
        "features": cells.obs.copy(),
        "units": UNITS,
        "metadata": layer_metadata(
            kind, image_id, source, **{_keys.ADATA: cells, "color_by": color_by, "legend": legend}
        ),
    }
    affine = transform_to_affine(transform)
    if affine is not None:
        kw["affine"] = affine
    return data, kw, "points"


def cells_layer(
    adata: AnnData,
    *,
    color_by: str | None = "cell_type",
    image_id: str | None = None,
    name: str | None = None,
    size_um: float | None = None,
    transform: Transform | None = None,
    source: str | None = None,
) -> LayerData:
    """A Points layer of the cells: ``obsm["spatial"][:, ::-1]`` (µm, (y, x)), ``obs`` as features.

    Parameters
    ----------
    adata
        Cells with ``obsm["spatial"]`` in µm.
    color_by
        A categorical ``obs`` column (colours ``uns[f"{color_by}_colors"]``, scanpy's palette), a
        numeric column or a marker (viridis), or None (white). A missing default ``cell_type`` is
        ignored.
    image_id
        Keep only the cells of this image; ``metadata[ADATA]`` is then their AnnData (a copy).
    name
        Layer name; default ``"cells"`` (``"cells <image_id>"`` with ``image_id``).
    size_um
        Point diameter in µm; default the median equivalent diameter of ``obs["area_um2"]``, else
        :data:`DEFAULT_CELL_DIAMETER_UM`.
    transform, source
        As in :func:`image_layer`.

    Examples
    --------
    >>> import anndata as ad, pandas as pd
    >>> a = ad.AnnData(obs=pd.DataFrame({"cell_type": pd.Categorical(["T", "B"])}, index=["c0", "c1"]))
    >>> a.obsm["spatial"] = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> a.uns["cell_type_colors"] = ["#0000ff", "#ff0000"]  # B, T
    >>> data, kw, kind = cells_layer(a)
    >>> kind, data.tolist(), kw["face_color"][:, :3].tolist()
    ('points', [[2.0, 1.0], [4.0, 3.0]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    """
    default = "cells" if image_id is None else f"cells {image_id}"
    size = _default_size(adata) if size_um is None else size_um
    return _points("cells", adata, color_by, image_id, name or default, size, transform, source)


def _spot_geometry(adata: AnnData, library_id: str) -> tuple[float, str]:
    """Spot diameter (µm) and symbol: discs for Visium, squares for Visium HD bins."""
    record = adata.uns.get(Key.uns.spatialpath, {}).get(Key.uns.images, {}).get(library_id, {})
    extra = record.get("extra", {}) if isinstance(record, dict) else {}
    symbol = "square" if "bin_size_um" in extra else "disc"
    try:
        d = float(adata.uns[Key.uns.spatial][library_id]["scalefactors"]["spot_diameter_fullres"])
    except (KeyError, TypeError, ValueError):
        raise DataModelError(
            f"no uns['spatial'][{library_id!r}]['scalefactors']['spot_diameter_fullres']: read the Space "
            "Ranger output with spatialpath.io.read_visium, or pass diameter_um"
        ) from None
    if "spaceranger_scalefactors" in extra:  # read_visium rescaled the scale factors to µm
        return d, symbol
    if "um_per_fullres_pixel" in extra:
        return d * float(extra["um_per_fullres_pixel"]), symbol
    raise DataModelError(
        f"uns['spatial'][{library_id!r}]['scalefactors']['spot_diameter_fullres'] = {d:g} is in "
        "full-resolution pixels and their size in µm is unknown; read the Space Ranger output with "
        "spatialpath.io.read_visium (positions and diameter in µm), or pass diameter_um"
    )


def spots_layer(
    adata: AnnData,
    *,
    library_id: str | None = None,
    color_by: str | None = None,
    name: str | None = None,
    diameter_um: float | None = None,
    transform: Transform | None = None,
    source: str | None = None,
) -> LayerData:
    """A Points layer of Visium spots as discs of their diameter in µm (squares for HD bins).

    The diameter is ``uns["spatial"][library_id]["scalefactors"]["spot_diameter_fullres"]`` as
    stored by :func:`spatialpath.io.read_visium` (µm: 65 µm, 10x's definition of the full-resolution
    spot, as scanpy draws it; the HD bin size), or that value × ``um_per_fullres_pixel`` of the
    image record; ``diameter_um`` overrides it (e.g. 55 for the printed capture area).

    Examples
    --------
    >>> import anndata as ad, pandas as pd
    >>> a = ad.AnnData(obs=pd.DataFrame({"image_id": ["s1"] * 2}, index=["AAA-1", "CCC-1"]))
    >>> a.obsm["spatial"] = np.array([[100.0, 100.0], [200.0, 100.0]])
    >>> a.uns["spatial"] = {"s1": {"scalefactors": {"spot_diameter_fullres": 65.0}}}
    >>> a.uns["spatialpath"] = {"images": {"s1": {"extra": {"spaceranger_scalefactors": {}}}}}
    >>> data, kw, kind = spots_layer(a)
    >>> kw["size"], kw["symbol"], kw["metadata"]["spatialpath_kind"]
    (65.0, 'disc', 'spots')
    """
    libs = list(adata.uns.get(Key.uns.spatial, {}))
    if library_id is None:
        if len(libs) > 1:
            raise DataModelError(f"adata.uns['spatial'] holds several libraries {libs}: pass library_id")
        library_id = libs[0] if libs else None
    if diameter_um is not None:
        size, symbol = float(diameter_um), "disc"
    elif library_id is None:
        raise DataModelError(
            "adata.uns['spatial'] is empty: read Visium data with read_visium or pass diameter_um"
        )
    else:
        size, symbol = _spot_geometry(adata, library_id)
    image_id = library_id if library_id is not None and len(libs) > 1 else None
    data, kw, kind = _points("spots", adata, color_by, image_id, name or "spots", size, transform, source)
    kw["metadata"][_keys.IMAGE_ID] = library_id
    kw.update(symbol=symbol, opacity=0.8)
    return data, kw, kind
