"""Benchmark centrality and interaction_matrix: ``python benchmarks/bench_centrality.py``.

Setup A of ``../shared/reference/statistics.md`` §13: uniform cells on a √N·20 µm square
(1 cell/400 µm²), 12 uniform types, a directed 6-NN graph built by squidpy outside the timing.
Each case runs in a fresh process with ``NUMBA_NUM_THREADS=2``; JIT compilation is excluded (both
libraries are warmed up on 2,000 cells in the setup). Printed per case: wall seconds, CPU seconds
of the timed block (all threads; more stable than wall time when other jobs share the cores), the
peak RSS *after the setup* (the setup's own peak, e.g. building the graph, is forgotten through
Linux ``/proc/self/clear_refs``, so this is resident data + the timed block's growth) and that
growth alone (Δ peak). The "graph only" rows time nothing: their RSS is the resident baseline.

Budgets: centrality at 10^6 cells ≤ 15 s and ≤ 4 GiB. squidpy's ``centrality_scores`` (networkx)
runs at 10^5 only (≈ 14 s there, ≈ 170 s at 10^6 per §13).
"""

from __future__ import annotations

import os

os.environ["NUMBA_NUM_THREADS"] = "2"  # inherited by the child processes


from _harness import UNIFORM_CELLS, print_timed_table, timed

SETUP = (
    UNIFORM_CELLS
    + """
import time
from spatialpath.gr._centrality import centrality
from spatialpath.gr._interaction_matrix import interaction_matrix

warm = cells(2000, seed=1)
centrality(warm, "cell_type")
interaction_matrix(warm, "cell_type")
sq.gr.interaction_matrix(warm, "cell_type")
adata = cells(__N__)
"""
)

CASES = [
    ("graph only (baseline)", "pass", "-"),
    ("spatialpath centrality", 'centrality(adata, "cell_type")', "≤ 15 s, ≤ 4 GiB at 1e6"),
    ("squidpy centrality_scores", 'sq.gr.centrality_scores(adata, "cell_type")', "-"),
    ("spatialpath interaction_matrix", 'interaction_matrix(adata, "cell_type")', "-"),
    ("squidpy interaction_matrix", 'sq.gr.interaction_matrix(adata, "cell_type")', "-"),
]
SIZES = {"1e5": 100_000, "1e6": 1_000_000}
SQUIDPY_CENTRALITY_MAX = 100_000  # networkx takes ≈ 170 s at 1e6


def main() -> None:
    print(f"load average at start: {os.getloadavg()}")
    rows = []
    results: dict[tuple[str, str], dict[str, float]] = {}
    for label, n in SIZES.items():
        for name, run, budget in CASES:
            if name == "squidpy centrality_scores" and n > SQUIDPY_CENTRALITY_MAX:
                continue
            r = timed(SETUP.replace("__N__", str(n)), run)
            results[name, label] = r
            rows.append((f"{name} {label}", r, budget))
            print(f"{name} {label}: {r}", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    print()
    print_timed_table(rows)
    print()
    for what, ours, theirs, label in [
        ("centrality", "spatialpath centrality", "squidpy centrality_scores", "1e5"),
        ("interaction_matrix", "spatialpath interaction_matrix", "squidpy interaction_matrix", "1e5"),
        ("interaction_matrix", "spatialpath interaction_matrix", "squidpy interaction_matrix", "1e6"),
    ]:
        wall = results[theirs, label]["seconds"] / results[ours, label]["seconds"]
        cpu = results[theirs, label]["cpu_seconds"] / results[ours, label]["cpu_seconds"]
        print(f"{what} {label}: squidpy / spatialpath = {wall:.1f}x wall, {cpu:.1f}x CPU")


if __name__ == "__main__":
    main()
