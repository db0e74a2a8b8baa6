"""Size of the interaction test under the null: 500 simulated CSR tissues with random labels.

Each replicate is ``simulate_tissue(mode="null", seed=i)`` (uniform positions in the tissue, labels
drawn independently of position) with a scipy 6-NN graph; all replicates are images of one
AnnData, so one call tests them all (labels never leave their image). Under this null the labels
are exchangeable within an image, so a one-sided permutation p-value satisfies
``P(p <= alpha) <= alpha`` exactly; the discrete statistics make it conservative, never liberal.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.spatial import cKDTree

from spatialpath.datasets import simulate_tissue
from spatialpath.gr._interaction_test import interaction_test

N_REPLICATES = 500
N_CELLS = 250
K_NN = 6
N_PERMS = 199
ALPHA = 0.05

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def null_images() -> ad.AnnData:
    obs, graphs = [], []
    for i in range(N_REPLICATES):
        a = simulate_tissue(seed=i, n_cells=N_CELLS, mode="null", image_id=f"r{i}").adata
        xy = a.obsm["spatial"]
        _, nn = cKDTree(xy).query(xy, k=K_NN + 1)
        rows = np.repeat(np.arange(len(xy)), K_NN)
        graphs.append(
            sparse.csr_matrix((np.ones(rows.size), (rows, nn[:, 1:].ravel())), shape=(len(xy),) * 2)
        )
        obs.append(a.obs[["cell_type"]].assign(image_id=f"r{i}"))
    cells = pd.concat(obs)
    cells["image_id"] = cells["image_id"].astype("category")
    adata = ad.AnnData(obs=cells)
    adata.obsp["spatial_connectivities"] = sparse.block_diag(graphs, format="csr")
    return adata


def _sizes(res: pd.DataFrame, groups: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    out = {}
    for name, rows in groups.items():
        t = res[rows]
        out[name] = {
            "n_tests": len(t),
            "P(p_gt<=.05)": float((t["p_gt"] <= ALPHA).mean()),
            "P(p_lt<=.05)": float((t["p_lt"] <= ALPHA).mean()),
            "P(p<=.05)": float((t["p"] <= ALPHA).mean()),
            "P(p<=.025)": float((t["p"] <= ALPHA / 2).mean()),
            "P(sig, p<.01)": float(t["sig"].astype(bool).mean()),
        }
    return out


def test_size_under_the_null(null_images):
    n_types = null_images.obs["cell_type"].value_counts()
    per_image = null_images.obs.groupby("image_id", observed=True)["cell_type"].value_counts().unstack()
    print(f"\n{N_REPLICATES} null images x {N_CELLS} cells, {K_NN}-NN, {N_PERMS} permutations")
    print("cells per type per image (median [min, max]):")
    for t in n_types.index:
        c = per_image[t]
        print(f"  {t:12s} {int(c.median()):4d} [{int(c.min())}, {int(c.max())}]")

    results = {}
    for method, patch_size in (("classic", None), ("histocat", None), ("patch", 2)):
        kw = {"method": method, "patch_size": patch_size, "n_perms": N_PERMS, "seed": 1, "progress": False}
        res = interaction_test(null_images, "cell_type", copy=True, **kw)
        tested = res["ct"].notna().to_numpy()
        # expected classic count under the permutation null: K_NN * n_A * (n_B - [A = B]) / (n - 1)
        same = (res["from_label"] == res["to_label"]).to_numpy()
        expected = K_NN * res["n_from"].to_numpy() * (res["n_to"].to_numpy() - same) / (N_CELLS - 1)
        rare_type = tested & (np.minimum(res["n_from"], res["n_to"]).between(5, 20)).to_numpy()
        groups = {
            "expected >= 5": tested & (expected >= 5),
            "expected < 5": tested & (expected < 5),
            "a type with 5-20 cells": rare_type,
        }
        results[method] = sizes = _sizes(res, groups)
        for name, s in sizes.items():
            print(f"{method:8s} {name:24s} " + "  ".join(f"{k} {v:.4f}" if k != "n_tests" else f"{k} {v}"
                                                       for k, v in s.items()))  # fmt: skip

    classic = results["classic"]
    assert classic["expected >= 5"]["n_tests"] > 10_000
    assert classic["a type with 5-20 cells"]["n_tests"] > 5_000
    for side in ("P(p_gt<=.05)", "P(p_lt<=.05)"):
        assert 0.03 <= classic["expected >= 5"][side] <= 0.07
        for method in results:  # valid for every statistic: conservative, never anti-conservative
            for name in results[method]:
                assert results[method][name][side] <= 0.07, (method, name, side)
