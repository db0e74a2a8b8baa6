"""Large images: the reader and the image layers never read level 0 of a pyramid."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile
import xarray as xr

napari = pytest.importorskip("napari")

from spatialpath.io import _image  # noqa: E402
from spatialpath.model import make_image  # noqa: E402
from spatialpath.napari._layers import image_layer  # noqa: E402
from spatialpath.napari._reader import get_reader  # noqa: E402
from spatialpath.napari._view import add_layers  # noqa: E402


class CountingArray:
    """A (c, y, x) chunk store that records every read; reading a forbidden level fails."""

    def __init__(self, data: np.ndarray, level: int, reads: list[int]):
        self.data, self.level, self.reads = data, level, reads
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim

    def __getitem__(self, key):
        self.reads.append(self.level)
        if self.level == 0:
            raise AssertionError(f"level 0 was read: {key}")
        return self.data[key]


def _dask_pyramid(reads: list[int], n_levels: int = 4, size: int = 4096) -> list[xr.DataArray]:
    levels = []
    for k in range(n_levels):
        s = size // 2**k
        # level 0 is never materialised: the store has its shape only (a broadcast view, no memory)
        data = np.broadcast_to(np.uint16(0), (2, s, s)) if k == 0 else np.full((2, s, s), 100 * k, np.uint16)
        if k > 0:
            data[:, : s // 2] = 1000
        store = CountingArray(data, k, reads)
        arr = da.from_array(store, chunks=(1, 512, 512), asarray=True, meta=np.empty((0, 0, 0), np.uint16))
        ps, origin = 0.5 * 2**k, (0.5 * 2**k - 0.5) / 2
        levels.append(make_image(arr, channels=["DAPI", "CD8"], pixel_size_um=ps, origin_um=(origin, origin)))
    return levels


def test_image_layer_reads_only_the_coarsest_level(make_napari_viewer_proxy):
    reads: list[int] = []
    levels = _dask_pyramid(reads)
    data, kw, kind = image_layer(levels)
    assert kw["multiscale"]
    assert len(data) == 4
    assert set(reads) == {3}  # contrast limits from the coarsest level only
    coarse = levels[-1].values
    assert kw["contrast_limits"][0] == pytest.approx(np.percentile(coarse[0], [0.5, 99.9]))
    reads.clear()
    viewer = make_napari_viewer_proxy()
    layers = add_layers(viewer, [(data, kw, kind)])
    assert len(layers) == 2
    assert layers[0].data_to_world((0, 0)) == pytest.approx((0.0, 0.0))
    assert 0 not in reads  # napari showed the pyramid without touching level 0


def _write_pyramid(path, n_levels: int = 4, size: int = 2048) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 4000, (2, size // 64, size // 64)).astype(np.uint16)
    meta = {"axes": "CYX", "Channel": {"Name": ["DAPI", "PanCK"]}, "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}
    with tifffile.TiffWriter(path, ome=True) as tw:
        for k in range(n_levels):
            s = size // 2**k
            level = np.repeat(np.repeat(base, s // base.shape[1], axis=1), s // base.shape[2], axis=2)
            kw = {"metadata": meta, "subifds": n_levels - 1} if k == 0 else {"subfiletype": 1}
            tw.write(level, tile=(256, 256), compression="zlib", **kw)


def test_reader_never_reads_level_0_of_an_ome_tiff_pyramid(tmp_path, monkeypatch, make_napari_viewer_proxy):
    path = tmp_path / "big.ome.tif"
    _write_pyramid(path)
    reads: list[int] = []
    getitem, read_all = _image._TiffLevel.__getitem__, _image._TiffLevel.read_all

    def counting_getitem(self, key):
        reads.append(self.level)
        if self.level == 0:
            raise AssertionError(f"level 0 of {self.path.name} was read: {key}")
        return getitem(self, key)

    def counting_read_all(self):
        reads.append(self.level)
        if self.level == 0:
            raise AssertionError("level 0 was read whole")
        return read_all(self)

    monkeypatch.setattr(_image._TiffLevel, "__getitem__", counting_getitem)
    monkeypatch.setattr(_image._TiffLevel, "read_all", counting_read_all)
    reader = get_reader(str(path))
    assert reader is not None
    ((data, kw, kind),) = reader(str(path))
    assert kw["multiscale"]
    assert [d.shape for d in data] == [(2, 2048 // 2**k, 2048 // 2**k) for k in range(4)]
    assert kw["name"] == ["DAPI", "PanCK"]
    assert kw["scale"] == (0.5, 0.5)
    assert reads
    assert set(reads) == {3}
    viewer = make_napari_viewer_proxy()
    add_layers(viewer, [(data, kw, kind)])
    assert 0 not in reads
