"""Tidy, documented tables for analysts: cell counts and biomarker tables (long, wide, files).

See ``docs/biomarker-tables.md`` for the biomarker tables' schema, column grammar, statuses,
aggregation, QC, data dictionary, Excel handling and de-identification.
"""

from spatialpath.export._biomarker import biomarker_table
from spatialpath.export._counts import cell_counts
from spatialpath.export._deidentify import Deidentify
from spatialpath.export._dictionary import data_dictionary
from spatialpath.export._wide import long_from_wide, sanitize_label, wide_column_map, wide_table
from spatialpath.export._write_tables import read_tables, write_tables

__all__ = [
    "Deidentify",
    "biomarker_table",
    "cell_counts",
    "data_dictionary",
    "long_from_wide",
    "read_tables",
    "sanitize_label",
    "wide_column_map",
    "wide_table",
    "write_tables",
]
