"""The progress/cancellation hook of the permutation loops (spatialpath.gr._progress)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from spatialpath import gr
from spatialpath.gr._progress import Cancelled, progress_hook


def test_hook_sees_every_batch_and_cancels_only_its_own_thread(tissue_small):
    adata = tissue_small.adata.copy()
    gr.knn_graph(adata, 6)
    seen = []
    with progress_hook(lambda done, total, desc: seen.append((done, total))):
        ref = gr.nhood_enrichment(adata, "cell_type", n_perms=300, seed=3, progress=False, copy=True)
    assert seen[0] == (0, 300)
    assert seen[-1] == (300, 300)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    other = {}

    def run_elsewhere():  # another thread runs without the hook while this one is cancelled
        other["z"] = gr.nhood_enrichment(adata, "cell_type", n_perms=300, seed=3, progress=False, copy=True)

    with progress_hook(lambda done, total, desc: done > 0):
        thread = threading.Thread(target=run_elsewhere)
        thread.start()
        with pytest.raises(Cancelled, match=r"cancelled after \d+ of 300"):
            gr.nhood_enrichment(adata, "cell_type", n_perms=300, seed=3, progress=False, copy=True)
        thread.join()
    np.testing.assert_array_equal(other["z"].zscore, ref.zscore)  # untouched, and the same result
