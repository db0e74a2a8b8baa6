"""The cohort pipeline: ``spatialpath run CONFIG.yaml`` and :func:`spatialpath.pipeline.run`.

A YAML config names a sample sheet (one row per image) and the analysis; :func:`load_config`
checks both and reports every problem at once with its file and line
(``docs/pipeline-config.md``); :func:`read_image_cells` and :func:`read_image_regions` read one
image of the sheet in the micrometre data model; :func:`run` analyses the cohort on
dask.distributed, resumably (``docs/pipeline.md``).
"""

from spatialpath.pipeline._config import PipelineConfig
from spatialpath.pipeline._demo_cohort import prepare_demo_cohort
from spatialpath.pipeline._inputs import InputError, input_files, read_image_cells, read_image_regions
from spatialpath.pipeline._outputs import write_cohort_outputs
from spatialpath.pipeline._run import PipelineError, RunResult, run
from spatialpath.pipeline._validate import ConfigError, Problem, load_config

__all__ = [
    "ConfigError",
    "InputError",
    "PipelineConfig",
    "PipelineError",
    "Problem",
    "RunResult",
    "input_files",
    "load_config",
    "prepare_demo_cohort",
    "read_image_cells",
    "read_image_regions",
    "run",
    "write_cohort_outputs",
]
