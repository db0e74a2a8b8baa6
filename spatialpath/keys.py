"""Every AnnData key and column name spatialpath reads or writes, in one place.

The hierarchy of a study is ``patient_id`` > ``sample_id`` (specimen or slide) >
``image_id`` (ROI, TMA core or field: the unit a spatial statistic runs in) >
compartment (tumour, stroma, margin...). Each level is a column of ``adata.obs``
named by the constants below; pass other names through the functions' ``*_key``
arguments when your data uses them.

Keys shared with squidpy are spelled exactly as squidpy spells them, so that
``squidpy.pl`` and ``scanpy.pl`` plot spatialpath's results unchanged. New keys
are prefixed with ``spatialpath``.

Examples
--------
>>> from spatialpath.keys import Key
>>> Key.obs.image_id
'image_id'
>>> Key.uns.nhood_enrichment("cell_type")
'cell_type_nhood_enrichment'
>>> Key.obsp.connectivities()
'spatial_connectivities'
"""

from __future__ import annotations

from typing import Final

__all__ = ["Key"]


class _Obs:
    """Column names of ``adata.obs``."""

    patient_id: Final = "patient_id"
    sample_id: Final = "sample_id"
    image_id: Final = "image_id"
    compartment: Final = "compartment"
    cell_type: Final = "cell_type"
    cell_id: Final = "cell_id"
    #: integer value of the cell in its image's label mask.
    label: Final = "label"
    area_px: Final = "area_px"
    area_um2: Final = "area_um2"
    #: cellular neighbourhood of each cell (Schürch et al. 2020 preset); its model in ``uns["cn"]``.
    cellular_neighborhood: Final = "cn"
    #: obs_name of the spot a cell lies in (:func:`spatialpath.align.spots_to_cells`).
    spot: Final = "spot"
    #: number of cells inside each spot (:func:`spatialpath.align.cells_to_spots`).
    n_cells: Final = "n_cells"


class _Obsm:
    """Keys of ``adata.obsm``."""

    spatial: Final = "spatial"
    #: mean marker intensity of the cells inside each spot, spots × markers DataFrame (NaN: no cell).
    marker_mean: Final = "marker_mean"


class _Obsp:
    """Keys of ``adata.obsp`` (squidpy's ``spatial_neighbors`` convention)."""

    @staticmethod
    def connectivities(key_added: str = "spatial") -> str:
        """Key of the adjacency matrix written by a graph builder."""
        return f"{key_added}_connectivities"

    @staticmethod
    def distances(key_added: str = "spatial") -> str:
        """Key of the distance matrix (µm) written by a graph builder."""
        return f"{key_added}_distances"


class _Uns:
    """Keys of ``adata.uns``."""

    #: spatialpath's own metadata: ``uns["spatialpath"]["images"][image_id]``.
    spatialpath: Final = "spatialpath"
    images: Final = "images"
    #: ground truth of a simulated dataset (see :mod:`spatialpath.datasets`).
    simulation: Final = "simulation"
    #: scanpy/squidpy Visium layout: ``uns["spatial"][library_id]``.
    spatial: Final = "spatial"

    @staticmethod
    def spatial_neighbors(key_added: str = "spatial") -> str:
        """Parameters of the spatial graph."""
        return f"{key_added}_neighbors"

    @staticmethod
    def colors(cluster_key: str) -> str:
        """Palette of a categorical column (scanpy convention)."""
        return f"{cluster_key}_colors"

    @staticmethod
    def nhood_enrichment(cluster_key: str) -> str:
        """Neighbourhood-enrichment result (squidpy convention)."""
        return f"{cluster_key}_nhood_enrichment"

    @staticmethod
    def co_occurrence(cluster_key: str) -> str:
        """Co-occurrence result (squidpy convention)."""
        return f"{cluster_key}_co_occurrence"

    @staticmethod
    def interactions(cluster_key: str) -> str:
        """Interaction matrix (squidpy convention)."""
        return f"{cluster_key}_interactions"

    @staticmethod
    def interaction_test(cluster_key: str) -> str:
        """histoCAT-style interaction test table (spatialpath)."""
        return f"{cluster_key}_interaction_test"

    @staticmethod
    def centrality_scores(cluster_key: str) -> str:
        """Centrality scores (squidpy convention)."""
        return f"{cluster_key}_centrality_scores"

    @staticmethod
    def ripley(cluster_key: str, mode: str) -> str:
        """Ripley function result (squidpy convention)."""
        return f"{cluster_key}_ripley_{mode}"

    @staticmethod
    def cross_function(cluster_key: str, kind: str) -> str:
        """Edge-corrected cross-type point-pattern function (spatialpath): ``kind`` K, L, G, J or g."""
        return f"{cluster_key}_cross_{kind}"

    #: Moran's I table (squidpy convention).
    moran: Final = "moranI"
    #: Geary's C table (squidpy convention).
    geary: Final = "gearyC"
    #: cross-modal transfer record (spatialpath): cell–spot link table, spot diameter, unassigned cells.
    transfer: Final = "spatialpath_transfer"


class _Attrs:
    """Keys of ``DataArray.attrs`` for images and label masks."""

    pixel_size_um: Final = "pixel_size_um"
    units: Final = "units"
    source: Final = "source"
    image_id: Final = "image_id"
    categories: Final = "categories"


class Key:
    """Namespaces of key names: ``Key.obs``, ``Key.obsm``, ``Key.obsp``, ``Key.uns``, ``Key.attrs``.

    A namespace, never instantiated: use its attributes instead of string literals.

    Examples
    --------
    >>> Key.obs.cell_type, Key.obsm.spatial, Key.image_dims, Key.unit
    ('cell_type', 'spatial', ('c', 'y', 'x'), 'um')
    >>> Key.uns.colors("cell_type")  # scanpy's colour convention
    'cell_type_colors'
    """

    obs = _Obs
    obsm = _Obsm
    obsp = _Obsp
    uns = _Uns
    attrs = _Attrs

    #: image dimension names, napari order (row = y, column = x).
    image_dims: Final = ("c", "y", "x")
    labels_dims: Final = ("y", "x")
    #: the only length unit spatialpath stores.
    unit: Final = "um"
