"""The permutation engine against closed forms, and its reproducibility guarantees."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from spatialpath.gr._counts import pair_counts, pair_counts_args, pair_counts_kernel
from spatialpath.gr._permutation import permutation_seeds, permutation_test
from spatialpath.gr._utils import Groups


@numba.njit
def _subset_count(labels, args, out):
    """Number of label-0 cells among the cells listed in args[0], per image slot args[1]."""
    subset, slot = args
    for i in range(len(subset)):
        if labels[subset[i]] == 0:
            out[slot[i]] += 1.0


@numba.njit
def _label_totals(labels, args, out):
    """Cells of each label in each image: invariant under within-image shuffles."""
    (image,) = args
    for i in range(len(labels)):
        out[image[i] * 3 + labels[i]] += 1.0


def _groups(codes):
    codes = np.asarray(codes, np.int32)
    order = np.argsort(codes, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(codes))])
    return Groups([str(i) for i in range(codes.max() + 1)], codes, order, offsets)


def test_moments_match_the_hypergeometric_closed_form():
    rng = np.random.default_rng(0)
    n, n0, m = 60, 20, 15
    labels = rng.permutation(np.r_[np.zeros(n0), np.ones(n - n0)]).astype(np.int8)
    subset = rng.choice(n, m, replace=False)
    r = permutation_test(_subset_count, labels, _groups(np.zeros(n)), (subset, np.zeros(m, np.int64)), 1,
                         n_perms=20_000, seed=3, progress=False)  # fmt: skip
    mean = m * n0 / n
    var = m * (n0 / n) * (1 - n0 / n) * (n - m) / (n - 1)
    assert r.mean[0] == pytest.approx(mean, abs=4 * np.sqrt(var / 20_000))
    assert r.var[0] == pytest.approx(var, rel=0.05)


def test_labels_never_leave_their_image():
    codes = np.repeat([0, 1, 2], [7, 11, 5])
    labels = np.random.default_rng(1).integers(0, 3, len(codes)).astype(np.int8)
    shuffled = np.random.default_rng(2).permutation(len(codes))  # images interleaved in row order
    g = _groups(codes[shuffled])
    r = permutation_test(_label_totals, labels[shuffled], g, (codes[shuffled].astype(np.int64),), 9,
                         n_perms=200, seed=0, progress=False)  # fmt: skip
    assert np.all(r.var == 0)
    assert np.all(r.n_ge == 200)
    assert np.all(r.n_le == 200)


def test_bit_identical_with_one_or_two_threads_and_seeded():
    rng = np.random.default_rng(5)
    n = 3000
    codes = np.sort(rng.integers(0, 3, n))
    labels = rng.integers(0, 4, n).astype(np.int8)
    from scipy import sparse

    graph = sparse.random(n, n, density=0.002, format="csr", random_state=1)
    g = _groups(codes)
    args = pair_counts_args(graph, g, 4)
    results = []
    for threads in (1, 2, 1):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        r = permutation_test(
            pair_counts_kernel, labels, g, args, g.n * 16, n_perms=100, seed=42, progress=False
        )
        results.append(r)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for r in results[1:]:
        for field in ("observed", "mean", "var", "n_ge", "n_le"):
            np.testing.assert_array_equal(getattr(r, field), getattr(results[0], field))
    other = permutation_test(
        pair_counts_kernel, labels, g, args, g.n * 16, n_perms=100, seed=43, progress=False
    )
    assert not np.array_equal(other.mean, results[0].mean)
    np.testing.assert_array_equal(results[0].observed.reshape(g.n, 4, 4), pair_counts(labels, graph, g, 4))


def test_read_only_inputs_and_p_values_never_zero():
    labels = np.array([0, 0, 0, 1, 1, 1], np.int8)
    labels.flags.writeable = False
    subset = np.array([0, 1, 2])
    subset.flags.writeable = False
    r = permutation_test(_subset_count, labels, _groups(np.zeros(6)), (subset, np.zeros(3, np.int64)), 1,
                         n_perms=99, seed=0, progress=False)  # fmt: skip
    assert r.pvalue("greater")[0] > 0
    assert 0 < r.pvalue()[0] <= 1
    assert r.pvalue("greater")[0] == (r.n_ge[0] + 1) / 100


def test_seeds_come_from_seed_sequence_spawn():
    s = permutation_seeds(7, 3)
    expected = np.random.SeedSequence(7).spawn(3)[2].generate_state(2, np.uint64)
    np.testing.assert_array_equal(s[2], expected)


def test_bad_arguments():
    g = _groups(np.zeros(4))
    with pytest.raises(ValueError, match="n_perms must be a positive integer"):
        permutation_test(
            _subset_count, np.zeros(4, np.int8), g, (np.arange(2), np.zeros(2, np.int64)), 1, n_perms=0
        )
    r = permutation_test(_subset_count, np.zeros(4, np.int8), g, (np.arange(2), np.zeros(2, np.int64)), 1,
                         n_perms=5, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="alternative must be"):
        r.pvalue("both")
    assert np.isnan(r.zscore()[0])  # constant statistic: sd 0 gives NaN, not inf


def test_kept_samples_reproduce_the_streamed_summaries():
    rng = np.random.default_rng(5)
    n, m = 80, 25
    labels = rng.integers(0, 2, n).astype(np.int8)
    subset = rng.choice(n, m, replace=False)
    args = (subset, np.zeros(m, np.int64))
    kw = {"n_perms": 300, "seed": 11, "progress": False}
    plain = permutation_test(_subset_count, labels, _groups(np.zeros(n)), args, 1, **kw)
    kept = permutation_test(_subset_count, labels, _groups(np.zeros(n)), args, 1, keep=True, **kw)
    assert plain.samples is None
    s = kept.samples[:, 0]
    assert s.shape == (300,)
    # the stored values are the streamed ones: same counts, mean and variance (computed independently)
    assert kept.n_ge[0] == np.sum(s >= kept.observed[0]) == plain.n_ge[0]
    assert kept.n_le[0] == np.sum(s <= kept.observed[0])
    assert kept.mean[0] == pytest.approx(s.mean(), rel=1e-12)
    assert kept.var[0] == pytest.approx(s.var(), rel=1e-9)
    # each sample is a count of label-0 cells among m: a value the labels can give
    assert s.min() >= max(0, m - np.sum(labels == 1))
    assert s.max() <= min(m, np.sum(labels == 0))
