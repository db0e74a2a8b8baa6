"""The cohort runner on a small simulated cohort: failures, fail-fast, a worker killed mid-write,
order-free seeds, the cohort CN step, the worker environment, the CLI.

Independent references: the statistics run directly in this process with the documented seed
(``image_seed``); the store's files on disk; the workers' own environment and numba config.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys

import cloudpickle
import dask
import numpy as np
import pandas as pd
import pytest

from spatialpath.pipeline._cluster import ClusterSize, acquire_client, cluster_size, local_cluster
from spatialpath.pipeline._config import ClusterConfig
from spatialpath.pipeline._run import CN_MODEL, PipelineError, run
from spatialpath.pipeline._seeds import image_seed
from spatialpath.pipeline._store import ImageStore, safe_name
from spatialpath.pipeline._validate import load_config

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # hooks below run on the workers

HEADER = "patient_id,sample_id,image_id,path,technology,pixel_size_um,image_column,arm\n"
BASE = (
    "version: 1\nsamples: {sheet}\noutput: {out}\nmetrics: [count]\n"
    "outputs: {{formats: [csv], figures: false}}\n"
)
NHOOD = "statistics:\n  nhood_enrichment: {n_perms: 19}\n"
WITH_CN = "statistics:\n  nhood_enrichment: {n_perms: 19}\n  cellular_neighborhoods: {n_clusters: 4}\n"


@pytest.fixture(scope="module")
def client():
    """One 2-worker cluster for the module; a task on a dying worker fails at once (no retry)."""
    from distributed import Client

    config = {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}
    with (
        dask.config.set(config),
        local_cluster(ClusterSize(2, 1, "2GB"), dashboard_address=":0") as lc,
        Client(lc) as cl,
    ):
        yield cl


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """4 simulated images, one .h5ad per sample; the sheet's rows."""
    from spatialpath.datasets import simulate_cohort

    folder = tmp_path_factory.mktemp("cohort")
    (folder / "data").mkdir()
    adata = simulate_cohort(n_patients=4, n_cells=800, seed=1, progress=False)
    rows = []
    for s in adata.obs["sample_id"].unique():
        sub = adata[adata.obs["sample_id"] == s].copy()
        sub.write_h5ad(folder / "data" / f"{s}.h5ad")
        for i in sub.obs["image_id"].unique():
            rows.append(
                f"{sub.obs['patient_id'].iloc[0]},{s},{i},data/{s}.h5ad,simulated,,image_id,{sub.obs['arm'].iloc[0]}"
            )
    return folder, rows


def make_config(folder, name, rows, stats=NHOOD, figures=False):
    (folder / f"{name}.csv").write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    text = BASE.format(sheet=f"{name}.csv", out=f"out_{name}") + stats
    if figures:
        text = text.replace("figures: false", "figures: true")
    (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return load_config(folder / f"{name}.yaml")


def computed(result):
    return result.images.loc[result.images["status"] == "computed", "image_id"].tolist()


# -- cluster sizing and the workers' environment -----------------------------------------------------


def test_cluster_size_rules():
    gib = 2**30
    size = cluster_size(cpu_count=8, total_memory=16 * gib)
    assert (size.n_workers, size.threads_per_worker, size.memory_limit) == (8, 1, int(0.9 * 16 * gib / 8))
    assert size.env() == dict.fromkeys(
        ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), "1"
    )
    two = cluster_size(ClusterConfig(threads_per_worker=2), cpu_count=7, total_memory=16 * gib)
    assert (two.n_workers, two.memory_limit, two.env()["NUMBA_NUM_THREADS"]) == (
        3,
        int(0.9 * 16 * gib / 3),
        "2",
    )
    assert (
        cluster_size(ClusterConfig(memory_limit="4GB", n_workers=5), cpu_count=64).memory_limit == 4 * 10**9
    )
    assert cluster_size(ClusterConfig(memory_limit="auto"), cpu_count=2).memory_limit == "auto"
    assert (
        cluster_size(ClusterConfig(n_workers=5), n_workers=2, cpu_count=64).n_workers == 2
    )  # --workers wins
    assert cluster_size(cpu_count=1, total_memory=gib).n_workers == 1
    with pytest.raises(ValueError, match="n_workers must be >= 1"):
        cluster_size(n_workers=0)
    with (
        pytest.raises(ValueError, match="either client= or scheduler="),
        acquire_client(client=1, scheduler="x"),
    ):
        pass


def _worker_threads():
    import numba

    names = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    return {**{n: os.environ.get(n) for n in names}, "numba": numba.config.NUMBA_NUM_THREADS}


def test_workers_have_one_numba_and_blas_thread(client):
    found = client.run(_worker_threads)
    assert len(found) == 2
    for env in found.values():
        assert env == {
            "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "numba": 1,
        }  # fmt: skip


# -- failures --------------------------------------------------------------------------------------


def test_failed_image_is_logged_and_the_others_complete(cohort, client):
    folder, rows = cohort
    import anndata as ad

    bad = ad.read_h5ad(folder / rows[2].split(",")[3])  # a valid file without cell types: unusable
    del bad.obs["cell_type"]
    bad.write_h5ad(folder / "data" / "corrupt.h5ad")
    broken = [*rows[:2], rows[2].replace(rows[2].split(",")[3], "data/corrupt.h5ad"), *rows[3:]]
    failing = rows[2].split(",")[2]
    cfg = make_config(folder, "broken", broken)

    result = run(cfg, client=client, progress=False)
    assert result.counts == {"computed": 3, "skipped": 0, "failed": 1}
    row = result.images.set_index("image_id").loc[failing]
    assert row["status"] == "failed"
    assert row["error"].startswith("InputError: broken.csv:4")
    ex = pd.read_csv(cfg.output / "exclusions.csv")
    assert ex["image_id"].tolist() == [failing]
    assert ex["error_type"].tolist() == ["spatialpath.pipeline._inputs.InputError"]
    assert "read_image_cells" in ex["traceback"].iloc[0]
    assert "Traceback" in ex["traceback"].iloc[0]
    assert json.loads((cfg.output / "exclusions.json").read_text())["n_excluded"] == 1
    store = ImageStore(cfg.output)
    assert sorted(k.image_id for k in store.images()) == sorted({r.split(",")[2] for r in rows} - {failing})
    # the client passed in is neither closed nor broken
    assert client.status == "running"
    assert client.submit(sum, [1, 2]).result() == 3

    again = run(cfg, client=client, progress=False)  # the failed image is retried, the others skipped
    assert again.counts == {"computed": 0, "skipped": 3, "failed": 1}

    cfg_ff = make_config(folder, "broken_ff", broken)
    with pytest.raises(PipelineError, match=rf"image \('[^']+', '{failing}'\) failed .*InputError"):
        run(cfg_ff, client=client, fail_fast=True, progress=False)
    assert pd.read_csv(cfg_ff.output / "exclusions.csv")["image_id"].tolist() == [failing]


def _kill_hook(target, kind, final, tmp):
    if kind == "table" and final.parent.name == target:
        os._exit(1)  # the worker dies with a complete temporary file not yet renamed


def _install(target):
    from spatialpath.pipeline import _store

    _store._TEST_HOOK = None if target is None else functools.partial(_kill_hook, target)


def test_worker_killed_mid_write_leaves_no_partial_file(cohort, client):
    folder, rows = cohort
    cfg = make_config(folder, "killed", rows)
    victim = rows[1].split(",")[2]
    client.run(_install, safe_name(victim))
    try:
        result = run(cfg, client=client, progress=False)
    finally:
        client.run(_install, None)
    # the victim's worker died; tasks already queued on that worker die with it (allowed-failures
    # is 0 here, so distributed does not retry them): all are KilledWorker failures, the rest complete
    failed = result.images.loc[result.images["status"] == "failed", "image_id"].tolist()
    assert victim in failed
    assert len(failed) <= 2
    assert result.counts["computed"] == 4 - len(failed)
    ex = result.exclusions
    assert sorted(ex["image_id"]) == sorted(failed)
    assert ex["error_type"].str.endswith("KilledWorker").all()
    store = ImageStore(cfg.output)
    fps = result.images.set_index("image_id")["fingerprint"]
    key = next((r.split(",")[1], victim) for r in rows if r.split(",")[2] == victim)
    files = sorted(p.name for p in store.folder(key).iterdir())
    assert [f for f in files if not f.startswith(".")] == []  # no final file, partial or not
    assert any(f.endswith(".tmp.parquet") for f in files)  # the killed writer's debris
    assert store.status(key, fps[victim]) == "failed"

    client.wait_for_workers(2, timeout=120)
    again = run(cfg, client=client, progress=False)
    assert sorted(computed(again)) == sorted(failed)
    assert again.counts["skipped"] == 4 - len(failed)
    expected = ["_done.json", "cells.parquet", "metrics.parquet", "nhood_zscore.parquet"]
    assert sorted(os.listdir(store.folder(key))) == expected  # debris removed
    assert again.exclusions.empty
    assert store.status(key, fps[victim]) == "current"


# -- seeds, cellular neighbourhoods ----------------------------------------------------------------


def test_seeds_are_order_free_and_match_a_direct_run(cohort, client):
    from spatialpath.gr import nhood_enrichment, spatial_graph
    from spatialpath.pipeline._inputs import read_image_cells

    folder, rows = cohort
    a = make_config(folder, "ordered", rows, WITH_CN, figures=True)
    b = make_config(folder, "shuffled", [rows[i] for i in (2, 0, 3, 1)], WITH_CN)
    ra, rb = run(a, client=client, progress=False), run(b, client=client, progress=False)
    assert ra.counts["computed"] == rb.counts["computed"] == 4
    sa, sb = ImageStore(a.output), ImageStore(b.output)
    assert sa.images() == sb.images()
    for key in sa.images():
        ta, tb = sa.read_result(key), sb.read_result(key)
        assert ta.marker.seed == tb.marker.seed == image_seed(0, *key)
        pd.testing.assert_frame_equal(ta.tables["nhood_zscore"], tb.tables["nhood_zscore"])
        pd.testing.assert_frame_equal(ta.tables["cells"], tb.tables["cells"])  # same CN of every cell
        assert ta.figures["nhood"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # kept through the CN rewrite
        freq = ta.tables["cn_frequencies"]
        assert freq["n_cells"].sum() == len(ta.tables["cells"])
        assert np.isclose(freq["fraction"].sum(), 1.0)

    # reference: the statistic run here, on the same image, with the documented seed
    _line, row = next(iter(a.sample_sheet.iterrows()))
    key = (str(row["sample_id"]), str(row["image_id"]))
    cells = read_image_cells(a, row)
    spatial_graph(cells, "knn", library_key="image_id", **a.graph.kwargs())
    ref = nhood_enrichment(cells, "cell_type", library_key="image_id", n_perms=19, seed=image_seed(0, *key),
                           progress=False, copy=True).table  # fmt: skip
    ref = ref[ref["level"] == "image"]
    got = sa.read_result(key).tables["nhood_zscore"]
    np.testing.assert_array_equal(got["zscore"].to_numpy(), ref["zscore"].to_numpy())
    assert not np.allclose(  # another seed gives other permutation z-scores: the seed is really used
        got["zscore"].to_numpy(),
        nhood_enrichment(cells, "cell_type", library_key="image_id", n_perms=19, seed=image_seed(0, *key) + 1,
                         progress=False, copy=True).table.query("level == 'image'")["zscore"].to_numpy(),
        equal_nan=True,
    )  # fmt: skip

    # deleting one image's output recomputes that image only, with the same cohort CN model
    model = (a.output / CN_MODEL).read_text()
    lost = sa.images()[2]
    before = sa.read_result(lost).tables["cells"]
    shutil.rmtree(sa.folder(lost))
    again = run(a, client=client, progress=False)
    assert computed(again) == [lost.image_id]
    assert again.counts["skipped"] == 3
    assert (a.output / CN_MODEL).read_text() == model
    pd.testing.assert_frame_equal(sa.read_result(lost).tables["cells"], before)
    assert run(a, client=client, progress=False).counts["computed"] == 0


# -- command line ----------------------------------------------------------------------------------


def test_cli_runs_a_config_on_a_scheduler_address(cohort, client, capsys):
    from spatialpath.cli import main

    folder, rows = cohort
    cfg = make_config(folder, "cli", rows)
    args = ["run", str(folder / "cli.yaml"), "--scheduler", client.scheduler.address, "--no-progress"]
    assert main(args) == 0
    assert "4 computed" in capsys.readouterr().out
    assert len(ImageStore(cfg.output).images()) == 4
    assert main(args) == 0
    assert "0 computed, 4 skipped" in capsys.readouterr().out
    (folder / "bad.yaml").write_text(
        "version: 1\nsamples: cli.csv\noutput: out_bad\ngrpah: {}\n", encoding="utf-8"
    )
    assert main(["run", str(folder / "bad.yaml"), "--no-progress"]) == 2
    assert "did you mean 'graph'" in capsys.readouterr().err


# -- cohort-level interaction tests ----------------------------------------------------------------


def test_interaction_test_per_image_and_its_cohort_summary(cohort, client):
    """histoCAT's conditional test per image (seeded per image), summarised over the cohort."""
    from spatialpath.gr import interaction_summary, interaction_test, spatial_graph
    from spatialpath.pipeline._inputs import read_image_cells

    folder, rows = cohort
    stats = "statistics:\n  interaction_test: {method: conditional, n_perms: 99, p_threshold: 0.05}\n"
    cfg = make_config(folder, "interact", rows, stats)
    result = run(cfg, client=client, progress=False)
    assert result.counts["computed"] == 4
    store, direct = ImageStore(cfg.output), []
    for _line, row in cfg.sample_sheet.iterrows():
        key = (str(row["sample_id"]), str(row["image_id"]))
        cells = read_image_cells(cfg, row)
        spatial_graph(cells, "knn", library_key="image_id", **cfg.graph.kwargs())
        ref = interaction_test(cells, "cell_type", method="conditional", library_key="image_id",
                               n_perms=99, p_threshold=0.05, seed=image_seed(0, *key), progress=False,
                               copy=True)  # fmt: skip
        got = store.read_result(store.images()[[k.image_id for k in store.images()].index(key[1])])
        table = got.tables["interaction_test"]
        np.testing.assert_array_equal(table["ct"].to_numpy(float), ref["ct"].to_numpy(float))
        np.testing.assert_array_equal(table["p"].to_numpy(float), ref["p"].to_numpy(float))
        direct.append(ref)
    cohort_table = pd.read_csv(cfg.output / "tables" / "interaction_summary.csv")
    want = interaction_summary(pd.concat(direct, ignore_index=True))
    assert len(cohort_table) == len(want) > 0
    np.testing.assert_allclose(cohort_table["frac_attraction"], want["frac_attraction"].to_numpy(float))
    np.testing.assert_allclose(cohort_table["n_images"], want["n_images"].to_numpy(float))
    per_image = pd.read_csv(cfg.output / "tables" / "interaction_test.csv")
    assert (cohort_table["frac_attraction"] > 0).any()  # the simulated tissue's planted structure
    arms = {r.split(",")[2]: r.split(",")[-1] for r in rows}  # the sheet's metadata, per image
    assert per_image.groupby("image_id")["arm"].first().to_dict() == arms
    assert set(per_image["image_id"]) == {r.split(",")[2] for r in rows}


def test_progress_shows_counts_and_the_dashboard_link(cohort, client, capsys):
    folder, rows = cohort
    cfg = make_config(folder, "progress", rows[:2], "")
    result = run(cfg, client=client, progress=True)
    captured = capsys.readouterr()
    assert set(result.timings) == {"plan_s", "cluster_s", "images_s", "outputs_s"}  # no CN step here
    assert 0 < sum(result.timings.values()) <= result.seconds
    assert f"2 of 2 images to compute; dashboard: {client.dashboard_link}" in captured.out
    assert "done=2, failed=0, remaining=0, skipped=0" in captured.err  # tqdm's last postfix
    run(cfg, client=client, progress=False)  # nothing printed without progress
    assert capsys.readouterr().out == ""
