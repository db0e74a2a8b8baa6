"""The "Alignment" widget: pure functions against independent references, then the widget."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

napari = pytest.importorskip("napari")

from spatialpath.align import DisplacementField, Transform  # noqa: E402
from spatialpath.model import DataModelError  # noqa: E402
from spatialpath.napari import _alignment as logic  # noqa: E402
from spatialpath.napari._keys import IMAGE_ID, KIND  # noqa: E402

TRUTH = Transform.from_params(
    rotation_deg=35.0, scale=1.3, translation=(120.0, -40.0), source="moving", target="fixed"
)
RNG = np.random.default_rng(7)
MOVING_PX = RNG.uniform(0, 400, (9, 2))  # (row, col) pixels of the moving landmarks


def world_of(layer, data):
    return np.array([layer.data_to_world(p) for p in data])


def landmark_layers(outlier: float = 0.0):
    moving = napari.layers.Points(MOVING_PX, scale=(0.5, 0.5), translate=(3.0, 7.0))
    fixed_xy = TRUTH.apply_points(world_of(moving, MOVING_PX)[:, ::-1])
    fixed_xy[0] += outlier
    fixed = napari.layers.Points(fixed_xy[:, ::-1])
    return fixed, moving


# ---------------------------------------------------------------------- pure functions
def test_napari_affine_places_moving_pixels_where_the_transform_sends_them():
    layer = napari.layers.Image(np.zeros((50, 60)), scale=(0.5, 0.5), translate=(10.0, 20.0))
    flipped = Transform.from_params(rotation_deg=30, scale=1.2, translation=(5, -3), flip=True)
    for t in (TRUTH, flipped):
        layer.affine = logic.napari_affine(t)
        pixels = np.array([[0.0, 0.0], [49.0, 0.0], [13.0, 42.0], [49.0, 59.0]])
        um_xy = np.column_stack([20 + 0.5 * pixels[:, 1], 10 + 0.5 * pixels[:, 0]])
        np.testing.assert_allclose(world_of(layer, pixels), t.apply_points(um_xy)[:, ::-1], atol=1e-9)
        np.testing.assert_allclose(logic.xy_matrix(layer.affine), t.matrix, atol=1e-12)


def test_planted_similarity_recovered_from_landmark_layers():
    fixed, moving = landmark_layers()
    _fixed_xy, moving_xy = logic.landmarks_from_layers(fixed, moving)
    np.testing.assert_allclose(
        moving_xy, np.column_stack([7 + 0.5 * MOVING_PX[:, 1], 3 + 0.5 * MOVING_PX[:, 0]])
    )
    for model, ransac in (("similarity", True), ("affine", False), ("rigid", True)):
        reg = logic.fit_landmarks(fixed, moving, model=model, ransac=ransac)
        if model == "rigid":  # a scale of 1.3 is not rigid: the best rotation is still 35°
            assert reg.transform.params()["rotation_deg"] == pytest.approx(35.0, abs=1e-6)
            continue
        np.testing.assert_allclose(reg.transform.matrix, TRUTH.matrix, atol=1e-6)


def test_residual_table_values_with_a_misclicked_landmark():
    fixed, moving = landmark_layers(outlier=40.0)
    reg = logic.fit_landmarks(fixed, moving, model="similarity", ransac=True)
    table = logic.residual_table(reg)
    assert table.columns.tolist() == ["landmark", "residual_um", "loo_tre_um", "inlier"]
    fixed_xy, moving_xy = logic.landmarks_from_layers(fixed, moving)
    hand = np.hypot(*(TRUTH.apply_points(moving_xy) - fixed_xy).T)  # independent: the planted truth
    np.testing.assert_allclose(table["residual_um"], hand.round(3), atol=2e-3)
    assert table.loc[0, "residual_um"] == pytest.approx(40 * np.sqrt(2), abs=1e-3)
    assert table["inlier"].tolist() == [False] + [True] * 8
    assert table.loc[1:, "loo_tre_um"].max() < 1e-6


def test_apply_composes_and_moves_the_layers_of_the_image():
    image = napari.layers.Image(np.zeros((8, 8)), scale=(2.0, 2.0), metadata={IMAGE_ID: "mov"})
    cells = napari.layers.Points(np.ones((3, 2)), metadata={KIND: "cells", IMAGE_ID: "mov"})
    other = napari.layers.Points(np.ones((3, 2)), metadata={KIND: "cells", IMAGE_ID: "fix"})
    marks = napari.layers.Points(np.ones((3, 2)))
    layers = logic.layers_to_move([image, cells, other, marks], image, extra=[marks])
    assert layers == [image, cells, marks]
    shift = Transform.from_params(translation=(4.0, 1.0))
    before = logic.apply_to_layers(layers, TRUTH)
    logic.apply_to_layers(layers, shift)
    for layer in layers:
        np.testing.assert_allclose(logic.xy_matrix(layer.affine), (shift.matrix @ TRUTH.matrix), atol=1e-12)
    np.testing.assert_allclose(before[image.name], np.eye(3))
    np.testing.assert_allclose(other.affine.affine_matrix, np.eye(3))
    # fitting again after applying gives the identity: landmarks are read in the current world
    fixed, moving = landmark_layers()
    logic.apply_to_layers([moving], logic.fit_landmarks(fixed, moving).transform)
    np.testing.assert_allclose(logic.fit_landmarks(fixed, moving).transform.matrix, np.eye(3), atol=1e-6)


def test_image_from_layer_and_world_transform():
    layer = napari.layers.Image(np.arange(12.0).reshape(3, 4), scale=(0.5, 0.5), translate=(10.0, 20.0))
    layer.affine = logic.napari_affine(TRUTH)
    da = logic.image_from_layer(layer)
    assert da.dims == ("y", "x")
    assert da.attrs == {"pixel_size_um": 0.5, "units": "um"}
    np.testing.assert_allclose(da["x"], [20.0, 20.5, 21.0, 21.5])
    np.testing.assert_allclose(da["y"], [10.0, 10.5, 11.0])
    fixed = napari.layers.Image(np.zeros((3, 3)))
    w = logic.world_transform(Transform.identity("x"), fixed, layer)  # undoes the moving affine
    np.testing.assert_allclose(w.matrix, np.linalg.inv(TRUTH.matrix), atol=1e-12)


def test_error_paths():
    fixed, _moving = landmark_layers()
    two = napari.layers.Points(MOVING_PX[:2], name="two")
    with pytest.raises(DataModelError, match="at least 3 landmark pairs are needed, got 2"):
        logic.landmarks_from_layers(two, two)
    with pytest.raises(DataModelError, match=r"have 9 points but the moving ones \('two'\) have 2"):
        logic.fit_landmarks(fixed, two)
    with pytest.raises(DataModelError, match="choose a Points layer of moving landmarks"):
        logic.landmarks_from_layers(fixed, None)
    line = napari.layers.Points(np.column_stack([np.arange(4.0), np.arange(4.0)]))
    with pytest.raises(DataModelError, match="collinear"):
        logic.fit_landmarks(line, line)
    field = DisplacementField.from_spacing(np.zeros((2, 4, 4)), 1.0)
    with pytest.raises(DataModelError, match="non-rigid transform"):
        logic.napari_affine(Transform(np.eye(3), displacement=field))
    with pytest.raises(DataModelError, match=r"expected a spatialpath\.align\.Transform"):
        logic.napari_affine(np.eye(3))
    with pytest.raises(DataModelError, match="not on a square, axis-aligned"):
        logic.image_from_layer(napari.layers.Image(np.zeros((4, 4)), scale=(1.0, 2.0)))
    with pytest.raises(DataModelError, match="3 spatial dimensions"):
        logic.image_from_layer(napari.layers.Image(np.zeros((2, 4, 4))))


# ---------------------------------------------------------------------- the widget
def _planted_pair():
    """A 320-px fixed image and a 200-px moving view of it under a known rigid pose (1 µm pixels)."""
    from skimage import data, transform

    big = transform.resize(data.camera().astype(float) / 255, (320, 320), anti_aliasing=True)
    truth = Transform.from_params(rotation_deg=8.0, translation=(60.0, 40.0), source="moving", target="fixed")
    a = logic.SWAP @ truth.matrix @ logic.SWAP  # (row, col) moving → fixed; moving(p) = fixed(T p)
    moving = ndimage.affine_transform(big, a[:2, :2], a[:2, 2], output_shape=(200, 200), order=3)
    return big, moving, truth


def test_widget_landmarks_fit_apply_undo(make_napari_viewer):
    from spatialpath.napari._qt._alignment import AlignmentWidget, residuals_frame

    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((400, 400)), name="fixed", metadata={KIND: "image", IMAGE_ID: "fix"})
    mov = viewer.add_image(np.zeros((200, 200)), name="moving", scale=(0.5, 0.5), translate=(3.0, 7.0))
    mov.metadata.update({KIND: "image", IMAGE_ID: "mov"})
    cells = viewer.add_points(
        np.array([[10.0, 10.0], [50.0, 80.0]]), name="cells", metadata={IMAGE_ID: "mov"}
    )
    widget = AlignmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Alignment")
    assert (widget.fixed_image.value.name, widget.moving_image.value.name) == ("fixed", "moving")
    fixed_pts, moving_pts = widget.add_landmark_layers()
    assert widget.fixed_points.value is fixed_pts
    assert moving_pts.metadata == {KIND: "landmarks", IMAGE_ID: "mov"}

    moving_pts.data = MOVING_PX[:4] * 0.5  # clicked in µm on the moving image
    fixed_pts.data = MOVING_PX[:2]
    assert widget.fit_landmarks() is None
    assert widget.status.value.startswith("⚠ the fixed landmarks")
    assert "have 2 points but the moving ones" in widget.status.value
    moving_pts.data = MOVING_PX * 0.5
    fixed_pts.data = TRUTH.apply_points(MOVING_PX[:, ::-1] * 0.5)[:, ::-1]
    reg = widget.fit_landmarks()
    np.testing.assert_allclose(reg.transform.matrix, TRUTH.matrix, atol=1e-6)
    frame = residuals_frame(widget)
    assert frame["landmark"].tolist() == list(range(9))
    assert frame["residual_um"].abs().max() < 1e-3
    assert "9/9 inliers" in widget.report.value

    moved = widget.apply_transform()
    assert [layer.name for layer in moved] == ["moving", "cells", "moving landmarks"]
    pixel = np.array([17.0, 150.0])
    um_xy = [[7 + 0.5 * pixel[1], 3 + 0.5 * pixel[0]]]
    np.testing.assert_allclose(mov.data_to_world(pixel), TRUTH.apply_points(um_xy)[0, ::-1], atol=1e-6)
    np.testing.assert_allclose(logic.xy_matrix(cells.affine), TRUTH.matrix, atol=1e-6)
    np.testing.assert_allclose(viewer.layers["fixed"].affine.affine_matrix, np.eye(3))
    np.testing.assert_allclose(widget.fit_landmarks().transform.matrix, np.eye(3), atol=1e-6)
    widget.undo_apply()
    np.testing.assert_allclose(mov.affine.affine_matrix, np.eye(3))
    widget.transform = None
    widget.apply_transform()
    assert widget.status.value.startswith("⚠ fit landmarks")


def test_widget_automatic_registration_recovers_the_pose_or_refuses(make_napari_viewer, qtbot):
    from spatialpath.napari._qt._alignment import AlignmentWidget

    big, moving, truth = _planted_pair()
    viewer = make_napari_viewer()
    viewer.add_image(big, name="fixed")
    mov = viewer.add_image(moving, name="moving")
    widget = AlignmentWidget(viewer)
    widget.model.value, widget.allow_flip.value = "rigid", False
    widget.auto_register()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.status.value.startswith("moved 'moving'"), widget.status.value
    assert widget.result.similarity_after > 0.9
    assert "similarity (NCC) before" in widget.report.value
    corners = np.array([[0.0, 0.0], [0.0, 199.0], [199.0, 0.0], [199.0, 199.0], [100.0, 100.0]])
    shown = world_of(mov, corners)
    expected = truth.apply_points(corners[:, ::-1])[:, ::-1]
    assert np.abs(shown - expected).max() < 1.0  # within one pixel (1 µm) everywhere

    widget.undo_apply()
    noise = ndimage.gaussian_filter(np.random.default_rng(3).random((200, 200)), 2)
    mov.data = noise
    widget.auto_register()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.status.value.startswith("⚠ not applied: registration")
    assert widget.report.value.startswith("rejected: similarity (NCC)")
    np.testing.assert_allclose(mov.affine.affine_matrix, np.eye(3))
    widget.moving_image.value = widget.fixed_image.value
    assert widget.auto_register() is None
    assert "choose two different image layers" in widget.status.value
