"""Pipeline config and sample-sheet validation: every planted problem reported at its line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from spatialpath.pipeline._config import PipelineConfig
from spatialpath.pipeline._validate import ConfigError, Problem, load_config

CODEX = ("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz")
DAMOND = ("spicyR_damond_t1d_imc", "diabetesData_cells.csv.gz")
SET4 = ("phenoptr_vectra_mif", "sample_Set4", "sample_cell_seg_data.csv.gz")
WORKFLOW = ("scimap_exemplar001", "scimapExampleData", "phenotype_workflow.csv")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


def problems(err: ConfigError) -> list[tuple[str, int, int | None]]:
    return [(Path(p.file).name, p.line, p.column) for p in err.problems]


@pytest.mark.realdata
def test_valid_config_on_real_data(shared, tmp_path):
    codex = os.path.relpath(shared(*CODEX), tmp_path)  # relative to the sheet's folder
    write(
        tmp_path,
        "samples.csv",
        f"""
patient_id,sample_id,image_id,path,technology,pixel_size_um,image_column,arm
1,1_A,reg001_A,{codex},codex,0.377,imageID,CLR
1,1_B,reg001_B,{codex},CODEX,0.377,imageID,CLR
2,2_A,reg002_A,{codex},codex,0.377,imageID,DII
6362,A,A09,{shared(*DAMOND)},imc,1,imageID,
set4,set4,field1,{shared(*SET4)},vectra,0.5,,DII
""",
    )
    write(tmp_path, "run.yaml", "version: 1\nsamples: samples.csv\noutput: results\nseed: 7\n")
    cfg = load_config(tmp_path / "run.yaml")
    sheet = cfg.sample_sheet
    assert sheet.index.tolist() == [2, 3, 4, 5, 6]  # CSV lines
    assert sheet["technology"].tolist() == ["codex", "codex", "codex", "imc", "vectra"]
    assert sheet["pixel_size_um"].tolist() == [0.377, 0.377, 0.377, 1.0, 0.5]
    path = Path(sheet["path"].iloc[0])
    assert path.is_absolute()
    assert path.samefile(shared(*CODEX))  # the same file (CI reaches ../shared through a link)
    assert sheet["patient_id"].tolist()[:2] == ["1", "1"]  # ids stay text
    assert sheet["arm"].isna().tolist() == [False, False, False, True, False]
    assert cfg.metadata_columns == ["arm"]
    assert cfg.output == tmp_path / "results"
    assert cfg.config_path == tmp_path / "run.yaml"
    assert (cfg.seed, cfg.graph.method, cfg.graph.n_neighbors, cfg.compartments.source) == (
        7,
        "knn",
        6,
        "cells",
    )
    assert cfg.statistics.nhood_enrichment is None  # statistics run only when listed


@pytest.mark.realdata
def test_every_planted_problem_is_reported_at_its_line(shared, tmp_path):
    codex, set4 = shared(*CODEX), shared(*SET4)
    write(
        tmp_path,
        "samples.csv",
        f"""
patient_id,sample_id,image_id,path,technology,pixel_size_um,image_column,arm
P1,S1,reg001_A,{codex},codex,0.377,imageID,A
P1,S1,reg001_A,{codex},codex,0.377,imageID,A
P2,S2,reg999_Z,{codex},codex,0.377,imageID,B
P3,S3,img3,missing.csv,vectra,,,A
P4,S4,img4,{set4},codx,0.5,,A
P5,S5,reg002_A,{codex},codex,-1,imageID,A
P6,S1,reg003_A,{codex},codex,0.377,imageID,A
P7,S7,reg004_A,{codex},codex,,imageId,A
""",
    )
    write(
        tmp_path,
        "run.yaml",
        """
version: 1
samples: samples.csv
output: out
grpah:
  method: knn
statistics:
  nhood_enrichment:
    n_perms: many
  cross_function: {kind: L, correction: hanisch}
metrics: [density, densty]
cluster:
  memory_limit: lots
""",
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "run.yaml")
    err = info.value
    expected = [
        ("run.yaml", 4, 1, "unknown key 'grpah'; did you mean 'graph'?"),
        ("run.yaml", 8, 14, "statistics.nhood_enrichment.n_perms: Input should be a valid integer"),
        ("run.yaml", 9, 41, "correction 'hanisch' is not one of ['translation', 'border', 'none'] (kind L)"),
        ("run.yaml", 10, 20, "unknown metric 'densty'; did you mean 'density'?"),
        ("run.yaml", 12, 17, "memory_limit 'lots' is not a size like '4GB' or 'auto'"),
        ("samples.csv", 3, None, "sample 'S1' image 'reg001_A' is listed twice (first on line 2)"),
        ("samples.csv", 4, None, "image_id 'reg999_Z' is not in column 'imageID' of MIF_CRC_cells.csv.gz"),
        ("samples.csv", 5, None, f"path not found: {tmp_path / 'missing.csv'}"),
        ("samples.csv", 6, None, "unknown technology 'codx'; did you mean 'codex'?"),
        ("samples.csv", 7, None, "pixel_size_um must be a positive number of µm per pixel, got '-1'"),
        ("samples.csv", 8, None, "sample_id 'S1' is under patient_id 'P6' here but 'P1' on line 2"),
        (
            "samples.csv",
            9,
            None,
            "image_column 'imageId' is not a column of MIF_CRC_cells.csv.gz; did you mean 'imageID'?",
        ),
        ("samples.csv", 9, None, "technology codex needs pixel_size_um"),
    ]
    assert problems(err) == [e[:3] for e in expected]
    for problem, (*_, text) in zip(err.problems, expected, strict=True):
        assert problem.message.startswith(text), (problem.message, text)
    assert isinstance(err, ValueError)
    assert str(err).startswith("13 problems in the pipeline configuration; nothing was run:\n")
    assert f"  {tmp_path / 'run.yaml'}:4:1: unknown key 'grpah'" in str(err)
    assert f"  {tmp_path / 'samples.csv'}:3: sample 'S1'" in str(err)
    assert "(140 images there: reg001_A, reg001_B" in err.problems[6].message


def test_yaml_syntax_error_is_one_problem_at_its_line(tmp_path):
    write(tmp_path, "run.yaml", "version: 1\nsamples: [a.csv\noutput: out\n")
    with pytest.raises(ConfigError, match=r"run.yaml:3:\d+: invalid YAML") as info:
        load_config(tmp_path / "run.yaml")
    assert len(info.value.problems) == 1
    write(tmp_path, "dup.yaml", "version: 1\nseed: 1\nseed: 2\n")
    with pytest.raises(ConfigError, match=r'dup.yaml:3:1: invalid YAML.*duplicate key "seed"'):
        load_config(tmp_path / "dup.yaml")
    write(tmp_path, "list.yaml", "- version: 1\n")
    with pytest.raises(ConfigError, match=r"list.yaml:1:1: the config must be a mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(FileNotFoundError, match="pipeline config not found"):
        load_config(tmp_path / "nope.yaml")


def test_missing_keys_columns_and_wrong_values(tmp_path):
    (tmp_path / "data").mkdir()
    write(tmp_path / "data", "cells.csv", "x,y,cellType\n1.0,2.0,T\n")
    write(
        tmp_path,
        "samples.csv",
        "patient_id,sample_id,image_id,path,technolgy\nP1,S1,I1,data/cells.csv,vectra\n",
    )
    write(
        tmp_path,
        "run.yaml",
        """
version: 2
samples: samples.csv
graph: {method: radius, n_neighbors: 5}
compartments:
  source: masks
  margins: {widths_um: [0, 0]}
phenotype: {column: cellType, workflow: wf.csv}
blinding: {columns: [arm]}
""",
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "run.yaml")
    got = [(Path(p.file).name, p.line, p.column, p.message) for p in info.value.problems]
    assert got == [
        ("run.yaml", 1, 1, "missing required key 'output'"),
        ("run.yaml", 1, 10, "version: Input should be 1 (got 2)"),
        ("run.yaml", 3, 17, "method radius needs radius_um: <µm>"),
        ("run.yaml", 3, 38, "n_neighbors is not used with method: radius; remove it"),
        ("run.yaml", 6, 24, "widths_um must be [inside, outside] µm, both ≥ 0 and not both 0"),
        ("run.yaml", 7, 21, "give either column or gates + workflow, not both"),
        ("run.yaml", 7, 41, f"workflow file not found: {tmp_path / 'wf.csv'}"),
        ("samples.csv", 1, None, "missing required column 'technology'; did you mean 'technolgy'?"),
    ]


def test_sheet_rules_for_compartments_blinding_and_shared_files(tmp_path):
    (tmp_path / "data").mkdir()
    write(tmp_path / "data", "cells.csv", "x,y,cellType\n1.0,2.0,T\n")
    write(
        tmp_path,
        "samples.csv",
        """
patient_id,sample_id,image_id,path,technology,pixel_size_um,arm,cell_type

P1,S1,I1,data/cells.csv,vectra,,a,x
P1,S1,I2,data/cells.csv,xenium,0.2,a,x
P2,S2,,data/cells.csv,vectra,,b,x
""",
    )
    write(
        tmp_path,
        "run.yaml",
        "version: 1\nsamples: samples.csv\noutput: data/out\n"
        "compartments: {source: geojson, geojson_units: px}\nblinding: {columns: [amr]}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "run.yaml")
    got = [(Path(p.file).name, p.line, p.message) for p in info.value.problems]
    sheet_msgs = [m for f, _, m in got if f == "samples.csv"]
    assert [ln for f, ln, _ in got if f == "samples.csv"] == [1, 1, 3, 3, 4, 4, 4, 5, 5, 5, 5]
    assert (
        sheet_msgs[0]
        == "blinding column 'amr' is not a metadata column of the sample sheet; did you mean 'arm'?"
    )
    assert sheet_msgs[1].startswith("column name 'cell_type' is reserved")
    assert sheet_msgs[2:4] == [  # the blank line 2 is skipped, line numbers are the file's
        "compartments source geojson needs regions_path on every row",
        "geojson_units: px needs pixel_size_um on every row",
    ]
    assert "path is also on line 3: a file holding several images needs image_column" in sheet_msgs[4:7]
    assert any(m.startswith("pixel_size_um is not used for technology xenium") for m in sheet_msgs[4:7])
    assert "empty image_id" in sheet_msgs[7:]
    assert got[0][:2] == ("run.yaml", 3)  # output inside the data folder
    assert "inside the input folder" in got[0][2]


def test_direct_construction_checks_the_same_rules():
    base = {"version": 1, "samples": "s.csv", "output": "out"}
    with pytest.raises(ValidationError, match=r"method radius needs radius_um"):
        PipelineConfig.model_validate({**base, "graph": {"method": "radius"}})
    with pytest.raises(ValidationError, match=r"unknown metric 'densty'; did you mean 'density'"):
        PipelineConfig.model_validate({**base, "metrics": ["densty"]})
    with pytest.raises(ValidationError, match=r"metric mixing_score has no parameter 'radius'; did you mean"):
        PipelineConfig.model_validate({**base, "metrics": {"mixing_score": {"radius": 3}}})
    with pytest.raises(ValidationError, match=r"Extra inputs are not permitted"):
        PipelineConfig.model_validate({**base, "grpah": {}})
    cfg = PipelineConfig.model_validate({**base, "statistics": {"nhood_enrichment": None}})
    assert cfg.statistics.nhood_enrichment.n_perms == 1000  # an empty entry runs with defaults
    with pytest.raises(RuntimeError, match="no sample sheet loaded"):
        _ = cfg.sample_sheet
    assert Problem("a.yaml", 3, 5, "bad").__str__() == "a.yaml:3:5: bad"
    assert str(Problem("s.csv", 4, None, "bad")) == "s.csv:4: bad"


@pytest.mark.realdata
def test_parameters_for_hash(shared, tmp_path):
    base = {"version": 1, "samples": "s.csv", "output": "out"}
    implicit = PipelineConfig.model_validate(base).parameters_for_hash()
    explicit = PipelineConfig.model_validate(
        {
            **base,
            "output": "elsewhere",
            "graph": {"method": "knn", "n_neighbors": 6},
            "metrics": None,
            "cluster": {"n_workers": 4},
            "outputs": {"formats": ["csv"]},
        }
    ).parameters_for_hash()
    assert implicit == explicit  # defaults spelt out, outputs and cluster change nothing
    assert json.loads(json.dumps(implicit, sort_keys=True)) == implicit
    assert set(implicit) == {"version", "seed", "phenotype", "graph", "statistics", "compartments", "metrics"}
    from spatialpath.metrics import default_metrics

    assert list(implicit["metrics"]) == sorted(default_metrics())
    assert implicit["metrics"]["mixing_score"] == {"radius_um": 20.0, "min_cells": 10}
    changed = PipelineConfig.model_validate({**base, "metrics": {"mixing_score": {"radius_um": 30}}})
    assert changed.parameters_for_hash()["metrics"] == {"mixing_score": {"radius_um": 30, "min_cells": 10}}
    stats = PipelineConfig.model_validate({**base, "statistics": {"nhood_enrichment": {"n_perms": 99}}})
    assert stats.parameters_for_hash()["statistics"] == {
        "nhood_enrichment": {"n_perms": 99, "analytical": False}
    }
    # gating files count by content, not by path
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(shared(*WORKFLOW), tmp_path / name / "wf.csv")
    hashes = [
        PipelineConfig.model_validate(
            {**base, "phenotype": {"workflow": str(tmp_path / name / "wf.csv")}}
        ).parameters_for_hash()["phenotype"]
        for name in ("a", "b")
    ]
    assert hashes[0] == hashes[1]
    assert len(hashes[0]["workflow_sha256"]) == 64


@pytest.mark.realdata
def test_the_documented_examples_are_valid(shared, tmp_path):
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "pipeline-config.md").read_text(encoding="utf-8")
    yamls = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    sheets = re.findall(r"```text\n(patient_id.*?)```", doc, re.S)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "MIF_CRC_cells.csv.gz").symlink_to(shared(*CODEX))
    (tmp_path / "sample_Set4").symlink_to(shared(*SET4).parent)
    for name, text in zip(("full", "vectra"), yamls, strict=True):
        sheet = sheets[0] if name == "full" else sheets[1]
        write(tmp_path, "samples.csv", sheet)
        write(tmp_path, "run.yaml", text)
        cfg = load_config(tmp_path / "run.yaml")
        assert len(cfg.sample_sheet) == (3 if name == "full" else 1)
    assert cfg.compartments.margins.widths_um == (50.0, 50.0)


def test_a_corrupt_multi_image_file_is_a_problem_of_its_row(tmp_path):
    """An unreadable .h5ad named with an image_column is reported at its sheet line, not raised raw."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cells.h5ad").write_bytes(b"not an HDF5 file")
    write(
        tmp_path,
        "samples.csv",
        """
patient_id,sample_id,image_id,path,technology,image_column
P1,S1,I1,data/cells.h5ad,simulated,image_id
""",
    )
    write(tmp_path, "run.yaml", "version: 1\nsamples: samples.csv\noutput: out\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "run.yaml")
    rows = [(Path(p.file).name, p.line, p.message) for p in info.value.problems]
    assert [(f, ln) for f, ln, _ in rows] == [("samples.csv", 2)]
    assert rows[0][2].startswith("cannot read cells.h5ad to check image_column")
