"""Per-cell quantification of an image over a label mask: intensities, areas and centroids in µm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import anndata as ad
import numpy as np
import pandas as pd
import xarray as xr

from spatialpath.io._common import cells_to_anndata
from spatialpath.keys import Key
from spatialpath.model import DataModelError, ImageMetadata, validate_image, validate_labels

__all__ = ["STATISTICS", "quantify"]

#: per-cell intensity statistics :func:`quantify` computes.
STATISTICS = ("mean", "median", "sum")

#: ``obs`` columns written by :func:`quantify`.
LABEL_KEY = Key.obs.label
AREA_PX_KEY = Key.obs.area_px

#: merge this many block tables at a time in the dask reduction tree.
_SPLIT_EVERY = 8


class _Table(NamedTuple):
    """Per-label accumulators of one block (or of the whole image), sorted by label."""

    ids: np.ndarray  # (k,) label values
    n: np.ndarray  # (k,) pixel counts
    sy: np.ndarray  # (k,) sums of row indices (global)
    sx: np.ndarray  # (k,) sums of column indices (global)
    s: np.ndarray  # (k, c) float64 intensity sums


def _bins(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(index, values)``: ``np.bincount(index)`` has one bin per label value ``values[bin]``.

    Small label values are their own bin (a direct bincount); large, sparse ones are compacted
    with a sort (``np.unique``) so that memory never scales with the largest label value.
    """
    if flat.size and np.issubdtype(flat.dtype, np.signedinteger) and flat.min() < 0:
        raise DataModelError(
            f"label masks must be >= 0 (0 = background, > 0 = one cell), found negative labels "
            f"(minimum {int(flat.min())}); relabel, e.g. with skimage.segmentation.relabel_sequential"
        )
    top = int(flat.max()) if flat.size else 0
    if top > np.iinfo(np.int64).max // 2:
        raise DataModelError(f"label values up to {top} are too large; relabel the mask sequentially")
    if top < max(2 * flat.size, 1 << 16):
        return flat.astype(np.intp, copy=False), np.arange(top + 1, dtype=np.int64)
    values, inv = np.unique(flat, return_inverse=True)
    return inv.ravel().astype(np.intp, copy=False), values.astype(np.int64)


def _block_table(
    lab: np.ndarray, img: np.ndarray, y0: int = 0, x0: int = 0, median: bool = False
) -> tuple[_Table, np.ndarray | None]:
    """Accumulate counts, index sums and intensity sums of every label in one block (vectorised)."""
    lab = np.asarray(lab)
    img = np.asarray(img)
    h, w = lab.shape
    index, values = _bins(lab.ravel())
    nb = len(values)
    counts = np.bincount(index, minlength=nb)
    keep = (counts > 0) & (values != 0)
    n = counts[keep].astype(np.int64)
    rows = np.repeat(np.arange(h, dtype=np.float64), w)
    cols = np.tile(np.arange(w, dtype=np.float64), h)
    # index sums are whole numbers below 2**53: exact in float64, returned as int64
    sy = np.rint(np.bincount(index, weights=rows, minlength=nb)[keep]).astype(np.int64) + y0 * n
    sx = np.rint(np.bincount(index, weights=cols, minlength=nb)[keep]).astype(np.int64) + x0 * n
    s = np.empty((len(n), img.shape[0]), dtype=np.float64)
    for c in range(img.shape[0]):  # a loop over channels, never over cells
        s[:, c] = np.bincount(index, weights=img[c].ravel(), minlength=nb)[keep]
    med = _medians(index, keep, n, img) if median else None
    return _Table(values[keep], n, sy, sx, s), med


def _medians(index: np.ndarray, keep: np.ndarray, n: np.ndarray, img: np.ndarray) -> np.ndarray:
    """Per-label medians: pixels grouped by label (a counting sort), then a selection per segment (numba)."""
    kernels = _median_kernels()
    compact = np.cumsum(keep) - 1  # bin -> row of the output
    sel = np.flatnonzero(keep[index])  # pixels of the kept labels (drops background)
    starts = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
    order = kernels[0](compact[index[sel]].astype(np.int64), starts, sel.astype(np.int64))
    med = np.empty((len(n), img.shape[0]), dtype=np.float64)
    for c in range(img.shape[0]):  # a loop over channels, never over cells
        kernels[1](np.ascontiguousarray(img[c]).ravel(), order, starts, n.astype(np.int64), med[:, c])
    return med


_KERNELS: tuple[Any, Any] | None = None


def _median_kernels() -> tuple[Any, Any]:
    """Compile (once, lazily: numba is imported only when a median is asked for) the median kernels."""
    global _KERNELS
    if _KERNELS is None:
        import numba

        @numba.njit(cache=True)
        def group(rows: np.ndarray, starts: np.ndarray, pixels: np.ndarray) -> np.ndarray:
            # stable counting sort of the pixels by output row: O(n)
            pos = starts.copy()
            order = np.empty(len(rows), dtype=np.int64)
            for p in range(len(rows)):
                order[pos[rows[p]]] = pixels[p]
                pos[rows[p]] += 1
            return order

        @numba.njit(parallel=True, cache=True)
        def segment_medians(
            v: np.ndarray, order: np.ndarray, starts: np.ndarray, n: np.ndarray, out: np.ndarray
        ) -> None:
            for i in numba.prange(len(n)):
                seg = np.empty(n[i], dtype=np.float64)
                for j in range(n[i]):
                    seg[j] = v[order[starts[i] + j]]
                out[i] = np.median(seg)  # quickselect; mean of the two middle values for even n

        _KERNELS = (group, segment_medians)
    return _KERNELS


def _merge(*tables: _Table) -> _Table:
    """Sum the accumulators of several blocks label by label (a label may span blocks)."""
    ids = np.concatenate([t.ids for t in tables])
    uniq, inv = np.unique(ids, return_inverse=True)
    k = len(uniq)

    def total(parts: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((k, *parts[0].shape[1:]), dtype=parts[0].dtype)
        np.add.at(out, inv, np.concatenate(parts))
        return out

    return _Table(
        uniq,
        total([t.n for t in tables]),
        total([t.sy for t in tables]),
        total([t.sx for t in tables]),
        total([t.s for t in tables]),
    )


def _is_dask(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "dask"


def _dask_table(data: Any, lab: Any) -> _Table:
    """Accumulate block by block with a tree reduction; the image is never materialised whole."""
    import dask
    import dask.array as da

    if _is_dask(data):
        data = data.rechunk({0: -1})
        lab = lab.rechunk(data.chunks[1:]) if _is_dask(lab) else da.from_array(lab, chunks=data.chunks[1:])
    else:
        data = da.from_array(data, chunks=((data.shape[0],), *lab.chunks))
    y_off = np.concatenate([[0], np.cumsum(lab.chunks[0])[:-1]]).astype(int)
    x_off = np.concatenate([[0], np.cumsum(lab.chunks[1])[:-1]]).astype(int)
    lab_blocks = lab.to_delayed()
    img_blocks = data.to_delayed()
    block = dask.delayed(_block_table, pure=True, nout=2)
    merge = dask.delayed(_merge, pure=True)
    tables = [
        block(lab_blocks[i, j], img_blocks[0, i, j], y_off[i], x_off[j])[0]
        for i in range(len(y_off))
        for j in range(len(x_off))
    ]
    while len(tables) > 1:
        tables = [merge(*tables[k : k + _SPLIT_EVERY]) for k in range(0, len(tables), _SPLIT_EVERY)]
    return dask.compute(tables[0])[0]


def _check_statistics(statistics: Sequence[str] | str) -> list[str]:
    stats = [statistics] if isinstance(statistics, str) else list(statistics)
    unknown = [s for s in stats if s not in STATISTICS]
    if unknown or not stats:
        raise ValueError(f"unknown statistics {unknown}; choose one or more of {list(STATISTICS)}")
    if len(set(stats)) != len(stats):
        raise ValueError(f"statistics {stats} repeat a name; list each once")
    return stats


def quantify(
    image: xr.DataArray,
    labels: xr.DataArray,
    *,
    statistics: Sequence[str] = ("mean",),
    channels: Sequence[str] | None = None,
    image_id: str | None = None,
    technology: str = "other",
    patient_id: str | None = None,
    sample_id: str | None = None,
) -> ad.AnnData:
    """Measure every labelled cell of an image: intensities, area and centroid in µm.

    All statistics are computed for all cells at once (``np.bincount`` per channel; medians by
    one sort per channel), never cell by cell. Dask-backed images or masks are processed block
    by block: each block contributes per-label pixel counts, sums of pixel indices and
    intensity sums, and the blocks are merged label by label in a tree reduction, so cells
    spanning blocks are measured exactly and the whole image is never held in memory.

    Parameters
    ----------
    image
        ``(c, y, x)`` image in the data model (see :func:`spatialpath.model.make_image`); numpy
        or dask.
    labels
        Integer ``(y, x)`` instance mask on the same grid: 0 is background, every other value
        one cell. Negative values are refused.
    statistics
        Intensity statistics, any of :data:`STATISTICS`: ``"mean"``, ``"median"`` (of the
        pixel values, averaging the two middle values for an even count, like ``np.median``)
        and ``"sum"``. The first goes in ``X``, the others in ``layers[name]``. ``"median"``
        needs every pixel of a cell at once and is refused for dask-backed inputs (compute the
        image or a crop of it first).
    channels
        Channels to measure, in this order; default all.
    image_id
        Identifier of the image; default ``image.attrs["image_id"]`` if set. When there is one,
        ``obs_names`` are ``f"{image_id}_{label}"``, ``obs["image_id"]`` is set and the image's
        metadata record is stored (see :class:`spatialpath.model.ImageMetadata`); otherwise
        ``obs_names`` are the label values.
    technology, patient_id, sample_id
        Fields of the metadata record (``patient_id``/``sample_id`` are also written to ``obs``).

    Returns
    -------
    AnnData with one row per label present in the mask, in increasing label order:

    - ``X`` (float32): the first statistic per channel; ``var_names`` are the channels;
    - ``layers[name]`` (float32): the other statistics;
    - ``obs["label"]``: the label value; ``obs["area_px"]``: pixel count;
        ``obs["area_um2"]``: ``area_px × pixel_size_um²``;
    - ``obsm["spatial"]`` (float64, µm): the centroid, i.e. the mean of the pixel-centre
        coordinates of the cell's pixels, column 0 = x, column 1 = y
        (``x = origin_x + mean column × pixel_size_um``).

    Raises
    ------
    spatialpath.model.DataModelError
        If the image or mask is not in the data model, they are on different grids or the mask
        has negative labels.
    ValueError
        For unknown statistics or channels, or ``"median"`` with dask inputs.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialpath.model import make_image, make_labels
    >>> pixels = np.arange(8, dtype=np.float32).reshape(2, 2, 2)  # DAPI [[0, 1], [2, 3]], CD8 [[4, 5], …]
    >>> img = make_image(pixels, channels=["DAPI", "CD8"], pixel_size_um=0.5)
    >>> lab = make_labels(np.array([[1, 1], [0, 2]]), pixel_size_um=0.5)
    >>> cells = quantify(img, lab, statistics=("mean", "sum"), image_id="roi1")
    >>> cells.obs_names.tolist(), cells.obs["area_px"].tolist(), cells.obs["area_um2"].tolist()
    (['roi1_1', 'roi1_2'], [2, 1], [0.5, 0.25])
    >>> cells.X
    array([[0.5, 4.5],
           [3. , 7. ]], dtype=float32)
    >>> cells.layers["sum"][0]
    array([1., 9.], dtype=float32)
    >>> cells.obsm["spatial"]  # label 1 covers pixels (row 0, col 0) and (row 0, col 1)
    array([[0.25, 0.  ],
           [0.5 , 0.5 ]])
    """
    validate_image(image)
    if image.dims != Key.image_dims:
        raise DataModelError(f"quantify measures 2-D images with dims {Key.image_dims}, got {image.dims}")
    validate_labels(labels, like=image)
    stats = _check_statistics(statistics)
    if channels is not None:
        channels = [str(c) for c in channels]
        missing = [c for c in channels if c not in image.c.values.tolist()]
        if missing:
            raise ValueError(f"channels {missing} are not in the image (channels: {image.c.values.tolist()})")
        image = image.sel(c=channels)
    names = [str(c) for c in image.c.values]
    data, lab = image.data, labels.data
    median = None
    if _is_dask(data) or _is_dask(lab):
        if "median" in stats:
            raise ValueError(
                "statistics='median' needs every pixel of a cell at once and is not computed on "
                "dask-backed images or masks (a cell may span chunks); compute the image first, e.g. "
                "quantify(image.compute(), labels.compute(), ...) on a crop, or use 'mean' and 'sum'"
            )
        table = _dask_table(data, lab)
    else:
        table, median = _block_table(np.asarray(lab), np.asarray(data), median="median" in stats)

    ps = float(image.attrs[Key.attrs.pixel_size_um])
    x0 = float(image.x.values[0]) if image.sizes["x"] else 0.0
    y0 = float(image.y.values[0]) if image.sizes["y"] else 0.0
    n = table.n
    with np.errstate(invalid="ignore", divide="ignore"):
        values = {"mean": table.s / n[:, None], "sum": table.s, "median": median}
        xy = np.column_stack([x0 + table.sx / n * ps, y0 + table.sy / n * ps])

    image_id = image_id if image_id is not None else image.attrs.get(Key.attrs.image_id)
    ids = table.ids.astype(np.int64)
    index = [f"{image_id}_{i}" for i in ids] if image_id is not None else [str(i) for i in ids]
    obs = pd.DataFrame({LABEL_KEY: ids, AREA_PX_KEY: n, Key.obs.area_um2: n * ps * ps}, index=index)
    for key, val in ((Key.obs.patient_id, patient_id), (Key.obs.sample_id, sample_id)):
        if val is not None:
            obs[key] = val
    images = []
    if image_id is not None:
        sources = [str(a.attrs[Key.attrs.source]) for a in (image, labels) if Key.attrs.source in a.attrs]
        images.append(
            ImageMetadata(
                image_id=str(image_id),
                technology=technology,
                pixel_size_um=ps,
                patient_id=patient_id,
                sample_id=sample_id,
                shape_px=(image.sizes["y"], image.sizes["x"]),
                origin_um=(x0, y0),
                channels=names,
                source_files=list(dict.fromkeys(sources)),
                extra={"quantify": {"X": stats[0], "layers": stats[1:]}},
            )
        )
    adata = cells_to_anndata(
        xy,
        X=values[stats[0]].astype(np.float32),
        var_names=names,
        obs=obs,
        images=images,
        image_id=None if image_id is None else str(image_id),
        categorical=(Key.obs.image_id, Key.obs.patient_id, Key.obs.sample_id),
        source="quantify",
    )
    for name in stats[1:]:
        adata.layers[name] = values[name].astype(np.float32)
    return adata
