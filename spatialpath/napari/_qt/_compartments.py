"""Qt front end of the "Compartments and densities" widget (logic in :mod:`.._compartments`).

Draw tumour/stroma polygons in a Shapes layer, each with a ``compartment`` feature chosen before
drawing (or assigned to the selected shapes); the densities per mm² of every cell type in every
compartment are recomputed 300 ms after the last edit and shown in the table; optional margin
bands are shown as their own Shapes layer; the biomarker table of the current image is written
in a worker thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, Table
from qtpy.QtCore import QTimer

from spatialpath.keys import Key
from spatialpath.napari import _compartments as logic
from spatialpath.napari._colors import compartment_colors, rgba
from spatialpath.napari._keys import ADATA, IMAGE_ID, KIND, REGIONS
from spatialpath.napari._layer_base import UNITS
from spatialpath.napari._layers import regions_layer
from spatialpath.regions import STROMA, TISSUE, TUMOUR

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: compartments offered before drawing.
COMPARTMENTS = (TUMOUR, STROMA, TISSUE)
#: debounce of the live recomputation after a shape edit (ms).
DEBOUNCE_MS = 300
BANDS_NAME = "margin bands"


def _is(layer: Any, kind: str) -> bool:
    return type(layer).__name__.lower() == kind


class CompartmentsWidget(Container):
    """Compartments and densities: draw/edit compartments, margin bands, live densities, export."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.regions = None  # the regions last computed (with margin bands when on)
        self.densities: pd.DataFrame | None = None
        self.written: dict[str, Path] | None = None
        self._shapes = None
        self._worker = None
        self.busy = False  # True while the export runs
        self.shapes_layer = ComboBox(label="shapes", choices=self._choices("shapes"), nullable=True)
        self.new_layer = PushButton(text="New compartments layer")
        self.compartment = ComboBox(label="compartment", choices=list(COMPARTMENTS), value=TUMOUR)
        self.hole = CheckBox(text="cut out (hole)", value=False)
        self.assign = PushButton(text="Set selected shapes to this compartment")
        self.cells_layer = ComboBox(label="cells", choices=self._choices("points", cells=True), nullable=True)
        self.cluster_key = ComboBox(label="cell type column", choices=self._cluster_choices)
        self.bands = CheckBox(text="margin bands around the tumour", value=False)
        self.inner_um = FloatSpinBox(label="inner band (µm)", value=100.0, min=0.0, max=10_000.0, step=10.0)
        self.outer_um = FloatSpinBox(label="outer band (µm)", value=100.0, min=0.0, max=10_000.0, step=10.0)
        self.table = Table(label="cells / mm²")
        self.status = Label(label="status", value="")
        self.out_dir = FileEdit(label="export to", mode="d", value=Path.cwd())
        self.overwrite = CheckBox(text="overwrite existing tables", value=False)
        self.export = PushButton(text="Export biomarker table")
        self.extend(
            [
                self.shapes_layer,
                self.new_layer,
                self.compartment,
                self.hole,
                self.assign,
                self.cells_layer,
                self.cluster_key,
                self.bands,
                self.inner_um,
                self.outer_um,
                self.table,
                self.status,
                self.out_dir,
                self.overwrite,
                self.export,
            ]
        )
        self._timer = QTimer(self.native)  # dies with the widget: no late refresh of deleted labels
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.refresh)
        self.new_layer.changed.connect(self.add_compartments_layer)
        self.assign.changed.connect(self.assign_selected)
        self.export.changed.connect(self.export_table)
        self.shapes_layer.changed.connect(self._attach)
        self.compartment.changed.connect(self._set_defaults)
        self.hole.changed.connect(self._set_defaults)
        self.cells_layer.changed.connect(self._cells_changed)
        for w in (self.cluster_key, self.bands, self.inner_um, self.outer_um):
            w.changed.connect(self.schedule)
        for ev in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            ev.connect(self._layers_changed)
        self.native.destroyed.connect(self._teardown)
        self._layers_changed()

    def _teardown(self, *_args: Any) -> None:
        self._timer.stop()
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.disconnect(self._layers_changed)

    # ------------------------------------------------------------------ layer choices
    def _choices(self, kind: str, cells: bool = False):
        def choices(_widget: Any = None) -> list[tuple[str, Any]]:
            out = []
            for layer in self.viewer.layers:
                if not _is(layer, kind) or layer.name == BANDS_NAME:
                    continue
                if cells and layer.metadata.get(KIND) not in ("cells", "spots"):
                    continue
                out.append((layer.name, layer))
            return out

        return choices

    def _cluster_choices(self, _widget: Any = None) -> list[str]:
        adata = self._adata()
        if adata is None:
            return [Key.obs.cell_type]
        obs = adata.obs
        cols = [
            c for c in obs.columns if isinstance(obs[c].dtype, pd.CategoricalDtype) or obs[c].dtype == object
        ]
        return sorted(cols, key=lambda c: c != Key.obs.cell_type) or [Key.obs.cell_type]

    def _layers_changed(self, event: Any = None) -> None:
        if getattr(getattr(event, "value", None), "name", None) == BANDS_NAME:
            return  # the widget's own band layer: no recomputation loop
        for w in (self.shapes_layer, self.cells_layer):
            if w.value is not None and w.value not in self.viewer.layers:
                w.value = None
            w.reset_choices()
        if self.shapes_layer.value is None:
            comps = [c for _, c in self._choices("shapes")() if c.metadata.get(KIND) == "compartments"]
            if comps:
                self.shapes_layer.value = comps[0]
        cells = [c for c in self.cells_layer.choices if c is not None]
        if self.cells_layer.value is None and cells:
            self.cells_layer.value = cells[0]
        self._attach()

    def _cells_changed(self, _value: Any = None) -> None:
        self.cluster_key.reset_choices()
        self.schedule()

    def _adata(self):
        layer = self.cells_layer.value
        return None if layer is None else layer.metadata.get(ADATA)

    # ------------------------------------------------------------------ shapes
    def _attach(self, _value: Any = None) -> None:
        """Follow the chosen Shapes layer's edits (debounced) and give it the compartment features."""
        layer = self.shapes_layer.value
        if layer is self._shapes:
            return
        if self._shapes is not None:
            for ev in (self._shapes.events.data, self._shapes.events.features):
                ev.disconnect(self.schedule)
        self._shapes = layer
        if layer is not None:
            missing = {
                c: v for c, v in ((logic.COMPARTMENT, None), (logic.HOLE, False)) if c not in layer.features
            }
            if missing:
                layer.features = layer.features.assign(
                    **{c: [v] * len(layer.data) for c, v in missing.items()}
                )
            layer.events.data.connect(self.schedule)
            layer.events.features.connect(self.schedule)
            self._set_defaults()
        self.schedule()

    def _set_defaults(self, _value: Any = None) -> None:
        layer = self._shapes
        if layer is None:
            return
        layer.feature_defaults = {
            logic.COMPARTMENT: self.compartment.value,
            logic.HOLE: bool(self.hole.value),
        }
        colour = compartment_colors([*COMPARTMENTS, self.compartment.value])[self.compartment.value]
        layer.current_edge_color = colour

    def add_compartments_layer(self, _value: Any = None):
        """A new empty Shapes layer for compartments, in µm (scale 1), chosen in the widget."""
        adata, layer = self._adata(), self.cells_layer.value
        width = 2.0
        if adata is not None:
            xy = np.asarray(adata.obsm[Key.obsm.spatial], float)[:, :2]
            width = max(2.0, float(np.ptp(xy, axis=0).max()) / 400) if len(xy) else 2.0
        shapes = self.viewer.add_shapes(
            name="compartments",
            features=pd.DataFrame(
                {logic.COMPARTMENT: pd.Series([], dtype=object), logic.HOLE: pd.Series([], dtype=bool)}
            ),
            edge_width=width,
            face_color="transparent",
            units=UNITS,
            metadata={
                KIND: "compartments",
                IMAGE_ID: None if layer is None else layer.metadata.get(IMAGE_ID),
            },
        )
        self.shapes_layer.value = shapes
        shapes.mode = "add_polygon"
        return shapes

    def assign_selected(self, _value: Any = None) -> None:
        """Give the selected shapes the chosen compartment (and hole flag)."""
        layer = self._shapes
        if layer is None or not layer.selected_data:
            self.status.value = "⚠ select shapes first (select mode, click or drag over them)"
            return
        feats = layer.features.copy()
        rows = sorted(layer.selected_data)
        feats.loc[rows, logic.COMPARTMENT] = self.compartment.value
        feats.loc[rows, logic.HOLE] = bool(self.hole.value)
        layer.features = feats
        self.schedule()

    # ------------------------------------------------------------------ live densities
    def schedule(self, _event: Any = None) -> None:
        """Recompute after ``DEBOUNCE_MS`` without further edits."""
        self._timer.start()

    def current_regions(self):
        """The chosen Shapes layer as regions (µm), with margin bands when they are on."""
        layer = self._shapes
        if layer is None:
            raise ValueError("choose a Shapes layer of compartments, or press 'New compartments layer'")
        feats = layer.features
        comps = feats[logic.COMPARTMENT].tolist() if logic.COMPARTMENT in feats else None
        holes = feats[logic.HOLE].fillna(False).astype(bool).tolist() if logic.HOLE in feats else None
        cells = self.cells_layer.value
        image_id = None if cells is None else cells.metadata.get(IMAGE_ID)
        regions = logic.shapes_to_regions(
            layer.data, layer.shape_type, comps, layer.data_to_world, holes=holes
        )
        if self.bands.value:
            regions = logic.margin_regions(
                regions, inner_um=self.inner_um.value, outer_um=self.outer_um.value
            )
        self._recolour(layer)
        return regions, image_id

    def _recolour(self, layer) -> None:
        comps = [str(c) for c in layer.features[logic.COMPARTMENT]]
        colours = compartment_colors([*COMPARTMENTS, *comps])
        if len(comps):
            layer.edge_color = rgba([colours[c] for c in comps])

    def _cells(self, image_id):
        """The current image's cells and where the layer shows them (x, y µm)."""
        layer = self.cells_layer.value
        adata = self._adata()
        if adata is None:
            raise ValueError("choose a cells Points layer (a spatialpath cells layer, with its AnnData)")
        xy = logic.cells_world_xy(layer.data, layer.data_to_world)
        if image_id is not None and Key.obs.image_id in adata.obs:
            keep = (adata.obs[Key.obs.image_id].astype(str) == str(image_id)).to_numpy()
            adata, xy = adata[keep], xy[keep]
        return adata, xy

    def refresh(self) -> None:
        """Recompute the regions, margin bands and densities; show them or the error."""
        try:
            regions, image_id = self.current_regions()
            self._show_bands(regions if self.bands.value else None)
            adata, xy = self._cells(image_id)
            self.densities = logic.compartment_densities(adata, regions, self.cluster_key.value, xy=xy)
        except (ValueError, KeyError) as err:  # DataModelError is a ValueError
            self.status.value = f"⚠ {err}"
            self.table.value = {"data": [], "index": [], "columns": []}
            return
        self.regions = regions
        self._shapes.metadata[REGIONS] = regions
        matrix = logic.density_matrix(self.densities)
        self.table.value = {
            "data": matrix.to_numpy().tolist(),
            "index": list(matrix.index),
            "columns": list(matrix.columns),
        }
        self.status.value = f"{adata.n_obs:,} cells, {len(matrix.columns)} compartments"

    def _show_bands(self, regions) -> None:
        old = [layer for layer in self.viewer.layers if layer.name == BANDS_NAME]
        for layer in old:
            self.viewer.layers.remove(layer)
        if regions is None:
            return
        bands = regions[regions[logic.COMPARTMENT].isin(logic.BAND_COMPARTMENTS)]
        if len(bands):
            data, kw, kind = regions_layer(bands, name=BANDS_NAME)
            kw["metadata"][IMAGE_ID] = self._shapes.metadata.get(IMAGE_ID)
            getattr(self.viewer, f"add_{kind}")(data, **kw)
            self.viewer.layers.selection.active = self._shapes

    # ------------------------------------------------------------------ export
    def export_table(self, _value: Any = None):
        """Write the current image's biomarker table in a worker thread; never overwrites unless asked."""
        from napari.qt.threading import thread_worker

        try:
            regions, image_id = self.current_regions()
            adata = self._adata()
            if adata is None:
                raise ValueError("choose a cells Points layer to export its biomarker table")
        except (ValueError, KeyError) as err:
            self.status.value = f"⚠ {err}"
            return None
        out, overwrite, key = Path(self.out_dir.value), bool(self.overwrite.value), self.cluster_key.value
        name = f"biomarkers_{image_id}" if image_id else "biomarkers"

        def run():
            return logic.export_biomarkers(
                adata, regions, out, image_id=image_id, cluster_key=key, overwrite=overwrite, name=name
            )

        def done(paths) -> None:
            self.busy = False
            self.written = paths
            self.status.value = f"wrote {len(paths)} files to {out} ({name}_wide.csv…)"

        def failed(err: Exception) -> None:
            self.busy = False
            self.status.value = f"⚠ {err}"

        self.status.value, self.busy = "exporting…", True
        self._worker = thread_worker(
            run,
            connect={"returned": done, "errored": failed},
            progress={"total": 0, "desc": "biomarker table"},
        )()
        return self._worker
