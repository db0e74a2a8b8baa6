"""Benchmark Moran's I / Geary's C against squidpy: ``python benchmarks/bench_autocorr.py``.

Setup A of ``../shared/reference/statistics.md`` §13 (uniform cells on a √N·20 µm square, 1 cell
per 400 µm², a directed 6-NN graph built by squidpy outside the timing) with 50 float32 Gaussian
features in ``X``. Each case runs in a fresh process with ``NUMBA_NUM_THREADS=2``; JIT compilation
is excluded (the timed library is warmed up on 2,000 cells; only that library, since squidpy's
``parallelize`` sets numba to one thread and never restores it). Printed per case: wall seconds, CPU
seconds of the timed block (all threads; more stable than wall time when other jobs share the
cores), the peak RSS after the setup and its growth during the timed block. Both libraries row-
normalise W (``transformation=True``) and return the whole table (``copy=True``).

Budget: spatialpath Moran, 50 features, analytic only, at 10^6 cells ≤ 5 s and ≤ 4 GiB.

``--calibration`` instead measures, in this process, the false-positive rate of every p-value
under H0 (2,000 Gaussian features on 1,000 uniform cells, 6-NN graph, 199 permutations) for
spatialpath and squidpy, and the permutation variance of an autocorrelated and a noise feature at
5,000 cells against the exact randomisation variance: the numbers of
``docs/spatial-autocorrelation.md``.
"""

from __future__ import annotations

import os
import sys

os.environ["NUMBA_NUM_THREADS"] = "2"  # inherited by the child processes


from _harness import UNIFORM_CELLS, print_timed_table, timed

SETUP = (
    UNIFORM_CELLS
    + """
from spatialpath.gr._autocorr import spatial_autocorr


def with_features(a, seed=0):
    x = np.random.default_rng(seed).standard_normal((a.n_obs, 50), dtype=np.float32)
    var = pd.DataFrame(index=["f" + str(k) for k in range(50)])
    return ad.AnnData(x, obs=a.obs, var=var, obsm=dict(a.obsm), obsp=dict(a.obsp), uns=dict(a.uns))


warm = with_features(cells(2000, seed=1), seed=1)
__WARM__
adata = with_features(cells(__N__))
"""
)

_SQ_WARM = 'sq.gr.spatial_autocorr(warm, mode="{}", n_perms=5, n_jobs=1, copy=True, show_progress_bar=False)'
WARM = {
    "spatialpath": 'spatial_autocorr(warm, "moran", n_perms=5, progress=False, copy=True)\n'
    'spatial_autocorr(warm, "geary", n_perms=5, progress=False, copy=True)',
    "squidpy": _SQ_WARM.format("moran") + "\n" + _SQ_WARM.format("geary"),
    "graph": "pass",
}

CASES = [
    ("graph only (baseline)", "pass", "-"),
    ("spatialpath moran", 'spatial_autocorr(adata, "moran", copy=True)', "≤ 5 s, ≤ 4 GiB at 1e6"),
    ("squidpy moran", 'sq.gr.spatial_autocorr(adata, mode="moran", copy=True)', "-"),
    ("spatialpath geary", 'spatial_autocorr(adata, "geary", copy=True)', "-"),
    ("squidpy geary", 'sq.gr.spatial_autocorr(adata, mode="geary", copy=True)', "-"),
    (
        "spatialpath moran 100 perms",
        'spatial_autocorr(adata, "moran", n_perms=100, seed=0, progress=False, copy=True)',
        "-",
    ),
    (
        "squidpy moran 100 perms n_jobs=1",
        'sq.gr.spatial_autocorr(adata, mode="moran", n_perms=100, seed=0, n_jobs=1, copy=True, '
        "show_progress_bar=False)",
        "-",
    ),
]
SIZES = {"1e5": 100_000, "1e6": 1_000_000}
PERMS_MAX = 100_000  # the permutation cases run at 1e5 only


def main() -> None:
    print(f"load average at start: {os.getloadavg()}")
    rows, results = [], {}
    for label, n in SIZES.items():
        for name, run, budget in CASES:
            if "perms" in name and n > PERMS_MAX:
                continue
            r = timed(SETUP.replace("__N__", str(n)).replace("__WARM__", WARM[name.split()[0]]), run)
            results[name, label] = r
            rows.append((f"{name} {label}", r, budget))
            print(f"{name} {label}: {r}", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    print()
    print_timed_table(rows)
    print()
    for what, label in [
        ("moran", "1e5"), ("geary", "1e5"), ("moran", "1e6"), ("geary", "1e6"), ("moran 100 perms", "1e5"),
    ]:  # fmt: skip
        ours = results[f"spatialpath {what}", label]
        theirs = results[f"squidpy {what}" + (" n_jobs=1" if "perms" in what else ""), label]
        print(
            f"{what} {label}: squidpy / spatialpath = {theirs['seconds'] / ours['seconds']:.1f}x wall, "
            f"{theirs['cpu_seconds'] / ours['cpu_seconds']:.1f}x CPU"
        )


def calibration() -> None:
    """False-positive rates under H0 and permutation variances (in this process, not timed)."""
    import warnings

    import anndata as ad
    import numba
    import numpy as np
    import pandas as pd
    import squidpy as sq

    from spatialpath.gr import knn_graph
    from spatialpath.gr._autocorr import spatial_autocorr

    warnings.filterwarnings("ignore")

    def cells(x, xy):
        a = ad.AnnData(X=x, obs=pd.DataFrame(index=np.arange(len(xy)).astype(str)))
        a.var_names = ["f" + str(k) for k in range(x.shape[1])]
        a.obsm["spatial"] = xy
        knn_graph(a, n_neighbors=6)
        return a

    def squidpy(a, **kw):
        threads = numba.get_num_threads()
        try:
            return sq.gr.spatial_autocorr(a, copy=True, n_jobs=1, show_progress_bar=False, **kw)
        finally:
            numba.set_num_threads(threads)

    rng = np.random.default_rng(11)
    null = cells(rng.standard_normal((1000, 2000)), rng.uniform(0, 630, (1000, 2)))
    print("P(p <= 0.05) under H0: 2000 Gaussian features, 1000 cells, 6-NN, 199 permutations")
    print("| library | mode | p-value | rate |")
    print("|---|---|---|---|")
    for mode in ("moran", "geary"):
        ours = spatial_autocorr(null, mode, n_perms=199, seed=1, copy=True, progress=False)
        for col in ("pval_norm", "pval_rand", "pval_sim", "pval_z_sim"):
            print(f"| spatialpath (two-sided) | {mode} | {col} | {(ours[col] <= 0.05).mean():.4f} |")
        for alternative in ("greater", "less"):
            one = spatial_autocorr(null, mode, alternative=alternative, copy=True)
            rate = (one["pval_norm"] <= 0.05).mean()
            print(f"| spatialpath ({alternative}) | {mode} | pval_norm | {rate:.4f} |")
        theirs = squidpy(null, mode=mode, n_perms=199, seed=1)
        for col in ("pval_norm", "pval_sim", "pval_z_sim"):
            print(f"| squidpy (default) | {mode} | {col} | {(theirs[col] <= 0.05).mean():.4f} |")
        tailed = squidpy(null, mode=mode, two_tailed=True)
        print(
            f"| squidpy (two_tailed=True) | {mode} | pval_norm | {(tailed['pval_norm'] <= 0.05).mean():.4f} |"
        )
        ratio = (theirs["var_sim"] / ours["var_rand"]).median(), (ours["var_sim"] / ours["var_rand"]).median()
        print(f"| median var_sim / var_rand | {mode} | squidpy / ours | {ratio[0]:.2f} / {ratio[1]:.2f} |")

    xy = rng.uniform(0, np.sqrt(5000) * 20, (5000, 2))
    x = np.column_stack([xy[:, 0] / 200 + rng.normal(size=5000), rng.normal(size=5000)])
    a = cells(x, xy)
    ours = spatial_autocorr(a, n_perms=1000, seed=0, copy=True, progress=False).loc[["f0", "f1"]]
    theirs = squidpy(a, mode="moran", n_perms=1000, seed=0).loc[["f0", "f1"]]
    print()
    i0 = ours["I"].iloc[0]
    print(f"5000 cells, 6-NN, Moran, 1000 permutations: f0 autocorrelated (I = {i0:.3f}), f1 noise")
    print("| feature | var_rand (exact) | var_norm | spatialpath var_sim | squidpy var_sim |")
    print("|---|---|---|---|---|")
    for f in ("f0", "f1"):
        print(
            f"| {f} | {ours.loc[f, 'var_rand']:.3g} | {ours.loc[f, 'var_norm']:.3g} | "
            f"{ours.loc[f, 'var_sim']:.3g} | {theirs.loc[f, 'var_sim']:.3g} |"
        )


if __name__ == "__main__":
    calibration() if "--calibration" in sys.argv else main()
