"""``spatialpath demo``: the cohort pipeline end to end on the simulated cohort, as a user runs it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from spatialpath.cli import main
from spatialpath.export import read_tables
from spatialpath.pipeline._demo_run import demo_effect

ARGS = ["--n-patients", "6", "--n-cells", "2000", "--n-perms", "20", "--workers", "1", "--no-progress"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One blinded run, then the same folder unblinded (resumed: nothing recomputed)."""
    out = tmp_path_factory.mktemp("demo") / "d"
    runs = []
    for extra in ([], ["--overwrite", "--unblind"]):
        code = main(["demo", "--out", str(out), *ARGS, *extra])
        assert code == 0
        runs.append(json.loads((out / "results" / "manifest.json").read_text()))
    return out, runs


def test_demo_runs_the_pipeline_blinded_then_resumes_unblinded(demo, capsys):
    out, (blinded, unblinded) = demo
    assert (out / "run.yaml").exists()
    assert (out / "inputs" / "samples.csv").exists()
    assert blinded["blinding"]["mode"] == "blinded"
    assert unblinded["blinding"]["mode"] == "unblinded"
    status = pd.DataFrame(unblinded["images"])
    assert len(status) == 6
    assert set(status["status"]) == {"skipped"}  # the rerun recomputed nothing
    _long, wide = read_tables(out / "results" / "tables", "parquet")
    assert wide["image_id"].tolist() == [f"P{i:03d}_S1_I1" for i in range(1, 7)]
    assert wide["evaluable"].all()


def test_planted_arm_effect_appears_with_the_right_sign(demo):
    out, _ = demo
    long, wide = read_tables(out / "results" / "tables", "parquet")
    truth = pd.read_csv(out / "inputs" / "simulation_truth.csv")
    effect = demo_effect(wide, long, truth)
    assert effect is not None
    assert effect["column"] == "density__tissue__CD8_T"
    assert effect["planted"] == 2.0
    # the right sign, clearly, and the size the design (with its random effects) implies
    assert effect["ratio"] > 1.3
    assert effect["ratio"] == pytest.approx(effect["expected"], rel=0.25)
    # independently of demo_effect: per-image densities follow the simulation's expected densities
    merged = wide.merge(truth, on="image_id")
    assert np.corrcoef(merged["density__tissue__CD8_T"], merged["expected_density_per_mm2"])[0, 1] > 0.8
    by_arm = merged.groupby("arm_x", observed=True)["density__tissue__CD8_T"].mean()
    assert by_arm["treatment"] > by_arm["control"]


def test_blinded_summary_hides_the_arm_and_refuses_to_overwrite(demo, capsys):
    out, _ = demo
    assert main(["demo", "--out", str(out), *ARGS]) == 2  # an earlier demo is there
    err = capsys.readouterr().err
    assert "--overwrite" in err
    assert "nothing was written" in err
    assert main(["demo", "--out", str(out), *ARGS, "--overwrite"]) == 0  # blinded again
    printed = capsys.readouterr().out
    assert "'arm' is blinded" in printed
    assert "treatment" not in printed
    _, wide = read_tables(out / "results" / "tables", "parquet")
    assert "arm" not in wide.columns
    assert main(["demo", "--out", str(out), *ARGS[:-3], "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
