"""The "Neighbourhood statistics" widget: pure run/highlight functions and the Qt widget on a viewer."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from spatialpath.datasets import simulate_tissue
from spatialpath.gr import co_occurrence, knn_graph, nhood_enrichment
from spatialpath.model import DataModelError
from spatialpath.napari import _nhood as nh

napari = pytest.importorskip("napari")

N_PERMS = 30  # few permutations: the tests compare runs with the same seed, not p-values


@pytest.fixture(scope="module")
def two_images():
    """Two simulated tissues as images core_A and core_B of one AnnData (rows interleaved)."""
    parts = []
    for seed, image in ((0, "core_A"), (1, "core_B")):
        a = simulate_tissue(seed=seed, n_cells=1500).adata
        a.obs["image_id"] = pd.Categorical([image] * a.n_obs)
        a.obs_names = [f"{image}_{i}" for i in range(a.n_obs)]
        parts.append(a)
    adata = ad.concat(parts, uns_merge="first", merge="same")
    order = np.random.default_rng(0).permutation(adata.n_obs)
    return adata[order].copy()


def _image(adata, image):
    sub = adata[adata.obs["image_id"] == image].copy()
    sub.obs["cell_type"] = sub.obs["cell_type"].cat.remove_unused_categories()
    return sub


def _brute_force_pair(adata, graph, cluster_key, a, b):
    """Reference for cells_behind_pair: a loop over the stored edges."""
    labels = adata.obs[cluster_key].astype(str).to_numpy()
    coo = graph.tocoo()
    out = set()
    for i, j in zip(coo.row.tolist(), coo.col.tolist(), strict=True):
        if {labels[i], labels[j]} == {a, b} and (labels[i], labels[j]) in ((a, b), (b, a)):
            out.update((i, j))
    return sorted(out)


def _add_cells(viewer, adata, **kw):
    from spatialpath.napari._layers import cells_layer

    data, kwargs, _ = cells_layer(adata, **kw)
    return viewer.add_points(data, **kwargs)


# -- pure functions ------------------------------------------------------------------------------------------
def test_enrichment_equals_a_direct_run_on_the_same_image(two_images):
    run = nh.run_statistic(
        two_images, "nhood_enrichment", "cell_type", "core_B", {"n_perms": N_PERMS}, seed=7
    )
    ref = _image(two_images, "core_B")
    knn_graph(ref, n_neighbors=6)
    direct = nhood_enrichment(ref, "cell_type", n_perms=N_PERMS, seed=7, progress=False, copy=True)
    assert run.categories == list(direct.categories)
    np.testing.assert_array_equal(run.result.count, direct.count)
    np.testing.assert_array_equal(run.matrix(), direct.zscore)
    np.testing.assert_array_equal(two_images.obs["image_id"].iloc[run.rows], "core_B")
    # reproducible with the seed, different with another
    again = nh.run_statistic(
        two_images, "nhood_enrichment", "cell_type", "core_B", {"n_perms": N_PERMS}, seed=7
    )
    np.testing.assert_array_equal(again.matrix(), run.matrix())
    other = nh.run_statistic(
        two_images, "nhood_enrichment", "cell_type", "core_B", {"n_perms": N_PERMS}, seed=8
    )
    assert not np.array_equal(other.matrix(), run.matrix(), equal_nan=True)
    # the planted CD8 exclusion from tumour nests: strongly negative z
    cats = run.categories
    assert run.matrix()[cats.index("CD8 T"), cats.index("Tumour")] < -5


def test_enrichment_counts_equal_squidpy(two_images):
    sq = pytest.importorskip("squidpy")
    run = nh.run_statistic(two_images, "nhood_enrichment", "cell_type", "core_A", {"analytical": True})
    ref = _image(two_images, "core_A")
    sq.gr.spatial_neighbors(ref, coord_type="generic", n_neighs=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, count = sq.gr.nhood_enrichment(
            ref, "cell_type", n_perms=2, seed=0, copy=True, show_progress_bar=False
        )
    np.testing.assert_array_equal(run.result.count, count)


@pytest.mark.parametrize(("graph", "pairs"), [("knn", [("Tumour", "CD8 T"), ("Macrophage", "Macrophage")]),
                                              ("radius", [("B cell", "CD4 T")])])  # fmt: skip
def test_cells_behind_pair_equal_a_loop_over_the_edges(two_images, graph, pairs):
    run = nh.run_statistic(
        two_images, "nhood_enrichment", "cell_type", "core_A", {"analytical": True, "graph": graph}
    )
    g = run.cells.obsp["spatial_connectivities"]
    for a, b in pairs:
        got = nh.cells_behind_pair(run.cells, "cell_type", a, b)
        assert got.tolist() == _brute_force_pair(run.cells, g, "cell_type", a, b)
        assert len(got) > 0
        rows = nh.highlight_rows(run, a, b)
        assert two_images.obs_names[rows].tolist() == run.cells.obs_names[got].tolist()


def test_co_occurrence_heatmap_and_pairs(two_images):
    run = nh.run_statistic(
        two_images, "co_occurrence", "cell_type", "core_A", {"distance_um": 40.0, "n_distances": 10}
    )
    ref = _image(two_images, "core_A")
    occ, interval = co_occurrence(ref, "cell_type", interval=np.linspace(10, 250, 10), copy=True)
    r = int(np.argmin(np.abs(interval[1:] - 40.0)))
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(run.matrix(), np.log2(occ[:, :, r].T))
    # the highlight graph joins cells within the heatmap's distance
    d = run.cells.obsp["spatial_distances"]
    assert d.nnz
    assert d.data.max() <= 40.0
    assert nh.pair_at(run, 2.4, 0.6) == (run.categories[1], run.categories[2])
    assert nh.pair_at(run, -0.6, 0.0) is None
    assert nh.pair_at(run, None, 1.0) is None


def test_cross_l_pairs_and_clicks(two_images):
    params = {"a": "CD8 T", "b": "Tumour", "n_perms": 39, "r_max_um": 60.0}
    run = nh.run_statistic(two_images, "cross_L", "cell_type", "core_A", params, seed=3)
    assert run.pairs == [("CD8 T", "Tumour")]
    curve = run.result.curve("CD8 T", "Tumour")
    assert curve["observed"].iloc[-1] < curve["theoretical"].iloc[-1]  # CD8 T cells avoid tumour nests
    assert nh.pair_at(run, 30.0, 0.0) == ("CD8 T", "Tumour")
    again = nh.run_statistic(two_images, "cross_L", "cell_type", "core_A", params, seed=3)
    np.testing.assert_array_equal(again.result.summary()["global_p"], run.result.summary()["global_p"])


def test_progress_and_cancel_between_permutation_batches(two_images):
    seen = []
    nh.run_statistic(two_images, "nhood_enrichment", "cell_type", "core_A", {"n_perms": 300}, seed=0,
                     callback=lambda done, total, desc: seen.append((done, total)))  # fmt: skip
    perms = [d for d, t in seen if t == 300]
    assert perms[0] == 0
    assert perms[-1] == 300
    assert perms == sorted(perms)
    assert len(perms) >= 3
    stopped = []

    def stop_after_first_batch(done, total, desc):
        stopped.append(done)
        return total == 300 and done > 0

    with pytest.raises(nh.Cancelled, match=r"cancelled after \d+ of 300"):
        nh.run_statistic(two_images, "nhood_enrichment", "cell_type", "core_A", {"n_perms": 300},
                         callback=stop_after_first_batch)  # fmt: skip
    assert 0 < stopped[-1] < 300
    # the hook lives in spatialpath.gr._progress: the loops keep the real tqdm
    from tqdm.auto import tqdm

    import spatialpath.gr._permutation as perm

    assert isinstance(perm.tqdm(total=1, disable=True), tqdm)


def test_errors_name_the_problem(two_images):
    a = two_images.copy()
    a.obs["grade"] = np.where(np.arange(a.n_obs) % 2, "hi", "lo")
    with pytest.raises(DataModelError, match=r"obs\['grade'\] must be categorical"):
        nh.run_statistic(a, "nhood_enrichment", "grade", "core_A")
    a.obs["one"] = pd.Categorical(
        np.where(a.obs["image_id"] == "core_A", "x", a.obs["cell_type"].astype(str))
    )
    with pytest.raises(DataModelError, match=r"image 'core_A' has 1 cell type.*needs at least 2"):
        nh.run_statistic(a, "nhood_enrichment", "one", "core_A")
    with pytest.raises(DataModelError, match=r"no cell has obs.*'core_Z'"):
        nh.run_statistic(a, "nhood_enrichment", "cell_type", "core_Z")
    with pytest.raises(DataModelError, match=r"holds 2 images.*choose one"):
        nh.run_statistic(a, "nhood_enrichment", "cell_type")
    with pytest.raises(ValueError, match="statistic must be one of"):
        nh.run_statistic(a, "ripley", "cell_type", "core_A")
    with pytest.raises(ValueError, match=r"unknown params \['n_perm'\]"):
        nh.run_statistic(a, "nhood_enrichment", "cell_type", "core_A", {"n_perm": 5})
    with pytest.raises(DataModelError, match=r"run spatialpath\.gr\.spatial_graph first"):
        nh.cells_behind_pair(a, "cell_type", "Tumour", "CD8 T")
    with pytest.raises(DataModelError, match="b='NK' is not a category"):
        nh.cells_behind_pair(a, "cell_type", "Tumour", "NK")


# -- the widget --------------------------------------------------------------------------------------------
def _run_and_wait(qtbot, widget):
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    return worker


def test_widget_runs_enrichment_on_the_chosen_image_and_highlights_a_pair(
    make_napari_viewer, qtbot, two_images
):
    from matplotlib.backend_bases import MouseEvent

    from spatialpath.napari._qt._nhood import NhoodWidget

    viewer = make_napari_viewer(show=False)
    layer = _add_cells(viewer, two_images)
    widget = NhoodWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.layer is layer
    assert widget.cluster_key.currentText() == "cell_type"
    assert [widget.image.itemText(i) for i in range(widget.image.count())] == ["core_A", "core_B"]
    widget.image.setCurrentText("core_B")
    widget.set_statistic("nhood_enrichment")
    widget.n_perms.setValue(N_PERMS)
    widget.seed.setValue(7)
    _run_and_wait(qtbot, widget)
    run = widget.run_result
    assert run is not None
    assert run.image_id == "core_B"
    assert run.seed == 7
    ref = _image(two_images, "core_B")
    knn_graph(ref, n_neighbors=6)
    direct = nhood_enrichment(ref, "cell_type", n_perms=N_PERMS, seed=7, progress=False, copy=True)
    np.testing.assert_array_equal(run.matrix(), direct.zscore)
    ax = widget.figure.axes[0]
    assert ax.images
    assert "core_B" in ax.get_title()
    assert widget.canvas.parent() is widget
    assert "click a pair" in widget.status.text()

    # click the heatmap cell (row CD8 T, column Tumour) on the docked canvas
    cats = run.categories
    i, j = cats.index("CD8 T"), cats.index("Tumour")
    widget.canvas.draw()
    x, y = ax.transData.transform((j, i))
    widget.canvas.callbacks.process(
        "button_press_event", MouseEvent("button_press_event", widget.canvas, x, y, 1)
    )
    assert widget.pair == ("CD8 T", "Tumour")
    g = run.cells.obsp["spatial_connectivities"]
    expected = run.rows[_brute_force_pair(run.cells, g, "cell_type", "CD8 T", "Tumour")]
    assert layer.selected_data == set(expected.tolist())
    assert len(expected) > 0
    assert set(two_images.obs["image_id"].iloc[expected]) == {"core_B"}
    assert viewer.layers.selection.active is layer


def test_widget_cancel_returns_no_result_and_viewer_stays_usable(make_napari_viewer, qtbot, two_images):
    from spatialpath.napari._qt._nhood import NhoodWidget

    viewer = make_napari_viewer(show=False)
    _add_cells(viewer, two_images)
    widget = NhoodWidget(viewer)
    widget.image.setCurrentText("core_A")
    widget.n_perms.setValue(100_000)  # minutes of work if not cancelled
    worker = widget.run()
    assert widget.cancel_button.isEnabled()
    assert not widget.run_button.isEnabled()
    qtbot.waitUntil(lambda: widget._pbar is not None and widget._pbar.n > 0, timeout=60_000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert worker.abort_requested
    assert widget.run_result is None
    assert widget.figure.axes == []
    assert widget.status.text() == "cancelled: no result"
    assert widget.run_button.isEnabled()
    # the viewer and the widget still work: a short run succeeds
    widget.n_perms.setValue(N_PERMS)
    widget.set_statistic("co_occurrence")
    _run_and_wait(qtbot, widget)
    assert widget.run_result is not None
    assert widget.run_result.statistic == "co_occurrence"
    assert widget.figure.axes
    assert widget.figure.axes[0].images


def test_widget_cross_l_curve_click(make_napari_viewer, qtbot, two_images):
    from matplotlib.backend_bases import MouseEvent

    from spatialpath.napari._qt._nhood import NhoodWidget

    viewer = make_napari_viewer(show=False)
    layer = _add_cells(viewer, two_images)
    widget = NhoodWidget(viewer)
    widget.image.setCurrentText("core_A")
    widget.set_statistic("cross_L")
    widget.type_a.setCurrentText("CD8 T")
    widget.type_b.setCurrentText("Tumour")
    widget.n_perms.setValue(39)
    widget.r_max_um.setValue(60.0)
    widget.seed.setValue(3)
    _run_and_wait(qtbot, widget)
    run = widget.run_result
    assert run.pairs == [("CD8 T", "Tumour")]
    assert run.params["r_max_um"] == 60.0
    ax = widget.figure.axes[0]
    assert len(ax.lines) == 2
    assert ax.collections
    widget.canvas.draw()
    x, y = ax.transData.transform((30.0, 0.0))
    widget.canvas.callbacks.process(
        "button_press_event", MouseEvent("button_press_event", widget.canvas, x, y, 1)
    )
    assert widget.pair == ("CD8 T", "Tumour")
    assert layer.selected_data == set(nh.highlight_rows(run, "CD8 T", "Tumour").tolist())


def test_widget_error_messages(make_napari_viewer, qtbot, two_images):
    from spatialpath.napari._qt._nhood import NhoodWidget

    viewer = make_napari_viewer(show=False)
    widget = NhoodWidget(viewer)
    assert widget.run() is None
    assert "no cells layer" in widget.status.text()
    a = two_images.copy()
    a.obs["grade"] = np.where(np.arange(a.n_obs) % 2, "hi", "lo")
    a.obs["one"] = pd.Categorical(
        np.where(a.obs["image_id"] == "core_A", "x", a.obs["cell_type"].astype(str))
    )
    _add_cells(viewer, a)
    widget.image.setCurrentText("core_A")
    widget.cluster_key.setCurrentText("grade")
    assert widget.run() is None
    assert "must be categorical" in widget.status.text()
    widget.cluster_key.setCurrentText("one")
    assert widget.run() is None
    assert "needs at least 2" in widget.status.text()
    assert widget.worker is None
    assert widget.run_result is None


@pytest.mark.realdata
def test_widget_on_a_codex_core(make_napari_viewer, qtbot, shared):
    """A real CODEX core (Schürch et al. 2020), 1,500 cells subsampled, no colours stored."""
    from spatialpath.napari._qt._nhood import NhoodWidget

    cells = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"),
                        usecols=["imageID", "cellType", "x", "y"])  # fmt: skip
    core = cells[cells["imageID"] == cells["imageID"].iloc[0]]
    core = core.sample(n=min(1500, len(core)), random_state=0)
    obs = pd.DataFrame({"image_id": core["imageID"].astype(str), "cell_type": core["cellType"].astype(str)})
    obs.index = [f"c{i}" for i in range(len(obs))]
    obs = obs.astype("category")
    adata = ad.AnnData(obs=obs, obsm={"spatial": core[["x", "y"]].to_numpy(float) * 0.377})  # pixels -> µm
    viewer = make_napari_viewer(show=False)
    layer = _add_cells(viewer, adata)
    widget = NhoodWidget(viewer)
    widget.n_perms.setValue(N_PERMS)
    widget.seed.setValue(1)
    _run_and_wait(qtbot, widget)
    run = widget.run_result
    ref = _image(adata, str(adata.obs["image_id"].iloc[0]))
    knn_graph(ref, n_neighbors=6)
    direct = nhood_enrichment(ref, "cell_type", n_perms=N_PERMS, seed=1, progress=False, copy=True)
    np.testing.assert_array_equal(run.matrix(), direct.zscore)
    a, b = run.categories[0], run.categories[1]
    rows = widget.highlight(a, b)
    assert layer.selected_data == set(rows.tolist())
    assert set(adata.obs["cell_type"].iloc[rows].astype(str)) <= {a, b}
