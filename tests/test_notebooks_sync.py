"""The notebooks: each .ipynb and its py:percent twin hold the same cells, outputs are stripped, one
``parameters`` cell each; and the ``shared_data`` helper that finds their data. No notebook is executed
here (nbmake runs them: docs/notebooks.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from spatialpath.datasets import _shared
from spatialpath.datasets._shared import DATA_ENV, shared_data

#: notebooks on simulated data only (no shared_data call expected)
SIMULATED = {"01_quickstart", "06_napari_tour"}

jupytext = pytest.importorskip("jupytext")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = [
    "01_quickstart",
    "02_codex_crc_neighbourhoods",
    "03_mif_compartments_margins",
    "04_visium_he_alignment",
    "05_imc_cohort_pipeline",
]
PAIRS = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


def _cells(path: Path) -> list[tuple[str, str, list[str]]]:
    nb = jupytext.read(path)
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_every_expected_notebook_is_a_pair():
    assert set(EXPECTED) <= set(PAIRS), sorted(set(EXPECTED) - set(PAIRS))
    for stem in PAIRS:
        assert (NOTEBOOKS / f"{stem}.py").is_file(), f"{stem}.ipynb has no py:percent twin"
    for py in NOTEBOOKS.glob("*.py"):
        assert (NOTEBOOKS / f"{py.stem}.ipynb").is_file(), f"{py.name} has no .ipynb twin"
    toml = (NOTEBOOKS / "jupytext.toml").read_text(encoding="utf-8")
    assert 'formats = "ipynb,py:percent"' in toml


@pytest.mark.parametrize("stem", PAIRS)
def test_ipynb_and_percent_file_hold_the_same_cells(stem):
    ipynb, py = _cells(NOTEBOOKS / f"{stem}.ipynb"), _cells(NOTEBOOKS / f"{stem}.py")
    assert len(ipynb) == len(py), f"{stem}: {len(ipynb)} cells in .ipynb, {len(py)} in .py; run jupytext"
    for i, (a, b) in enumerate(zip(ipynb, py, strict=True)):
        assert a == b, f"{stem} cell {i} differs: run `jupytext --sync notebooks/{stem}.py`"


@pytest.mark.parametrize("stem", PAIRS)
def test_ipynb_is_stripped_with_one_parameters_cell(stem):
    raw = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text(encoding="utf-8"))
    code = [c for c in raw["cells"] if c["cell_type"] == "code"]
    assert code
    assert all(c["outputs"] == [] for c in code), f"{stem}: outputs committed; run nbstripout"
    assert all(c["execution_count"] is None for c in code), f"{stem}: execution counts committed"
    assert set(raw["metadata"]) <= {"jupytext", "kernelspec", "language_info"}, raw["metadata"].keys()
    tagged = [c for c in raw["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{stem}: {len(tagged)} cells tagged 'parameters', expected 1"
    params = "".join(tagged[0]["source"])
    assert "SPATIALPATH_NB_FAST" in params  # the CI switch is read in the parameters cell
    # data only through the helper, never an absolute path or the shared folder spelled out
    text = "".join("".join(c["source"]) for c in code)
    assert str(NOTEBOOKS.parents[1]) not in text  # no absolute path of this machine
    assert "../shared" not in text
    if stem not in SIMULATED:  # real data: through the helper
        assert "shared_data(" in text


# --- shared_data -------------------------------------------------------------------------------


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """A fake data folder and a working folder outside any ../shared/data."""
    root = tmp_path / "data"
    (root / "study" / "cells.csv").parent.mkdir(parents=True)
    (root / "study" / "cells.csv").write_text("x,y\n", encoding="utf-8")
    work = tmp_path / "elsewhere" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv(DATA_ENV, raising=False)
    return root


def test_root_is_used_first(data_root, tmp_path, monkeypatch):
    other = tmp_path / "other"
    (other / "study").mkdir(parents=True)
    monkeypatch.setenv(DATA_ENV, str(other))
    assert shared_data("study", root=data_root) == (data_root / "study").resolve()
    assert shared_data("study", "cells.csv", root=data_root).read_text() == "x,y\n"
    # root lacks the part: the environment variable's folder is next
    (other / "only_here").mkdir()
    assert shared_data("only_here", root=data_root) == (other / "only_here").resolve()


def test_environment_variable(data_root, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(data_root))
    assert shared_data() == data_root.resolve()
    assert shared_data("study", "cells.csv") == (data_root / "study" / "cells.csv").resolve()


def test_relative_shared_data_found_from_a_subfolder(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    data = tmp_path / "shared" / "data" / "study"
    data.mkdir(parents=True)
    project = tmp_path / "project" / "notebooks"  # ../shared/data seen from tmp/project
    project.mkdir(parents=True)
    monkeypatch.chdir(project)
    assert shared_data("study") == data.resolve()


def test_missing_data_names_every_place_and_the_variable(data_root, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(data_root / "nope"))
    with pytest.raises(FileNotFoundError, match=r"example data 'no_such/file\.csv' not found") as err:
        shared_data("no_such", "file.csv", root="given/folder")
    message = str(err.value)
    assert "(root=)" in message
    assert f"(${DATA_ENV})" in message
    assert str((data_root / "nope").resolve()) in message
    assert str(Path(os.getcwd()).resolve().parent / "shared" / "data") in message  # cwd's ../shared/data
    assert f"export {DATA_ENV}=" in message


def test_missing_data_folder_itself(data_root, monkeypatch):
    # a ../shared/data may exist above the temp folder on a shared machine: search for another name
    monkeypatch.setattr(_shared, "_RELATIVE", Path("..") / "no-such-shared-folder" / "data")
    with pytest.raises(FileNotFoundError, match=r"'the data folder' not found.*SPATIALPATH_DATA"):
        shared_data()


@pytest.mark.parametrize("part", ["/etc", "../outside", "a/../../b"])
def test_parts_must_stay_inside_the_data_folder(data_root, part):
    with pytest.raises(ValueError, match=r"relative names inside the data folder"):
        shared_data(part, root=data_root)
