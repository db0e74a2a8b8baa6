"""napari with many cells: add 10^6 points, then recolour them by cell type (show=False).

Run under Xvfb::

    QT_QPA_PLATFORM=xcb xvfb-run -a .venv/bin/python benchmarks/bench_napari.py [n_cells]

Targets (issue 9): adding 10^6 points ≤ 5 s, recolouring by type ≤ 2 s. The fast path: face colours
as one ``(n, 4)`` float32 array indexed from the category codes (no per-point colour strings,
no napari colour cycle), no border, features set once.
"""

from __future__ import annotations

import resource
import sys
import time

import anndata as ad
import numpy as np
import pandas as pd


def make_cells(n: int, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    types = ["tumour", "T_cell", "B_cell", "macrophage", "stroma", "endothelial", "NK", "other"]
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(rng.choice(types, n), categories=types),
            "cn": pd.Categorical(rng.choice([f"CN{i}" for i in range(10)], n)),
        },
        index=pd.RangeIndex(n).astype(str),
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = rng.uniform(0, 20_000, (n, 2))
    return adata


def main(n: int = 1_000_000) -> dict[str, float]:
    import napari

    from spatialpath.napari._cell_types import apply_to_layer
    from spatialpath.napari._colors import point_colors
    from spatialpath.napari._layers import cells_layer

    adata = make_cells(n)
    viewer = napari.Viewer(show=False)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    t0 = time.perf_counter()
    data, kw, _ = cells_layer(adata)
    layer = viewer.add_points(data, **kw)
    t_add = time.perf_counter() - t0
    t0 = time.perf_counter()
    face, _ = point_colors(adata, "cn")
    layer.face_color = face  # the plain napari setter
    t_setter = time.perf_counter() - t0
    t0 = time.perf_counter()
    apply_to_layer(layer, "cell_type")  # what the cell-types widget does (one redraw)
    t_recolour = time.perf_counter() - t0
    np.testing.assert_allclose(layer.face_color, point_colors(adata, "cell_type")[0])
    layer.face_color = face
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # MiB (Linux: KiB)
    assert len(layer.data) == n
    np.testing.assert_allclose(layer.face_color, face)
    viewer.close()
    out = {"n_points": n, "add_s": t_add, "recolour_s": t_recolour, "setter_s": t_setter}
    out["peak_rss_mib"] = peak
    print(
        f"{n:,} points: add {t_add:.2f} s (target ≤ 5), recolour by type {t_recolour:.2f} s (target ≤ 2; "
        f"plain face_color setter {t_setter:.2f} s), "
        f"peak RSS {peak:.0f} MiB (viewer alone {rss0:.0f} MiB)"
    )
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
