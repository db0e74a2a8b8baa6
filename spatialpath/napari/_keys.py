"""What spatialpath's napari layers carry in ``layer.metadata``.

The contract between the reader, :func:`~spatialpath.napari.view` and the widgets.

A widget finds the data behind a layer through these keys, never through the layer's name:

- ``metadata[KIND]`` says what the layer shows (one of :data:`KINDS`);
- ``metadata[ADATA]`` (``cells`` and ``spots`` Points layers) is the AnnData whose rows are the
  layer's points, in order; ``layer.features`` is a copy of its ``obs``; the points are
  ``obsm["spatial"][:, ::-1]`` (napari's (row, column) = (y, x) order), in µm;
- ``metadata[IMAGE_ID]`` is the ``image_id`` the layer belongs to (None when it holds several);
- ``metadata[REGIONS]`` (``compartments`` Shapes layers) is the GeoDataFrame the layer was made from;
- ``metadata[SOURCE]`` is the file or folder read, when the layer came from a file.

Examples
--------
>>> from spatialpath.napari import _keys
>>> _keys.KIND, _keys.ADATA
('spatialpath_kind', 'spatialpath_adata')
>>> "cells" in _keys.KINDS
True
"""

from __future__ import annotations

from typing import Final

KIND: Final = "spatialpath_kind"
ADATA: Final = "spatialpath_adata"
IMAGE_ID: Final = "spatialpath_image_id"
REGIONS: Final = "spatialpath_regions"
SOURCE: Final = "spatialpath_source"
#: what a spatialpath layer can show.
KINDS: Final = ("image", "labels", "cell_types", "cells", "spots", "compartments", "landmarks")
