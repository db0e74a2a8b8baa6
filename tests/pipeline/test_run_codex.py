"""The cohort runner on the 140-core CODEX colorectal cohort (Schürch et al. 2020), 2-worker LocalCluster.

Independent reference: a pandas groupby of the raw CSV (cells per core). Resumability is checked
through the runner's own status table *and* the markers' ``written_at`` stamps on disk.
"""

from __future__ import annotations

import json
import shutil
import time

import pandas as pd
import pytest

from spatialpath.pipeline._cluster import ClusterSize, local_cluster
from spatialpath.pipeline._run import run
from spatialpath.pipeline._store import ImageStore
from spatialpath.pipeline._validate import load_config

pytestmark = pytest.mark.realdata

CODEX_PX = 0.377  # Schürch et al. 2020, as in tests/pipeline/test_inputs.py
YAML = """version: 1
samples: samples.csv
output: out
seed: {seed}
statistics:
  nhood_enrichment: {{n_perms: 19}}
  cellular_neighborhoods: {{n_clusters: 6}}
metrics: [count]
outputs: {{formats: [csv], figures: false}}
"""
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with local_cluster(ClusterSize(2, 1, "3GB"), dashboard_address=":0") as lc, Client(lc) as cl:
        yield cl


@pytest.fixture(scope="module")
def codex(shared, tmp_path_factory):
    path = shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz")
    raw = pd.read_csv(path, usecols=["ID", "imageID"])
    first = raw.groupby("imageID", sort=True)["ID"].first()
    folder = tmp_path_factory.mktemp("codex_run")
    rows = [f"P{first[i]},{i[:6]},{i},{path},codex,{CODEX_PX},imageID" for i in first.index]
    header = "patient_id,sample_id,image_id,path,technology,pixel_size_um,image_column\n"
    (folder / "samples.csv").write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    return folder, raw.groupby("imageID").size()


def _config(folder, seed=0):
    (folder / "run.yaml").write_text(YAML.format(seed=seed), encoding="utf-8")
    return load_config(folder / "run.yaml")


def _written_at(store):
    return {k: json.loads((store.folder(k) / "_done.json").read_text())["written_at"] for k in store.images()}


def test_codex_cohort_one_row_per_core_then_resumes(codex, client):
    folder, n_cells = codex
    cfg = _config(folder)
    assert len(cfg.sample_sheet) == len(n_cells) == 140

    tic = time.perf_counter()
    first = run(cfg, client=client, progress=False)
    TIMES["first run, 140 cores"] = time.perf_counter() - tic
    assert first.counts == {"computed": 140, "skipped": 0, "failed": 0}
    store = ImageStore(cfg.output)
    per_image = {k.image_id: store.read_result(k) for k in store.images()}
    assert sorted(per_image) == sorted(n_cells.index)
    counts, tissue = {}, {}
    for image, res in per_image.items():
        m = res.tables["metrics"]
        assert m["image_id"].unique().tolist() == [image]
        assert m["n_cells_total"].nunique() == 1  # the core's cells, also those outside the derived tissue
        counts[image] = int(m["n_cells_total"].iloc[0])
        assert res.extra["n_cells"] == len(res.tables["cells"]) == counts[image]
        tissue[image] = m.loc[(m["metric"] == "count") & (m["compartment"] == "tissue"), "value"].sum()
        assert tissue[image] <= counts[image]  # tissue_from_cells leaves out stray cells
        assert set(res.tables["nhood_zscore"]["image_id"]) == {image}
        cn = res.tables["cn_frequencies"]  # one cohort model: the same 6 CNs in every core
        assert cn["cn"].tolist() == [f"CN{i}" for i in range(1, 7)]
        assert cn["n_cells"].sum() == counts[image]
    assert sum(tissue.values()) >= 0.98 * n_cells.sum()
    pd.testing.assert_series_equal(pd.Series(counts).sort_index(), n_cells.sort_index(), check_names=False)
    stamps = _written_at(store)

    # nothing changed: nothing recomputed, no marker rewritten
    tic = time.perf_counter()
    again = run(cfg, client=client, progress=False)
    TIMES["rerun, nothing changed"] = time.perf_counter() - tic
    assert again.counts == {"computed": 0, "skipped": 140, "failed": 0}
    assert _written_at(store) == stamps

    # one image's output deleted: exactly that image recomputed
    lost = sorted(n_cells.index)[37]
    key = next(k for k in store.images() if k.image_id == lost)
    shutil.rmtree(store.folder(key))
    tic = time.perf_counter()
    one = run(cfg, client=client, progress=False)
    TIMES["rerun, one image deleted"] = time.perf_counter() - tic
    assert one.counts == {"computed": 1, "skipped": 139, "failed": 0}
    assert one.images.loc[one.images["status"] == "computed", "image_id"].tolist() == [lost]
    now = _written_at(store)
    assert {k for k in now if now[k] != stamps.get(k)} == {key}

    # one parameter changed (the seed): everything recomputed
    tic = time.perf_counter()
    changed = run(_config(folder, seed=1), client=client, progress=False)
    TIMES["rerun, seed changed"] = time.perf_counter() - tic
    assert changed.counts == {"computed": 140, "skipped": 0, "failed": 0}
    print("\nCODEX timings (s, 2 workers):", {k: round(v, 1) for k, v in TIMES.items()})
