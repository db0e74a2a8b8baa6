"""Non-rigid refinement: planted smooth displacements on real image pairs, folds, confidence, errors.

Ground truth is planted: ``fixed(y) = moving(y + e(y))`` is built with scipy's map_coordinates from a
real image and a random smooth field ``e``, so the estimate must return ``e``. The field is evaluated
here with an independent bilinear interpolation of its node values, and Jacobians with numpy.gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage import io

from spatialpath.align._nonrigid import (
    LowConfidenceWarning,
    _fold_stats,
    _guard_folds,
    estimate_displacement,
    random_displacement,
)
from spatialpath.model import DataModelError

SET4 = ("phenoptr_vectra_mif", "sample_Set4")
SET4_NAME = "Set4_1-6plex_[16142,55840]"
FIHC4 = ("phenoptr_vectra_mif", "FIHC4_IM3_2")
FIHC4_NAME = "FIHC4__0929309_HP_IM3_2"
COSMX = ("giottodata_mini", "CosMx", "Raw")
#: planted displacements (px) and correlation lengths (µm) per pair: ≫ nuclei, ≤ half the field of view.
PLANT = {"set4": (12.0, 100.0), "cosmx": (10.0, 60.0), "fihc4": (8.0, 60.0)}


# ---------------------------------------------------------------------- preprocessing (test-local)
def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, [1, 99.5])
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


def _nuclear_rgb(rgb: np.ndarray) -> np.ndarray:
    """DAPI is rendered blue: blue minus the brighter of red/green drops cyan/magenta membranes."""
    rgb = rgb.astype(np.float64)
    return _unit(np.clip(rgb[..., 2] - rgb[..., :2].max(axis=-1), 0.0, None))


def _mask_image(labels: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter((labels > 0).astype(np.float64), sigma)


@pytest.fixture(scope="module")
def pairs(shared):
    """name -> (composite-derived image, other-modality image, µm per px)."""
    out = {}
    rgb = io.imread(shared(*SET4, f"{SET4_NAME}_composite_image.jpg"))
    nuclei = tifffile.imread(shared(*SET4, f"{SET4_NAME}_binary_seg_maps.tif"), key=1)
    out["set4"] = (_nuclear_rgb(rgb), _mask_image(nuclei, 1.0), 0.5)
    rgb = io.imread(shared(*COSMX, "CellComposite", "CellComposite_F002.jpg"))
    out["cosmx"] = (ndimage.gaussian_filter(_unit(rgb[..., 2].astype(float)), 2.0), None, 0.18)
    rgb = io.imread(shared(*FIHC4, f"{FIHC4_NAME}_composite_image.jpg"))
    dapi = tifffile.imread(shared(*FIHC4, f"{FIHC4_NAME}_component_data.tif"), key=3)
    # the composite shows membranes (red) around dark nuclei: invert the smoothed red channel
    red = ndimage.gaussian_filter(rgb[..., 0].astype(np.float64), 1.5)
    out["fihc4"] = (_unit(-red), ndimage.gaussian_filter(_unit(dapi), 1.5), 0.5)
    return out


# ---------------------------------------------------------------------- independent references
def _field_px(field, ps: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear evaluation of an axis-aligned field's node values at pixel positions → (2, ...) px."""
    g = field.grid
    col = (x * ps - g[0, 2]) / g[0, 0]
    row = (y * ps - g[1, 2]) / g[1, 1]
    return (
        np.stack(
            [ndimage.map_coordinates(field.values[k], [row, col], order=1, mode="nearest") for k in (0, 1)]
        )
        / ps
    )


def _plant(image: np.ndarray, planted, ps: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float64)
    e = _field_px(planted, ps, xx, yy)
    return ndimage.map_coordinates(image, [yy + e[1], xx + e[0]], order=1, mode="nearest")


def _eval_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    return np.mgrid[0.05 * ny : 0.95 * ny : 30j, 0.05 * nx : 0.95 * nx : 30j][::-1]


def _errors_px(est, planted, ps: float, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = _eval_grid(shape)
    truth = _field_px(planted, ps, gx, gy).reshape(2, -1).T
    got = est(np.stack([gx.ravel() * ps, gy.ravel() * ps], axis=1)) / ps
    return np.linalg.norm(got - truth, axis=1), np.linalg.norm(truth, axis=1)


def _dense_min_det(field, ps: float, shape: tuple[int, int], step: int = 4) -> float:
    """min det(I + ∇e) of the field sampled every ``step`` px, by numpy.gradient."""
    yy, xx = np.mgrid[0 : shape[0] : step, 0 : shape[1] : step].astype(np.float64)
    e = _field_px(field, ps, xx, yy)
    dex_dy, dex_dx = np.gradient(e[0], step)
    dey_dy, dey_dx = np.gradient(e[1], step)
    return float(((1 + dex_dx) * (1 + dey_dy) - dex_dy * dey_dx).min())


def _run(pairs, name: str, seed: int, cross: bool):
    image, other, ps = pairs[name]
    amp_px, length_um = PLANT[name]
    ny, nx = image.shape
    planted = random_displacement(
        (nx * ps, ny * ps), amplitude_um=amp_px * ps, length_scale_um=length_um, seed=seed
    )
    fixed = _plant(image, planted, ps)
    if cross:
        moving = other
    else:  # same modality: independent noise on both sides
        rng = np.random.default_rng(seed + 10)
        fixed = fixed + 0.05 * rng.standard_normal(fixed.shape)
        moving = image + 0.05 * rng.standard_normal(image.shape)
    est, report = estimate_displacement(fixed, moving, pixel_size_um=ps, seed=seed, return_info=True)
    err, truth = _errors_px(est, planted, ps, image.shape)
    return est, report, err, truth, ps


# ---------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["set4", "cosmx"])
def test_planted_displacement_same_modality(pairs, name, seed):
    est, report, err, truth, ps = _run(pairs, name, seed, cross=False)
    assert np.median(truth) > 2.0  # a real warp was planted: returning zeros fails
    assert np.median(err) <= 1.0, (np.median(err), np.percentile(err, 90))
    assert np.percentile(err, 90) <= 3.0
    assert not report.low_confidence
    assert _dense_min_det(est, ps, pairs[name][0].shape) > 0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["set4", "fihc4"])
def test_planted_displacement_cross_modal(pairs, name, seed):
    """Set4: nuclear proxy of the RGB composite ↔ nucleus label mask; FIHC4: composite ↔ DAPI."""
    est, report, err, truth, ps = _run(pairs, name, seed, cross=True)
    assert np.median(truth) > 2.0
    assert np.median(err) <= 2.0, (np.median(err), np.percentile(err, 90))
    assert np.percentile(err, 90) <= 5.0
    assert _dense_min_det(est, ps, pairs[name][0].shape) > 0
    assert report.min_jacobian >= 0.2


def test_no_planted_displacement_gives_no_warp(pairs):
    image, mask_img, ps = pairs["set4"]
    rng = np.random.default_rng(5)
    a = image + 0.05 * rng.standard_normal(image.shape)
    b = image + 0.05 * rng.standard_normal(image.shape)
    same = estimate_displacement(a, b, pixel_size_um=ps)
    assert np.median(np.hypot(*same.values)) / ps < 0.5
    assert same.max_norm() / ps < 1.0
    cross = estimate_displacement(image, mask_img, pixel_size_um=ps)  # the pair as published
    assert np.median(np.hypot(*cross.values)) / ps < 0.5


def test_unrelated_images_report_low_confidence(pairs):
    image, _, ps = pairs["set4"]
    rng = np.random.default_rng(0)
    cases = {
        "noise": (rng.random((400, 500)), rng.random((400, 500))),
        "different tissue": (image[:700, :900], image[700:1400, 968:1868]),
    }
    for a, b in cases.values():
        with pytest.warns(LowConfidenceWarning, match="zero displacement"):
            field, report = estimate_displacement(a, b, pixel_size_um=ps, return_info=True)
        assert report.low_confidence
        assert field.max_norm() == 0.0


# ---------------------------------------------------------------------- fold guarantee
def test_fold_stats_is_the_exact_minimum_of_the_bilinear_field():
    rng = np.random.default_rng(3)
    values = ndimage.gaussian_filter(rng.standard_normal((2, 7, 9)), (0, 1, 1)) * 25.0
    h = 10.0
    det, _grad = _fold_stats(values, h, h)
    # dense sampling of the bilinear field (numpy.gradient, independent of the corner formula)
    fine = 40
    rows, cols = np.mgrid[0 : 6 : fine * 6 * 1j, 0 : 8 : fine * 8 * 1j]
    e = np.stack([ndimage.map_coordinates(v, [rows, cols], order=1) for v in values])
    step = h * (rows[1, 0] - rows[0, 0])
    dxx, dxy = np.gradient(e[0], step, axis=1), np.gradient(e[0], step, axis=0)
    dyx, dyy = np.gradient(e[1], step, axis=1), np.gradient(e[1], step, axis=0)
    dense = (1 + dxx) * (1 + dyy) - dxy * dyx
    assert dense.min() < 0  # this field folds
    assert dense.min() >= det - 1e-6
    assert abs(dense.min() - det) < 0.05 * abs(det) + 0.02
    fixed, scale, n_smooth, det2, grad2 = _guard_folds(values, h, h, smooth=True)
    assert det2 >= 0.2
    assert grad2 <= 0.8
    assert scale < 1.0 or n_smooth > 0
    e2 = np.stack([ndimage.map_coordinates(v, [rows, cols], order=1) for v in fixed])
    dense2 = (1 + np.gradient(e2[0], step, axis=1)) * (1 + np.gradient(e2[1], step, axis=0)) - np.gradient(
        e2[0], step, axis=0
    ) * np.gradient(e2[1], step, axis=1)
    assert dense2.min() > 0.19


# ---------------------------------------------------------------------- random_displacement
def test_random_displacement_amplitude_smoothness_and_seed():
    a = random_displacement((400.0, 300.0), amplitude_um=6.0, length_scale_um=80.0, seed=1)
    b = random_displacement((400.0, 300.0), amplitude_um=6.0, length_scale_um=80.0, seed=1)
    c = random_displacement((400.0, 300.0), amplitude_um=6.0, length_scale_um=80.0, seed=2)
    assert np.array_equal(a.values, b.values)
    assert not np.allclose(a.values, c.values)
    assert np.isclose(np.hypot(*a.values).max(), 6.0)
    assert a.nodes()[:, 0].max() >= 400.0
    assert a.nodes()[:, 1].max() >= 300.0
    # smooth: neighbouring nodes (20 µm apart) differ by a small fraction of the amplitude
    assert np.abs(np.diff(a.values, axis=2)).max() < 0.5 * 6.0
    assert _dense_min_det(a, 1.0, (300, 400), step=2) > 0


def test_random_displacement_too_steep_is_shrunk_with_warning():
    with pytest.warns(UserWarning, match="shrunk"):
        f = random_displacement((200.0, 200.0), amplitude_um=80.0, length_scale_um=10.0, seed=0)
    assert f.max_norm() < 80.0
    assert _dense_min_det(f, 1.0, (200, 200), step=1) > 0


# ---------------------------------------------------------------------- errors
def test_bad_inputs_raise():
    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.random((128, 160)), 2)
    with pytest.raises(DataModelError, match="same pixel grid"):
        estimate_displacement(img, img[:100], pixel_size_um=0.5)
    for ps in (0.0, -1.0, np.nan):
        with pytest.raises(DataModelError, match="pixel_size_um must be a positive"):
            estimate_displacement(img, img, pixel_size_um=ps)
    bad = img.copy()
    bad[3, 4] = np.nan
    with pytest.raises(DataModelError, match="moving has NaN"):
        estimate_displacement(img, bad, pixel_size_um=0.5)
    with pytest.raises(DataModelError, match="too small"):
        estimate_displacement(img, img, pixel_size_um=0.5, grid_spacing_um=2.0)
    with pytest.raises(DataModelError, match="too large"):
        estimate_displacement(img, img, pixel_size_um=0.5, grid_spacing_um=50.0)
    with pytest.raises(DataModelError, match="positive number of µm"):
        estimate_displacement(img, img, pixel_size_um=0.5, grid_spacing_um=-5.0)
    with pytest.raises(DataModelError, match="2-D image"):
        estimate_displacement(np.stack([img, img]), img, pixel_size_um=0.5)
    with pytest.raises(DataModelError, match="mask must have"):
        estimate_displacement(img, img, pixel_size_um=0.5, mask=np.ones((3, 3), bool))
    with pytest.raises(DataModelError, match="amplitude_um must be a positive"):
        random_displacement((100.0, 100.0), amplitude_um=0.0, length_scale_um=10.0)


def test_mask_excludes_nodes_and_origin_places_the_grid():
    rng = np.random.default_rng(2)
    img = ndimage.gaussian_filter(rng.standard_normal((256, 256)), 3)
    moving = np.roll(img, (2, 3), axis=(0, 1))  # fixed(y) = moving(y + (3, 2) px)
    mask = np.zeros(img.shape, bool)
    mask[:, :128] = True
    field = estimate_displacement(img, moving, pixel_size_um=0.5, origin_um=(100.0, -50.0), mask=mask)
    assert np.allclose(field.grid[:2, 2], [100.0, -50.0])
    got = field([[100.0 + 32.0, -50.0 + 64.0]])[0] / 0.5
    assert np.allclose(got, [3.0, 2.0], atol=0.2)
