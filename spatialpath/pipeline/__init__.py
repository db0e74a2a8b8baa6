"""The cohort pipeline: ``spatialpath run CONFIG.yaml`` and :func:`spatialpath.pipeline.run`.

A YAML config names a sample sheet (one row per image) and the analysis; :func:`load_config`
checks both and reports every problem at once with its file and line
(``docs/pipeline-config.md``); :func:`read_image_cells` and :func:`read_image_regions` read one
image of the sheet in the micrometre data model.
"""

from spatialpath.pipeline._config import PipelineConfig
from spatialpath.pipeline._inputs import InputError, input_files, read_image_cells, read_image_regions
from spatialpath.pipeline._validate import ConfigError, Problem, load_config

__all__ = [
    "ConfigError",
    "InputError",
    "PipelineConfig",
    "Problem",
    "input_files",
    "load_config",
    "read_image_cells",
    "read_image_regions",
]
