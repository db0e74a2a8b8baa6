"""Cohort outputs of the pipeline: tables, blinding, figures, manifest, and the demo's planted effect."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import openpyxl
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from spatialpath.export import read_tables
from spatialpath.pipeline import load_config
from spatialpath.pipeline._figures import density_by_group, enrichment_grid
from spatialpath.pipeline._outputs import write_cohort_outputs
from spatialpath.pipeline._store import ImageKey, ImageStore

ARMS = ("ArmAlpha", "ArmBeta")  # distinctive values, so a leak is found by a plain text search
TYPES = ("T cell", "B cell")
COMPARTMENTS = ("tissue", "tumour")
N_OK = 6


def _image(i: int) -> dict[str, str]:
    return {
        "patient_id": f"P{i}",
        "sample_id": f"S{i}",
        "image_id": f"img{i}",
        "arm": ARMS[i % 2],
        "site": "siteA" if i < 3 else "siteB",
    }


def _value(i: int, metric: str, comp: str, ct: str) -> float:
    """The planted value of each metric row: known, distinct per image and key."""
    base = {"count": 10.0, "density": 1000.0}[metric]
    return base * (i + 1) + 7.0 * COMPARTMENTS.index(comp) + 3.0 * TYPES.index(ct)


def _metrics(i: int) -> pd.DataFrame:
    ids = _image(i)
    rows = []
    for metric, unit in (("count", "cells"), ("density", "cells/mm2")):
        for comp in COMPARTMENTS:
            for ct in TYPES:
                rows.append((comp, metric, ct, _value(i, metric, comp, ct), unit, "ok"))
    rows.append(("tumour", "proportion", "T cell", np.nan, "fraction", "zero_denominator"))
    df = pd.DataFrame(rows, columns=["compartment", "metric", "cell_type", "value", "unit", "status"])
    n = len(df)
    out = pd.DataFrame({k: [ids[k]] * n for k in ("patient_id", "sample_id", "image_id")})
    out = pd.concat([out, df[["compartment", "metric", "cell_type"]]], axis=1)
    out["cell_type_b"] = np.nan
    out["value"] = df["value"]
    out["unit"] = df["unit"]
    out["n_cells_a"] = pd.array([5 * (i + 1)] * n, dtype="Int64")
    out["n_cells_b"] = pd.array([None] * n, dtype="Int64")
    out["area_mm2"] = 0.5
    out["status"] = df["status"]
    out["parameters"] = "{}"
    out["spatialpath_version"] = "0.1.0"
    out["n_cells_total"] = np.int64(1000 + i)
    out["tissue_area_mm2"] = 0.5
    out["tissue_area_source"] = "regions"
    out["tumour_area_mm2"] = 0.2
    out["evaluable"] = True
    out["qc_note"] = pd.Series([np.nan] * n, dtype=object)
    out["arm"] = pd.Categorical([ids["arm"]] * n)  # as a worker writes it (read_image_cells)
    out["site"] = pd.Categorical([ids["site"]] * n)
    out.attrs["biomarker_table"] = {"metrics": None, "metadata": ["arm", "site"], "min_cells": 100}
    return out


def _nhood(i: int) -> pd.DataFrame:
    pairs = [(a, b) for a in TYPES for b in TYPES]
    return pd.DataFrame(
        {
            "image_id": f"img{i}",
            "cluster_a": [a for a, _ in pairs],
            "cluster_b": [b for _, b in pairs],
            "zscore": [float(i) - 2.0 + k for k in range(4)],
            "count": np.arange(4, dtype=np.int64) + 10 * i,
        }
    )


def _cn(i: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"image_id": f"img{i}", "cn": ["CN1", "CN2"], "fraction": [0.25, 0.75], "n_cells": [2, 6]}
    )


@pytest.fixture
def cohort(tmp_path):
    """A sample sheet of 7 images, a store holding 6 results, and image 6 failed and excluded."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rows = []
    for i in range(N_OK + 1):
        cells = inputs / f"cells{i}.h5ad"
        cells.write_bytes(f"cells of image {i}".encode())
        rows.append({**_image(i), "path": cells.name, "technology": "simulated"})
    cols = ["patient_id", "sample_id", "image_id", "path", "technology", "arm", "site"]
    pd.DataFrame(rows)[cols].to_csv(inputs / "samples.csv", index=False)
    (tmp_path / "run.yaml").write_text(
        "version: 1\nsamples: inputs/samples.csv\noutput: results\nseed: 3\nblinding: {columns: [arm]}\n"
    )
    cfg = load_config(tmp_path / "run.yaml")
    store = ImageStore(cfg.output)
    images = [ImageKey(f"S{i}", f"img{i}") for i in range(N_OK + 1)]
    for i, key in enumerate(images[:N_OK]):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.set_title(key.image_id)
        tables = {"metrics": _metrics(i), "nhood_zscore": _nhood(i), "cells": pd.DataFrame({"x": [0.0, 1.0]})}
        if i % 2 == 0:  # CN frequencies only where CNs were requested
            tables["cn_frequencies"] = _cn(i)
        store.write_result(
            key, f"fp{i}", tables=tables, figures={"nhood": fig}, extra={"n_cells": 1000 + i}, seed=100 + i
        )
        plt.close(fig)
    try:
        raise ValueError("no cells in image img6")
    except ValueError as err:
        store.exclusions.record(images[N_OK], err, fingerprint="fp6", seed=106)
    statuses = pd.DataFrame(
        {
            "sample_id": [k.sample_id for k in images],
            "image_id": [k.image_id for k in images],
            "status": ["computed"] * 4 + ["skipped"] * 2 + ["failed"],
            "seconds": [1.5] * 7,
            "fingerprint": [f"fp{i}" for i in range(7)],
        }
    )
    return cfg, store, images, statuses


def _run(cohort, unblind):
    cfg, store, images, statuses = cohort
    return write_cohort_outputs(cfg, store, images, statuses, store.exclusions, unblind=unblind)


def test_cohort_tables_are_the_per_image_rows(cohort):
    cfg, _, _, _ = cohort
    written = _run(cohort, unblind=True)
    tables = Path(cfg.output) / "tables"
    ref = pd.concat([_metrics(i) for i in range(N_OK)], ignore_index=True)
    long, wide = read_tables(tables, "parquet")
    assert len(long) == len(ref) == N_OK * 9
    for c in ["image_id", "compartment", "metric", "cell_type", "unit", "status"]:
        assert long[c].astype(str).tolist() == ref[c].astype(str).tolist(), c
    np.testing.assert_array_equal(long["value"].to_numpy(), ref["value"].to_numpy())  # NaN included
    assert long["arm"].astype(str).tolist() == ref["arm"].astype(str).tolist()
    assert list(long["arm"].cat.categories) == list(ARMS)  # the sheet's order
    # one wide row per successful image, each planted value in its column
    assert wide["image_id"].tolist() == [f"img{i}" for i in range(N_OK)]
    for i in range(N_OK):
        row = wide.iloc[i]
        assert (
            row["density__tumour__B_cell"]
            == _value(i, "density", "tumour", "B cell")
            == 1000.0 * (i + 1) + 10
        )
        assert row["count__tissue__T_cell"] == 10.0 * (i + 1)
        assert np.isnan(row["proportion__tumour__T_cell"])
        assert row["status__proportion__tumour__T_cell"] == "zero_denominator"
        assert row["arm"] == ARMS[i % 2]
        assert row["site"] == _image(i)["site"]
    # every format re-reads to the same tables, with the data dictionary
    for fmt in ("csv", "xlsx"):
        lf, wf = read_tables(tables, fmt)
        pd.testing.assert_frame_equal(lf, long, check_exact=True)
        pd.testing.assert_frame_equal(wf, wide, check_exact=True)
    dictionary = pd.read_csv(written["dictionary_csv"])
    assert set(dictionary.loc[dictionary["table"] == "wide", "column"]) == set(wide.columns)
    assert set(dictionary.loc[dictionary["table"] == "metric", "column"]) == {
        "count",
        "density",
        "proportion",
    }
    # statistics tables: every per-image row, with the ids; CN frequencies where they exist
    nhood = pd.read_parquet(written["nhood_zscore_parquet"])
    ref_nh = pd.concat([_nhood(i) for i in range(N_OK)], ignore_index=True)
    pd.testing.assert_frame_equal(nhood[ref_nh.columns], ref_nh)
    assert nhood["sample_id"].tolist() == [f"S{i}" for i in range(N_OK) for _ in range(4)]
    cn = pd.read_csv(written["cn_frequencies_csv"])
    assert cn["image_id"].tolist() == [f"img{i}" for i in (0, 2, 4) for _ in range(2)]
    assert cn["fraction"].tolist() == [0.25, 0.75] * 3


def _texts_of_file(path: Path) -> str:
    """Everything readable in a written file: text, every Excel cell, Parquet columns and values."""
    if path.suffix == ".xlsx":
        wb = openpyxl.load_workbook(path, read_only=True)
        cells = [str(v) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row]
        names = list(wb.sheetnames)
        wb.close()
        return "\n".join(names + cells)
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        return "\n".join(
            [
                *map(str, df.columns),
                df.astype(str).to_csv(),
                *(v.decode("utf-8", "replace") for v in meta.values()),
            ]
        )
    if path.suffix in (".csv", ".json"):
        return path.read_text(encoding="utf-8")
    return ""


def _written_files(root: Path) -> list[Path]:
    """Files of the cohort outputs (the per-image store under images/ is the workers' input)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and "images" not in p.relative_to(root).parts[:1])


def _leaks(root: Path) -> dict[str, list[str]]:
    found = {}
    for p in _written_files(root):
        text = _texts_of_file(p)
        hits = [a for a in ARMS if a in text]
        if p.suffix in (".csv", ".parquet") and "arm" in text.splitlines()[0].split(","):
            hits.append("column arm")
        if p.suffix == ".parquet" and "arm" in pd.read_parquet(p).columns:
            hits.append("column arm")
        if hits:
            found[p.relative_to(root).as_posix()] = hits
    return found


def test_blinding_withholds_the_arm_everywhere_until_unblinded(cohort):
    cfg, _, _, _ = cohort
    root = Path(cfg.output)
    written = _run(cohort, unblind=False)
    assert _leaks(root) == {}
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["blinding"]["mode"] == "blinded"
    assert manifest["blinding"]["withheld"] == ["arm"]
    _, wide = read_tables(root / "tables", "parquet")
    assert "arm" not in wide.columns  # only the blinded column goes
    assert "site" in wide.columns
    assert not any(k.startswith("figure_density") for k in written)
    assert not list((root / "figures").glob("density_by_*"))
    nhood = pd.read_parquet(written["nhood_zscore_parquet"])
    texts = [t.get_text() for t in enrichment_grid(nhood).findobj(Text)]
    assert any("img3" in t for t in texts)
    assert not any(a in t for t in texts for a in ARMS)
    plt.close("all")

    written = _run(cohort, unblind=True)  # the same folder, unblinded: the arm is back
    leaks = _leaks(root)
    assert "tables/biomarkers_wide.csv" in leaks
    assert "tables/statistics.xlsx" in leaks
    assert json.loads((root / "manifest.json").read_text())["blinding"]["mode"] == "unblinded"
    assert written["figure_density_by_group"].name == "density_by_arm.png"
    long, _ = read_tables(root / "tables", "parquet")
    texts = [t.get_text() for t in density_by_group(long, "arm").findobj(Text)]
    assert set(ARMS) <= set(texts)  # the text check above can fail
    plt.close("all")

    _run(cohort, unblind=False)  # blinded again: the unblinded figure and values are gone
    assert _leaks(root) == {}
    assert not (root / "figures" / "density_by_arm.png").exists()
    notes = json.loads((root / "manifest.json").read_text())["notes"]
    assert "figures/density_by_arm.png" in notes["removed_stale"]


def test_unblinding_takes_the_values_from_the_sample_sheet(cohort):
    """Workers may store their tables already blinded: unblinding recomputes nothing."""
    from spatialpath.pipeline._blinding import withhold

    cfg, store, images, _ = cohort
    for key in images[:N_OK]:
        res = store.read_result(key)
        tables = {**res.tables, "metrics": withhold(res.tables["metrics"], ["arm"])}
        store.write_result(key, res.marker.fingerprint, tables=tables, extra=res.extra, seed=res.marker.seed)
    assert "arm" not in store.read_result(images[0]).tables["metrics"].columns
    _run(cohort, unblind=True)
    _, wide = read_tables(Path(cfg.output) / "tables", "parquet")
    assert wide["arm"].astype(str).tolist() == [ARMS[i % 2] for i in range(N_OK)]
    assert list(wide.columns).index("arm") > list(wide.columns).index("qc_note")  # metadata last


def test_manifest_lists_images_exclusions_environment_and_files(cohort):
    cfg, store, images, _ = cohort
    written = _run(cohort, unblind=False)
    root = Path(cfg.output)
    m = json.loads((root / "manifest.json").read_text())
    listed = {(r["sample_id"], r["image_id"]): r for r in m["images"]}
    assert list(listed) == [tuple(k) for k in images]
    assert [r["status"] for r in m["images"]] == ["computed"] * 4 + ["skipped"] * 2 + ["failed"]
    assert [r["in_tables"] for r in m["images"]] == [True] * 6 + [False]
    assert listed[("S2", "img2")]["seed"] == 102
    assert listed[("S2", "img2")]["n_cells"] == 1002
    marker = store.read_result(("S2", "img2")).marker
    files = {f["name"]: f["sha256"] for f in listed[("S2", "img2")]["result"]["files"]}
    assert (
        files["metrics.parquet"]
        == hashlib.sha256((store.folder(("S2", "img2")) / "metrics.parquet").read_bytes()).hexdigest()
    )
    assert listed[("S2", "img2")]["result"]["fingerprint"] == marker.fingerprint == "fp2"
    cells = Path(cfg.sample_sheet.loc[cfg.sample_sheet["image_id"] == "img2", "path"].iloc[0])
    assert listed[("S2", "img2")]["inputs"]["cells"] == hashlib.sha256(cells.read_bytes()).hexdigest()
    assert m["exclusions"] == [
        {**m["exclusions"][0], "sample_id": "S6", "image_id": "img6", "error_type": "ValueError"}
    ]
    assert m["exclusions"][0]["message"] == "no cells in image img6"
    assert "raise ValueError" in m["exclusions"][0]["traceback"]
    assert pd.read_csv(written["exclusions_csv"])["image_id"].tolist() == ["img6"]
    for name in ("numpy", "pandas"):
        assert m["environment"]["dependencies"][name] == metadata.version(name)
        assert m["environment"]["installed"][name] == metadata.version(name)
    sheet = {r["path"]: r["sha256"] for r in m["inputs"]}
    assert sheet[str(cfg.samples)] == hashlib.sha256(cfg.samples.read_bytes()).hexdigest()
    assert m["parameters"] == json.loads(json.dumps(cfg.parameters_for_hash()))
    assert m["seeds"]["seed"] == 3
    assert m["seeds"]["images"]["S6/img6"] is None
    assert m["notes"]["status_counts"] == {"computed": 4, "skipped": 2, "failed": 1}
    outputs = {o["path"]: o for o in m["outputs"]}
    expected = {p.relative_to(root).as_posix() for p in _written_files(root)} - {
        "manifest.json",
        "_input_hashes.json",
    }
    expected = {p for p in expected if not p.startswith("exclusions/") and not p.endswith(".lock")}
    assert set(outputs) == expected
    for rel, rec in outputs.items():
        assert rec["sha256"] == hashlib.sha256((root / rel).read_bytes()).hexdigest()
    # per-image figures are returned for the report, from the store
    assert written["image_figure/S0/img0/nhood"] == store.folder(("S0", "img0")) / "nhood.png"


def test_enrichment_grid_for_a_large_cohort():
    rng = np.random.default_rng(0)
    types = [f"type {k}" for k in range(6)]
    tables = []
    for i in range(120):
        z = rng.normal(0, 2, (6, 6))
        tables.append(
            pd.DataFrame(
                {
                    "image_id": f"core{i:03d}",
                    "cluster_a": np.repeat(types, 6),
                    "cluster_b": np.tile(types, 6),
                    "zscore": z.ravel(),
                }
            )
        )
    nhood = pd.concat(tables, ignore_index=True)
    nhood.loc[0, "zscore"] = 500.0  # one extreme value must not wash out the scale
    fig = enrichment_grid(nhood)
    assert isinstance(fig, Figure)
    heat = [ax for ax in fig.axes if ax.images]
    assert len(heat) == 120
    assert [ax.get_title() for ax in heat][:2] == ["core000", "core001"]
    limits = {ax.images[0].get_clim() for ax in heat}
    assert len(limits) == 1  # one shared colour scale
    vmax = limits.pop()[1]
    assert vmax == pytest.approx(np.percentile(np.abs(nhood["zscore"]), 99))
    assert vmax < 10
    w, h = fig.get_size_inches()
    assert w <= 32
    assert h <= 32
    # the panel of image 7 shows its matrix (rows a, columns b)
    np.testing.assert_array_equal(heat[7].images[0].get_array(), tables[7]["zscore"].to_numpy().reshape(6, 6))
    plt.close(fig)
    with pytest.raises(ValueError, match="lacks column"):
        enrichment_grid(nhood.drop(columns="cluster_b"))


def test_density_by_group_points_and_means():
    long = pd.concat([_metrics(i) for i in range(N_OK)], ignore_index=True)
    fig = density_by_group(long, "arm")
    assert isinstance(fig, Figure)
    ax = fig.axes[TYPES.index("B cell")]
    assert ax.get_title() == "B cell"
    for x, arm in enumerate(ARMS):
        expected = [_value(i, "density", "tissue", "B cell") for i in range(N_OK) if ARMS[i % 2] == arm]
        pts = ax.collections[2 * x].get_offsets()  # scatter, then the error bar's line collection
        assert sorted(pts[:, 1]) == sorted(expected)
        assert np.allclose(pts[:, 0].mean(), x)
    # mean +- SEM per arm: B cell tissue densities 1003, 3003, 5003 (ArmAlpha) and 2003, 4003, 6003
    means = [c.lines[0].get_ydata()[0] for c in ax.containers]
    assert means == [3003.0, 4003.0]
    caps = sorted(c.lines[1][1].get_ydata()[0] for c in ax.containers)
    assert caps == pytest.approx([3003 + 2000 / np.sqrt(3), 4003 + 2000 / np.sqrt(3)])
    plt.close(fig)
    with pytest.raises(ValueError, match="blinded run withholds it"):
        density_by_group(long.drop(columns="arm"), "arm")


def test_demo_cohort_planted_arm_effect_in_cohort_table(tmp_path):
    """As a worker would: each image read, its metrics computed alone, stored; then the cohort outputs."""
    from spatialpath.export import biomarker_table
    from spatialpath.pipeline import read_image_cells, read_image_regions
    from spatialpath.pipeline._demo_cohort import prepare_demo_cohort

    cfg = load_config(prepare_demo_cohort(tmp_path / "demo", n_patients=6, n_cells=2000, progress=False))
    assert cfg.blinding.columns == ["arm"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        prepare_demo_cohort(tmp_path / "demo", n_patients=6, n_cells=2000, progress=False)
    store = ImageStore(cfg.output)
    images, status = [], []
    for _, row in cfg.sample_sheet.iterrows():
        key = ImageKey(row["sample_id"], row["image_id"])
        cells = read_image_cells(cfg, row)
        assert "arm" in cells.obs  # from the sheet (the .h5ad has no arm column)
        regions = read_image_regions(cfg, row, cells)
        long, _ = biomarker_table(cells, regions, metrics=["count", "density"], metadata=cfg.metadata_columns)
        store.write_result(key, "fp", tables={"metrics": long}, extra={"n_cells": cells.n_obs}, seed=0)
        images.append(key)
        status.append({**key._asdict(), "status": "computed", "seconds": 0.1, "fingerprint": "fp"})
    statuses = pd.DataFrame(status)
    write_cohort_outputs(cfg, store, images, statuses, store.exclusions, unblind=False)
    _, blinded = read_tables(cfg.output / "tables", "parquet")
    assert "arm" not in blinded.columns  # the demo is blinded by default
    write_cohort_outputs(cfg, store, images, statuses, store.exclusions, unblind=True)
    _, wide = read_tables(cfg.output / "tables", "parquet")
    truth = pd.read_csv(tmp_path / "demo" / "inputs" / "simulation_truth.csv")
    assert wide["arm"].astype(str).tolist() == truth["arm"].tolist()
    assert truth["planted_log2_fold_change"].iloc[0] == 1.0
    assert truth["effect_cell_type"].iloc[0] == "CD8 T"
    assert (wide["status__density__tissue__CD8_T"] == "ok").all()
    observed = wide.groupby("arm", observed=True)["density__tissue__CD8_T"].mean()
    expected = truth.groupby("arm")["expected_density_per_mm2"].mean()
    ratio, planted = observed["treatment"] / observed["control"], expected["treatment"] / expected["control"]
    assert ratio > 1.3  # the right sign, clearly
    assert ratio == pytest.approx(planted, rel=0.25)  # and the size the design implies
    # the per-image densities follow the simulation's expected densities image by image
    r = np.corrcoef(wide["density__tissue__CD8_T"], truth["expected_density_per_mm2"])[0, 1]
    assert r > 0.8
