"""Pointwise and global envelope tests of functional statistics (K, L, G, J, g curves), pure numpy.

``observed`` ``(P, m)`` holds P curves at m distances r; ``simulated`` ``(s, P, m)`` s curves per
observed one, exchangeable with it under H0 (permutations or simulations). The P curve sets are
tested at once but independently (no multiplicity correction across P).

Pointwise envelopes (spatstat's ``envelope(nrank=...)``)
    ``lo``/``hi``: the ``nrank``-th smallest/largest of the s simulated values at each r. The test
    "observed outside the envelope at one r chosen in advance" has exact level ``2·nrank/(s+1)``
    (spatstat's help; ``nrank/(s+1)`` one-sided). Rejecting when the curve leaves the envelope at
    *any* r is far more liberal (spatstat's "wrong" test): use :func:`global_envelope_test`.

Global envelope test (R package GET, ``global_envelope_test(type="erl")``)
    GET's definitions (Myllymäki & Mrkvička 2024, Sec. 2.1; GET's ``R/forder.r``,
    ``R/envelopes.r``, ``R/p-value.r``) for the N = s+1 curves, ``T_1`` the observed one:

    1. Pointwise rank ``R_ik``: from the raw rank ``r_ik`` of ``T_ik`` among the N values at r_k
       (smallest = 1, ties averaged as R's ``rank``), ``min(r_ik, N+1-r_ik)`` (two-sided),
       ``r_ik`` ("less") or ``N+1-r_ik`` ("greater"): small = extreme.
    2. Extreme rank length (Myllymäki et al. 2017; Narisetty & Nair 2016): each curve's ranks,
       sorted increasingly, are ordered lexicographically; ``E_i`` = average rank of curve i in
       that order / N (GET's ``rank_matrix_cols``). The first entry ``R_i = min_k R_ik`` is the
       extreme rank of ``measure="rank"``, whose many ties the later entries break.
    3. ``p = #{i : E_i ≤ E_1} / N`` (``estimate_p_value(ties="conservative")``), never below
       1/N; the p-interval of the extreme rank is ``[#{R_i < R_1}, #{R_i ≤ R_1}] / N``.
    4. ``E_(α)``: the ``⌊(1-α)N⌋``-th largest ``E_i`` (GET's ``critical``); the 100(1-α)% global
       envelope is the pointwise min and max over the curves with ``E_i ≥ E_(α)``, observed
       included; ``lo = -inf`` for "greater", ``hi = +inf`` for "less". GET requires ``α·N ≥ 1``.
       ``measure="rank"``: ``R_(α)`` likewise and the envelope is the ``R_(α)``-th
       smallest/largest of the N values at each r (indices truncated as R truncates them).

    The test is an exact Monte Carlo test of level α under exchangeability for any s, and the
    observed curve leaves the envelope at some r iff it is rejected (GET's "intrinsic graphical
    interpretation", checked in the tests): those r say why.

Ignored distances
    Where any of the N values of a curve set is non-finite (e.g. g at r = 0), the column gets the
    same rank in every curve, which leaves the lexicographic order unchanged: it is ignored, with
    ``lo = hi = NaN`` and NaN pointwise p-values. A column where all N values are
    equal is ignored by GET's own definitions (rank (N+1)/2 for every curve), with ``lo = hi =``
    the constant and pointwise p = 1. Both rules treat the N curves symmetrically, so the test
    stays exact. No finite column at all gives ``pvalue = NaN``.

References
----------
Myllymäki, M., Mrkvička, T., Grabarnik, P., Seijo, H. & Hahn, U. (2017). Global envelope tests for
spatial processes. JRSS-B 79, 381–404. Myllymäki, M. & Mrkvička, T. (2024). GET: Global envelopes
in R. JSS 111(3). Narisetty, N. N. & Nair, V. N. (2016). Extremal depth for functional data and
applications. JASA 111, 1705–1714. spatstat.explore, help of ``envelope``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["FAST_N_SIMULATIONS", "RECOMMENDED_N_SIMULATIONS", "RECOMMENDED_N_SIMULATIONS_RANK",
           "GlobalEnvelopeResult", "PointwiseEnvelopeResult", "auc", "global_envelope_test",
           "minimum_simulations", "pointwise_envelope"]  # fmt: skip

Alternative = Literal["two-sided", "greater", "less"]
_ALTERNATIVES = ("two-sided", "greater", "less")

#: Simulations for the global ERL test at α = 0.05. Any s with α(s+1) ≥ 1 (s ≥ 19) is exact; more
#: buy power and repeatability. GET's help (``global_envelope_test``, "Number of simulations"):
#: "The tests 'erl', 'cont' and 'area' [...] allow in principle a lower number of simulations to
#: be used than the test based on extreme ranks ('rank'), because no ties occur for these measures.
#: If affordable, we recommend in any case some thousands of simulations for all the measures to
#: achieve a good power and repeatability of the test." GET's worked ERL test of CSR (Myllymäki &
#: Mrkvička 2024, "Monte Carlo goodness-of-fit testing for simple hypotheses") uses ``nsim = 999``.
RECOMMENDED_N_SIMULATIONS = 999
#: Simulations for the extreme-rank ("rank") test at α = 0.05. GET's help: "For the global 'rank'
#: envelope test, Myllymäki et al. (2017) recommended to use at least 2500 simulations for testing
#: at the significance level alpha = 0.05 for single function tests, based on experiments with
#: summary functions for point processes evaluated approximately at 500 argument values. In this
#: case, the width of the p-interval associated with the extreme rank measure tended to be smaller
#: than 0.01." GET's examples use ``nsim = 2499`` (2500 curves with the data).
RECOMMENDED_N_SIMULATIONS_RANK = 2499
#: Faster option: pointwise envelopes at α = 0.05 (two-sided ``nrank = 5``) and exploratory global
#: tests (still exact, but p-values on a 1/200 grid and less power).
FAST_N_SIMULATIONS = 199
_BLOCK_ELEMENTS = 1 << 19  # curve values per chunk of curve sets (bounds the temporaries)


def minimum_simulations(alpha: float) -> int:
    """Fewest simulations s with ``alpha·(s+1) ≥ 1``, GET's condition for a global envelope.

    Examples
    --------
    >>> minimum_simulations(0.05), minimum_simulations(0.01)
    (19, 99)
    """
    _check_alpha(alpha)
    return max(1, math.ceil(1.0 / alpha - 1e-9) - 1)


@dataclass(frozen=True)
class PointwiseEnvelopeResult:
    """Pointwise envelopes and Monte Carlo p-values, each ``(P, m)``.

    ``p_greater = (1 + #{T_sim ≥ T_obs})/(s+1)``, ``p_less`` likewise with ≤, ``pvalue`` the one
    of ``alternative`` (two-sided: ``min(1, 2·min(p_greater, p_less))``). ``lo``/``hi`` are the
    ``nrank``-th smallest/largest simulated values (``-inf``/``+inf`` on the side a one-sided
    alternative does not test); ``level`` is the exact level of the test at one fixed r.
    ``central`` is the mean of the simulations.
    """

    lo: np.ndarray
    hi: np.ndarray
    central: np.ndarray
    p_greater: np.ndarray
    p_less: np.ndarray
    pvalue: np.ndarray
    nrank: int
    level: float
    n_simulations: int
    alternative: str


@dataclass(frozen=True)
class GlobalEnvelopeResult:
    """Global envelope test of P curve sets.

    ``pvalue`` ``(P,)`` is the test's p-value (ERL, or the conservative extreme-rank one for
    ``measure="rank"``); ``p_interval`` ``(P, 2)`` the extreme-rank [liberal, conservative]
    p-values; ``lo``/``hi`` ``(P, m)`` the 100(1-α)% global envelope; ``central`` ``(P, m)`` the
    mean of the simulations; ``observed`` the tested curves.
    """

    pvalue: np.ndarray
    p_interval: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    central: np.ndarray
    observed: np.ndarray
    n_simulations: int
    alpha: float
    alternative: str
    measure: str

    def outside(self) -> np.ndarray:
        """``(P, m)`` mask of the r where the observed curve leaves the global envelope."""
        with np.errstate(invalid="ignore"):
            return (self.observed < self.lo) | (self.observed > self.hi)


def pointwise_envelope(
    observed: np.ndarray,
    simulated: np.ndarray,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    *,
    nrank: int | None = None,
) -> PointwiseEnvelopeResult:
    """Pointwise envelopes (spatstat's ``envelope``) and pointwise Monte Carlo p-values.

    Parameters
    ----------
    observed
        ``(P, m)`` observed curves (a single ``(m,)`` curve is taken as P = 1).
    simulated
        ``(s, P, m)`` simulated curves (``(s, m)`` for P = 1), exchangeable with ``observed``.
    alpha
        Pointwise level; sets ``nrank = ⌊α/2·(s+1)⌋`` (two-sided) or ``⌊α·(s+1)⌋`` (one-sided).
    alternative
        ``"two-sided"``, ``"greater"`` (observed above) or ``"less"``.
    nrank
        Rank of the envelope among the s simulated values, overriding ``alpha`` (1 = min/max);
        the pointwise level is then ``2·nrank/(s+1)`` (``nrank/(s+1)`` one-sided).

    Returns
    -------
    :class:`PointwiseEnvelopeResult`.

    Examples
    --------
    >>> sims = np.arange(1.0, 40.0)[:, None] * np.ones((1, 3))  # 39 simulations: 1..39 at 3 r
    >>> res = pointwise_envelope(np.array([0.5, 20.0, 39.5]), sims)
    >>> res.nrank, res.level, res.lo.tolist(), res.hi.tolist()
    (1, 0.05, [[1.0, 1.0, 1.0]], [[39.0, 39.0, 39.0]])
    >>> res.pvalue.tolist()  # 0.5 is below all 39: p_less = 1/40, two-sided 2/40
    [[0.05, 1.0, 0.05]]
    """
    obs, sims = _validate(observed, simulated)
    s = sims.shape[0]
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    sides = 2 if alternative == "two-sided" else 1
    if nrank is None:
        _check_alpha(alpha)
        nrank = math.floor(alpha / sides * (s + 1) + 1e-9)
        if nrank < 1:
            need = math.ceil(sides / alpha - 1e-9) - 1
            raise ValueError(
                f"a {alternative} pointwise envelope at alpha={alpha} needs at least {need} "
                f"simulations (s+1 ≥ {sides}/alpha), got {s}"
            )
    elif not isinstance(nrank, int | np.integer) or not 1 <= nrank <= (s if sides == 1 else s // 2):
        raise ValueError(f"nrank must be an integer in [1, {s if sides == 1 else s // 2}], got {nrank!r}")
    nrank = int(nrank)
    shape = obs.shape
    lo, hi, central, n_ge, n_le = (np.empty(shape) for _ in range(5))
    bad = np.empty(shape, bool)
    for sl in _blocks(s + 1, *shape):
        block = sims[:, sl]
        bad[sl] = ~(np.isfinite(block).all(axis=0) & np.isfinite(obs[sl]))
        part = np.partition(block, [nrank - 1, s - nrank], axis=0)
        lo[sl], hi[sl] = part[nrank - 1], part[s - nrank]
        central[sl] = block.mean(axis=0)
        n_ge[sl] = (block >= obs[sl]).sum(axis=0)
        n_le[sl] = (block <= obs[sl]).sum(axis=0)
    p_greater, p_less = (n_ge + 1) / (s + 1), (n_le + 1) / (s + 1)
    for a in (lo, hi, p_greater, p_less):
        a[bad] = np.nan
    if alternative == "greater":
        lo[~bad], pvalue = -np.inf, p_greater
    elif alternative == "less":
        hi[~bad], pvalue = np.inf, p_less
    else:
        pvalue = np.minimum(1.0, 2 * np.minimum(p_greater, p_less))
    return PointwiseEnvelopeResult(
        lo=lo, hi=hi, central=central, p_greater=p_greater, p_less=p_less, pvalue=pvalue,
        nrank=nrank, level=sides * nrank / (s + 1), n_simulations=s, alternative=alternative,
    )  # fmt: skip


def global_envelope_test(
    observed: np.ndarray,
    simulated: np.ndarray,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    measure: Literal["erl", "rank"] = "erl",
) -> GlobalEnvelopeResult:
    """Global envelope test of each observed curve against its simulations (GET's ERL test).

    Parameters
    ----------
    observed
        ``(P, m)`` observed curves (a single ``(m,)`` curve is taken as P = 1).
    simulated
        ``(s, P, m)`` simulated curves (``(s, m)`` for P = 1), exchangeable with ``observed``
        under H0. Needs ``alpha·(s+1) ≥ 1``; see :data:`RECOMMENDED_N_SIMULATIONS`.
    alpha
        Level of the test and of the 100(1-α)% global envelope.
    alternative
        ``"two-sided"``, ``"greater"`` (observed curve too high) or ``"less"``.
    measure
        ``"erl"`` (GET's default) or ``"rank"`` (extreme rank, p = conservative end of the
        p-interval as GET's ``ties="conservative"``; needs :data:`RECOMMENDED_N_SIMULATIONS_RANK`).

    Returns
    -------
    :class:`GlobalEnvelopeResult` (see the module docstring for the definitions).

    Examples
    --------
    Curve 1 is extreme at every r (two-sided ranks (1, 1, 1)); the four simulations are not:

    >>> obs = np.array([10.0, 1.0, 5.0])
    >>> sims = np.array([[2.0, 3, 4], [3, 2, 1], [4, 5, 3], [1, 4, 2]])
    >>> res = global_envelope_test(obs, sims, alpha=0.2)
    >>> res.pvalue.tolist(), res.p_interval.tolist()  # ERL 1/5; extreme rank ties: [0, 4/5]
    ([0.2], [[0.0, 0.8]])
    >>> res.lo.tolist(), res.hi.tolist(), res.outside().tolist()
    ([[1.0, 2.0, 1.0]], [[4.0, 5.0, 4.0]], [[True, True, True]])
    """
    obs, sims = _validate(observed, simulated)
    s = sims.shape[0]
    _check_alpha(alpha)
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    if measure not in ("erl", "rank"):
        raise ValueError(f"measure must be 'erl' or 'rank', got {measure!r}")
    n = s + 1
    if n * alpha < 1 - math.sqrt(np.finfo(float).eps):
        raise ValueError(
            f"a global envelope at alpha={alpha} needs alpha·(s+1) ≥ 1, i.e. at least "
            f"{minimum_simulations(alpha)} simulations, got {s} "
            f"(recommended: {RECOMMENDED_N_SIMULATIONS} for 'erl' at alpha=0.05)"
        )
    k = max(1, math.floor((1 - alpha) * n))  # GET: critical value = k-th largest measure
    shape = obs.shape
    pvalue, p_interval = np.empty(shape[0]), np.empty((shape[0], 2))
    lo, hi = np.empty(shape), np.empty(shape)
    for sl in _blocks(n, *shape):
        curves = np.concatenate([obs[None, sl], sims[:, sl]])  # (N, Pb, m), observed first
        finite = np.isfinite(curves).all(axis=0)
        codes = _pointwise_rank_codes(curves, alternative)
        codes[:, ~finite] = 2 * n + 3  # the same value in every curve: no effect on the order
        codes.sort(axis=2)
        extreme = codes[:, :, 0]
        p_interval[sl, 0] = (extreme < extreme[0]).sum(axis=0) / n
        p_interval[sl, 1] = (extreme <= extreme[0]).sum(axis=0) / n
        if measure == "erl":
            order = _lexicographic_ranks(codes, 2 * n + 3)  # (N, Pb), increasing with E_i
            pvalue[sl] = (order <= order[0]).sum(axis=0) / n
            crit = np.sort(order, axis=0)[n - k]  # k-th largest
            keep = (order >= crit)[:, :, None]
            lo[sl] = np.where(keep, curves, np.inf).min(axis=0)
            hi[sl] = np.where(keep, curves, -np.inf).max(axis=0)
        else:
            pvalue[sl] = p_interval[sl, 1]
            r_alpha = np.sort(extreme, axis=0)[n - k] / 2.0  # k-th largest extreme rank
            ordered = np.sort(curves, axis=0)  # R's Hod[R_alpha], Hod[N - R_alpha + 1], truncated:
            for out, at in ((lo, np.floor(r_alpha)), (hi, np.floor(n - r_alpha + 1))):
                at = np.clip(at.astype(np.int64) - 1, 0, n - 1)[None, :, None]
                out[sl] = np.take_along_axis(ordered, at, axis=0)[0]
        lo[sl][~finite], hi[sl][~finite] = np.nan, np.nan
        none = ~finite.any(axis=1)
        pvalue[sl][none], p_interval[sl][none] = np.nan, np.nan
    if alternative == "greater":
        lo[np.isfinite(lo)] = -np.inf
    elif alternative == "less":
        hi[np.isfinite(hi)] = np.inf
    central = sims.mean(axis=0)
    return GlobalEnvelopeResult(
        pvalue=pvalue, p_interval=p_interval, lo=lo, hi=hi, central=central, observed=obs,
        n_simulations=s, alpha=float(alpha), alternative=alternative, measure=measure,
    )  # fmt: skip


def auc(r: np.ndarray, values: np.ndarray, theoretical: np.ndarray | float = 0.0) -> np.ndarray:
    """Area under ``values − theoretical`` over r (trapezoidal rule), skipping NaN points.

    Units: curve units × r units, e.g. µm² for ``L(r) − r`` (r in µm), µm³ for ``K(r) − πr²``,
    µm for ``g(r) − 1`` or ``G(r) − G_theo(r)``. NaN points (g at r = 0) are dropped and the
    trapezoids join the remaining neighbours; fewer than two non-NaN points give NaN.

    Parameters
    ----------
    r
        ``(m,)`` strictly increasing distances.
    values
        ``(..., m)`` curves at ``r``.
    theoretical
        Curve under H0, broadcastable to ``values`` (e.g. ``r`` for L, 1 for g).

    Returns
    -------
    ``(...)`` areas (positive: above the theoretical curve).

    Examples
    --------
    >>> r = np.array([0.0, 1.0, 2.0, 3.0])
    >>> float(auc(r, np.array([0.0, 2.0, 3.0, 3.0]), theoretical=r))  # L - r = 0, 1, 1, 0
    2.0
    >>> float(auc(r, np.array([np.nan, 2.0, 2.0, 1.0]), theoretical=1.0))  # r = 0 dropped
    1.5
    """
    r = np.asarray(r, np.float64)
    y = np.asarray(values, np.float64) - np.asarray(theoretical, np.float64)
    if r.ndim != 1 or y.shape[-1:] != r.shape:
        raise ValueError(f"r must be 1-D, as long as values' last axis; got r {r.shape}, values {y.shape}")
    if np.any(~np.isfinite(r)) or np.any(np.diff(r) <= 0):
        raise ValueError("r must be finite and strictly increasing")
    flat = y.reshape(-1, r.size)
    ok = ~np.isnan(flat)
    prev = np.maximum.accumulate(np.where(ok, np.arange(r.size), -1), axis=1)  # last ok index ≤ j
    prev = np.concatenate([np.full((flat.shape[0], 1), -1), prev[:, :-1]], axis=1)  # < j
    pair = ok & (prev >= 0)
    j0 = np.where(pair, prev, 0)
    y0 = np.take_along_axis(flat, j0, axis=1)
    area = np.where(pair, (r - r[j0]) * (flat + y0) / 2, 0.0).sum(axis=1)
    area[ok.sum(axis=1) < 2] = np.nan
    return area.reshape(y.shape[:-1])


def _check_alpha(alpha: float) -> None:
    if not isinstance(alpha, float | int | np.floating) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def _validate(observed: np.ndarray, simulated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(P, m)`` observed and ``(s, P, m)`` simulated floating arrays, or a ValueError."""
    obs, sims = np.asarray(observed), np.asarray(simulated)  # float32 kept: no full float64 copy
    obs, sims = (a if a.dtype.kind == "f" else a.astype(np.float64) for a in (obs, sims))
    if obs.ndim == 1 and sims.ndim == 2:
        obs, sims = obs[None], sims[:, None]
    if obs.ndim != 2 or sims.ndim != 3 or sims.shape[1:] != obs.shape:
        raise ValueError(
            f"observed must be (P, m) and simulated (s, P, m) with the same (P, m), got observed "
            f"{np.shape(observed)} and simulated {np.shape(simulated)}"
        )
    if sims.shape[0] < 1:
        raise ValueError(f"simulated needs at least one simulation (s ≥ 1), got shape {sims.shape}")
    if obs.shape[1] < 1:
        raise ValueError(f"curves need at least one distance (m ≥ 1), got observed {obs.shape}")
    return obs, sims


def _blocks(n: int, p: int, m: int) -> Iterator[slice]:
    """Slices of the P curve sets, each holding at most about ``_BLOCK_ELEMENTS`` values."""
    step = max(1, _BLOCK_ELEMENTS // (n * m))
    for start in range(0, p, step):
        yield slice(start, min(p, start + step))


def _pointwise_rank_codes(curves: np.ndarray, alternative: str) -> np.ndarray:
    """``2·R`` (int64) for the pointwise ranks R of GET among the N curves ``(N, Pb, m)``."""
    n = curves.shape[0]
    x = np.ascontiguousarray(curves.reshape(n, -1).T)  # one row per (curve set, r)
    rows, cols = x.shape
    idx = np.argsort(x, axis=1)
    xs = np.sort(x, axis=1)
    new = np.ones((rows, n + 1), bool)  # new[:, j]: a run of ties starts at sorted position j
    new[:, 1:n] = xs[:, 1:] != xs[:, :-1]
    pos = np.arange(n)
    start = np.maximum.accumulate(np.where(new[:, :n], pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(new[:, 1:], pos, n)[:, ::-1], axis=1)[:, ::-1]
    codes = np.empty(rows * cols, np.int64)  # 2·(average raw rank) = (start+1) + (end+1)
    codes[(idx + (np.arange(rows) * cols)[:, None]).ravel()] = (start + end + 2).ravel()
    codes = codes.reshape(rows, cols).T.reshape(curves.shape)
    if alternative == "two-sided":
        return np.minimum(codes, 2 * (n + 1) - codes)
    return codes if alternative == "less" else 2 * (n + 1) - codes


def _lexicographic_ranks(codes: np.ndarray, vmax: int) -> np.ndarray:
    """Dense lexicographic ranks ``(N, Pb)`` of the sorted rank vectors ``codes`` within each set.

    Columns are packed a few at a time into int64 keys after the running rank (curve set first)
    and re-ranked by :func:`numpy.unique`, stopping once all vectors differ.
    """
    n, pb, m = codes.shape
    keys = codes.reshape(n * pb, m)
    group = np.tile(np.arange(pb, dtype=np.int64), n)  # curve set first, then the ranks
    bits = int(vmax).bit_length()
    j = 0
    while j < m:
        per = max(1, (62 - int(group.max()).bit_length()) // bits)
        key = group.copy()
        for t in range(j, min(m, j + per)):
            key = (key << bits) | keys[:, t]
        uniq, group = np.unique(key, return_inverse=True)
        j += per
        if uniq.size == keys.shape[0]:
            break
    return group.reshape(n, pb)
