"""Landmark registration: exact recovery, skimage as reference, planted outliers, LOO TRE, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from skimage.transform import AffineTransform, EuclideanTransform, SimilarityTransform

from spatialpath.align._landmarks import LandmarkRegistration, register_landmarks
from spatialpath.align._transform import Transform
from spatialpath.model import DataModelError

SKIMAGE = {"rigid": EuclideanTransform, "similarity": SimilarityTransform, "affine": AffineTransform}
MIRROR = np.diag([-1.0, 1.0, 1.0])


def _skimage(model: str, moving: np.ndarray, fixed: np.ndarray, flip: bool = False) -> np.ndarray:
    """skimage's estimate (a mirrored fit: estimate on x-mirrored moving points, then the mirror)."""
    src = moving * [-1.0, 1.0] if flip else moving
    cls = SKIMAGE[model]
    if hasattr(cls, "from_estimate"):  # skimage ≥ 0.26
        tf = cls.from_estimate(src, fixed)
    else:  # pragma: no cover - older skimage
        tf = cls()
        assert tf.estimate(src, fixed)
    return tf.params @ MIRROR if flip else tf.params


def _ols_affine(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    coef = np.linalg.lstsq(np.column_stack([moving, np.ones(len(moving))]), fixed, rcond=None)[0]
    return np.vstack([coef.T, [0, 0, 1]])


def _reference(model: str, moving: np.ndarray, fixed: np.ndarray, flip: bool = False) -> np.ndarray:
    """Independent least-squares fit: skimage for rigid/similarity, plain lstsq for affine."""
    return _ols_affine(moving, fixed) if model == "affine" else _skimage(model, moving, fixed, flip)


def _pairs(truth: Transform, n: int, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    moving = rng.uniform(0, 2000, (n, 2))
    return truth.apply_points(moving) + rng.normal(0, sigma, (n, 2)), moving


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


# ---------------------------------------------------------------- exact recovery
CASES = [  # rotation (deg), scale, flip, translation (µm)
    (179.9, 0.8, False, (350.0, -120.0)),
    (-179.9, 1.25, True, (-40.0, 900.0)),
    (180.0, 1.0, True, (0.0, 0.0)),
    (37.0, 1.1, False, (12.5, 7.0)),
    (-90.0, 0.9, True, (-1000.0, 250.0)),
]


@pytest.mark.parametrize("model", ["rigid", "similarity", "affine"])
@pytest.mark.parametrize(("rotation", "scale", "flip", "shift"), CASES)
@pytest.mark.parametrize("ransac", [True, False])
def test_exact_recovery_of_a_known_transform(model, rotation, scale, flip, shift, ransac):
    scale = 1.0 if model == "rigid" else scale
    truth = Transform.from_params(rotation_deg=rotation, scale=scale, translation=shift, flip=flip)
    fixed, moving = _pairs(truth, 15, 0.0, seed=int(rotation * 10) % 97)
    reg = register_landmarks(fixed, moving, model=model, ransac=ransac)  # flip=None: decided from the data
    p = reg.transform.params()
    assert reg.flip is flip
    assert p["flip"] is flip
    assert _angle_diff(p["rotation_deg"], rotation) < 1e-9
    np.testing.assert_allclose(p["scale"], (scale, scale), rtol=1e-9)
    np.testing.assert_allclose(p["translation"], shift, atol=1e-9)
    assert reg.n_inliers == 15
    assert reg.residuals["residual_um"].max() < 1e-9
    assert reg.tre_um["p90"] < 1e-9


def test_exact_recovery_of_a_sheared_affine():
    truth = Transform(np.array([[1.1, 0.3, 40.0], [-0.2, 0.85, -7.0], [0, 0, 1]]))
    fixed, moving = _pairs(truth, 10, 0.0, seed=3)
    reg = register_landmarks(fixed, moving, model="affine")
    np.testing.assert_allclose(reg.transform.matrix, truth.matrix, atol=1e-9)
    # a similarity cannot represent the shear: its residuals are large, its fit is skimage's
    sim = register_landmarks(fixed, moving, model="similarity", ransac=False)
    assert sim.rmse_um > 10.0
    np.testing.assert_allclose(sim.transform.matrix, _skimage("similarity", moving, fixed), atol=1e-8)


# ---------------------------------------------------------------- skimage as the reference
@pytest.mark.parametrize(
    ("model", "flip"), [("rigid", False), ("rigid", True), ("similarity", False), ("similarity", True)]
)
def test_matches_skimage_on_noisy_pairs(model, flip):
    truth = Transform.from_params(rotation_deg=-123.0, scale=1.0 if model == "rigid" else 0.85, flip=flip)
    fixed, moving = _pairs(truth, 25, 3.0, seed=11)
    expected = _skimage(model, moving, fixed, flip)
    for kwargs in ({"ransac": False}, {"ransac": False, "flip": flip}, {"ransac": True}):
        reg = register_landmarks(fixed, moving, model=model, **kwargs)
        assert reg.n_inliers == 25  # no outliers planted: the default threshold keeps them all
        np.testing.assert_allclose(reg.transform.matrix, expected, rtol=0, atol=1e-8)


def test_affine_is_the_ordinary_least_squares_fit():
    truth = Transform(np.array([[0.9, 0.2, 100.0], [-0.1, 1.15, -30.0], [0, 0, 1]]))
    fixed, moving = _pairs(truth, 25, 0.0, seed=5)
    reg = register_landmarks(fixed, moving, model="affine", ransac=False)
    np.testing.assert_allclose(reg.transform.matrix, _skimage("affine", moving, fixed), atol=1e-8)
    # with noise skimage's AffineTransform is a normalised DLT (algebraic error), not least squares:
    # check the normal equations instead, and that skimage's fit has the larger squared error
    fixed, moving = _pairs(truth, 25, 3.0, seed=5)
    reg = register_landmarks(fixed, moving, model="affine", ransac=False)
    design = np.column_stack([moving, np.ones(25)])
    resid = reg.transform.apply_points(moving) - fixed
    np.testing.assert_allclose(design.T @ resid, 0.0, atol=1e-7)
    sk = Transform(_skimage("affine", moving, fixed))
    sse, sse_sk = np.sum(resid**2), np.sum((sk.apply_points(moving) - fixed) ** 2)
    assert sse <= sse_sk
    assert sse == pytest.approx(sse_sk, rel=1e-3)


# ---------------------------------------------------------------- RANSAC
@pytest.mark.parametrize("model", ["rigid", "similarity", "affine"])
def test_ransac_flags_exactly_the_planted_outliers(model):
    rng = np.random.default_rng(42)
    truth = Transform.from_params(
        rotation_deg=64.0, scale=1.0 if model == "rigid" else 1.2, translation=(80, 5)
    )
    fixed, moving = _pairs(truth, 30, 0.5, seed=42)
    planted = np.sort(rng.choice(30, 6, replace=False))  # 20 %
    angle, dist = rng.uniform(0, 2 * np.pi, 6), rng.uniform(50, 200, 6)
    fixed[planted] += np.column_stack([np.cos(angle), np.sin(angle)]) * dist[:, None]
    good = np.setdiff1d(np.arange(30), planted)

    reg = register_landmarks(fixed, moving, model=model)
    np.testing.assert_array_equal(np.flatnonzero(~reg.residuals["inlier"]), planted)
    expected = _reference(model, moving[good], fixed[good])
    np.testing.assert_allclose(reg.transform.matrix, expected, atol=1e-8)
    true_xy = truth.apply_points(moving)
    assert np.linalg.norm(reg.transform.apply_points(moving) - true_xy, axis=1).max() < 1.5
    assert reg.tre_um["median"] < 1.0
    # the outliers' LOO TRE is their residual under the inlier fit (they are already held out)
    out = reg.residuals.loc[planted]
    np.testing.assert_array_equal(out["loo_tre_um"], out["residual_um"])
    assert out["residual_um"].min() > 45.0

    plain = register_landmarks(fixed, moving, model=model, ransac=False)
    assert plain.n_inliers == 30
    assert plain.threshold_um is None
    assert np.linalg.norm(plain.transform.apply_points(moving) - true_xy, axis=1).max() > 5.0
    assert plain.tre_um["median"] > 5 * reg.tre_um["median"]


def test_ransac_decides_the_mirror_despite_outliers():
    truth = Transform.from_params(rotation_deg=-30.0, scale=0.95, flip=True)
    fixed, moving = _pairs(truth, 20, 0.3, seed=8)
    fixed[:5] = fixed[:5][::-1] + 300.0  # 25 % of scrambled pairs
    reg = register_landmarks(fixed, moving)
    assert reg.flip is True
    np.testing.assert_array_equal(np.flatnonzero(~reg.residuals["inlier"]), np.arange(5))
    np.testing.assert_allclose(
        reg.transform.matrix, _skimage("similarity", moving[5:], fixed[5:], True), atol=1e-8
    )


def test_explicit_threshold_and_determinism():
    truth = Transform.from_params(rotation_deg=10.0, translation=(5, 5))
    fixed, moving = _pairs(truth, 40, 1.0, seed=2)
    fixed[[3, 17]] += 60.0
    a = register_landmarks(fixed, moving, residual_threshold_um=5.0, seed=7)
    b = register_landmarks(fixed, moving, residual_threshold_um=5.0, seed=7)
    assert a.threshold_um == 5.0
    np.testing.assert_array_equal(a.transform.matrix, b.transform.matrix)
    pd.testing.assert_frame_equal(a.residuals, b.residuals)
    assert a.n_trials == b.n_trials
    assert set(np.flatnonzero(~a.residuals["inlier"])) == {3, 17}
    # inlier ⇔ residual within the threshold under the final fit
    np.testing.assert_array_equal(a.residuals["inlier"], a.residuals["residual_um"] <= 5.0)


# ---------------------------------------------------------------- TRE
@pytest.mark.parametrize(
    ("model", "flip"), [("rigid", False), ("similarity", False), ("similarity", True), ("affine", False)]
)
def test_loo_tre_equals_brute_force_leave_one_out(model, flip):
    truth = Transform.from_params(rotation_deg=140.0, scale=1.0 if model == "rigid" else 1.1, flip=flip)
    fixed, moving = _pairs(truth, 12, 4.0, seed=21)
    reg = register_landmarks(fixed, moving, model=model, flip=flip, ransac=False)
    brute = []
    for i in range(12):
        keep = np.arange(12) != i
        t = Transform(_reference(model, moving[keep], fixed[keep], flip))
        brute.append(np.linalg.norm(t.apply_points(moving[[i]])[0] - fixed[i]))
    np.testing.assert_allclose(reg.residuals["loo_tre_um"], brute, rtol=1e-9)
    assert reg.tre_um["median"] == pytest.approx(np.median(brute), rel=1e-9)
    assert reg.tre_um["p90"] == pytest.approx(np.percentile(brute, 90), rel=1e-9)
    # held-out errors exceed the in-sample residuals
    assert (reg.residuals["loo_tre_um"] >= reg.residuals["residual_um"] - 1e-12).all()


def test_residuals_of_gaussian_noise_follow_the_rayleigh_median():
    sigma, n = 2.0, 1000
    truth = Transform.from_params(rotation_deg=20.0, scale=0.9, translation=(30, -50))
    fixed, moving = _pairs(truth, n, sigma, seed=4)
    rayleigh_median = sigma * np.sqrt(2 * np.log(2))  # median of ‖N(0, σ²I₂)‖
    reg = register_landmarks(fixed, moving, ransac=False)
    assert np.median(reg.residuals["residual_um"]) == pytest.approx(rayleigh_median, rel=0.08)
    assert reg.tre_um["median"] == pytest.approx(rayleigh_median, rel=0.08)
    assert reg.rmse_um == pytest.approx(sigma * np.sqrt(2), rel=0.05)
    # the default threshold is ≈ 3σ and keeps ≥ 98 % of pure-noise landmarks (1.1 % beyond 3σ)
    robust = register_landmarks(fixed, moving)
    assert 2.5 * sigma < robust.threshold_um < 4.5 * sigma
    assert robust.n_inliers >= 0.98 * n


# ---------------------------------------------------------------- inputs
class FakePoints:
    """Mimics a napari Points layer: data (n, D) in data coordinates (…, row, col), scale, translate."""

    def __init__(self, data, scale, translate, with_world=True, affine=None):
        self.data = np.asarray(data, float)
        self.scale = np.asarray(scale, float)
        self.translate = np.asarray(translate, float)
        if affine is not None:  # napari applies layer.affine after scale and translate
            self.affine = affine
        self.ndim = self.data.shape[1]
        if with_world:
            self.data_to_world = self._data_to_world

    def _data_to_world(self, position):  # napari's semantics: one position, the last ndim entries
        coords = np.asarray(position[-self.ndim :], float)
        return tuple(coords * self.scale + self.translate)


def _as_layer(xy_um, pixel=0.5, origin=(100.0, -20.0), z=None, with_world=True):
    rows = (xy_um[:, 1] - origin[1]) / pixel
    cols = (xy_um[:, 0] - origin[0]) / pixel
    data, scale, translate = np.column_stack([rows, cols]), [pixel, pixel], [origin[1], origin[0]]
    if z is not None:
        data = np.column_stack([np.full(len(rows), z), data])
        scale, translate = [3.0, *scale], [0.0, *translate]
    return FakePoints(data, scale, translate, with_world)


def test_napari_points_layers_and_dataframes_equal_the_array_version():
    truth = Transform.from_params(rotation_deg=75.0, scale=1.05, translation=(200, 40))
    fixed, moving = _pairs(truth, 12, 1.5, seed=9)
    fixed[2] += 90.0
    ref = register_landmarks(fixed, moving)
    shift_7_3 = [[1, 0, 7], [0, 1, 3], [0, 0, 1]]  # a layer.affine applied after scale/translate
    variants = [
        (_as_layer(fixed), _as_layer(moving, pixel=0.2125, origin=(0.0, 0.0))),
        (_as_layer(fixed, with_world=False), moving),
        (FakePoints(fixed[:, ::-1] / 0.5, [0.5, 0.5], [0, 0], False, np.eye(3)), moving),
        (FakePoints((fixed[:, ::-1] - [7, 3]) / 2, [2, 2], [0, 0], False, shift_7_3), moving),
        (_as_layer(fixed, z=2.0), pd.DataFrame({"y": moving[:, 1], "x": moving[:, 0]})),
    ]
    for f, m in variants:
        reg = register_landmarks(f, m)
        np.testing.assert_allclose(reg.transform.matrix, ref.transform.matrix, atol=1e-9)
        np.testing.assert_allclose(reg.residuals[["fixed_x", "fixed_y"]], fixed, atol=1e-9)
        np.testing.assert_allclose(reg.residuals[["moving_x", "moving_y"]], moving, atol=1e-9)
        np.testing.assert_array_equal(reg.residuals["inlier"], ref.residuals["inlier"])


def test_result_repr_plot_and_record():
    truth = Transform.from_params(rotation_deg=5.0)
    fixed, moving = _pairs(truth, 10, 1.0, seed=1)
    fixed[0] += 100.0
    reg = register_landmarks(fixed, moving, source="he", target="dapi")
    assert isinstance(reg, LandmarkRegistration)
    assert list(reg.residuals.columns) == [
        "landmark", "fixed_x", "fixed_y", "moving_x", "moving_y", "mapped_x", "mapped_y",
        "residual_um", "inlier", "loo_tre_um",
    ]  # fmt: skip
    assert "9/10 inliers" in repr(reg)
    assert "'he' → 'dapi'" in repr(reg)
    assert "<table" in reg._repr_html_()
    assert "loo_tre_um" in reg._repr_html_()
    record = json.loads(json.dumps(reg.to_dict()))
    assert len(record["landmarks"]) == 10
    assert record["landmarks"][0]["inlier"] is False
    np.testing.assert_allclose(Transform.from_dict(record["transform"]).matrix, reg.transform.matrix)
    assert reg.summary()["n_inliers"] == 9
    fig = reg.plot()
    assert isinstance(fig, Figure)
    assert "9/10 inliers" in fig.axes[0].get_title()
    assert fig.axes[0].yaxis_inverted()  # image convention: y downwards


# ---------------------------------------------------------------- bad input
SQUARE = np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0], [40.0, 70.0]])


@pytest.mark.parametrize("model", ["rigid", "similarity", "affine"])
def test_fewer_than_three_pairs(model):
    with pytest.raises(DataModelError, match="at least 3 landmark pairs, got 2"):
        register_landmarks(SQUARE[:2], SQUARE[:2], model=model)


@pytest.mark.parametrize(
    ("fixed", "moving", "match"),
    [
        (SQUARE, SQUARE[:4], "`fixed` has 5 landmarks but `moving` has 4"),
        (SQUARE, np.c_[SQUARE, SQUARE[:, 0]], r"`moving` must be an \(n, 2\) array.*got shape \(5, 3\)"),
        (SQUARE[:, 0], SQUARE, r"`fixed` must be .*got shape \(5,\)"),
        (np.where(np.arange(10).reshape(5, 2) == 3, np.nan, SQUARE), SQUARE, r"NaN or infinite.*rows \[1\]"),
        (
            SQUARE,
            np.where(np.arange(10).reshape(5, 2) == 8, np.inf, SQUARE),
            r"`moving` has NaN or infinite.*\[4\]",
        ),
        (SQUARE, [[0, 0], [1, 1], [2, 2.0], [5, 5], [9, 9]], "`moving` landmarks are collinear"),
        ([[0, 0], [1, 1], [2, 2.0001], [5, 5], [9, 9]], SQUARE, "`fixed` landmarks are collinear"),
        (np.r_[SQUARE[:4], SQUARE[[1]]], SQUARE, r"`fixed` has duplicated landmarks \(rows \[\[1, 4\]\]"),
        (pd.DataFrame(SQUARE, columns=["a", "b"]), SQUARE, "DataFrame without 'x' and 'y' columns"),
        ({"x": 1}, SQUARE, "`fixed` is a dict; expected"),
    ],
)
def test_bad_landmarks(fixed, moving, match):
    with pytest.raises(DataModelError, match=match):
        register_landmarks(fixed, moving)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "homography"}, "unknown model 'homography'"),
        ({"flip": "yes"}, "flip must be None"),
        ({"max_trials": 0}, "max_trials must be a positive integer"),
        ({"residual_threshold_um": -1.0}, "residual_threshold_um must be a positive distance"),
        ({"residual_threshold_um": 2.0, "ransac": False}, "with ransac=False every landmark is used"),
        ({"model": "affine", "flip": True}, r"the affine fit does not mirror .* flip=True"),
    ],
)
def test_bad_arguments(kwargs, match):
    truth = Transform.from_params(rotation_deg=10.0)
    with pytest.raises(DataModelError, match=match):
        register_landmarks(truth.apply_points(SQUARE), SQUARE, **kwargs)


def test_too_few_inliers_after_ransac():
    fixed, moving = _pairs(Transform.from_params(rotation_deg=3.0), 12, 5.0, seed=0)
    with pytest.raises(DataModelError, match=r"RANSAC kept only 2 of 12 landmarks.*at least 3"):
        register_landmarks(fixed, moving, residual_threshold_um=1e-6)


def test_collinear_inliers_after_ransac():
    # 4 collinear landmarks agree, 3 off the line disagree with everything: the consensus is a line
    moving = np.array([[0, 0], [100, 0], [200, 0], [300, 0], [50, 80], [150, -90], [250, 60.0]])
    fixed = moving.copy()
    fixed[4:] += [[70, -40], [-60, 80], [90, 90]]
    with pytest.raises(DataModelError, match="RANSAC inliers are collinear in `fixed`"):
        register_landmarks(fixed, moving, residual_threshold_um=1.0)
