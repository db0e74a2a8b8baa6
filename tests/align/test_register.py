"""register_images on synthetic images: API, QC record, figures, model classes, error paths."""

from __future__ import annotations

import json

import dask.array as da
import matplotlib.figure
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from spatialpath.align._coarse import masked_ncc
from spatialpath.align._preprocess import prepare
from spatialpath.align._quality import RegistrationError, ncc, nmi, warp
from spatialpath.align._register import RegistrationResult, register_images
from spatialpath.align._transform import Transform
from spatialpath.model import DataModelError, make_image, make_labels


def blobs(shape=(300, 360), seed=0, n=250):
    """Nuclei-like image: ``n`` Gaussian blobs, plus its label mask (discs at the same centres)."""
    rng = np.random.default_rng(seed)
    rows, cols = rng.uniform(8, shape[0] - 8, n), rng.uniform(8, shape[1] - 8, n)
    img = np.zeros(shape)
    img[rows.astype(int), cols.astype(int)] = rng.uniform(0.5, 1.0, n)
    img = ndimage.gaussian_filter(img, 2.5)
    yy, xx = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    for k, (r, c) in enumerate(zip(rows, cols, strict=False), start=1):
        labels[(yy - r) ** 2 + (xx - c) ** 2 <= 9] = k
    return img / img.max(), labels


@pytest.fixture(scope="module")
def pair():
    img, labels = blobs()
    return make_image(img.astype(np.float32), channels=["DAPI"], pixel_size_um=0.5), labels


def moved(img: np.ndarray, pose: Transform, ps: float, order: int = 1) -> np.ndarray:
    """moving(q) = img(pose(q)) (pixel grid ps, origin 0)."""
    g = np.diag([ps, ps, 1.0])
    pull = np.linalg.inv(g) @ pose.matrix @ g
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1.0]])
    a = swap @ pull @ swap
    return ndimage.affine_transform(img, a[:2, :2], a[:2, 2], order=order)


def centred_pose(
    rotation_deg: float, scale: float, flip: bool, centre=(90.0, 75.0), shift=(5.0, -3.0)
) -> Transform:
    """A pose that maps the image centre (µm) near itself, so the images overlap."""
    lin = Transform.from_params(rotation_deg=rotation_deg, scale=scale, flip=flip)
    t = np.add(centre, shift) - lin.apply_points([centre])[0]
    return Transform.from_params(
        rotation_deg=rotation_deg,
        scale=scale,
        flip=flip,
        translation=tuple(t),
        source="moving",
        target="fixed",
    )


POSE = centred_pose(140.0, 1.1, True)


def test_label_channel_is_the_clipped_interior_distance_of_each_label():
    """Closed form: a 7 × 7 label loses its edge ring, its centre is 3 px from it; touching labels part."""
    lab = np.zeros((9, 16), np.int32)
    lab[1:8, 1:8], lab[1:8, 8:15] = 1, 2  # two touching squares
    p = prepare(make_labels(lab, pixel_size_um=0.25), None)  # clip 1.5 µm = 6 px: not reached
    out = p.fn(lab[None])
    assert p.channel == "labels"
    assert out[4, 4] == 3.0
    assert out[4, 11] == 3.0
    assert (out[:, 7:9] == 0).all()  # the shared edge of labels 1 and 2
    assert out[2, 2] == 1.0
    clipped = prepare(make_labels(lab, pixel_size_um=1.0), None).fn(lab[None])  # clip 1.5 px
    assert clipped.max() == 1.5
    fg = prepare(make_labels(lab, pixel_size_um=0.25), "foreground")
    assert fg.channel == "foreground"
    assert (fg.fn(lab[None]) == (lab > 0)).all()
    with pytest.raises(
        DataModelError, match=r"fixed_channel='DAPI' is not a channel of a label mask.*'foreground'"
    ):
        prepare(make_labels(lab, pixel_size_um=0.25), "DAPI")


def test_label_mask_to_image_recovers_a_mirrored_rotated_scaled_pose(pair):
    fixed, labels = pair
    mov = make_labels(moved(labels, POSE, 0.5, order=0).astype(np.int32), pixel_size_um=0.5)
    res = register_images(fixed, mov, progress=False)
    assert res.channels == {"fixed": "DAPI", "moving": "labels"}
    pts = np.random.default_rng(1).uniform([50, 45], [130, 105], (50, 2))  # µm, inside the overlap
    err = np.linalg.norm(res.transform.apply_points(pts) - POSE.apply_points(pts), axis=1) / 0.5
    assert np.median(err) < 1.0
    p = res.transform.params()
    assert p["flip"]
    assert p["rotation_deg"] == pytest.approx(140.0, abs=0.5)
    assert res.similarity_after > res.similarity_before
    assert res.transform.source == "moving"
    assert res.transform.target == "fixed"


def test_rigid_and_similarity_models_return_their_class(pair):
    fixed, _ = pair
    p = centred_pose(-30.0, 1.0, False)
    pose = Transform(p.matrix, "m", "f")
    mov = make_image(
        moved(fixed.values[0], pose, 0.5).astype(np.float32), channels=["DAPI"], pixel_size_um=0.5
    )
    rigid = register_images(fixed, mov, model="rigid", scales=(1.0,), progress=False, source="m", target="f")
    assert rigid.transform.kind == "rigid"
    np.testing.assert_allclose(rigid.transform.matrix, pose.matrix, atol=0.1)
    sim = register_images(fixed, mov, model="similarity", progress=False)
    assert sim.transform.kind in ("rigid", "similarity")
    assert sim.transform.params()["scale"][0] == pytest.approx(1.0, abs=0.005)


def test_dask_input_pixel_sizes_and_origins_differ(pair):
    """Moving at 1 µm/px with an origin offset, as a dask array: the µm map is still recovered."""
    fixed, _ = pair
    pose = centred_pose(25.0, 1.0, False, centre=(95.0, 82.0))
    g = np.array([[1.0, 0, 5.0], [0, 1.0, 7.0], [0, 0, 1]])  # moving grid: 1 µm/px, origin (5, 7)
    pull = np.linalg.inv(fixed_grid := np.diag([0.5, 0.5, 1.0])) @ pose.matrix @ g
    out, _ = warp(fixed.values[0], pull, (150, 180))
    mov = make_image(
        da.from_array(out, chunks=64), channels=["DAPI"], pixel_size_um=1.0, origin_um=(5.0, 7.0)
    )
    res = register_images(fixed, mov, model="rigid", scales=(1.0,), allow_flip=False, progress=False)
    pts = np.array([[60.0, 50.0], [100.0, 80.0], [80.0, 40.0]])
    np.testing.assert_allclose(res.transform.apply_points(pts), pose.apply_points(pts), atol=0.5)
    assert fixed_grid[0, 0] == 0.5


def test_qc_record_figures_and_html(pair):
    fixed, _ = pair
    mov = make_image(np.rot90(fixed.values[0]).copy(), channels=["DAPI"], pixel_size_um=0.5)
    res = register_images(fixed, mov, progress=False)
    assert isinstance(res, RegistrationResult)
    rec = json.loads(json.dumps(res.to_dict()))
    assert Transform.from_dict(rec["transform"]).matrix == pytest.approx(res.transform.matrix)
    assert rec["similarity_metric"] == "ncc"
    assert rec["similarity_after"] > 0.95
    assert set(rec["timings_s"]) == {"preprocess", "coarse", "refine", "quality"}
    assert rec["candidates"][0]["score"] == pytest.approx(max(c["score"] for c in rec["candidates"]))
    assert isinstance(res.plot_checkerboard(), matplotlib.figure.Figure)
    assert isinstance(res.plot_overlay(), matplotlib.figure.Figure)
    assert "similarity after" in res._repr_html_()
    assert res.overlap_fraction > 0.95


def test_metrics_against_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.random((50, 50))
    assert ncc(a, 3 * a - 1) == pytest.approx(1.0)
    assert ncc(a, -a) == pytest.approx(-1.0)
    assert ncc(a, a, np.zeros_like(a, bool)) != ncc(a, a, np.zeros_like(a, bool))  # NaN: no pixels
    assert nmi(a, a) == pytest.approx(2.0)
    # the masked NCC equals the plain correlation of the overlapping crops (independent: np.corrcoef)
    f = ndimage.gaussian_filter(rng.random((60, 70)), 2)
    m = f[10:50, 5:45] + 0.3 * rng.random((40, 40))
    score, shift = masked_ncc(f, m, np.ones(m.shape, bool), 400)
    assert shift == (10, 5)
    assert score == pytest.approx(np.corrcoef(f[10:50, 5:45].ravel(), m.ravel())[0, 1], abs=1e-4)


def test_noise_is_rejected_with_score_and_result(pair):
    fixed, _ = pair
    noise = ndimage.gaussian_filter(np.random.default_rng(5).random((300, 360)), 2.5).astype(np.float32)
    with pytest.raises(
        RegistrationError, match=r"similarity \(NCC\) after registration is -?0\.\d+, below"
    ) as err:
        register_images(fixed, make_image(noise, channels=["DAPI"], pixel_size_um=0.5), progress=False)
    assert isinstance(err.value, DataModelError)
    assert err.value.result.similarity_after < 0.4


def test_unknown_units_and_bad_inputs_raise(pair):
    fixed, _ = pair
    bare = xr.DataArray(fixed.values, dims=("c", "y", "x"))
    with pytest.raises(DataModelError, match="unknown units"):
        register_images(fixed, bare, progress=False)
    no_units = fixed.copy()
    no_units.attrs = {}
    with pytest.raises(DataModelError, match="unknown units"):
        register_images(no_units, fixed, progress=False)
    bad = fixed.copy()
    bad.attrs["pixel_size_um"] = -1.0
    with pytest.raises(DataModelError, match=r"unknown units.*positive, finite"):
        register_images(fixed, bad, progress=False)
    with pytest.raises(DataModelError, match="not a channel of the moving image"):
        register_images(fixed, fixed, moving_channel="CD8", progress=False)
    with pytest.raises(DataModelError, match="needs an RGB brightfield image"):
        register_images(fixed, fixed, moving_channel="hematoxylin", progress=False)
    with pytest.raises(DataModelError, match="model must be"):
        register_images(fixed, fixed, model="projective", progress=False)
    with pytest.raises(DataModelError, match="working_size"):
        register_images(fixed, fixed, working_size=10, progress=False)
    two = make_image(np.zeros((2, 8, 8), np.float32), channels=["CD3", "CD8"], pixel_size_um=1.0)
    with pytest.raises(DataModelError, match="cannot tell which fixed channel"):
        prepare(two, None)


def test_rgb_channel_choice():
    """Brightfield (white background) → hematoxylin; dark fluorescence composite → blue channel."""
    bright = make_image(np.full((3, 16, 16), 230, np.uint8), channels=["R", "G", "B"], pixel_size_um=1.0)
    dark = make_image(np.full((3, 16, 16), 20, np.uint8), channels=["R", "G", "B"], pixel_size_um=1.0)
    assert prepare(bright, None).channel == "hematoxylin"
    assert prepare(dark, None).channel == "B"
    assert prepare(dark, "luminance").channel == "luminance"
    assert prepare(dark, 0).channel == "R"


def test_nonrigid_field_is_not_kept_when_there_is_nothing_to_correct(pair):
    pytest.importorskip("spatialpath.align._nonrigid", reason="the non-rigid module has not landed")
    from spatialpath.align import _nonrigid

    if not hasattr(_nonrigid, "estimate_displacement"):
        pytest.skip("spatialpath.align._nonrigid.estimate_displacement is not there yet")
    fixed, _ = pair
    mov = make_image(np.rot90(fixed.values[0]).copy(), channels=["DAPI"], pixel_size_um=0.5)
    res = register_images(fixed, mov, nonrigid=True, progress=False)
    # an exact rotation leaves nothing to correct: the field lowers NMI and the guard keeps the affine result
    assert res.nonrigid["accepted"] is False
    assert res.nonrigid["gain"] < res.nonrigid["min_gain"]
    assert res.transform.displacement is None
    assert res.to_dict()["nonrigid"]["reason"].endswith("kept the affine transform")
    pts = np.array([[60.0, 50.0], [100.0, 80.0]])
    np.testing.assert_allclose(
        res.transform.apply_points(pts),
        Transform(res.transform.matrix, "moving", "fixed").apply_points(pts),
        atol=1.0,
    )


def test_nmi_affine_aligns_contrast_inverted_images():
    """Nuclei bright in one image and dark holes in the other: NMI recovers a planted shift + rotation."""
    from spatialpath.align._mutual_info import nmi_affine, quantile_nmi

    img, _ = blobs(shape=(200, 240), seed=3, n=300)
    # planted pull (fixed pixel -> moving pixel): rotation 1° about the centre and a (3.0, -2.5) px shift
    t = np.deg2rad(1.0)
    c = np.array([119.5, 99.5])
    truth = np.eye(3)
    truth[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    truth[:2, 2] = c - truth[:2, :2] @ c + [3.0, -2.5]
    inverted = 1.0 - warp(img, np.linalg.inv(truth), img.shape)[0]  # moving(truth(p)) = 1 − fixed(p)
    pull, before, after = nmi_affine(img, inverted, np.eye(3))
    assert after > before
    rows, cols = np.mgrid[20:180:20, 20:220:20]
    pts = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)])
    err = np.linalg.norm((pull @ pts - truth @ pts)[:2], axis=0)
    assert np.median(err) < 0.3, np.median(err)
    x = np.random.default_rng(0).random(4000)
    assert quantile_nmi(x, 1 - x) == pytest.approx(2.0)


def test_metric_must_be_ncc_or_nmi(pair):
    fixed, _ = pair
    with pytest.raises(DataModelError, match="metric must be 'ncc' or 'nmi'"):
        register_images(fixed, fixed, metric="mi", progress=False)
