"""Qt front end of the "Neighbourhood statistics" widget (logic in :mod:`spatialpath.napari._nhood`).

Choose a cells layer, the cell-type column, the image and the statistic's parameters (with a
seed), run it in a ``thread_worker`` with a napari progress bar (Cancel stops it between
permutation batches), read the figure drawn in the widget, and click a pair of the heatmap (or a
curve) to select the cells behind it in the cells layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from spatialpath.napari import _cell_types, _nhood
from spatialpath.napari._keys import IMAGE_ID

if TYPE_CHECKING:  # pragma: no cover
    import napari

ALL_TYPES = "(all types)"
_LABELS = {
    "nhood_enrichment": "neighbourhood enrichment",
    "co_occurrence": "co-occurrence",
    "cross_L": "cross-L",
}


class _Relay(QObject):
    """Carries progress from the worker thread to the main thread (a queued Qt signal)."""

    progressed = Signal(int, int, str)


def _spin(lo: float, hi: float, value: float, step: float = 1.0, *, integer: bool = False) -> Any:
    box = QSpinBox() if integer else QDoubleSpinBox()
    box.setRange(int(lo) if integer else lo, int(hi) if integer else hi)
    box.setSingleStep(int(step) if integer else step)
    box.setValue(int(value) if integer else value)
    return box


class NhoodWidget(QWidget):
    """Neighbourhood enrichment, co-occurrence or cross-L on one image; the cells behind a clicked pair."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.run_result: _nhood.NhoodRun | None = None
        self.pair: tuple[str, str] | None = None
        self.highlighted: np.ndarray | None = None
        self.worker: Any = None
        self.result_layer: Any = None  # the cells layer of run_result
        self._pbar: Any = None
        self._layers: list[Any] = []
        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)

        self.layer_combo = QComboBox()
        self.statistic = QComboBox()
        for name in _nhood.STATISTICS:
            self.statistic.addItem(_LABELS[name], name)
        self.cluster_key = QComboBox()
        self.image = QComboBox()
        self.graph = QComboBox()
        self.graph.addItems(["knn", "radius", "delaunay"])
        d = _nhood.DEFAULT_PARAMS
        self.n_neighbors = _spin(1, 100, d["n_neighbors"], integer=True)
        self.radius_um = _spin(1.0, 1000.0, d["radius_um"], 5.0)
        self.n_perms = _spin(1, 100_000, d["n_perms"], 100, integer=True)
        self.analytical = QCheckBox("exact moments (no permutations)")
        self.distance_um = _spin(10.0, 1000.0, d["distance_um"], 10.0)
        self.type_a = QComboBox()
        self.type_b = QComboBox()
        self.r_max_um = _spin(0.0, 5000.0, 0.0, 10.0)
        self.r_max_um.setSpecialValueText("auto")
        self.seed = _spin(0, 2**31 - 1, 0, integer=True)
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.figure = Figure(figsize=(5, 4), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(320)

        form = QFormLayout()
        for label, widget in [
            ("cells layer", self.layer_combo), ("statistic", self.statistic),
            ("cell types", self.cluster_key), ("image", self.image), ("graph", self.graph),
            ("neighbours (knn)", self.n_neighbors),
            ("radius (µm)", self.radius_um), ("permutations", self.n_perms), ("", self.analytical),
            ("co-occurrence at (µm)", self.distance_um), ("cross-L: type a", self.type_a),
            ("cross-L: type b", self.type_b), ("cross-L: r max (µm)", self.r_max_um), ("seed", self.seed),
        ]:  # fmt: skip
            form.addRow(label, widget)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.canvas)

        self.layer_combo.currentIndexChanged.connect(self._on_layer)
        self.cluster_key.currentTextChanged.connect(self._on_cluster_key)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.canvas.mpl_connect("button_press_event", self._on_click)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    # -- state ----------------------------------------------------------------------------------------
    @property
    def layer(self) -> Any:
        """The cells layer the statistic runs on (None when the viewer has none)."""
        i = self.layer_combo.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def params(self) -> dict[str, Any]:
        """The parameters of :func:`spatialpath.napari._nhood.run_statistic` set in the widget."""
        b = self.type_b.currentText()
        return {
            "graph": self.graph.currentText(),
            "n_neighbors": self.n_neighbors.value(),
            "radius_um": self.radius_um.value(),
            "n_perms": self.n_perms.value(),
            "analytical": self.analytical.isChecked(),
            "distance_um": self.distance_um.value(),
            "a": self.type_a.currentText() or None,
            "b": None if b in ("", ALL_TYPES) else b,
            "r_max_um": self.r_max_um.value() or None,
        }

    def set_statistic(self, name: str) -> None:
        """Choose the statistic: one of :data:`spatialpath.napari._nhood.STATISTICS`."""
        self.statistic.setCurrentIndex(self.statistic.findData(name))

    def _error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(message)
        show_error(message)

    # -- layers and columns ---------------------------------------------------------------------------
    def _refresh_layers(self, event: Any = None) -> None:
        current = self.layer
        self._layers = _cell_types.cells_layers(self.viewer.layers)
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems([ly.name for ly in self._layers])
        index = self._layers.index(current) if current in self._layers else 0
        self.layer_combo.setCurrentIndex(index if self._layers else -1)
        self.layer_combo.blockSignals(False)
        self._on_layer()

    def _on_layer(self, index: int = 0) -> None:
        self.cluster_key.blockSignals(True)
        self.cluster_key.clear()
        self.image.clear()
        if self.layer is None:
            self.cluster_key.blockSignals(False)
            self.status.setText("no cells layer: open a spatialpath output or the sample data")
            return
        try:
            adata = _cell_types.layer_adata(self.layer)
        except ValueError as exc:
            self.cluster_key.blockSignals(False)
            self.status.setText(str(exc))
            return
        obs = adata.obs
        keys = [str(c) for c in obs.columns if isinstance(obs[c].dtype, pd.CategoricalDtype)]
        keys += [str(c) for c in obs.columns if str(c) not in keys]  # refused with a message if chosen
        self.cluster_key.addItems(keys)
        if "cell_type" in keys:
            self.cluster_key.setCurrentText("cell_type")
        self.cluster_key.blockSignals(False)
        ids = _nhood.image_ids(adata)
        self.image.addItems(ids or ["(all cells)"])
        own = self.layer.metadata.get(IMAGE_ID)
        if own is not None and str(own) in ids:
            self.image.setCurrentText(str(own))
        self.status.setText("")
        self._on_cluster_key(self.cluster_key.currentText())

    def _on_cluster_key(self, key: str) -> None:
        self.type_a.clear()
        self.type_b.clear()
        if self.layer is None or not key:
            return
        col = _cell_types.layer_adata(self.layer).obs[key]
        cats = [str(c) for c in col.cat.categories] if isinstance(col.dtype, pd.CategoricalDtype) else []
        self.type_a.addItems(cats)
        self.type_b.addItems([ALL_TYPES, *cats])

    # -- running ------------------------------------------------------------------------------------------
    def run(self) -> Any:
        """Start the statistic in a worker thread; returns the worker (None when the inputs are refused)."""
        from napari.qt.threading import thread_worker
        from napari.utils import progress

        if self.worker is not None:
            self._error("a statistic is already running: wait or cancel it")
            return None
        if self.layer is None:
            self._error("no cells layer: open a spatialpath output or the sample data")
            return None
        statistic = self.statistic.currentData()
        cluster_key, params, seed = self.cluster_key.currentText(), self.params(), self.seed.value()
        image = self.image.currentText()
        image_id = None if image in ("", "(all cells)") else image
        try:
            adata = _cell_types.layer_adata(self.layer)
            _nhood.image_cells(adata, cluster_key, image_id)  # refuse bad inputs before the thread starts
        except ValueError as exc:
            self._error(str(exc))
            return None
        relay = self._relay
        holder: dict[str, Any] = {"layer": self.layer}

        def callback(done: int, total: int, desc: str) -> bool:
            relay.progressed.emit(done, total, desc)
            return holder["worker"].abort_requested

        @thread_worker
        def work() -> _nhood.NhoodRun | None:
            try:
                return _nhood.run_statistic(
                    adata, statistic, cluster_key, image_id, params, seed, callback=callback
                )
            except _nhood.Cancelled:
                return None

        self._pbar = progress(total=0, desc=f"{_LABELS[statistic]}, image {image_id}")
        worker = work()
        holder["worker"] = self.worker = worker
        worker.returned.connect(lambda run: self._on_result(run, holder["layer"]))
        worker.errored.connect(lambda exc: self._error(f"{type(exc).__name__}: {exc}"))
        worker.finished.connect(self._on_finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"running {_LABELS[statistic]} on image {image_id} (seed {seed})…")
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running statistic to stop (between permutation batches); no result is shown."""
        if self.worker is not None:
            self.worker.quit()
            self.status.setText("cancelling…")

    def _on_progress(self, done: int, total: int, desc: str) -> None:
        pbar = self._pbar  # a local: napari may process events (and finish the run) while updating
        if pbar is None:
            return
        if total and pbar.total != total:
            pbar.total = total
            pbar.n = 0
        if desc:
            pbar.set_description(desc)
        if done > pbar.n:
            pbar.update(done - pbar.n)

    def _on_finished(self) -> None:
        cancelled = self.worker is not None and self.worker.abort_requested
        self.worker = None
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if cancelled:
            self.status.setText("cancelled: no result")

    def _on_result(self, run: _nhood.NhoodRun | None, layer: Any = None) -> None:
        if run is None:
            return
        self.run_result, self.result_layer = run, layer
        self.pair = None
        _nhood.draw(run, self.figure)
        self.canvas.draw_idle()
        hint = "click a curve" if run.statistic == "cross_L" else "click a pair of the heatmap"
        self.status.setText(
            f"{_LABELS[run.statistic]}: image {run.image_id}, {len(run.rows):,} cells, seed {run.seed}; "
            f"{hint} to select the cells behind it"
        )

    # -- pairs ----------------------------------------------------------------------------------------------
    def _on_click(self, event: Any) -> None:
        if self.run_result is None or event.inaxes is None or event.inaxes is not self.figure.axes[0]:
            return
        pair = _nhood.pair_at(self.run_result, event.xdata, event.ydata)
        if pair is not None:
            try:
                self.highlight(*pair)
            except ValueError as exc:
                self._error(str(exc))

    def highlight(self, a: str, b: str) -> np.ndarray:
        """Select the cells behind the pair (a, b) in the cells layer and return their rows."""
        if self.run_result is None:
            raise ValueError("run a statistic first")
        layer = self.result_layer
        if layer not in self.viewer.layers:
            raise ValueError(
                "the cells layer of this result was removed from the viewer: run the statistic again"
            )
        rows = _nhood.highlight_rows(self.run_result, a, b)
        self.pair, self.highlighted = (a, b), rows
        layer.selected_data = set(rows.tolist())
        self.viewer.layers.selection.active = layer
        self.status.setText(
            f"{len(rows):,} cells behind {a} ↔ {b} (types {a} and {b} with a graph neighbour of the other) "
            f"selected in {layer.name!r}"
        )
        return rows
