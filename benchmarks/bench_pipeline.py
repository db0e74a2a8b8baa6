"""Cohort pipeline end to end on the 140-core CODEX colorectal cohort (Schürch et al. 2020).

Per image: 6-NN graph, neighbourhood enrichment with 1000 permutations, densities, NN distances;
then the cohort CN fit (Schürch preset, k = 10) and per-image predict, the cohort tables. Run with a
LocalCluster of 1 and of 2 single-threaded workers; reports wall time, the peak RSS of every
worker and of this (scheduler-side) process, and a rerun (everything current: nothing computed).

Usage: ``python benchmarks/bench_pipeline.py [--workers 1 2]`` (needs ``../shared/data``).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CODEX = SHARED / "schurch_crc_codex_cells" / "MIF_CRC_cells.csv.gz"
PIXEL_SIZE_UM = 0.377
YAML = """version: 1
samples: samples.csv
output: out
seed: 0
statistics:
  nhood_enrichment: {n_perms: 1000}
  cellular_neighborhoods: {}
metrics: [count, density, nn_distance_mean]
outputs: {formats: [csv, parquet], figures: false}
"""


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def prepare(folder: Path) -> Path:
    """A sample sheet of every core of the one CSV and the config; returns the config path."""
    raw = pd.read_csv(CODEX, usecols=["ID", "imageID"])
    first = raw.groupby("imageID", sort=True)["ID"].first()
    rows = [f"P{first[i]},{i[:6]},{i},{CODEX},codex,{PIXEL_SIZE_UM},imageID" for i in first.index]
    header = "patient_id,sample_id,image_id,path,technology,pixel_size_um,image_column\n"
    (folder / "samples.csv").write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    (folder / "run.yaml").write_text(YAML, encoding="utf-8")
    return folder / "run.yaml"


def bench(n_workers: int) -> dict[str, float]:
    from distributed import Client

    from spatialpath.pipeline._cluster import ClusterSize, local_cluster
    from spatialpath.pipeline._run import run

    with tempfile.TemporaryDirectory() as tmp:
        config = prepare(Path(tmp))
        size = ClusterSize(n_workers, 1, "8GB")
        with local_cluster(size, dashboard_address=":0") as lc, Client(lc) as client:
            tic = time.perf_counter()
            first = run(config, client=client, progress=False)
            wall = time.perf_counter() - tic
            workers = client.run(_peak_gib)
            tic = time.perf_counter()
            again = run(config, client=client, progress=False)
            rerun = time.perf_counter() - tic
    assert first.counts["computed"] == 140, first.counts
    assert again.counts["computed"] == 0, again.counts
    return {
        "seconds": wall,
        "rerun_seconds": rerun,
        "worker_peak_gib": max(workers.values()),
        "workers_total_gib": sum(workers.values()),
        "client_peak_gib": _peak_gib(),
        "worker_seconds": float(first.images["seconds"].sum()),
        **first.timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    results = {n: bench(n) for n in args.workers}
    print("| workers | wall s | rerun s | peak RSS per worker (GiB) | all workers (GiB) | client (GiB) |")
    print("|---|---|---|---|---|---|")
    for n, r in results.items():
        print(
            f"| {n} | {r['seconds']:.1f} | {r['rerun_seconds']:.1f} | {r['worker_peak_gib']:.2f} "
            f"| {r['workers_total_gib']:.2f} | {r['client_peak_gib']:.2f} |"
        )
    # where the wall time goes (RunResult.timings) and the image tasks' summed worker time
    print("\n| workers | plan s | image tasks s (summed on workers) | cohort CN s | cohort outputs s |")
    print("|---|---|---|---|---|")
    for n, r in results.items():
        print(
            f"| {n} | {r['plan_s']:.1f} | {r['images_s']:.1f} ({r['worker_seconds']:.1f}) "
            f"| {r.get('cohort_cn_s', 0.0):.1f} | {r['outputs_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
