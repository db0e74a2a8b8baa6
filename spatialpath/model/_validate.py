"""Shared validators of the data model: every error names the field, the expected form and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from anndata import AnnData

from spatialpath.keys import Key
from spatialpath.model._metadata import get_image_metadata

__all__ = [
    "DataModelError",
    "validate_categorical",
    "validate_cells",
    "validate_image",
    "validate_labels",
]

#: coordinates may exceed the image extent by this factor before they are called pixels.
_EXTENT_TOLERANCE = 1.5


class DataModelError(ValueError):
    """Input that does not follow the spatialpath data model (see ``docs/data-model.md``)."""


def validate_categorical(adata: AnnData, key: str, *, allow_empty_categories: bool = False) -> None:
    """Check that ``adata.obs[key]`` is a complete categorical column.

    Parameters
    ----------
    adata
        Cells or spots.
    key
        Column of ``adata.obs`` to check.
    allow_empty_categories
        Accept categories that no cell has.

    Raises
    ------
    DataModelError
        If the column is missing, not categorical, has missing values or (unless
        ``allow_empty_categories``) categories with no cell.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> obs = pd.DataFrame({"t": pd.Categorical(["a", "b"])}, index=["0", "1"])
    >>> a = ad.AnnData(np.zeros((2, 1)), obs=obs)
    >>> validate_categorical(a, "t")
    """
    if key not in adata.obs:
        cols = ", ".join(map(repr, list(adata.obs.columns)[:15])) or "none"
        raise DataModelError(f"adata.obs[{key!r}] is missing (obs columns: {cols}); pass the right key.")
    col = adata.obs[key]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        raise DataModelError(
            f"adata.obs[{key!r}] must be categorical, got dtype {col.dtype}; convert it with "
            f"adata.obs[{key!r}] = adata.obs[{key!r}].astype('category')"
        )
    n_missing = int(col.isna().sum())
    if n_missing:
        raise DataModelError(
            f"adata.obs[{key!r}] has {n_missing} missing values; label every cell "
            "(e.g. as 'unknown') or drop them with adata = adata[adata.obs[key].notna()].copy()"
        )
    if not allow_empty_categories:
        counts = col.value_counts()
        empty = counts.index[counts.to_numpy() == 0].tolist()
        if empty:
            raise DataModelError(
                f"adata.obs[{key!r}] has categories with no cells: {empty}; remove them with "
                f"adata.obs[{key!r}] = adata.obs[{key!r}].cat.remove_unused_categories()"
            )


def validate_cells(
    adata: AnnData,
    *,
    cluster_key: str | None = None,
    library_key: str | None = None,
    spatial_key: str = Key.obsm.spatial,
    check_extent: bool = True,
) -> None:
    """Check that ``adata`` holds cells or spots in the micrometre data model.

    Checks ``obsm[spatial_key]`` (present, ``(n, 2)`` or ``(n, 3)``, numeric, finite), the
    optional ``cluster_key`` (see :func:`validate_categorical`) and ``library_key`` columns,
    the per-image metadata when present, and, with ``check_extent``, that coordinates fit the
    image's µm extent (coordinates in pixels are caught here).

    Parameters
    ----------
    adata
        Cells or spots.
    cluster_key
        Categorical cell-type column of ``obs`` to check, if any.
    library_key
        Image column of ``obs`` (e.g. ``"image_id"``) to check, if any.
    spatial_key
        Key of the µm coordinates in ``obsm``.
    check_extent
        Also check that coordinates fit each image's µm extent from its metadata.

    Raises
    ------
    DataModelError
        On the first problem found; the message names the field and the fix.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> validate_cells(simulate_tissue(n_cells=500).adata, cluster_key="cell_type", library_key="image_id")
    """
    if spatial_key not in adata.obsm:
        raise DataModelError(
            f"adata.obsm[{spatial_key!r}] is missing: store cell centroids in micrometres as an "
            "(n_cells, 2) float array, x (columns) then y (rows), e.g. "
            f"adata.obsm[{spatial_key!r}] = table[['x_um', 'y_um']].to_numpy()"
        )
    xy = np.asarray(adata.obsm[spatial_key])
    if xy.ndim != 2 or xy.shape[1] not in (2, 3) or xy.shape[0] != adata.n_obs:
        raise DataModelError(
            f"adata.obsm[{spatial_key!r}] must have shape (n_cells, 2) or (n_cells, 3) "
            f"with n_cells = {adata.n_obs}, got {xy.shape}"
        )
    if not np.issubdtype(xy.dtype, np.number):
        raise DataModelError(f"adata.obsm[{spatial_key!r}] must be numeric (µm), got dtype {xy.dtype}")
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        names = adata.obs_names[bad][:5].tolist()
        raise DataModelError(
            f"adata.obsm[{spatial_key!r}] has {int(bad.sum())} cells with NaN or infinite coordinates "
            f"(first: {names}); drop them with adata = adata[np.isfinite(adata.obsm[{spatial_key!r}])"
            ".all(axis=1)].copy() or fix the source table"
        )
    if cluster_key is not None:
        validate_categorical(adata, cluster_key)
    if library_key is not None:
        if library_key not in adata.obs:
            raise DataModelError(
                f"adata.obs[{library_key!r}] is missing: it names the image (ROI, core, field) of each "
                f"cell; set it with adata.obs[{library_key!r}] = 'image_1' for a single image"
            )
        if adata.obs[library_key].isna().any():
            raise DataModelError(f"adata.obs[{library_key!r}] has missing values: every cell needs an image")
    if check_extent:
        _check_extent(adata, xy, library_key or Key.obs.image_id)


def _check_extent(adata: AnnData, xy: np.ndarray, library_key: str) -> None:
    images = adata.uns.get(Key.uns.spatialpath, {}).get(Key.uns.images, {})
    if not images or len(xy) == 0:
        return
    # per-image bounding boxes in one grouped pass (no mask per image: 1e7 cells x 1e3 images)
    if library_key in adata.obs:
        ids = adata.obs[library_key].astype(str).to_numpy()
    else:
        ids = np.full(len(xy), next(iter(images)))
    frame = pd.DataFrame({"id": ids, "x": xy[:, 0], "y": xy[:, 1]})
    bounds = frame.groupby("id", sort=False).agg(
        x0=("x", "min"), x1=("x", "max"), y0=("y", "min"), y1=("y", "max")
    )
    for image_id in images:
        meta = get_image_metadata(adata, image_id)  # also validates the record (units, fields)
        extent = meta.extent_um()
        if extent is None or image_id not in bounds.index:
            continue
        b = bounds.loc[image_id]
        x0, y0, x1, y1 = extent
        span = max(x1 - x0, y1 - y0)
        far = max(b["x1"] - x0, b["y1"] - y0, x0 - b["x0"], y0 - b["y0"])
        if far > _EXTENT_TOLERANCE * span:
            raise DataModelError(
                f"coordinates of image {image_id!r} reach {far:.1f} from its origin, far beyond the "
                f"image's extent of {span:.1f} µm ({meta.shape_px} px at {meta.pixel_size_um} µm/px): "
                "they look like pixels, but obsm['spatial'] must be in micrometres. Multiply pixel "
                f"coordinates by pixel_size_um ({meta.pixel_size_um})."
            )


def validate_image(image: xr.DataArray) -> None:
    """Check that ``image`` is a spatialpath image (see :func:`spatialpath.model.make_image`).

    Parameters
    ----------
    image
        A ``(c, y, x)`` (or ``(c, z, y, x)``) DataArray with µm coordinates.

    Raises
    ------
    DataModelError
        If dims, channel coordinate, units or pixel size are not as the data model says.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialpath.model import make_image
    >>> img = make_image(np.zeros((2, 4, 5)), channels=["DAPI", "CD3"], pixel_size_um=0.5)
    >>> validate_image(img)
    >>> validate_image(img.transpose("y", "x", "c"))
    Traceback (most recent call last):
    ...
    spatialpath.model._validate.DataModelError: image dims must be ('c', 'y', 'x')
    (or ('c', 'z', 'y', 'x')), got ('y', 'x', 'c'); build images with spatialpath.model.make_image()
    """
    if not isinstance(image, xr.DataArray):
        raise DataModelError(f"an image must be an xarray.DataArray, got {type(image).__name__}")
    if image.dims not in (Key.image_dims, ("c", "z", "y", "x")):
        raise DataModelError(
            f"image dims must be {Key.image_dims} (or ('c', 'z', 'y', 'x')), got {image.dims}; "
            "build images with spatialpath.model.make_image()"
        )
    if "c" not in image.coords or len(set(image.c.values.tolist())) != image.sizes["c"]:
        raise DataModelError("image coordinate 'c' must hold one unique name per channel")
    _check_grid(image, "image")


def validate_labels(labels: xr.DataArray, like: xr.DataArray | None = None) -> None:
    """Check an integer ``(y, x)`` label mask, optionally on the same grid as ``like``.

    Parameters
    ----------
    labels
        A ``(y, x)`` integer DataArray with µm coordinates (0 = background).
    like
        An image whose ``y``/``x`` grid the mask must share, if given.

    Raises
    ------
    DataModelError
        If dims, dtype, units or pixel size are wrong, or the grid differs from ``like``.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialpath.model import make_image, make_labels
    >>> img = make_image(np.zeros((1, 4, 5)), channels=["DAPI"], pixel_size_um=0.5)
    >>> validate_labels(make_labels(np.ones((4, 5), np.int32), pixel_size_um=0.5), like=img)
    >>> validate_labels(make_labels(np.ones((4, 6), np.int32), pixel_size_um=0.5), like=img)
    Traceback (most recent call last):
    ...
    spatialpath.model._validate.DataModelError: label mask and image are on different grids
    along 'x' (6 vs 5 pixels); resample one onto the other
    """
    if not isinstance(labels, xr.DataArray):
        raise DataModelError(f"a label mask must be an xarray.DataArray, got {type(labels).__name__}")
    if labels.dims != Key.labels_dims:
        raise DataModelError(f"label mask dims must be {Key.labels_dims}, got {labels.dims}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataModelError(
            f"a label mask must have an integer dtype, got {labels.dtype}; convert with .astype('int32')"
        )
    _check_grid(labels, "label mask")
    if like is not None:
        for dim in ("y", "x"):
            if labels.sizes[dim] != like.sizes[dim] or not np.allclose(labels[dim], like[dim]):
                raise DataModelError(
                    f"label mask and image are on different grids along {dim!r} "
                    f"({labels.sizes[dim]} vs {like.sizes[dim]} pixels); resample one onto the other"
                )


def _check_grid(arr: xr.DataArray, what: str) -> None:
    units = arr.attrs.get(Key.attrs.units)
    if units != Key.unit:
        raise DataModelError(
            f"{what} attrs['units'] must be 'um' (micrometres), got {units!r}; convert the coordinates "
            "to µm and set attrs['units'] = 'um'"
        )
    ps = arr.attrs.get(Key.attrs.pixel_size_um)
    if not isinstance(ps, int | float | np.floating) or not ps > 0:
        raise DataModelError(f"{what} attrs['pixel_size_um'] must be a positive number, got {ps!r}")
    for dim in ("y", "x"):
        if dim not in arr.coords:
            raise DataModelError(f"{what} has no {dim!r} coordinate (µm at pixel centres)")
        c = np.asarray(arr[dim].values, dtype=float)
        if len(c) > 1 and not np.allclose(np.diff(c), ps, rtol=1e-6, atol=1e-9):
            raise DataModelError(
                f"{what} coordinate {dim!r} steps by {np.diff(c)[0]:.6g} µm but attrs['pixel_size_um'] "
                f"is {ps}; the coordinates must be pixel centres, index × pixel size"
            )
