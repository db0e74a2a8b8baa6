"""spatialpath.gr.co_occurrence: squidpy parity (simulated and real data), brute force, null, errors."""

from __future__ import annotations

import warnings

import anndata as ad
import numba
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from spatialpath.datasets import simulate_tissue
from spatialpath.gr._cooccurrence import _pair_counts, co_occurrence
from spatialpath.gr._utils import Groups
from spatialpath.keys import Key
from spatialpath.model import DataModelError

#: CODEX 20x pixel size, per Schürch et al. 2020 (the data's SOURCE.md asks to verify).
CODEX_PIXEL_SIZE_UM = 0.377
SMALL_INTERVAL = np.linspace(10, 250, 50).astype(np.float32)


def _squidpy(
    adata: ad.AnnData, cluster_key: str, interval: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray]:
    """squidpy 1.8.2's co_occurrence (the reference), warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import squidpy as sq

        return sq.gr.co_occurrence(adata, cluster_key, interval=interval, copy=True)


def _assert_matches_squidpy(adata: ad.AnnData, cluster_key: str) -> None:
    """Equal to squidpy with a 10-250 µm interval and with squidpy's own default interval."""
    sq_default_occ, sq_default_interval = _squidpy(adata, cluster_key, 50)
    for interval, expected in (
        (SMALL_INTERVAL, _squidpy(adata, cluster_key, SMALL_INTERVAL)[0]),
        (sq_default_interval, sq_default_occ),
    ):
        occ, out_interval = co_occurrence(adata, cluster_key, interval=interval, library_key=None, copy=True)
        assert occ.shape == expected.shape
        assert out_interval.dtype == np.float32
        np.testing.assert_array_equal(out_interval, interval)
        np.testing.assert_allclose(occ, expected, rtol=0, atol=1e-6)


def _adata(xy: np.ndarray, types: list[str] | np.ndarray, categories: list[str], **obs: object) -> ad.AnnData:
    frame = pd.DataFrame({"cell_type": pd.Categorical(types, categories=categories), **obs})
    frame.index = frame.index.astype(str)
    a = ad.AnnData(obs=frame)
    a.obsm["spatial"] = np.asarray(xy, dtype=np.float64)
    return a


def _brute_counts(xy: np.ndarray, codes: np.ndarray, k: int, thresholds: np.ndarray) -> np.ndarray:
    """C[a, b, r]: ordered pairs i != j of types (a, b) with d <= t_r, by scipy's cdist.

    Coordinates are rounded to float32 first, as squidpy (and spatialpath) do: at 5e4 µm the
    rounding (4 nm) moves pairs across a 5 µm threshold.
    """
    xy = np.asarray(xy, dtype=np.float32).astype(np.float64)
    d = cdist(xy, xy)
    np.fill_diagonal(d, np.inf)
    onehot = np.eye(k)[codes]
    return np.stack([onehot.T @ (d <= t) @ onehot for t in thresholds], axis=2)


def _brute_occ(counts: np.ndarray) -> np.ndarray:
    """The statistics.md §4 formula, loop by loop."""
    k, _, n_r = counts.shape
    occ = np.zeros(counts.shape)
    for r in range(n_r):
        row = counts[:, :, r].sum(axis=0)
        total = row.sum()
        for i in range(k):
            for c in range(k):
                if total > 0 and row[i] > 0 and row[c] > 0:
                    occ[i, c, r] = (counts[c, i, r] / row[c]) / (row[i] / total)
    return occ


# --------------------------------------------------------------------------------------------
# parity with squidpy
# --------------------------------------------------------------------------------------------


def test_matches_squidpy_simulated(tissue_small):
    _assert_matches_squidpy(tissue_small.adata, "cell_type")


@pytest.fixture(scope="module")
def codex_region(shared):
    cells = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))
    cells = cells[cells["imageID"] == "reg033_B"]  # 3,467 cells
    xy = cells[["x", "y"]].to_numpy(dtype=float) * CODEX_PIXEL_SIZE_UM
    types = cells["cellType"].astype("category").cat.remove_unused_categories()
    return _adata(xy, types.to_numpy(), list(types.cat.categories))


@pytest.fixture(scope="module")
def imc_image(shared):
    cells = pd.read_csv(shared("spicyR_damond_t1d_imc", "diabetesData_cells.csv.gz"))
    cells = cells[cells["imageID"] == "E29"]  # 3,083 cells, integer µm: many exact ties
    types = cells["cellType"].astype("category").cat.remove_unused_categories()
    return _adata(cells[["x", "y"]].to_numpy(dtype=float), types.to_numpy(), list(types.cat.categories))


@pytest.mark.realdata
def test_matches_squidpy_codex(codex_region):
    _assert_matches_squidpy(codex_region, "cell_type")


@pytest.mark.realdata
def test_matches_squidpy_imc(imc_image):
    _assert_matches_squidpy(imc_image, "cell_type")
    # integer coordinates and integer thresholds: pairs exactly on a threshold (3-4-5) count
    interval = np.arange(0, 101, 5).astype(np.float32)
    occ, _ = co_occurrence(imc_image, "cell_type", interval=interval, library_key=None, copy=True)
    np.testing.assert_allclose(occ, _squidpy(imc_image, "cell_type", interval)[0], rtol=0, atol=1e-6)


def test_pair_counts_equal_squidpy_on_near_ties():
    """Thresholds at pair distances (and one float32 step either side): every count is squidpy's.

    squidpy computes d² = dx·dx + dy·dy in float32 under fast-math (a fused multiply-add where the
    CPU has one); a different rounding moves pairs across these thresholds.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from squidpy.gr._ppatterns import _occur_count

    rng = np.random.default_rng(1)
    n = 1200
    xy = (rng.random((n, 2)) * 300 + 5000.123).astype(np.float32)
    lab = rng.integers(0, 3, n).astype(np.int32)
    i, j = rng.integers(0, n, (2, 300))
    d = np.float32(np.sqrt(((xy[i].astype(np.float64) - xy[j]) ** 2).sum(axis=1)))
    d = d[(d > 0) & (d < 200)]
    t = np.unique(np.concatenate([d, np.nextafter(d, np.float32(0)), np.nextafter(d, np.float32(1e9))]))
    thr2 = t * t
    expected = _occur_count(xy[:, 0].copy(), xy[:, 1].copy(), thr2, lab, n, 3, thr2.size)
    one_image = Groups(
        names=["all"], codes=np.zeros(n, np.int32), order=np.arange(n), offsets=np.array([0, n])
    )
    np.testing.assert_array_equal(_pair_counts(xy, lab.astype(np.int8), one_image, thr2, 3)[0], expected)


def test_squidpy_plots_the_result(tissue_small):
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import squidpy as sq

    a = tissue_small.adata.copy()
    co_occurrence(a, "cell_type")
    sq.pl.co_occurrence(a, cluster_key="cell_type", clusters="Tumour")
    plt.close("all")


# --------------------------------------------------------------------------------------------
# brute force: images, grid, ties at zero distance
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_images():
    """Three images over the same 400 µm square (cross-image pairs would count); 'M' absent from c."""
    rng = np.random.default_rng(5)
    sizes = {"a": 300, "b": 200, "c": 150}
    xy = rng.random((sum(sizes.values()), 2)) * 400
    xy[10:15] = xy[5]  # coincident cells: distance 0, counted at every threshold
    image = np.repeat(list(sizes), list(sizes.values()))
    types = rng.choice(["T", "B", "M"], size=len(image))
    types[image == "c"] = rng.choice(["T", "B"], size=sizes["c"])
    return _adata(xy, types, ["T", "B", "M"], image_id=image)


def test_multi_image_equals_brute_force(three_images):
    a = three_images.copy()
    interval = np.array([0, 20, 50, 100, 150], dtype=np.float32)
    co_occurrence(a, "cell_type", interval=interval)  # library_key: image_id by default
    res = a.uns[Key.uns.co_occurrence("cell_type")]
    assert list(res["image_ids"]) == ["a", "b", "c"]
    xy, codes = a.obsm["spatial"], a.obs["cell_type"].cat.codes.to_numpy()
    thresholds = interval[1:].astype(np.float64)
    per_image = []
    for g, name in enumerate(["a", "b", "c"]):
        rows = (a.obs["image_id"] == name).to_numpy()
        counts = _brute_counts(xy[rows], codes[rows], 3, thresholds)
        per_image.append(counts)
        np.testing.assert_allclose(res["occ_per_image"][g], _brute_occ(counts), rtol=1e-12, atol=0)
    # pooled occ: from the pair counts summed over images, never from cross-image pairs
    np.testing.assert_allclose(res["occ"], _brute_occ(sum(per_image)), rtol=1e-12, atol=0)
    # the type absent from image c gets 0 there
    assert (res["occ_per_image"][2][2] == 0).all()
    assert (res["occ_per_image"][2][:, 2] == 0).all()
    # another column name, and no column at all (one image: cross pairs count)
    a.obs["roi"] = a.obs.pop("image_id")
    occ_roi, _ = co_occurrence(a, "cell_type", interval=interval, library_key="roi", copy=True)
    np.testing.assert_array_equal(occ_roi, res["occ"])
    occ_all, _ = co_occurrence(a, "cell_type", interval=interval, copy=True)
    np.testing.assert_allclose(
        occ_all, _brute_occ(_brute_counts(xy, codes, 3, thresholds)), rtol=1e-12, atol=0
    )
    assert not np.allclose(occ_all, res["occ"])


def test_many_images_equal_each_image_alone():
    """40 images of 20-400 cells share parallel tasks; each image's occ is its own computation."""
    rng = np.random.default_rng(8)
    sizes = rng.integers(20, 400, 40)
    image = np.repeat([f"img{g:02d}" for g in range(40)], sizes)
    a = _adata(rng.random((sizes.sum(), 2)) * 300, rng.choice(["T", "B", "M"], sizes.sum()), ["T", "B", "M"])
    a.obs["image_id"] = image
    co_occurrence(a, "cell_type")
    res = a.uns["cell_type_co_occurrence"]
    for g in (0, 17, 39):
        alone = a[a.obs["image_id"] == f"img{g:02d}"].copy()
        np.testing.assert_array_equal(
            res["occ_per_image"][g], co_occurrence(alone, "cell_type", copy=True)[0]
        )


def test_small_thresholds_on_a_wide_image_equal_brute_force():
    """t_max far below the image size (the grid coarsens to bound its memory) and a dense blob."""
    rng = np.random.default_rng(2)
    xy = np.concatenate([rng.random((150, 2)) * 1e5, 5e4 + rng.random((150, 2)) * 50])
    types = rng.choice(["x", "y", "z"], size=300)
    a = _adata(xy, types, ["x", "y", "z"])
    interval = np.array([0, 1, 5, 20, 2000], dtype=np.float32)
    occ, _ = co_occurrence(a, "cell_type", interval=interval, copy=True)
    expected = _brute_occ(
        _brute_counts(xy, a.obs["cell_type"].cat.codes.to_numpy(), 3, interval[1:].astype(float))
    )
    np.testing.assert_allclose(occ, expected, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------
# null, determinism, read-only input, defaults, output
# --------------------------------------------------------------------------------------------


def test_csr_null_is_one_at_large_radii():
    a = simulate_tissue(seed=11, n_cells=20_000, mode="null").adata
    occ, interval = co_occurrence(a, "cell_type", copy=True)
    frac = a.obs["cell_type"].value_counts(normalize=True)[a.obs["cell_type"].cat.categories].to_numpy()
    common = frac >= 0.05
    large = interval[1:] >= 200
    sub = occ[np.ix_(common, common, large)]
    assert sub.min() > 0.99
    assert sub.max() < 1.01


def test_identical_with_one_or_two_threads(tissue_small):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = co_occurrence(tissue_small.adata, "cell_type", copy=True)[0]
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = co_occurrence(tissue_small.adata, "cell_type", copy=True)[0]
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_read_only_inputs(tissue_small):
    a = tissue_small.adata.copy()
    expected = co_occurrence(a, "cell_type", copy=True)[0]
    xy = np.array(a.obsm["spatial"])
    xy.setflags(write=False)
    a.obsm["spatial"] = xy
    interval = np.linspace(10, 250, 50)
    interval.setflags(write=False)
    np.testing.assert_array_equal(co_occurrence(a, "cell_type", interval=interval, copy=True)[0], expected)


def test_default_and_int_interval(tissue_small):
    a = tissue_small.adata.copy()
    co_occurrence(a, "cell_type")
    res = a.uns["cell_type_co_occurrence"]
    np.testing.assert_array_equal(res["interval"], np.linspace(10, 250, 50).astype(np.float32))
    assert res["interval"].dtype == np.float32
    assert res["occ"].dtype == np.float64
    k = len(a.obs["cell_type"].cat.categories)
    assert res["occ"].shape == (k, k, 49)
    assert res["occ_per_image"].shape == (1, k, k, 49)
    np.testing.assert_array_equal(res["occ_per_image"][0], res["occ"])  # one image
    assert list(res["image_ids"]) == ["sim_0"]
    occ, interval = co_occurrence(a, "cell_type", interval=5, copy=True)
    np.testing.assert_array_equal(interval, np.float32([10, 70, 130, 190, 250]))
    np.testing.assert_array_equal(occ[:, :, -1], res["occ"][:, :, -1])  # 250 µm in both


def test_copy_returns_and_does_not_write(tissue_small):
    a = tissue_small.adata.copy()
    out = co_occurrence(a, "cell_type", copy=True)
    assert isinstance(out, tuple)
    assert len(out) == 2
    assert "cell_type_co_occurrence" not in a.uns


def test_result_survives_h5ad(tissue_small, tmp_path):
    a = tissue_small.adata.copy()
    co_occurrence(a, "cell_type")
    a.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns["cell_type_co_occurrence"]
    np.testing.assert_array_equal(back["occ_per_image"], a.uns["cell_type_co_occurrence"]["occ_per_image"])
    assert list(back["image_ids"]) == ["sim_0"]


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    return _adata(rng.random((40, 2)) * 100, rng.choice(["a", "b"], 40), ["a", "b"], image_id=["i1"] * 40)


def test_error_non_categorical(small):
    small.obs["cell_type"] = small.obs["cell_type"].astype(str)
    with pytest.raises(DataModelError, match=r"must be categorical.*astype\('category'\)"):
        co_occurrence(small, "cell_type")


def test_error_single_type(small):
    small.obs["cell_type"] = pd.Categorical(["a"] * small.n_obs)
    with pytest.raises(DataModelError, match="at least 2 cell types"):
        co_occurrence(small, "cell_type")


def test_error_nan_coordinates(small):
    small.obsm["spatial"][3, 0] = np.nan
    with pytest.raises(DataModelError, match="NaN or infinite coordinates"):
        co_occurrence(small, "cell_type")


def test_error_interval_not_increasing(small):
    with pytest.raises(ValueError, match="strictly increasing"):
        co_occurrence(small, "cell_type", interval=[0, 50, 20])


def test_error_interval_too_short(small):
    with pytest.raises(ValueError, match="need at least 2"):
        co_occurrence(small, "cell_type", interval=[50])


def test_error_interval_negative(small):
    with pytest.raises(ValueError, match="negative distances"):
        co_occurrence(small, "cell_type", interval=[-5, 10, 20])


def test_error_image_with_one_cell(small):
    small.obs["image_id"] = ["i1"] * (small.n_obs - 1) + ["lonely"]
    with pytest.raises(DataModelError, match=r"fewer than 2 cells: \[\('lonely', 1\)\]"):
        co_occurrence(small, "cell_type")
