"""Qt front end of the "Alignment" widget (logic in :mod:`.._alignment`).

Choose the fixed and moving images and two Points layers of landmarks (paired by order), fit a
rigid, similarity or affine transform (RANSAC optional), read the per-landmark residuals and the
leave-one-out TRE, and apply it: the moving image and every layer of its ``image_id`` (cells,
shapes, other channels) get the transform composed into their ``affine``, without resampling.
"Automatic registration" runs :func:`spatialpath.align.register_images` in a worker thread, shows
its quality report, and applies the transform only when the registration is accepted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton, Table

from spatialpath.align import RegistrationError, register_images
from spatialpath.napari import _alignment as logic
from spatialpath.napari._keys import IMAGE_ID, KIND
from spatialpath.napari._layer_base import UNITS

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from spatialpath.align import Transform

MODELS = ("rigid", "similarity", "affine")


def _is(layer: Any, kind: str) -> bool:
    return type(layer).__name__.lower() == kind


class AlignmentWidget(Container):
    """Alignment: landmark fit with residuals/TRE, automatic registration, apply through the affine."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.transform: Transform | None = None  # moving world → fixed world, ready to apply
        self.registration = None  # the last LandmarkRegistration
        self.result = None  # the last RegistrationResult (accepted or not)
        self.busy = False
        self._undo: list[tuple[Any, np.ndarray]] = []
        self._worker = None
        self.fixed_image = ComboBox(label="fixed image", choices=self._choices("image"), nullable=True)
        self.moving_image = ComboBox(label="moving image", choices=self._choices("image"), nullable=True)
        self.fixed_points = ComboBox(label="fixed landmarks", choices=self._choices("points"), nullable=True)
        self.moving_points = ComboBox(
            label="moving landmarks", choices=self._choices("points"), nullable=True
        )
        self.new_landmarks = PushButton(text="New landmark layers")
        self.model = ComboBox(label="model", choices=list(MODELS), value="similarity")
        self.ransac = CheckBox(text="RANSAC (set mis-clicked pairs aside)", value=True)
        self.fit = PushButton(text="Fit landmarks")
        self.table = Table(label="residuals (µm)")
        self.report = Label(label="result", value="")
        self.apply = PushButton(text="Apply to the moving layers", enabled=False)
        self.undo = PushButton(text="Undo", enabled=False)
        self.trust_scale = CheckBox(text="pixel sizes are right (search scale 1 only: faster)", value=True)
        self.allow_flip = CheckBox(text="allow a mirror", value=True)
        self.auto = PushButton(text="Automatic registration")
        self.status = Label(label="status", value="")
        self.extend(
            [
                self.fixed_image,
                self.moving_image,
                self.fixed_points,
                self.moving_points,
                self.new_landmarks,
                self.model,
                self.ransac,
                self.fit,
                self.table,
                self.report,
                self.apply,
                self.undo,
                self.trust_scale,
                self.allow_flip,
                self.auto,
                self.status,
            ]
        )
        self.new_landmarks.changed.connect(self.add_landmark_layers)
        self.fit.changed.connect(self.fit_landmarks)
        self.apply.changed.connect(self.apply_transform)
        self.undo.changed.connect(self.undo_apply)
        self.auto.changed.connect(self.auto_register)
        for ev in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            ev.connect(self._layers_changed)
        self.native.destroyed.connect(self._teardown)
        self._layers_changed()

    def _teardown(self, *_args: Any) -> None:
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.disconnect(self._layers_changed)

    def _choices(self, kind: str):
        def choices(_widget: Any = None) -> list[tuple[str, Any]]:
            return [(layer.name, layer) for layer in self.viewer.layers if _is(layer, kind)]

        return choices

    def _layers_changed(self, _event: Any = None) -> None:
        for w in (self.fixed_image, self.moving_image, self.fixed_points, self.moving_points):
            if w.value is not None and w.value not in self.viewer.layers:
                w.value = None
            w.reset_choices()
        images = [layer for _, layer in self._choices("image")()]
        if self.fixed_image.value is None and images:
            self.fixed_image.value = images[0]
        if self.moving_image.value is None and len(images) > 1:
            self.moving_image.value = images[-1]
        marks = [layer for _, layer in self._choices("points")() if layer.metadata.get(KIND) == "landmarks"]
        if self.fixed_points.value is None and len(marks) > 1:
            self.fixed_points.value, self.moving_points.value = marks[0], marks[1]

    # ------------------------------------------------------------------ landmarks
    def add_landmark_layers(self, _value: Any = None) -> tuple[Any, Any]:
        """Two empty Points layers (µm), fixed in cyan and moving in magenta, chosen in the widget."""
        out = []
        for side, colour, image in (
            ("fixed", "cyan", self.fixed_image.value),
            ("moving", "magenta", self.moving_image.value),
        ):
            meta = {KIND: "landmarks", IMAGE_ID: None if image is None else image.metadata.get(IMAGE_ID)}
            size = 10.0
            if image is not None:
                lo, hi = np.asarray(image.extent.world, float)[:, -2:]
                size = max(2.0, float(np.max(hi - lo)) / 60)
            out.append(
                self.viewer.add_points(
                    np.zeros((0, 2)),
                    name=f"{side} landmarks",
                    face_color=colour,
                    size=size,
                    units=UNITS if image is None else image.units,
                    metadata=meta,
                )
            )
        self.fixed_points.value, self.moving_points.value = out
        out[0].mode = "add"
        return out[0], out[1]

    def fit_landmarks(self, _value: Any = None):
        """Fit the chosen model to the landmark pairs; show residuals and TRE, or the error."""
        try:
            reg = logic.fit_landmarks(
                self.fixed_points.value,
                self.moving_points.value,
                model=self.model.value,
                ransac=self.ransac.value,
            )
        except ValueError as err:  # DataModelError is a ValueError
            self.status.value = f"⚠ {err}"
            self.table.value = {"data": [], "index": [], "columns": []}
            return None
        self.registration, self.transform = reg, reg.transform
        table = logic.residual_table(reg)
        self.table.value = {
            "data": table.to_numpy().tolist(),
            "index": table.index.tolist(),
            "columns": list(table.columns),
        }
        tre = reg.tre_um
        self.report.value = (
            f"{reg.model}{', mirrored' if reg.flip else ''}: {reg.n_inliers}/{reg.n_landmarks} inliers, "
            f"RMSE {reg.rmse_um:.3g} µm, TRE median {tre['median']:.3g} µm, p90 {tre['p90']:.3g} µm"
        )
        self.status.value = "fitted: press Apply to move the moving layers"
        self.apply.enabled = True
        return reg

    # ------------------------------------------------------------------ apply
    def moving_layers(self) -> list:
        """The layers Apply moves: the moving image, its ``image_id``'s layers and the moving landmarks."""
        image = self.moving_image.value
        if image is None:
            raise ValueError("choose the moving image layer")
        extra = [self.moving_points.value] if self.moving_points.value is not None else []
        exclude = [x for x in (self.fixed_image.value, self.fixed_points.value) if x is not None]
        return logic.layers_to_move(list(self.viewer.layers), image, extra=extra, exclude=exclude)

    def apply_transform(self, _value: Any = None) -> list:
        """Compose the fitted transform into the moving layers' affines (no resampling)."""
        if self.transform is None:
            self.status.value = "⚠ fit landmarks or run the automatic registration first"
            return []
        try:
            layers = self.moving_layers()
            before = logic.apply_to_layers(layers, self.transform)
        except ValueError as err:
            self.status.value = f"⚠ {err}"
            return []
        self._undo = [(layer, before[layer.name]) for layer in layers]
        self.transform = None  # applied: fitting again would compose it twice
        self.apply.enabled, self.undo.enabled = False, True
        self.status.value = "moved " + ", ".join(repr(layer.name) for layer in layers)
        return layers

    def undo_apply(self, _value: Any = None) -> None:
        """Restore the affines the last Apply replaced."""
        for layer, affine in self._undo:
            layer.affine = affine
        self.status.value = f"restored {len(self._undo)} layers"
        self._undo, self.undo.enabled = [], False

    # ------------------------------------------------------------------ automatic registration
    def auto_register(self, _value: Any = None):
        """Register the two image layers in a worker thread; apply only an accepted result."""
        from napari.qt.threading import thread_worker

        fixed, moving = self.fixed_image.value, self.moving_image.value
        if fixed is None or moving is None or fixed is moving:
            self.status.value = "⚠ choose two different image layers (fixed and moving)"
            return None
        try:  # read the layers here, in the main thread
            images = logic.image_from_layer(fixed), logic.image_from_layer(moving)
        except ValueError as err:
            self.status.value = f"⚠ {err}"
            return None
        kwargs: dict[str, Any] = {"model": self.model.value, "allow_flip": bool(self.allow_flip.value)}
        if self.trust_scale.value:
            kwargs["scales"] = (1.0,)

        def done(result) -> None:
            self.busy = False
            self.result = result
            self.transform = logic.world_transform(result.transform, fixed, moving)
            self.report.value = logic.quality_report(result)
            self.apply_transform()

        def failed(err: Exception) -> None:
            self.busy = False
            self.result = getattr(err, "result", None)
            if isinstance(err, RegistrationError) and self.result is not None:
                self.report.value = "rejected: " + logic.quality_report(self.result)
            self.status.value = f"⚠ not applied: {err}"

        self.busy, self.status.value = True, "registering…"
        self._worker = thread_worker(
            register_images,
            connect={"returned": done, "errored": failed},
            progress={"total": 0, "desc": "register_images"},
        )(*images, progress=False, **kwargs)
        return self._worker


def residuals_frame(widget: AlignmentWidget) -> pd.DataFrame:
    """The widget's residual table as a DataFrame (for tests and notebooks)."""
    value = widget.table.value
    return pd.DataFrame(value["data"], index=value["index"], columns=value["columns"])
