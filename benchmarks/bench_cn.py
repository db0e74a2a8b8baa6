"""Benchmark cellular neighbourhoods (Schürch preset): ``python benchmarks/bench_cn.py``.

Setup A of ``../shared/reference/statistics.md`` §13: uniform cells on a √N·20 µm square
(1 cell/400 µm²), 12 uniform types, one image (the squidpy 6-NN graph of the shared setup is
built outside the timing; only squidpy uses it). Each case runs in a fresh process. The timed
block is the whole call: validation, canonical ordering, per-image kNN (or radius) windows,
``MiniBatchKMeans``, assignment and writing ``obs``/``uns``.

Budget: the Schürch preset (10-NN windows, 10 CNs) on 10^6 cells ≤ 60 s and ≤ 4 GiB.

squidpy 1.8.2 has no Schürch CN. Its closest function, ``sq.gr.calculate_niche(flavor=
"neighborhood")`` (neighbour-type fractions of the graph, self excluded, z-scaled, then a kNN
graph of the profiles and Leiden), is timed at 10^5 when it runs; it needs ``leidenalg``, and a
failure is printed instead of a time. Uniform types are the hardest case for k-means (no
structure: it stops on the iteration limit, not on convergence).
"""

from __future__ import annotations

import os
import subprocess

from _harness import UNIFORM_CELLS, print_timed_table, timed

SETUP = (
    UNIFORM_CELLS
    + """
from spatialpath.gr._cellular_neighborhoods import cellular_neighborhoods

cellular_neighborhoods(cells(2000, seed=1), "cell_type")  # imports and first calls outside the timing
adata = cells(__N__)
"""
)

CASES = [
    ("cells + graph only (baseline)", "pass", "-"),
    (
        "spatialpath Schürch preset (10-NN, 10 CNs)",
        'cellular_neighborhoods(adata, "cell_type")',
        "≤ 60 s, ≤ 4 GiB at 1e6",
    ),
    (
        "spatialpath radius 30 µm (fractions, 10 CNs)",
        'cellular_neighborhoods(adata, "cell_type", n_neighbors=None, radius=30.0)',
        "-",
    ),
    (
        "spatialpath preset, 5 restarts",
        'cellular_neighborhoods(adata, "cell_type", n_restarts=5)',
        "-",
    ),
    (
        "squidpy calculate_niche(neighborhood)",
        'sq.gr.calculate_niche(adata, flavor="neighborhood", groups="cell_type", n_neighbors=15, '
        "resolutions=0.5)",
        "-",
    ),
]
SIZES = {"1e5": 100_000, "1e6": 1_000_000}


def main() -> None:
    print(f"load average at start: {os.getloadavg()}")
    rows = []
    for label, n in SIZES.items():
        for name, run, budget in CASES:
            if name.startswith("squidpy") and n > 100_000:
                continue
            try:
                r = timed(SETUP.replace("__N__", str(n)), run)
            except subprocess.CalledProcessError as err:
                reason = (err.stderr or "").strip().splitlines()[-1:] or ["?"]
                print(f"{name} {label}: failed: {reason[0]}", flush=True)
                rows.append((f"{name} {label}", None, f"failed: {reason[0]}"))
                continue
            rows.append((f"{name} {label}", r, budget))
            print(f"{name} {label}: {r}", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    print()
    print_timed_table(rows)


if __name__ == "__main__":
    main()
