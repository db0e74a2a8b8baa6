"""Benchmark cross_function against squidpy's ripley: ``python benchmarks/bench_cross_function.py``.

Setup A of ``../shared/reference/statistics.md`` §13 (uniform cells on a √N·20 µm square,
1 cell/400 µm², 12 uniform types); each case in a fresh process with ``NUMBA_NUM_THREADS=2``, JIT
compilation excluded (warm-up on 3,000 cells in the setup). Window: the convex hull of the cells
(what squidpy uses), translation correction, 51 distances from 0 to 250 µm.

Cases:
- 10^5 cells: squidpy ``ripley(mode="L", max_dist=250, n_steps=51)`` (the 12 univariate L with
  its 100 default CSR simulations) vs spatialpath's L for all 144 ordered type pairs (the 12
  univariate ones included) in one call, observed only and with 99 random-labelling permutations
  (the same order of null draws as squidpy's 100).
- 10^6 cells: observed cross-L for all 144 type pairs (budget ≤ 60 s, ≤ 4 GiB) and with envelopes
  from ``N_PERMS_1E6`` permutations (budget ≤ 10 min). squidpy's ``ripley`` fails with MemoryError
  at 10^6 cells / 12 types (25.8 GiB, §13) and is not run there.
"""

from __future__ import annotations

import os

os.environ["NUMBA_NUM_THREADS"] = "2"  # inherited by the child processes

from _harness import UNIFORM_CELLS, print_timed_table, timed

#: permutations of the 10^6-cell envelope case: valid pointwise envelopes and ERL global test at 0.05.
N_PERMS_1E6 = 199

SETUP = (
    UNIFORM_CELLS
    + """
import time
from spatialpath.gr import cross_function

warm = cells(3000, seed=1)
for null, n in ((None, None), ("random_labelling", 39)):
    cross_function(warm, "cell_type", "L", r_max=100, null=null, n_perms=n, copy=True, progress=False)
sq.gr.ripley(warm, "cell_type", mode="L", max_dist=100, n_steps=11, n_simulations=2)
types = list(warm.obs["cell_type"].cat.categories)
adata = cells(__N__)
R = np.linspace(0, 250, 51)
"""
)

SQ_RIPLEY = "sq.gr.ripley(adata, 'cell_type', mode='L', max_dist=250, n_steps=51)"
ALL = "cross_function(adata, 'cell_type', 'L', r=R, null={null}, n_perms={n}, copy=True, progress=False)"
CASES_1E5 = [
    ("squidpy ripley L (100 CSR sims)", SQ_RIPLEY, "-"),
    ("spatialpath L, 144 pairs, observed", ALL.format(null=None, n=None), "-"),
    ("spatialpath L, 144 pairs, 99 perms", ALL.format(null="'random_labelling'", n=99), "-"),
]
CASES_1E6 = [
    (
        "spatialpath cross-L, 144 pairs, observed",
        "cross_function(adata, 'cell_type', 'L', r=R, null=None, copy=True, progress=False)",
        "≤ 60 s, ≤ 4 GiB",
    ),
    (
        f"spatialpath cross-L, 144 pairs, {N_PERMS_1E6} perms + envelopes",
        f"cross_function(adata, 'cell_type', 'L', r=R, n_perms={N_PERMS_1E6}, copy=True, progress=False)",
        "≤ 600 s, ≤ 4 GiB",
    ),
]


def main() -> None:
    print(f"load average at start: {os.getloadavg()}")
    rows, results = [], {}
    for label, n, cases in (("1e5", 100_000, CASES_1E5), ("1e6", 1_000_000, CASES_1E6)):
        for name, run, budget in cases:
            r = timed(SETUP.replace("__N__", str(n)), run)
            results[name, label] = r
            rows.append((f"{name} {label}", r, budget))
            print(f"{name} {label}: {r}", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    print()
    print_timed_table(rows)
    print()
    sq = results["squidpy ripley L (100 CSR sims)", "1e5"]
    for ours in ("spatialpath L, 144 pairs, observed", "spatialpath L, 144 pairs, 99 perms"):
        r = results[ours, "1e5"]
        print(
            f"1e5 squidpy ripley / {ours}: {sq['seconds'] / r['seconds']:.1f}x wall, "
            f"{sq['cpu_seconds'] / r['cpu_seconds']:.1f}x CPU, "
            f"peak {sq['peak_gib']:.2f} vs {r['peak_gib']:.2f} GiB"
        )


if __name__ == "__main__":
    main()
