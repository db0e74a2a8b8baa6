"""Benchmark the histoCAT interaction test: ``python benchmarks/bench_interaction_test.py``.

Setup A of ``statistics.md`` §13: N uniform cells on a sqrt(N)*20 µm square, 12 uniform types,
a 6-NN graph built outside the timing, 1000 permutations, JIT warmed up on 2,000 cells. There
is no squidpy counterpart; scimap's ``spatial_interaction`` (edge-label permutations, kNN-10,
15 types, 1000 permutations) takes 203 s at 1e5 cells on the same machine.
"""

from __future__ import annotations

from _harness import UNIFORM_CELLS, print_table, run_case

SETUP = """
from spatialpath.gr._interaction_test import interaction_test

warm = cells(2000, 1)
interaction_test(warm, "cell_type", method="{method}", patch_size={patch_size}, n_perms=20, progress=False)
adata = cells({n})
"""
RUN = (
    'interaction_test(adata, "cell_type", method="{method}", patch_size={patch_size}, n_perms=1000, '
    "progress=False)"
)

CASES = [
    (f"{method} 1e{len(str(n)) - 1} cells, 6-NN, 12 types, 1000 perms", method, patch_size, n)
    for n in (100_000, 1_000_000)
    for method, patch_size in (("classic", None), ("histocat", None), ("patch", 2))
]

if __name__ == "__main__":
    rows = []
    for name, method, patch_size, n in CASES:
        kw = {"method": method, "patch_size": patch_size, "n": n}
        rows.append((name, run_case(UNIFORM_CELLS + SETUP.format(**kw), RUN.format(**kw)), "-"))
    print_table(rows)
