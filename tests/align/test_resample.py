"""Lazy chunked resampling of images and label masks: exact turns, scipy references, planted points
under a non-rigid transform, laziness on a virtual slide, and bad input."""

from __future__ import annotations

import time

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage
from skimage import measure

from spatialpath.align import DisplacementField, Transform, apply_transform
from spatialpath.align._resample import warp_image
from spatialpath.align._resample_grid import PixelMap, grid_of, output_grid, source_windows
from spatialpath.model import DataModelError, make_image, make_labels


class GuardedArray:
    """A numpy-like source that records every read and refuses reads larger than ``frac`` of it."""

    def __init__(self, data: np.ndarray, frac: float = 0.25):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.limit = frac * data.size
        self.reads: list[tuple[slice, ...]] = []

    def __getitem__(self, key):
        out = self.data[key]
        if out.size > self.limit:
            raise RuntimeError(f"read of {out.shape} is more than a quarter of the image: {key}")
        if out.size:
            self.reads.append(key)
        return out


class RampSlide:
    """A virtual float32 slide ``v = a·row + b·col`` that builds only the slices asked for."""

    def __init__(self, shape: tuple[int, int], a: float = 1e-3, b: float = 2e-3):
        self.shape, self.dtype, self.ndim, self.a, self.b = shape, np.dtype(np.float32), 2, a, b
        self.reads: list[tuple[int, int]] = []

    def __getitem__(self, key):
        rows, cols = (np.arange(self.shape[k])[s] for k, s in enumerate(key))
        if rows.size and cols.size:
            self.reads.append((int(rows[0]), int(cols[0])))
        return (self.a * rows[:, None] + self.b * cols[None, :]).astype(np.float32)


def _index_map(src: xr.DataArray, out: xr.DataArray, t: Transform) -> np.ndarray:
    """Output [col, row, 1] → source [col, row, 1], written out from the grids' coordinates."""
    ps_s, ps_o = float(src.x[1] - src.x[0]), float(out.x[1] - out.x[0])
    g_src = np.array([[ps_s, 0, float(src.x[0])], [0, ps_s, float(src.y[0])], [0, 0, 1]])
    g_out = np.array([[ps_o, 0, float(out.x[0])], [0, ps_o, float(out.y[0])], [0, 0, 1]])
    return np.linalg.inv(g_src) @ np.linalg.inv(t.matrix) @ g_out


def _scipy_reference(plane: np.ndarray, m: np.ndarray, shape, order: int) -> np.ndarray:
    """scipy's whole-array affine resampling; ``m`` acts on (col, row), scipy on (row, col)."""
    swap = np.array([[0, 1], [1, 0]])
    return ndimage.affine_transform(
        plane,
        swap @ m[:2, :2] @ swap,
        offset=swap @ m[:2, 2],
        output_shape=shape,
        order=order,
        mode="nearest",
    )


def test_180_degree_turn_reads_only_the_mirrored_chunks_and_is_exact():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 2048, 1536), dtype=np.uint8)
    guard = GuardedArray(a)
    src = da.from_array(guard, chunks=(3, 256, 256), asarray=True, meta=np.empty((0, 0, 0), np.uint8))
    img = make_image(src, channels=["DAPI", "CD8", "PanCK"], pixel_size_um=0.5, origin_um=(10.0, 20.0))
    with pytest.raises(RuntimeError, match="more than a quarter"):
        da.from_array(guard, chunks=-1, asarray=True).compute()  # the guard works: no whole read
    guard.reads.clear()
    cx, cy = 10.0 + 1535 / 2 * 0.5, 20.0 + 2047 / 2 * 0.5  # centre of the pixel-centre grid
    turn = Transform.from_params(rotation_deg=180, translation=(2 * cx, 2 * cy), source="he", target="global")
    out = warp_image(img, turn, chunks=256)
    assert out.data.chunks[1:] == ((256,) * 8, (256,) * 6)
    np.testing.assert_allclose(out.x, img.x, atol=1e-9)
    np.testing.assert_allclose(out.y, img.y, atol=1e-9)
    assert out.c.values.tolist() == ["DAPI", "CD8", "PanCK"]
    assert out.dtype == np.uint8
    full = out.values
    np.testing.assert_array_equal(full, np.rot90(a, 2, axes=(1, 2)))
    # block by block: output block (i, j) reads exactly its mirror, source block (7 − i, 5 − j)
    for i in range(8):
        for j in range(6):
            guard.reads.clear()
            out.data.blocks[:, i, j].compute(scheduler="sync")
            starts = {(k[1].start, k[2].start) for k in guard.reads}
            assert starts == {(256 * (7 - i), 256 * (5 - j))}, (i, j, starts)


@pytest.mark.parametrize("order", [1, 3])
def test_random_affine_matches_scipy_affine_transform(order):
    rng = np.random.default_rng(1)
    a = ndimage.gaussian_filter(rng.normal(size=(2, 120, 100)), (0, 2, 2))
    img = make_image(
        da.from_array(a, chunks=(1, 40, 40)), channels=["a", "b"], pixel_size_um=0.7, origin_um=(3, -5)
    )
    t = Transform.from_params(
        rotation_deg=37, scale=(1.3, 0.8), flip=True, translation=(40, -12), source="he", target="if"
    )
    like = make_image(np.zeros((1, 150, 140)), channels=["x"], pixel_size_um=0.6, origin_um=(-60, -30))
    out = warp_image(img, t, like=like, order=order, chunks=32)
    assert out.data.npartitions > 16  # many blocks, several source chunks each
    m = _index_map(img, like, t)
    rows, cols = np.mgrid[0:150, 0:140]
    src_c = m[0, 0] * cols + m[0, 1] * rows + m[0, 2]
    src_r = m[1, 0] * cols + m[1, 1] * rows + m[1, 2]
    margin = 0 if order == 1 else 4
    inside = (src_r >= margin) & (src_r <= 119 - margin) & (src_c >= margin) & (src_c <= 99 - margin)
    outside = (src_r < -0.5) | (src_r >= 119.5) | (src_c < -0.5) | (src_c >= 99.5)
    assert inside.sum() > 5000
    assert outside.sum() > 5000
    values = out.values
    for k in range(2):
        ref = _scipy_reference(a[k], m, (150, 140), order)
        # linear: same formula, float round-off only; cubic: our prefilter runs on a padded window
        np.testing.assert_allclose(values[k][inside], ref[inside], atol=1e-12 if order == 1 else 1e-6)
    assert np.all(values[:, outside] == 0.0)


def test_label_mask_keeps_its_dtype_and_ids():
    rng = np.random.default_rng(2)
    lab = np.zeros((300, 260), np.int32)
    ids = rng.choice(np.arange(1, 2**31 - 1, 977), size=40, replace=False).astype(np.int32)
    centres = np.stack([rng.uniform(12, 288, 40), rng.uniform(12, 248, 40)], 1)  # (row, col)
    rr, cc = np.mgrid[0:300, 0:260]
    for k, (r, c) in zip(ids, centres, strict=True):
        lab[(rr - r) ** 2 + (cc - c) ** 2 <= 36] = k
    mask = make_labels(da.from_array(lab, chunks=64), pixel_size_um=1.0)
    t = Transform.from_params(rotation_deg=30, translation=(50, -20), source="he", target="global")
    like = make_labels(np.zeros((220, 320), np.int32), pixel_size_um=1.0, origin_um=(0, 0))
    out = warp_image(mask, t, like=like, chunks=100)
    assert out.dtype == np.int32
    assert out.dims == ("y", "x")
    got = set(np.unique(out.values).tolist()) - {0}
    # planted truth: where each disc's centre lands (x = col, y = row at 1 µm/px)
    present = set(np.unique(lab).tolist()) - {0}
    landed = t.apply_points(centres[:, ::-1])
    depth = np.minimum.reduce(
        [landed[:, 0] + 0.5, 319.5 - landed[:, 0], landed[:, 1] + 0.5, 219.5 - landed[:, 1]]
    )
    inside_ids = {int(k) for k, d in zip(ids, depth, strict=True) if d > 6 and k in present}
    outside_ids = {int(k) for k, d in zip(ids, depth, strict=True) if d < -6}
    assert inside_ids
    assert outside_ids
    assert inside_ids <= got
    assert not (outside_ids & got)
    assert got <= present
    # nearest neighbour = scipy's order 0 (no exact ties under a 30° turn)
    ref = _scipy_reference(lab.astype(np.float64), _index_map(mask, like, t), (220, 320), 0)
    np.testing.assert_array_equal(out.values, ref)


def _smooth_field(
    seed: int, amplitude_um: float, spacing_um: float = 40.0, sigma: float = 2.0
) -> DisplacementField:
    """Gaussian-filtered noise on a node grid, scaled to a maximum of ``amplitude_um``."""
    rng = np.random.default_rng(seed)
    n = int(np.ceil(600 / spacing_um))
    noise = ndimage.gaussian_filter(rng.normal(size=(2, n, n)), (0, sigma, sigma), mode="nearest")
    values = amplitude_um * noise / np.abs(noise).max()
    return DisplacementField.from_spacing(values, spacing_um=spacing_um, origin_um=(-150.0, -150.0))


def test_points_and_warped_images_agree_within_one_pixel_under_a_nonrigid_transform():
    field = _smooth_field(3, 8.0)
    assert field.jacobian_determinant().min() > 0.5  # no folds
    affine = Transform.from_params(
        rotation_deg=12, scale=1.05, translation=(30, -20), source="he", target="if"
    )
    t = Transform(affine.matrix, "he", "if", field)
    # planted discs (labels) and Gaussian spots (intensities) at known points of a 1 µm/px source
    pts = np.stack(np.meshgrid(np.arange(40, 400, 45.0), np.arange(40, 400, 45.0)), -1).reshape(-1, 2) + 0.3
    rr, cc = np.mgrid[0:440, 0:440]
    lab = np.zeros((440, 440), np.int32)
    spots = np.zeros((440, 440))
    for k, (x, y) in enumerate(pts, start=1):
        d2 = (cc - x) ** 2 + (rr - y) ** 2
        lab[d2 <= 25] = k
        spots += np.exp(-d2 / (2 * 2.0**2))
    labels = warp_image(make_labels(lab, pixel_size_um=1.0), t, chunks=96)
    image = warp_image(make_image(spots, channels=["spot"], pixel_size_um=1.0), t, chunks=96)
    expected = t.apply_points(pts)  # forward map of the points, target µm
    x0, y0, ps = float(labels.x[0]), float(labels.y[0]), float(labels.attrs["pixel_size_um"])
    assert ps == pytest.approx(1.05)  # default grid: source pixel size × area scale
    props = measure.regionprops(labels.values, intensity_image=image.values[0])
    assert len(props) == len(pts)
    order = np.array([p.label for p in props]) - 1
    disc = np.array([p.centroid for p in props])[:, ::-1] * ps + [x0, y0]
    spot = np.array([p.centroid_weighted for p in props])[:, ::-1] * ps + [x0, y0]
    err_disc = np.hypot(*(disc - expected[order]).T) / ps
    err_spot = np.hypot(*(spot - expected[order]).T) / ps
    print(f"disc centroids: max {err_disc.max():.3f} px, median {np.median(err_disc):.3f} px")
    print(f"spot centroids: max {err_spot.max():.3f} px, median {np.median(err_spot):.3f} px")
    assert err_disc.max() <= 1.0
    assert err_spot.max() <= 1.0
    # the same map without its field puts the spots several px off: the field is really applied
    off = warp_image(make_labels(lab, pixel_size_um=1.0), affine, like=labels, chunks=96)
    moved = np.array([p.centroid for p in measure.regionprops(off.values)])[:, ::-1] * ps + [x0, y0]
    assert np.hypot(*(moved - expected).T).max() / ps > 3.0


def test_nonrigid_windows_cover_every_source_pixel_a_block_reads():
    # a short-wavelength field on an axis-aligned map: a block's corners alone miss its bulges by
    # 1–2 px (measured), the sampled border plus its padding does not
    field = _smooth_field(4, 8.0, spacing_um=25.0, sigma=1.0)
    assert field.jacobian_determinant().min() > 0.5
    t = Transform(Transform.from_params(translation=(60, 40)).matrix, "a", "b", field)
    img = make_image(np.zeros((1, 300, 300)), channels=["a"], pixel_size_um=1.0)
    src_grid = grid_of(img)
    out_grid = output_grid(src_grid, t, None)
    pmap = PixelMap.build(src_grid, out_grid, t)
    rb = np.r_[np.arange(0, out_grid.shape[0], 128), out_grid.shape[0]]
    cb = np.r_[np.arange(0, out_grid.shape[1], 128), out_grid.shape[1]]
    lo, hi = source_windows(pmap, rb, cb, order=1)
    for i in range(len(rb) - 1):
        for j in range(len(cb) - 1):
            rows, cols = pmap.block(rb[i], rb[i + 1], cb[j], cb[j + 1])
            # bilinear reads floor and floor + 1
            assert np.floor(rows).min() >= lo[i, j, 0]
            assert np.floor(cols).min() >= lo[i, j, 1]
            assert np.floor(rows).max() + 1 <= hi[i, j, 0]
            assert np.floor(cols).max() + 1 <= hi[i, j, 1]


def test_a_virtual_slide_stays_lazy_and_one_block_reads_a_bounded_window():
    slide = RampSlide((20_000, 20_000))
    src = da.from_array(slide, chunks=512, asarray=True, meta=np.empty((0, 0), np.float32))
    img = make_image(src, channels=["ramp"], pixel_size_um=0.5)
    t = Transform.from_params(rotation_deg=30, translation=(3000, -1000), source="he", target="global")
    t0 = time.perf_counter()
    out = warp_image(img, t)  # 1024-px output blocks
    assert time.perf_counter() - t0 < 5.0
    assert not slide.reads  # nothing read while building
    layer = out.data.dask.layers[out.data.name]
    i, j = 12, 9
    task = layer[(out.data.name, 0, i, j)]
    deps = [k for row in task[2] for k in row]
    # independent count: the source chunks under the box of the block's corner pixels mapped back
    m = _index_map(img, out, t)
    r, c = (
        np.array([i * 1024, i * 1024, i * 1024 + 1023, i * 1024 + 1023]),
        np.array([j * 1024, j * 1024 + 1023] * 2),
    )
    sc, sr = m[0, 0] * c + m[0, 1] * r + m[0, 2], m[1, 0] * c + m[1, 1] * r + m[1, 2]
    n_rows = np.floor(np.ceil(sr.max()) / 512) - np.floor(np.floor(sr.min()) / 512) + 1
    n_cols = np.floor(np.ceil(sc.max()) / 512) - np.floor(np.floor(sc.min()) / 512) + 1
    assert len(deps) == n_rows * n_cols <= 16
    block = out.data.blocks[0, i, j].compute(scheduler="sync")
    assert len(slide.reads) == len(deps)  # 1600 source chunks in all
    # bilinear interpolation reproduces a linear ramp: compare with the ramp at T⁻¹(p)
    rows, cols = np.mgrid[i * 1024 : (i + 1) * 1024, j * 1024 : (j + 1) * 1024]
    src_c = m[0, 0] * cols + m[0, 1] * rows + m[0, 2]
    src_r = m[1, 0] * cols + m[1, 1] * rows + m[1, 2]
    np.testing.assert_allclose(block[0], 1e-3 * src_r + 2e-3 * src_c, rtol=1e-5, atol=1e-3)


def test_default_grid_of_a_quarter_turn_and_integer_dtypes():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (2, 30, 50)).astype(np.uint8)
    img = make_image(a, channels=["r", "g"], pixel_size_um=2.0, image_id="core_1")
    t = Transform.from_params(rotation_deg=90, source="he", target="global")
    out = warp_image(img, t)
    assert out.shape == (2, 50, 30)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out.values, np.rot90(a, -1, axes=(1, 2)))
    np.testing.assert_allclose(out.x.values, -58.0 + 2.0 * np.arange(30))  # x = −y of the source
    assert out.attrs["image_id"] == "core_1"
    assert out.attrs["pixel_size_um"] == 2.0
    assert Transform.from_dict(out.attrs["transforms"][-1]).to_json() == t.to_json()
    # a half-pixel shift: uint8 rounds the bilinear mean, float32 keeps it
    half = Transform.from_params(translation=(1.0, 0.0), source="he", target="global")
    like = make_image(np.zeros((1, 30, 48)), channels=["x"], pixel_size_um=2.0)
    mean = (a[0, :, :47].astype(float) + a[0, :, 1:48]) / 2  # output x = 2k µm ← source pixel k − ½
    np.testing.assert_allclose(warp_image(img, half, like=like, dtype=np.float32).values[0, :, 1:], mean)
    np.testing.assert_array_equal(
        warp_image(img, half, like=like).values[0, :, 1:], np.rint(mean).astype(np.uint8)
    )


def test_apply_transform_dispatches_images_to_the_resampler():
    img = make_image(np.arange(12.0).reshape(1, 3, 4), channels=["a"], pixel_size_um=1.0)
    t = Transform.from_params(translation=(2.0, 1.0), source="he", target="global")
    out = apply_transform(img, t)
    assert isinstance(out.data, da.Array)
    np.testing.assert_array_equal(out.values, img.values)  # an integer shift moves the grid only
    np.testing.assert_allclose(out.x.values, img.x.values + 2.0)
    np.testing.assert_allclose(apply_transform(np.array([[0.0, 0.0]]), t), [[2.0, 1.0]])  # points: forward


def test_bad_input_is_refused():
    img = make_image(np.ones((1, 20, 20)), channels=["a"], pixel_size_um=1.0)
    t = Transform.from_params(rotation_deg=10, source="he", target="global")
    no_units = img.copy()
    no_units.attrs["units"] = "px"
    with pytest.raises(DataModelError, match=r"units.*expected 'um'"):
        warp_image(no_units, t)
    with pytest.raises(DataModelError, match="no 'x' coordinate"):
        warp_image(img.drop_vars("x"), t)
    with pytest.raises(DataModelError, match=r"must be a spatialpath\.align\.Transform"):
        warp_image(img, np.eye(3))
    far = make_image(np.zeros((1, 10, 10)), channels=["a"], pixel_size_um=1.0, origin_um=(5000, 5000))
    with pytest.raises(DataModelError, match="does not overlap"):
        warp_image(img, t, like=far)
    with pytest.raises(DataModelError, match=r"\(c, y, x\) image or a \(y, x\) label mask"):
        apply_transform(xr.DataArray(np.zeros(5), dims=("x",), attrs={"units": "um"}), t)
    with pytest.raises(DataModelError, match="not representable"):
        warp_image(img.astype(np.uint8), t, fill_value=np.nan)
    with pytest.raises(DataModelError, match="either like"):
        warp_image(img, t, like=img, pixel_size_um=1.0)
    with pytest.raises(DataModelError, match="order must be"):
        warp_image(img, t, order=7)
    with pytest.raises(DataModelError, match="not a regular grid"):
        warp_image(img.assign_coords(x=np.r_[0.0, np.cumsum(np.linspace(1, 2, 19))]), t)


def test_graph_is_built_without_computing(monkeypatch):
    calls = []
    monkeypatch.setattr(dask, "compute", lambda *a, **k: calls.append(a))
    img = make_image(da.zeros((1, 4000, 4000), chunks=(1, 500, 500)), channels=["a"], pixel_size_um=1.0)
    warp_image(img, Transform.from_params(rotation_deg=5))
    assert not calls


def test_nonrigid_lattice_fast_path_matches_exact_map():
    """The lattice shortcut (exact every 8 px, bilinear between) stays within 0.05 source px of the
    exact pull-back at every pixel, and a field too rough for it falls back to the exact map."""
    from spatialpath.align._resample_grid import Grid

    rng = np.random.default_rng(3)
    grid = Grid((300, 260), np.diag([0.5, 0.5, 1.0]))
    for spacing, sigma, expect_fast in ((40.0, 2.0, True), (3.0, 0.0, False)):
        v = rng.normal(size=(2, 60, 50))
        v = ndimage.gaussian_filter(v, (0, sigma, sigma)) if sigma else v
        v *= 1.0 / np.abs(v).max()
        field = DisplacementField.from_spacing(v, spacing, (-10.0, -10.0))
        t = Transform(Transform.from_params(rotation_deg=20, translation=(5, 3)).matrix, displacement=field)
        pm = PixelMap.build(grid, grid, t)
        exact = pm._exact_block(0, 300, 0, 260)
        fast = pm._lattice_block(0, 300, 0, 260)
        assert (fast is not None) is expect_fast
        if fast is not None:
            assert np.abs(fast - exact).max() <= 0.05
        np.testing.assert_allclose(pm.block(0, 300, 0, 260), exact, atol=0.05)
