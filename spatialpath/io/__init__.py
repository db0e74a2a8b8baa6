"""Reading and writing: every common format into the micrometre data model, and atomic writers.

Cells and spots come back as AnnData (``obsm["spatial"]`` in µm), images as xarray DataArrays
(dims ``c, y, x``, coordinates in µm, lazy with dask when large or pyramidal).
"""

from spatialpath.io._cell_table import read_cell_table
from spatialpath.io._common import ReaderError
from spatialpath.io._cosmx import (
    COSMX_NSCLC_2022_PIXEL_SIZE_UM,
    COSMX_PIXEL_SIZE_UM,
    cosmx_fov_image,
    read_cosmx,
    read_cosmx_transcripts,
)
from spatialpath.io._image import LAZY_THRESHOLD_BYTES, read_image, read_pyramid
from spatialpath.io._image_folder import read_channel_folder, read_steinbock_images
from spatialpath.io._mcd import read_mcd
from spatialpath.io._merscope import merscope_image, read_merscope, read_merscope_transcripts
from spatialpath.io._phenotype import phenotype, rescale_to_gates
from spatialpath.io._quantify import STATISTICS, quantify
from spatialpath.io._spatialdata import SpatialPathElements
from spatialpath.io._spatialdata_read import from_spatialdata
from spatialpath.io._spatialdata_write import to_spatialdata
from spatialpath.io._visium import (
    VISIUM_SPOT_DIAMETER_FULLRES_UM,
    read_visium,
    read_visium_positions,
    visium_image,
)
from spatialpath.io._write import TABLE_FORMATS, write_h5ad, write_table
from spatialpath.io._xenium import read_xenium, read_xenium_transcripts, xenium_image

__all__ = [
    "COSMX_NSCLC_2022_PIXEL_SIZE_UM",
    "COSMX_PIXEL_SIZE_UM",
    "LAZY_THRESHOLD_BYTES",
    "STATISTICS",
    "TABLE_FORMATS",
    "VISIUM_SPOT_DIAMETER_FULLRES_UM",
    "ReaderError",
    "SpatialPathElements",
    "cosmx_fov_image",
    "from_spatialdata",
    "merscope_image",
    "phenotype",
    "quantify",
    "read_cell_table",
    "read_channel_folder",
    "read_cosmx",
    "read_cosmx_transcripts",
    "read_image",
    "read_mcd",
    "read_merscope",
    "read_merscope_transcripts",
    "read_pyramid",
    "read_steinbock_images",
    "read_visium",
    "read_visium_positions",
    "read_xenium",
    "read_xenium_transcripts",
    "rescale_to_gates",
    "to_spatialdata",
    "visium_image",
    "write_h5ad",
    "write_table",
    "xenium_image",
]
