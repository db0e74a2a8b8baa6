"""The demo job and the command line, as a user runs them."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest

from spatialpath import __version__
from spatialpath._demo import run_demo
from spatialpath.cli import main
from spatialpath.export import read_tables

SMALL = {"n_patients": 2, "n_cells": 600}
TABLE_FILES = [
    "biomarkers_long.csv",
    "biomarkers_wide.csv",
    "biomarkers_long.parquet",
    "biomarkers_wide.parquet",
    "biomarkers_dictionary.csv",
    "biomarkers.xlsx",
    "manifest.json",
]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = run_demo(out, **SMALL)
    return out, result


def test_demo_writes_every_output(demo_dir):
    out, result = demo_dir
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "tissue_map.png",
            "cell_type_density.png",
            "cells.h5ad",
            "cell_counts.csv",
            "cell_counts.parquet",
            "nhood_enrichment.png",
            "nhood_enrichment.csv",
            "biomarker_tables",
            "manifest.json",
        ]
    )
    assert sorted(p.name for p in (out / "biomarker_tables").iterdir()) == sorted(TABLE_FILES)
    assert (out / "tissue_map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cells = ad.read_h5ad(out / "cells.h5ad")
    assert cells.n_obs == 2 * 600
    csv = pd.read_csv(out / "cell_counts.csv", float_precision="round_trip")
    parquet = pd.read_parquet(out / "cell_counts.parquet")
    pd.testing.assert_frame_equal(csv, parquet, check_dtype=False)
    assert csv["n_cells"].sum() == cells.n_obs
    assert "outputs:" in result.summary
    enr = pd.read_csv(out / "nhood_enrichment.csv")
    # the table comes from the demo's 6-NN graph: per image, the counts are its 600 x 6 edges
    per_image = enr[enr["level"] == "image"]
    assert per_image.groupby("image_id")["count"].sum().eq(600 * 6).all()
    assert per_image["image_id"].nunique() == 2
    assert "CD8 T" in result.summary


def test_manifest_hashes_every_output(demo_dir):
    out, _ = demo_dir
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {o["path"]: o for o in manifest["outputs"]}
    # every file of the run, the biomarker tables and their own manifest included
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(listed) == files - {"manifest.json"}
    assert "biomarker_tables/manifest.json" in listed
    for name, rec in listed.items():
        data = (out / name).read_bytes()
        assert rec["sha256"] == hashlib.sha256(data).hexdigest()
        assert rec["size_bytes"] == len(data)
    assert manifest["seeds"] == {"seed": 0}
    assert manifest["parameters"]["n_patients"] == 2
    assert manifest["command"].startswith("spatialpath.run_demo(")
    tables = manifest["parameters"]["biomarker_tables"]
    assert tables["regions"]["source"] == "simulation truth"
    assert tables["formats"] == ["csv", "parquet", "xlsx"]
    assert tables["biomarker_table"]["metadata"] == ["arm"]
    # the tables' own manifest hashes their files (the folder can be shared alone)
    sub = json.loads((out / "biomarker_tables" / "manifest.json").read_text())
    for rec in sub["outputs"]:
        data = (out / "biomarker_tables" / rec["path"]).read_bytes()
        assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert {r["path"] for r in sub["outputs"]} == set(TABLE_FILES) - {"manifest.json"}


def test_biomarker_tables_reread_identically(demo_dir):
    out, _ = demo_dir
    cells = ad.read_h5ad(out / "cells.h5ad")
    tables = {fmt: read_tables(out / "biomarker_tables", fmt) for fmt in ("csv", "parquet", "xlsx")}
    long, wide = tables["parquet"]
    for fmt in ("csv", "xlsx"):
        pd.testing.assert_frame_equal(tables[fmt][0], long, check_exact=True)
        pd.testing.assert_frame_equal(tables[fmt][1], wide, check_exact=True)
    # one wide row per image, in the cells' image order, each with its arm and QC
    images = list(pd.unique(cells.obs["image_id"].astype(str)))
    assert wide["image_id"].tolist() == images
    assert wide["evaluable"].all()
    arms = cells.obs.groupby("image_id", observed=True)["arm"].first()
    assert wide.set_index("image_id")["arm"].astype(str).to_dict() == arms.astype(str).to_dict()
    # counts in the tissue compartment add up to every cell of the image (simulation truth regions)
    count = long[(long["metric"] == "count") & (long["compartment"] == "tissue")]
    assert count.groupby("image_id")["value"].sum().to_dict() == (
        cells.obs["image_id"].astype(str).value_counts().astype(float).to_dict()
    )
    assert set(long["compartment"]) == {"tissue", "tumour", "stroma"}


@pytest.fixture(scope="module")
def effect_dir(tmp_path_factory):
    """A cohort large enough for the planted arm effect to show in the tumour's few CD8 T cells."""
    out = tmp_path_factory.mktemp("effect")
    return out, run_demo(out, n_patients=6, n_cells=3000, seed=0)


def test_planted_arm_effect_in_tumour_cd8_density(effect_dir):
    out, result = effect_dir
    cells = ad.read_h5ad(out / "cells.h5ad")
    sim = cells.uns["simulation"]
    effect, design = sim["effect"], sim["design"]
    assert effect["cell_type"] == "CD8 T"
    control, treatment = effect["arms"]
    expected = design.groupby("arm")["expected_density_per_mm2"].mean()
    planted_up = effect["log2_fold_change_per_arm"] > 0
    assert (expected[treatment] > expected[control]) == planted_up  # the design, random effects included
    _, wide = read_tables(out / "biomarker_tables", "parquet")
    assert len(wide) == 6
    assert (wide["status__density__tumour__CD8_T"] == "ok").all()
    observed = wide.groupby("arm", observed=True)["density__tumour__CD8_T"].mean()
    ratio = observed[treatment] / observed[control]
    assert (ratio > 1) == planted_up
    assert abs(ratio - 1) > 0.2  # clearly, not by a hair
    assert f"{treatment} / {control} {ratio:.2f}" in result.summary
    assert "6 of 6 images evaluable" in result.summary


def test_demo_is_reproducible_and_never_overwrites(demo_dir, tmp_path):
    out, _ = demo_dir
    run_demo(tmp_path, **SMALL)
    assert (tmp_path / "cell_counts.csv").read_bytes() == (out / "cell_counts.csv").read_bytes()
    # same seed, same table bytes (CSV and Parquet); the .xlsx embeds its creation time and the
    # manifests their run times, so those are compared by value (above) and by content hash records
    for name in TABLE_FILES:
        if name.endswith((".csv", ".parquet")):
            again, first = tmp_path / "biomarker_tables" / name, out / "biomarker_tables" / name
            assert again.read_bytes() == first.read_bytes(), name
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="overwrite"):
        run_demo(tmp_path, **SMALL)
    # all or nothing: with only a table left from an earlier run, nothing is written either
    for p in tmp_path.rglob("*"):
        if p.is_file() and p.name != "biomarkers_wide.parquet":
            p.unlink()
    with pytest.raises(FileExistsError, match=r"biomarker_tables/biomarkers_wide\.parquet"):
        run_demo(tmp_path, **SMALL)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["biomarkers_wide.parquet"]
    wide = tmp_path / "biomarker_tables" / "biomarkers_wide.parquet"
    assert wide.stat().st_mtime_ns == mtimes[wide]
    run_demo(tmp_path, overwrite=True, **SMALL)
    assert sorted(p.name for p in (tmp_path / "biomarker_tables").iterdir()) == sorted(TABLE_FILES)


def test_demo_on_user_h5ad(demo_dir, tmp_path):
    out, _ = demo_dir
    result = run_demo(tmp_path / "again", input_path=out / "cells.h5ad")
    assert str(out / "cells.h5ad") in result.summary
    manifest = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert manifest["inputs"][0]["sha256"] == hashlib.sha256((out / "cells.h5ad").read_bytes()).hexdigest()
    # user data: the tissue of each image from its cells, with the parameters recorded
    regions = manifest["parameters"]["biomarker_tables"]["regions"]
    assert regions["source"] == "tissue_from_cells"
    assert regions["resolution_um"] == 20.0
    assert regions["closing_radius_um"] == 50.0
    long, wide = read_tables(tmp_path / "again" / "biomarker_tables", "csv")
    assert set(long["compartment"]) == {"tissue"}
    assert len(wide) == 2
    assert wide["tissue_area_source"].eq("regions").all()
    with pytest.raises(ValueError, match="inside the input folder"):
        run_demo(out / "sub", input_path=out / "cells.h5ad")


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "o"), "--input", str(tmp_path / "missing.h5ad")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "in" / "cells.csv"
    bad.parent.mkdir()
    bad.write_text("x,y\n")
    assert main(["demo", "--out", str(tmp_path / "o"), "--input", str(bad)]) == 2
    assert "cells.csv has no cells: the table has a header but no rows" in capsys.readouterr().err
    bad.write_text("cell,CD3\n1,0.5\n")
    assert main(["demo", "--out", str(tmp_path / "o"), "--input", str(bad)]) == 2
    assert "unrecognised cell table" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_console_script_and_module_entry_points(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "spatialpath", "--version"], capture_output=True, text=True, check=True
    )
    assert r.stdout.strip() == f"spatialpath {__version__}"
    exe = shutil.which("spatialpath", path=str(Path(sys.executable).parent)) or shutil.which("spatialpath")
    if exe is None:
        pytest.skip("console script not on PATH (package not installed)")
    small = ["--n-patients", "2", "--n-cells", "300", "--n-perms", "5", "--workers", "1", "--no-progress"]
    cmd = [exe, "demo", "--out", str(tmp_path / "d"), *small]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "manifest" in r.stdout
    assert (tmp_path / "d" / "results" / "manifest.json").exists()  # the cohort pipeline's outputs


def test_demo_on_single_image_without_arm_or_sample(tmp_path):
    from spatialpath.datasets import simulate_tissue

    adata = simulate_tissue(seed=1, n_cells=800).adata
    del adata.obs["sample_id"]
    src = tmp_path / "in" / "one.h5ad"
    src.parent.mkdir()
    adata.write_h5ad(src)
    result = run_demo(tmp_path / "out", input_path=src)
    table = pd.read_csv(tmp_path / "out" / "cell_counts.csv")
    assert list(table.columns[:3]) == ["patient_id", "image_id", "cell_type"]
    assert table["n_cells"].sum() == 800
    assert "mean density_per_mm2 per cell type:" in result.summary
    _, wide = read_tables(tmp_path / "out" / "biomarker_tables", "parquet")
    assert len(wide) == 1
    assert "arm" not in wide.columns


CODEX_PIXEL_SIZE_UM = 0.377  # Schürch et al. 2020, 20x CODEX (the data's SOURCE.md asks to verify)


def test_demo_on_real_cell_tables(shared, tmp_path, capsys):
    codex = shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz")
    # a table in pixels without a pixel size is refused, in the command line's words
    assert main(["demo", "--input", str(codex), "--out", str(tmp_path / "a")]) == 2
    assert "--pixel-size-um" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    args = [
        "demo",
        "--input",
        str(codex),
        "--out",
        str(tmp_path / "b"),
        "--pixel-size-um",
        str(CODEX_PIXEL_SIZE_UM),
    ]
    assert main(args) == 0
    table = pd.read_csv(tmp_path / "b" / "cell_counts.csv")
    raw = pd.read_csv(codex)
    assert table["image_id"].nunique() == raw["imageID"].nunique() == 140
    ref = raw.groupby(["imageID", "cellType"]).size()
    got = table.set_index(["image_id", "cell_type"])["n_cells"]
    assert (got.loc[ref.index.map(lambda t: (str(t[0]), t[1]))].to_numpy() == ref.to_numpy()).all()
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["parameters"]["table_options"]["pixel_size_um"] == CODEX_PIXEL_SIZE_UM
    wide = pd.read_parquet(tmp_path / "b" / "biomarker_tables" / "biomarkers_wide.parquet")
    assert len(wide) == 140
    assert wide["image_id"].is_unique


def test_demo_on_unphenotyped_mcmicro_table(shared, tmp_path):
    mcmicro = shared("scimap_exemplar001", "scimapExampleData", "exemplar-001--unmicst_cell.csv")
    result = run_demo(tmp_path / "o", input_path=mcmicro, table_options={"pixel_size_um": 0.65})
    table = pd.read_csv(tmp_path / "o" / "cell_counts.csv")
    assert table["cell_type"].tolist() == ["cell"]
    assert table["n_cells"].iloc[0] == len(pd.read_csv(mcmicro))
    assert "proportion" in result.summary
    long, _ = read_tables(tmp_path / "o" / "biomarker_tables", "csv")
    assert long["n_cells_total"].eq(table["n_cells"].iloc[0]).all()
    # the tissue is traced from the cells: isolated specks (< pi * 50^2 um2) are left out of it
    count = long[(long["metric"] == "count") & (long["compartment"] == "tissue")]["value"]
    assert len(count) == 1
    assert 0.999 * table["n_cells"].iloc[0] <= count.iloc[0] <= table["n_cells"].iloc[0]
