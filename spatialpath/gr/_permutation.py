"""The permutation engine: one implementation behind every permutation test in spatialpath.

A statistic is a numba kernel ``kernel(labels, args, out)`` that fills the float64 vector ``out``
(zeroed beforehand) from per-cell integer ``labels``. The engine computes the observed statistic,
then for each permutation shuffles the labels **within each image** and streams, per entry of the
statistic, the sum and sum of squares of (permuted − observed) and the counts of permuted values
≥ and ≤ the observed one. Permuted statistics are stored only on request (``keep=True``, for tests
that need the whole null distribution, such as global envelope tests).

Reproducibility
    Permutation ``p`` uses its own random stream, seeded by child ``p`` of
    ``numpy.random.SeedSequence(seed).spawn(n_perms)`` (a SplitMix64 generator inside numba), and
    starts from the original labels, so each permutation is a function of ``(seed, p)`` alone.
    Permutations run in fixed blocks of :data:`BLOCK` whose accumulators are reduced in block
    order, so results are bit-identical whatever the number of threads.

Speed
    Blocks run in parallel (``numba.prange``, ``nogil``); each block allocates its workspace once
    (a label copy and an output vector), never per permutation. Labels are int8/int16 codes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np
from tqdm.auto import tqdm

from spatialpath.gr._progress import report
from spatialpath.gr._utils import Groups

__all__ = ["BLOCK", "PermutationResult", "permutation_seeds", "permutation_test", "shuffle_within"]

#: permutations per block: the unit of parallel work and of accumulation.
BLOCK = 16
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@numba.njit(inline="always")
def _next(state: np.ndarray) -> np.uint64:
    """SplitMix64: advance ``state[0]`` and return 64 random bits."""
    state[0] += _GOLDEN
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@numba.njit(nogil=True)
def shuffle_within(work: np.ndarray, offsets: np.ndarray, state: np.ndarray) -> None:
    """Fisher–Yates shuffle of each segment ``work[offsets[g]:offsets[g + 1]]`` in place."""
    for g in range(len(offsets) - 1):
        start = offsets[g]
        for k in range(offsets[g + 1] - start - 1, 0, -1):
            u = np.float64(_next(state) >> np.uint64(11)) * _TO_UNIT
            j = int(u * (k + 1))
            tmp = work[start + k]
            work[start + k] = work[start + j]
            work[start + j] = tmp


@numba.njit(parallel=True, nogil=True)
def _run_blocks(kernel, labels, order, offsets, identity, seeds, observed, args, first, last, acc, tol, kept):
    """Run permutation blocks ``first..last-1``; ``acc[b]`` holds block b's 4 accumulators.

    ``kept`` is ``(n_perms, n_stat)`` to store every permuted statistic, or ``(0, n_stat)``.
    """
    keep = kept.shape[0] > 0
    n = labels.shape[0]
    n_perms = seeds.shape[0]
    n_stat = observed.shape[0]
    for b in numba.prange(first, last):
        work = np.empty(n, labels.dtype)
        perm = np.empty(n, labels.dtype)
        out = np.empty(n_stat, np.float64)
        state = np.empty(1, np.uint64)
        for p in range(b * BLOCK, min((b + 1) * BLOCK, n_perms)):
            if identity:
                work[:] = labels
            else:
                for k in range(n):
                    work[k] = labels[order[k]]
            state[0] = seeds[p, 0] ^ (seeds[p, 1] * _GOLDEN)
            shuffle_within(work, offsets, state)
            if identity:
                lab = work
            else:
                for k in range(n):
                    perm[order[k]] = work[k]
                lab = perm
            out[:] = 0.0
            kernel(lab, args, out)
            if keep:
                kept[p, :] = out
            for s in range(n_stat):
                d = out[s] - observed[s]
                acc[b, 0, s] += d
                acc[b, 1, s] += d * d
                if d >= -tol:
                    acc[b, 2, s] += 1.0
                if d <= tol:
                    acc[b, 3, s] += 1.0


def permutation_seeds(seed: int, n_perms: int) -> np.ndarray:
    """Return ``(n_perms, 2)`` uint64 seeds: child ``p`` of ``SeedSequence(seed).spawn(n_perms)``."""
    children = np.random.SeedSequence(seed).spawn(n_perms)
    return np.array([c.generate_state(2, np.uint64) for c in children], dtype=np.uint64).reshape(n_perms, 2)


@dataclass(frozen=True)
class PermutationResult:
    """Observed statistic and its permutation distribution, summarised without storing it.

    ``mean`` and ``var`` are the mean and variance (ddof 0) of the permuted statistic;
    ``n_ge`` / ``n_le`` count permutations with a value ≥ / ≤ the observed one. ``samples`` is the
    ``(n_perms, n_stats)`` array of permuted statistics when the test ran with ``keep=True``.
    """

    observed: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    n_ge: np.ndarray
    n_le: np.ndarray
    n_perms: int
    samples: np.ndarray | None = None

    def zscore(self) -> np.ndarray:
        """``(observed − mean) / sd``; NaN where the permutation sd is 0."""
        sd = np.sqrt(self.var)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sd > 0, (self.observed - self.mean) / sd, np.nan)

    def pvalue(self, alternative: Literal["two-sided", "greater", "less"] = "two-sided") -> np.ndarray:
        """Empirical p-value with the +1 correction, ``(count + 1) / (n_perms + 1)``.

        ``greater`` counts permutations ≥ observed, ``less`` those ≤ observed; ``two-sided`` is
        twice the smaller one-sided p, capped at 1. Never 0.
        """
        m = self.n_perms + 1
        greater = (self.n_ge + 1) / m
        less = (self.n_le + 1) / m
        if alternative == "greater":
            return greater
        if alternative == "less":
            return less
        if alternative == "two-sided":
            return np.minimum(1.0, 2 * np.minimum(greater, less))
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")


def permutation_test(
    kernel: Callable[..., None],
    labels: np.ndarray,
    groups: Groups,
    args: tuple[Any, ...],
    n_stats: int,
    *,
    n_perms: int = 1000,
    seed: int = 0,
    tolerance: float = 0.0,
    progress: bool = True,
    desc: str = "permutations",
    keep: bool = False,
) -> PermutationResult:
    """Run a permutation test of ``kernel`` with labels shuffled within each image.

    Parameters
    ----------
    kernel
        A ``numba.njit`` function ``kernel(labels, args, out)`` adding the statistic of
        ``labels`` (one integer code per cell, in the cells' original order) into the float64
        vector ``out`` of length ``n_stats`` (zeroed before each call).
    labels
        Integer label codes per cell (int8/int16/int32); read-only arrays are fine.
    groups
        Images of the cells (:func:`spatialpath.gr._utils.image_groups`).
    args
        A tuple of arrays/scalars passed to the kernel unchanged.
    n_stats
        Length of the statistic vector.
    n_perms, seed
        Number of permutations (≥ 1) and the seed of ``numpy.random.SeedSequence``.
    tolerance
        A permuted value counts as ≥ (≤) the observed one when it is within ``tolerance`` below
        (above) it. 0 for integer statistics; ratios computed in a different order may need
        ``sqrt(eps)`` (imcRtools' convention).
    progress
        Show a progress bar (updated between rounds of blocks).
    desc
        Progress-bar label.
    keep
        Also return every permuted statistic (``PermutationResult.samples``, ``n_perms × n_stats``
        float64: mind the memory).

    Returns
    -------
    :class:`PermutationResult`.

    Examples
    --------
    >>> import numba, numpy as np
    >>> from spatialpath.gr._utils import Groups
    >>> @numba.njit
    ... def n_first_half_a(labels, args, out):  # number of label-0 cells among the first 5
    ...     for i in range(5):
    ...         out[0] += labels[i] == 0
    >>> labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], np.int8)
    >>> g = Groups(["img"], np.zeros(10, np.int32), np.arange(10), np.array([0, 10]))
    >>> r = permutation_test(n_first_half_a, labels, g, (), 1, n_perms=999, seed=1, progress=False)
    >>> float(r.observed[0]), bool(abs(r.mean[0] - 2.5) < 0.1), float(r.pvalue("greater")[0])
    (5.0, True, 0.005)
    """
    if not isinstance(n_perms, int | np.integer) or n_perms < 1:
        raise ValueError(f"n_perms must be a positive integer, got {n_perms!r}")
    labels = np.ascontiguousarray(labels)
    order = np.ascontiguousarray(groups.order, dtype=np.int64)
    offsets = np.ascontiguousarray(groups.offsets, dtype=np.int64)
    identity = bool(np.array_equal(order, np.arange(len(order))))
    observed = np.zeros(n_stats, np.float64)
    kernel(labels, args, observed)
    seeds = permutation_seeds(seed, int(n_perms))
    n_blocks = -(-int(n_perms) // BLOCK)
    acc = np.zeros((n_blocks, 4, n_stats), np.float64)
    kept = np.zeros((int(n_perms) if keep else 0, n_stats), np.float64)
    per_round = max(1, 4 * numba.get_num_threads())
    report(0, n_perms, desc)
    with tqdm(total=int(n_perms), desc=desc, disable=not progress, leave=False) as bar:
        for first in range(0, n_blocks, per_round):
            last = min(n_blocks, first + per_round)
            _run_blocks(
                kernel,
                labels,
                order,
                offsets,
                identity,
                seeds,
                observed,
                args,
                first,
                last,
                acc,
                float(tolerance),
                kept,
            )
            bar.update(min(last * BLOCK, n_perms) - first * BLOCK)
            report(min(last * BLOCK, n_perms), n_perms, desc)
    total = acc.sum(axis=0) if n_blocks == 1 else _ordered_sum(acc)
    mean_d = total[0] / n_perms
    var = np.maximum(total[1] / n_perms - mean_d**2, 0.0)
    return PermutationResult(
        observed=observed,
        mean=observed + mean_d,
        var=var,
        n_ge=total[2].astype(np.int64),
        n_le=total[3].astype(np.int64),
        n_perms=int(n_perms),
        samples=kept if keep else None,
    )


def _ordered_sum(acc: np.ndarray) -> np.ndarray:
    """Sum block accumulators strictly in block order (deterministic floating-point result)."""
    total = acc[0].copy()
    for b in range(1, acc.shape[0]):
        total += acc[b]
    return total
