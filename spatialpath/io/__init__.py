"""Reading and writing: every common format into the micrometre data model, and atomic writers.

Cells and spots come back as AnnData (``obsm["spatial"]`` in µm), images as xarray DataArrays
(dims ``c, y, x``, coordinates in µm, lazy with dask when large or pyramidal).
"""

from spatialpath.io._cell_table import read_cell_table
from spatialpath.io._common import ReaderError
from spatialpath.io._image import LAZY_THRESHOLD_BYTES, read_image, read_pyramid
from spatialpath.io._image_folder import read_channel_folder, read_steinbock_images
from spatialpath.io._mcd import read_mcd
from spatialpath.io._phenotype import phenotype, rescale_to_gates
from spatialpath.io._quantify import STATISTICS, quantify
from spatialpath.io._write import TABLE_FORMATS, write_h5ad, write_table

__all__ = [
    "LAZY_THRESHOLD_BYTES",
    "STATISTICS",
    "TABLE_FORMATS",
    "ReaderError",
    "phenotype",
    "quantify",
    "read_cell_table",
    "read_channel_folder",
    "read_image",
    "read_mcd",
    "read_pyramid",
    "read_steinbock_images",
    "rescale_to_gates",
    "write_h5ad",
    "write_table",
]
