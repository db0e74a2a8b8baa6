"""Benchmark neighbourhood enrichment against squidpy: ``python benchmarks/bench_nhood.py``.

Setup A of ``../shared/reference/statistics.md`` §13: uniform cells on a √N·20 µm square
(1 cell/400 µm²), 12 uniform types, a directed 6-NN graph built by squidpy outside the timing.
Each case runs in a fresh process with ``NUMBA_NUM_THREADS=2``; JIT compilation is excluded (the
timed library is warmed up on 2,000 cells with 12 types in the setup). Wall seconds, CPU seconds (all
threads; more stable than wall time when other jobs share the cores) and peak RSS are printed.
The "graph only" rows time nothing: their peak RSS is the baseline (interpreter, imports, cells and
graph) the other rows add to. spatialpath's time includes everything ``nhood_enrichment`` does
(validation, spatial renumbering of the cells, the tests, the result in ``uns``).

Budgets: at 10^5 cells ≥ 5× squidpy (``n_jobs=1``, 1000 permutations) with permutations and
≥ 100× with ``analytical=True``; at 10^6 cells 1000 permutations ≤ 10 s, analytical ≤ 1 s, ≤ 4 GiB.
squidpy runs at 10^6 only with ``BENCH_SQUIDPY_1E6=1`` (≈ 90 s per §13).
"""

from __future__ import annotations

import os

os.environ["NUMBA_NUM_THREADS"] = "2"  # inherited by the child processes


from _harness import UNIFORM_CELLS, print_timed_table, timed

SETUP = (
    UNIFORM_CELLS
    + """
import time
from spatialpath.gr._nhood import nhood_enrichment

warm = cells(2000, seed=1)
__WARM__
adata = cells(__N__)
"""
)

#: JIT warm-up of the library a case times. Only that library is warmed: squidpy's ``parallelize``
#: calls ``numba.set_num_threads(1)`` in the calling thread (``squidpy/_utils.py``,
#: ``_callback_wrapper``) and never restores it, so a squidpy call in the same process would make
#: spatialpath's engine run on one thread.
WARM = {
    "spatialpath": 'nhood_enrichment(warm, "cell_type", n_perms=20, progress=False)\n'
    'nhood_enrichment(warm, "cell_type", analytical=True)',
    "squidpy": 'sq.gr.nhood_enrichment(warm, "cell_type", n_perms=20, n_jobs=1, show_progress_bar=False)',
    "graph": "pass",
}

CASES = [
    ("graph only (baseline)", "pass", "-"),
    (
        "spatialpath 1000 perms",
        'nhood_enrichment(adata, "cell_type", n_perms=1000, seed=0, progress=False)',
        "≥ 5× squidpy at 1e5; ≤ 10 s, ≤ 4 GiB at 1e6",
    ),
    (
        "spatialpath analytical",
        'nhood_enrichment(adata, "cell_type", analytical=True)',
        "≥ 100× squidpy at 1e5; ≤ 1 s at 1e6",
    ),
    (
        "squidpy 1000 perms n_jobs=1",
        'sq.gr.nhood_enrichment(adata, "cell_type", n_perms=1000, seed=0, n_jobs=1, show_progress_bar=False)',
        "-",
    ),
]
SIZES = {"1e5": 100_000, "1e6": 1_000_000}
SQUIDPY_MAX = 10**7 if os.environ.get("BENCH_SQUIDPY_1E6") == "1" else 100_000


def main() -> None:
    print(f"load average at start: {os.getloadavg()}")
    rows = []
    results: dict[tuple[str, str], dict[str, float]] = {}
    for label, n in SIZES.items():
        for name, run, budget in CASES:
            if name.startswith("squidpy") and n > SQUIDPY_MAX:
                continue
            warm = WARM[name.split()[0]]
            r = timed(SETUP.replace("__N__", str(n)).replace("__WARM__", warm), run)
            results[name, label] = r
            rows.append((f"{name} {label}", r, budget))
            print(f"{name} {label}: {r}", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    print()
    print_timed_table(rows)
    print()
    for label in SIZES:
        theirs = results.get(("squidpy 1000 perms n_jobs=1", label))
        if theirs is None:
            continue
        for ours in ("spatialpath 1000 perms", "spatialpath analytical"):
            r = results[ours, label]
            wall, cpu = theirs["seconds"] / r["seconds"], theirs["cpu_seconds"] / r["cpu_seconds"]
            print(f"{label}: squidpy / {ours} = {wall:.1f}x wall, {cpu:.1f}x CPU")


if __name__ == "__main__":
    main()
