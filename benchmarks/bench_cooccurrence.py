"""Benchmark co-occurrence against squidpy: ``python benchmarks/bench_cooccurrence.py``.

Data: uniform cells on a square at 1 cell / 400 µm² (a √N · 20 µm side), 12 types drawn
uniformly (statistics.md §13, setup A). Intervals: ``np.linspace(10, 250, 50)`` µm, and squidpy's
data-dependent default (``interval=50``: from the smallest gap to half the diagonal), passed to
spatialpath as the same float32 array. With the default, spatialpath visits almost every pair
(the largest threshold spans half the tissue), so its advantage shrinks to the constant factor.

Each case runs in a fresh process (``_harness.run_case``) with ``NUMBA_NUM_THREADS=2``; the
setup part builds the data and warms the JIT up on 2,000 cells, so compilation is not timed on
either side. Budgets: spatialpath at 10^6 cells ≤ 30 s and ≤ 4 GiB; ≥ 50× squidpy at 3·10^4 cells
on the 10–250 µm interval.
"""

from __future__ import annotations

import os

from _harness import run_case

os.environ["NUMBA_NUM_THREADS"] = "2"  # inherited by every child process

MAKE = """
import warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd, anndata as ad

def make(n, seed=0, n_images=1):
    rng = np.random.default_rng(seed)
    side = np.sqrt(n / n_images * 400.0)
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(rng.integers(0, 12, n).astype(str)),
            "image_id": pd.Categorical(np.repeat(np.arange(n_images).astype(str), n // n_images)),
        },
        index=np.arange(n).astype(str),
    )
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = rng.random((n, 2)) * side
    return a

def squidpy_default_interval(a):
    from squidpy.gr._ppatterns import _find_min_max
    lo, hi = _find_min_max(a.obsm["spatial"].astype(np.float32))
    return np.linspace(lo, hi, num=50, dtype=np.float32)

SMALL = np.linspace(10, 250, 50).astype(np.float32)
"""

OURS = """
from spatialpath.gr._cooccurrence import co_occurrence
co_occurrence(make(2000), "cell_type", interval=SMALL, copy=True)
adata = make({n}, n_images={n_images})
interval = {interval}
"""

SQUIDPY = """
import squidpy as sq
sq.gr.co_occurrence(make(2000), "cell_type", interval=SMALL, copy=True)
adata = make({n})
interval = {interval}
"""

RUN_OURS = 'co_occurrence(adata, "cell_type", interval=interval, copy=True)'
RUN_SQUIDPY = 'sq.gr.co_occurrence(adata, "cell_type", interval=interval, copy=True)'


def ours(n: int, interval: str = "SMALL", n_images: int = 1) -> dict[str, float]:
    """Time spatialpath on ``n`` cells."""
    return run_case(MAKE + OURS.format(n=n, interval=interval, n_images=n_images), RUN_OURS)


def squidpy(n: int, interval: str = "SMALL") -> dict[str, float]:
    """Time squidpy 1.8.2 on ``n`` cells (the same data as :func:`ours`)."""
    return run_case(MAKE + SQUIDPY.format(n=n, interval=interval), RUN_SQUIDPY)


def main() -> None:
    """Run every case and print a Markdown table."""
    rows = []
    for label, interval in (("10-250 µm", "SMALL"), ("squidpy default", "squidpy_default_interval(adata)")):
        sp, sq = ours(30_000, interval), squidpy(30_000, interval)
        ratio = f"{sq['seconds'] / sp['seconds']:.0f}x"
        budget = "≥ 50x" if interval == "SMALL" else "-"
        rows += [
            (f"spatialpath 3e4 cells, {label}", sp, ratio, budget),
            (f"squidpy 1.8.2 3e4 cells, {label}", sq, "1x", "-"),
        ]
    rows.append(("spatialpath 1e5 cells, 10-250 µm", ours(100_000), "-", "-"))
    rows.append(("spatialpath 1e6 cells, 10-250 µm", ours(1_000_000), "-", "≤ 30 s, ≤ 4 GiB"))
    rows.append(("spatialpath 1e6 cells in 100 images, 10-250 µm", ours(1_000_000, n_images=100), "-", "-"))
    print("| case | seconds | peak RSS (GiB) | speed-up vs squidpy | budget |")
    print("|---|---|---|---|---|")
    for name, r, ratio, budget in rows:
        print(f"| {name} | {r['seconds']:.2f} | {r['peak_gib']:.2f} | {ratio} | {budget} |")


if __name__ == "__main__":
    main()
