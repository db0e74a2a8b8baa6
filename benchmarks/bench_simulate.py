"""Benchmark the simulator: ``python benchmarks/bench_simulate.py``.

The core issue's budget: ``simulate_tissue(n_cells=100_000)`` returns in under 10 s and under
2 GiB peak. Peak RSS includes the interpreter and imports (numpy, anndata, dask, shapely...).
There is no squidpy counterpart to compare with.
"""

from __future__ import annotations

from _harness import print_table, run_case

SETUP = "from spatialpath.datasets import simulate_tissue, simulate_cohort\nsimulate_tissue(n_cells=500)"

CASES = [
    ("simulate_tissue 1e5 cells (lazy image)", "simulate_tissue(seed=0, n_cells=100_000)", "< 10 s, < 2 GiB"),
    ("simulate_tissue 1e6 cells (lazy image)", "simulate_tissue(seed=0, n_cells=1_000_000)", "-"),
    (
        "1e5 cells + one 1024^2 chunk of image and labels",
        "t = simulate_tissue(seed=0, n_cells=100_000)\n"
        "t.image[:, 4096:5120, 4096:5120].values\nt.labels[4096:5120, 4096:5120].values",
        "-",
    ),
    (
        "simulate_cohort 20 images x 5000 cells",
        "simulate_cohort(n_patients=20, n_cells=5000, progress=False)",
        "-",
    ),
]

if __name__ == "__main__":
    print_table([(name, run_case(SETUP, run), budget) for name, run, budget in CASES])
