"""Reading and writing: every format into the micrometre data model, and atomic writers."""

from spatialpath.io._write import TABLE_FORMATS, write_h5ad, write_table

__all__ = ["TABLE_FORMATS", "write_h5ad", "write_table"]
