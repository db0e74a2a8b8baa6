"""Pointwise and global (GET ERL) envelope tests against hand derivations, a brute-force
re-implementation of GET's definitions, and their calibration under H0."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from spatialpath.gr._envelope import (
    RECOMMENDED_N_SIMULATIONS,
    auc,
    global_envelope_test,
    minimum_simulations,
    pointwise_envelope,
)

# T_1 (observed) and T_2..T_5 (s = 4 simulations) at m = 3 distances.
OBS = np.array([10.0, 1.0, 5.0])
SIMS = np.array([[2.0, 3.0, 4.0], [3.0, 2.0, 1.0], [4.0, 5.0, 3.0], [1.0, 4.0, 2.0]])


# ------------------------------------------------------------------ hand-derived (GET definitions)


def test_erl_two_sided_by_hand():
    # Raw ranks among the N = 5 curves, per column: c1 (10,2,3,4,1) -> (5,2,3,4,1),
    # c2 (1,3,2,5,4) -> (1,3,2,5,4), c3 (5,4,1,3,2) -> (5,4,1,3,2).
    # Two-sided R = min(r, 6 - r): T1 (1,1,1), T2 (2,3,2), T3 (3,2,1), T4 (2,1,3), T5 (1,2,2).
    # Sorted: T1 (1,1,1) < T5 (1,2,2) < T3 = T4 (1,2,3) < T2 (2,2,3) lexicographically, so the
    # average ERL ranks are 1, 5, 3.5, 3.5, 2 and E = (.2, 1, .7, .7, .4).
    # p = #{E_i <= E_1}/5 = 1/5. Extreme ranks (1, 2, 1, 1, 1): p-interval [0/5, 4/5].
    res = global_envelope_test(OBS, SIMS, alpha=0.2)
    assert res.pvalue.tolist() == [0.2]
    assert res.p_interval.tolist() == [[0.0, 0.8]]
    # alpha = 0.2: k = floor(0.8 * 5) = 4; 4th largest E = 0.4 -> curves with E >= 0.4 = T2..T5.
    assert res.lo.tolist() == [[1.0, 2.0, 1.0]]
    assert res.hi.tolist() == [[4.0, 5.0, 4.0]]
    assert res.outside().tolist() == [[True, True, True]]
    # alpha = 0.4: k = floor(0.6 * 5) = 3; 3rd largest E = 0.7 -> T2, T3, T4 (T5 left out).
    res = global_envelope_test(OBS, SIMS, alpha=0.4)
    assert res.lo.tolist() == [[2.0, 2.0, 1.0]]
    assert res.hi.tolist() == [[4.0, 5.0, 4.0]]
    assert res.central.tolist() == [[2.5, 3.5, 2.5]]
    assert res.n_simulations == 4


def test_erl_one_sided_by_hand():
    # "greater": R = 6 - r. T1 (1,5,1) -> (1,1,5), T2 (4,3,2) -> (2,3,4), T3 (3,4,5),
    # T4 (2,1,3) -> (1,2,3), T5 (5,2,4) -> (2,4,5). T1 is lexicographically first: p = 1/5.
    res = global_envelope_test(OBS, SIMS, alpha=0.2, alternative="greater")
    assert res.pvalue.tolist() == [0.2]
    assert np.all(res.lo == -np.inf)
    # "less": R = r. T1 (5,1,5) -> (1,5,5), T2 (2,3,4), T3 (3,2,1) -> (1,2,3), T4 (3,4,5),
    # T5 (1,4,2) -> (1,2,4). Order T3 < T5 < T1 < T2 < T4: p = 3/5.
    # alpha = 0.2 (k = 4): E = (.6, .8, .2, 1, .4); E >= 0.4 keeps T1, T2, T4, T5.
    res = global_envelope_test(OBS, SIMS, alpha=0.2, alternative="less")
    assert res.pvalue.tolist() == [0.6]
    assert res.lo.tolist() == [[1.0, 1.0, 2.0]]
    assert np.all(res.hi == np.inf)
    assert not res.outside().any()


def test_ties_are_averaged_and_counted_conservatively():
    # The observed curve equals simulation 1: identical rank vectors, so both count in
    # #{E_i <= E_1}. Column 2 is constant: every curve has rank 3 there (GET), no effect.
    obs = np.array([0.0, 7.0])
    sims = np.array([[0.0, 7.0], [1.0, 7.0], [2.0, 7.0], [3.0, 7.0]])
    # c1 raw ranks (1.5, 1.5, 3, 4, 5) -> two-sided (1.5, 1.5, 3, 2, 1); with the constant 3:
    # T1 = T2 = (1.5, 3), T3 (3, 3), T4 (2, 3), T5 (1, 3). Order T5 < T1 = T2 < T4 < T3: p = 3/5.
    res = global_envelope_test(obs, sims, alpha=0.2)
    assert res.pvalue.tolist() == [0.6]
    assert res.p_interval.tolist() == [[0.2, 0.6]]
    assert res.lo[0, 1] == res.hi[0, 1] == 7.0


def test_pointwise_by_hand():
    # s = 4 at r1: sims (2,3,4,1), observed 10: none >= 10, all <= 10.
    res = pointwise_envelope(OBS, SIMS, nrank=1)
    assert res.p_greater[0].tolist() == [1 / 5, 1.0, 1 / 5]  # r2: all of 3,2,5,4 >= 1; r3: none >= 5
    assert res.p_less[0].tolist() == [1.0, 1 / 5, 1.0]
    assert res.pvalue[0].tolist() == [0.4, 0.4, 0.4]
    assert res.lo.tolist() == [[1.0, 2.0, 1.0]]
    assert res.hi.tolist() == [[4.0, 5.0, 4.0]]
    assert res.level == pytest.approx(2 / 5)
    one = pointwise_envelope(OBS, SIMS, alternative="greater", nrank=2)
    assert one.hi.tolist() == [[3.0, 4.0, 3.0]]  # 2nd largest
    assert np.all(one.lo == -np.inf)
    assert one.level == pytest.approx(2 / 5)
    assert pointwise_envelope(OBS, np.repeat(SIMS, 10, axis=0)).nrank == 1  # floor(0.025 * 41)


# ------------------------------------------------------- brute-force reference of GET's definitions


def _reference(obs, sims, alpha, alternative, measure):
    """GET's ERL/rank test written out with Python loops and tuple comparisons (no numpy ranks)."""
    curves = [obs, *sims]
    n, m = len(curves), len(obs)
    cols = [j for j in range(m) if all(np.isfinite(c[j]) for c in curves)]
    ranks = [[] for _ in curves]
    for j in cols:
        vals = [c[j] for c in curves]
        for i, v in enumerate(vals):
            raw = sum(w < v for w in vals) + (sum(w == v for w in vals) + 1) / 2
            ranks[i].append(
                {"two-sided": min(raw, n + 1 - raw), "less": raw, "greater": n + 1 - raw}[alternative]
            )
    vec = [tuple(sorted(r)) for r in ranks]
    erl = [(sum(w < v for w in vec) + (sum(w == v for w in vec) + 1) / 2) / n for v in vec]
    ext = [v[0] for v in vec]
    interval = [sum(x < ext[0] for x in ext) / n, sum(x <= ext[0] for x in ext) / n]
    k = math.floor((1 - alpha) * n)
    lo, hi = np.full(m, np.nan), np.full(m, np.nan)
    if measure == "erl":
        p = sum(e <= erl[0] for e in erl) / n
        crit = sorted(erl, reverse=True)[k - 1]
        keep = [i for i in range(n) if erl[i] >= crit]
        for j in cols:
            lo[j], hi[j] = min(curves[i][j] for i in keep), max(curves[i][j] for i in keep)
    else:
        p = interval[1]
        r_alpha = sorted(ext, reverse=True)[k - 1]
        for j in cols:
            col = sorted(c[j] for c in curves)
            lo[j], hi[j] = col[int(r_alpha) - 1], col[int(n - r_alpha + 1) - 1]
    if alternative == "greater":
        lo[cols] = -np.inf
    if alternative == "less":
        hi[cols] = np.inf
    return p, interval, lo, hi


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("measure", ["erl", "rank"])
def test_matches_brute_force_reference_with_ties_and_nan(alternative, measure):
    rng = np.random.default_rng(11)
    s, p, m = 9, 25, 5
    sims = rng.integers(0, 4, size=(s, p, m)).astype(float)  # many ties
    obs = rng.integers(0, 5, size=(p, m)).astype(float)
    obs[:5] = sims[0, :5]  # identical curves
    sims[:, 3:6, 4] = 2.0  # constant columns
    obs[3:6, 4] = 2.0
    sims[:, 6:9, 0] = np.nan  # NaN for every curve (g at r = 0)
    obs[6:9, 0] = np.nan
    sims[2, 9, 1] = np.nan  # NaN in one simulation only
    for alpha in (0.1, 0.3):
        res = global_envelope_test(obs, sims, alpha=alpha, alternative=alternative, measure=measure)
        for i in range(p):
            ref_p, ref_int, ref_lo, ref_hi = _reference(obs[i], sims[:, i], alpha, alternative, measure)
            assert res.pvalue[i] == pytest.approx(ref_p), i
            assert res.p_interval[i].tolist() == pytest.approx(ref_int), i
            np.testing.assert_array_equal(res.lo[i], ref_lo)
            np.testing.assert_array_equal(res.hi[i], ref_hi)


def test_pointwise_matches_direct_counts():
    rng = np.random.default_rng(4)
    s, p, m = 39, 6, 7
    sims = rng.integers(0, 6, size=(s, p, m)).astype(float)
    obs = rng.integers(0, 6, size=(p, m)).astype(float)
    obs[0, 0] = np.nan
    res = pointwise_envelope(obs, sims, alpha=0.1)  # nrank = floor(0.05 * 40) = 2
    assert res.nrank == 2
    assert res.level == pytest.approx(0.1)
    for i in range(p):
        for j in range(m):
            if i == 0 and j == 0:
                assert np.isnan([res.lo[i, j], res.hi[i, j], res.pvalue[i, j]]).all()
                continue
            col = sorted(sims[:, i, j])
            assert (res.lo[i, j], res.hi[i, j]) == (col[1], col[-2])
            ge = sum(v >= obs[i, j] for v in col)
            le = sum(v <= obs[i, j] for v in col)
            assert res.p_greater[i, j] == pytest.approx((1 + ge) / (s + 1))
            assert res.p_less[i, j] == pytest.approx((1 + le) / (s + 1))
            assert res.pvalue[i, j] == pytest.approx(min(1, 2 * min(1 + ge, 1 + le) / (s + 1)))


def test_ignored_columns_leave_the_rest_unchanged():
    rng = np.random.default_rng(2)
    sims = rng.normal(size=(99, 40, 8)).cumsum(axis=2)
    obs = rng.normal(size=(40, 8)).cumsum(axis=1)
    base = global_envelope_test(obs, sims, alpha=0.1)
    pad_s = np.concatenate([np.full((99, 40, 1), np.nan), sims, np.full((99, 40, 1), 3.0)], axis=2)
    pad_o = np.concatenate([np.full((40, 1), np.nan), obs, np.full((40, 1), 3.0)], axis=1)
    padded = global_envelope_test(pad_o, pad_s, alpha=0.1)
    np.testing.assert_array_equal(padded.pvalue, base.pvalue)
    np.testing.assert_array_equal(padded.lo[:, 1:-1], base.lo)
    np.testing.assert_array_equal(padded.hi[:, 1:-1], base.hi)
    assert np.isnan(padded.lo[:, 0]).all()
    assert np.isnan(padded.hi[:, 0]).all()
    assert (padded.lo[:, -1] == 3.0).all()
    assert (padded.hi[:, -1] == 3.0).all()
    for measure in ("erl", "rank"):
        nan = global_envelope_test(np.full((1, 3), np.nan), np.full((5, 1, 3), np.nan), 0.2, measure=measure)
        assert np.isnan(nan.pvalue).all()
        assert np.isnan(nan.lo).all()


# ---------------------------------------------------------------------- calibration under H0


@pytest.fixture(scope="module")
def null_walks():
    """2000 replicate curve sets (one per row) of Gaussian random walks, m = 40, s = 199."""
    rng = np.random.default_rng(20240501)
    curves = rng.standard_normal(size=(200, 2000, 40)).cumsum(axis=2)  # exchangeable under H0
    return curves[0], curves[1:]


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_global_erl_is_calibrated_under_h0(null_walks, alternative):
    obs, sims = null_walks
    res = global_envelope_test(obs, sims, alpha=0.05, alternative=alternative)
    rate = np.mean(res.pvalue <= 0.05)
    assert 0.03 <= rate <= 0.07, rate  # exact level 10/200 = 0.05, 2000 replicates: sd 0.005
    assert res.pvalue.min() >= 1 / 200
    # p-interval of the extreme rank brackets the ERL p-value: p_lib < p_erl <= p_cons
    assert np.all(res.p_interval[:, 0] < res.pvalue)
    assert np.all(res.pvalue <= res.p_interval[:, 1])
    # intrinsic graphical interpretation: rejected iff the curve leaves the global envelope
    np.testing.assert_array_equal(res.pvalue <= 0.05, res.outside().any(axis=1))


def test_pointwise_calibrated_at_one_r_but_not_over_all_r(null_walks):
    obs, sims = null_walks
    res = pointwise_envelope(obs, sims, alpha=0.05)  # nrank = 5, exact level 10/200
    assert (res.nrank, res.level) == (5, 0.05)
    j = 20
    assert 0.03 <= np.mean(res.pvalue[:, j] <= 0.05) <= 0.07
    outside = (obs < res.lo) | (obs > res.hi)
    assert 0.03 <= np.mean(outside[:, j]) <= 0.07
    # The naive test "reject if the curve leaves the pointwise envelope at ANY r" is far too liberal.
    naive = np.mean(outside.any(axis=1))
    assert naive > 0.2, naive


def test_smooth_gaussian_process_with_ties_is_calibrated():
    rng = np.random.default_rng(7)
    walk = rng.standard_normal(size=(200, 2000, 48)).cumsum(axis=2)
    smooth = (walk[:, :, 8:] - walk[:, :, :-8]) / 8  # moving average of white noise, m = 40
    smooth = np.round(smooth, 1)  # discretised values: many pointwise ties
    res = global_envelope_test(smooth[0], smooth[1:], alpha=0.05)
    assert 0.03 <= np.mean(res.pvalue <= 0.05) <= 0.07


def test_planted_upward_shift_is_found_by_greater_not_less():
    rng = np.random.default_rng(3)
    curves = rng.standard_normal(size=(200, 300, 40)).cumsum(axis=2)
    shifted = curves[0] + 3.0 * np.sqrt(np.arange(1, 41))  # +3 pointwise sd at every r
    greater = global_envelope_test(shifted, curves[1:], alternative="greater")
    less = global_envelope_test(shifted, curves[1:], alternative="less")
    assert np.mean(greater.pvalue <= 0.05) > 0.8
    assert np.mean(less.pvalue <= 0.05) < 0.01
    assert greater.outside().any(axis=1).mean() > 0.8


def test_speed_144_curve_sets_999_simulations():
    rng = np.random.default_rng(0)
    sims = rng.standard_normal(size=(999, 144, 50)).cumsum(axis=2)
    obs = rng.standard_normal(size=(144, 50)).cumsum(axis=1)
    global_envelope_test(obs[:2], sims[:, :2])  # warm-up
    start = time.perf_counter()
    res = global_envelope_test(obs, sims)
    assert time.perf_counter() - start < 3.0  # ~0.4 s on 2 cores; slack for loaded CI machines
    assert res.pvalue.shape == (144,)
    assert res.lo.shape == (144, 50)
    assert RECOMMENDED_N_SIMULATIONS * 0.05 >= 1


# ------------------------------------------------------------------------------------- auc


def test_auc_trapezoid_skips_nan():
    r = np.array([0.0, 1.0, 2.0, 4.0])
    values = np.array([[0.0, 2.0, 3.0, 4.0], [np.nan, 2.0, np.nan, 5.0], [np.nan, np.nan, 1.0, np.nan]])
    out = auc(r, values, theoretical=r)  # y = (0,1,1,0), (nan,1,nan,1), one point only
    assert out[0] == pytest.approx(0.5 + 1.0 + 1.0)
    assert out[1] == pytest.approx(np.trapezoid([1.0, 1.0], [1.0, 4.0]))
    assert np.isnan(out[2])
    assert auc(r, np.ones((2, 3, 4)), 1.0).shape == (2, 3)


# ------------------------------------------------------------------------------------- errors


def test_errors():
    with pytest.raises(ValueError, match=r"observed must be \(P, m\).*\(3, 4\).*\(5, 3, 5\)"):
        global_envelope_test(np.zeros((3, 4)), np.zeros((5, 3, 5)))
    with pytest.raises(ValueError, match="at least one simulation"):
        pointwise_envelope(np.zeros((2, 3)), np.zeros((0, 2, 3)))
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        global_envelope_test(OBS, SIMS, alpha=1.5)
    with pytest.raises(ValueError, match="at least 19 simulations, got 4"):
        global_envelope_test(OBS, SIMS, alpha=0.05)
    with pytest.raises(ValueError, match="needs at least 39 simulations"):
        pointwise_envelope(OBS, SIMS, alpha=0.05)
    with pytest.raises(ValueError, match="alternative must be"):
        global_envelope_test(OBS, SIMS, alpha=0.2, alternative="two.sided")
    with pytest.raises(ValueError, match="measure must be"):
        global_envelope_test(OBS, SIMS, alpha=0.2, measure="area")
    with pytest.raises(ValueError, match=r"nrank must be an integer in \[1, 2\]"):
        pointwise_envelope(OBS, SIMS, nrank=3)
    with pytest.raises(ValueError, match="strictly increasing"):
        auc(np.array([0.0, 2.0, 1.0]), np.zeros(3))
    with pytest.raises(ValueError, match="r must be 1-D"):
        auc(np.arange(3.0), np.zeros(4))
    assert minimum_simulations(0.05) == 19
