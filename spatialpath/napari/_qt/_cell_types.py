"""Qt front end of the "Cell types and markers" widget (logic in :mod:`spatialpath.napari._cell_types`).

Pick a cells layer, colour its points by any ``obs`` column or marker, tick cell types on and off
in the legend (hidden types are not drawn) and read their counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from spatialpath.napari import _cell_types as logic

if TYPE_CHECKING:  # pragma: no cover
    import napari

_CATEGORY = Qt.ItemDataRole.UserRole


class CellTypesWidget(QWidget):
    """Colour a cells layer by a column or marker, toggle cell types, legend with counts."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.hidden: set[str] = set()
        self.legend_table: pd.DataFrame | None = None
        self.applied: dict[str, Any] | None = None
        self._layers: list[Any] = []
        self._updating = False

        self.layer_combo = QComboBox()
        self.key_combo = QComboBox()
        self.key_combo.setMaxVisibleItems(25)
        self.legend_list = QListWidget()
        self.show_all = QPushButton("Show all")
        self.hide_all = QPushButton("Hide all")
        self.scale_label = QLabel("")
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #e06c75")

        form = QFormLayout()
        form.addRow("cells layer", self.layer_combo)
        form.addRow("colour by", self.key_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.show_all)
        buttons.addWidget(self.hide_all)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.legend_list)
        layout.addLayout(buttons)
        layout.addWidget(self.scale_label)
        layout.addWidget(self.message)

        self.layer_combo.currentIndexChanged.connect(self._on_layer)
        self.key_combo.currentTextChanged.connect(self._on_key)
        self.legend_list.itemChanged.connect(self._on_item)
        self.show_all.clicked.connect(lambda: self.set_hidden(set()))
        self.hide_all.clicked.connect(lambda: self.set_hidden(set(self._categories())))
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    # -- state ----------------------------------------------------------------------------------
    @property
    def layer(self) -> Any:
        """The cells layer being coloured (None when the viewer has none)."""
        i = self.layer_combo.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    @property
    def key(self) -> str:
        """The column or marker the points are coloured by."""
        return self.key_combo.currentText()

    def _categories(self) -> list[str]:
        return [] if self.legend_table is None else list(self.legend_table["category"])

    def _error(self, exc: Exception) -> None:
        self.message.setText(str(exc))

    # -- user actions (also the programmatic API) ---------------------------------------------------
    def set_layer(self, layer: Any) -> None:
        """Colour ``layer`` (a cells layer of the viewer)."""
        self.layer_combo.setCurrentIndex(self._layers.index(layer))

    def set_color_by(self, key: str) -> None:
        """Colour the points by ``key`` (an ``obs`` column or a marker); hidden types are reset."""
        if self.key_combo.findText(key) < 0:
            self._error(ValueError(f"{key!r} is neither an obs column nor a marker of this layer"))
            return
        if key == self.key:
            self._on_key(key)
        else:
            self.key_combo.setCurrentText(key)

    def set_hidden(self, hidden: set[str]) -> None:
        """Hide the cell types in ``hidden`` (their points are not drawn), show the others."""
        self.hidden = {str(h) for h in hidden}
        self._sync_checks()
        self._apply()

    def toggle(self, category: str, shown: bool) -> None:
        """Show or hide one cell type."""
        hidden = set(self.hidden)
        (hidden.discard if shown else hidden.add)(str(category))
        self.set_hidden(hidden)

    # -- callbacks ------------------------------------------------------------------------------------
    def _refresh_layers(self, event: Any = None) -> None:
        current = self.layer
        self._layers = logic.cells_layers(self.viewer.layers)
        self._updating = True
        self.layer_combo.clear()
        self.layer_combo.addItems([ly.name for ly in self._layers])
        self._updating = False
        if not self._layers:
            self.key_combo.clear()
            self.legend_list.clear()
            self.legend_table = None
            self._error(ValueError("no cells layer: open a spatialpath output or the sample data"))
            return
        self.message.setText("")
        index = self._layers.index(current) if current in self._layers else 0
        if index == self.layer_combo.currentIndex():
            self._on_layer(index)
        else:
            self.layer_combo.setCurrentIndex(index)

    def _on_layer(self, index: int) -> None:
        if self._updating or self.layer is None:
            return
        try:
            adata = logic.layer_adata(self.layer)
        except ValueError as exc:
            self._error(exc)
            return
        keys = logic.color_keys(adata)
        start = self.layer.metadata.get("color_by") or ("cell_type" if "cell_type" in keys else keys[0])
        self._updating = True
        self.key_combo.clear()
        self.key_combo.addItems(keys)
        self.key_combo.setCurrentText(str(start))
        self._updating = False
        self.hidden = set()
        self._on_key(self.key)

    def _on_key(self, key: str) -> None:
        if self._updating or not key or self.layer is None:
            return
        self.hidden = set()
        try:
            adata = logic.layer_adata(self.layer)
            self.legend_table = logic.legend(adata, key) if logic.is_categorical(adata, key) else None
        except ValueError as exc:
            self._error(exc)
            return
        self._fill_legend()
        self._apply()

    def _fill_legend(self) -> None:
        self._updating = True
        self.legend_list.clear()
        for row in [] if self.legend_table is None else self.legend_table.itertuples():
            pix = QPixmap(14, 14)
            pix.fill(QColor(row.color))
            item = QListWidgetItem(QIcon(pix), f"{row.category}  ({row.n_cells:,})")
            item.setData(_CATEGORY, row.category)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.legend_list.addItem(item)
        self._updating = False

    def _sync_checks(self) -> None:
        self._updating = True
        for i in range(self.legend_list.count()):
            item = self.legend_list.item(i)
            hidden = item.data(_CATEGORY) in self.hidden
            item.setCheckState(Qt.CheckState.Unchecked if hidden else Qt.CheckState.Checked)
        self._updating = False

    def _on_item(self, item: QListWidgetItem) -> None:
        if self._updating:
            return
        self.toggle(item.data(_CATEGORY), item.checkState() == Qt.CheckState.Checked)

    def _apply(self) -> None:
        if self.layer is None or not self.key:
            return
        try:
            self.applied = logic.apply_to_layer(self.layer, self.key, self.hidden)
        except ValueError as exc:
            self._error(exc)
            return
        self.message.setText("")
        limits = self.applied["limits"]
        if limits is None:
            n = self.applied["n_shown"]
            self.scale_label.setText(f"{n:,} of {len(self.layer.data):,} cells shown")
        else:
            lo, hi = (float(np.round(v, 4)) for v in limits)
            self.scale_label.setText(f"viridis: {lo:g} (1st percentile) – {hi:g} (99th percentile)")
