"""Automatic image registration: :func:`register_images` and its QC record :class:`RegistrationResult`.

Pipeline (``docs/image-registration.md``): one nuclear-like channel per image (:mod:`._preprocess`), a
rotation-, mirror- and scale-tolerant coarse search on thumbnails (:mod:`._coarse`), ECC affine refinement
on a pyramid (:mod:`._refine`), optional non-rigid refinement, then a quality check that raises
:class:`RegistrationError` instead of returning a transform of images that do not match.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from spatialpath.align._coarse import DEFAULT_SCALES, Candidate, coarse_search
from spatialpath.align._mutual_info import conditional_mean_map, nmi_affine
from spatialpath.align._nonrigid import estimate_displacement
from spatialpath.align._nonrigid_check import nonrigid_check
from spatialpath.align._preprocess import COMPOSITE_CHANNELS, Prepared, grid_matrix, prepare, smooth
from spatialpath.align._quality import RegistrationError, ncc, nmi, warp
from spatialpath.align._refine import ecc_affine, project, refine_patches
from spatialpath.align._register_result import RegistrationResult
from spatialpath.align._transform import Transform
from spatialpath.model import DataModelError

__all__ = ["RegistrationError", "RegistrationResult", "register_images"]

#: default acceptance threshold of ``similarity_after`` (NCC at the QC size); see the docs for the
#: measured distributions of matched and unrelated pairs.
MIN_SIMILARITY = 0.4
#: default minimum lead of the best coarse pose's correlation over the best distinct pose (ambiguity guard).
MIN_MARGIN = 0.1
#: default minimum overlap (fraction of the smaller image) after registration.
MIN_OVERLAP = 0.2
#: thumbnail size (long side, px) of the exhaustive rotation search; the candidate refinement and QC use 2×.
COARSE_SIZE = 160
#: thumbnail size (long side, px) of the exhaustive rotation/mirror/scale grid.
GRID_SIZE = 100
_SIGMA = 1.0  # smoothing (px) of both images at every refinement level


def _thumb(prep: Prepared, ps: float) -> tuple[np.ndarray, np.ndarray]:
    """The channel at exactly ``ps`` µm/px (block mean, then an anti-aliased resample), and its grid."""
    img, grid = prep.level(ps)
    ratio = ps / grid[0, 0]
    h, w = prep.shape
    shape = (max(2, int(h * prep.pixel_size_um / ps)), max(2, int(w * prep.pixel_size_um / ps)))
    out_grid = grid_matrix(ps, (grid[0, 2], grid[1, 2]))
    out, _ = warp(smooth(img, 0.5 * ratio if ratio > 1.2 else 0.0), np.linalg.inv(grid) @ out_grid, shape)
    return out, out_grid


def _resample(fixed: tuple[np.ndarray, np.ndarray], moving: tuple[np.ndarray, np.ndarray], m: np.ndarray):
    """Moving thumbnail in the fixed thumbnail grid under the µm map ``m`` (moving → fixed)."""
    (f, gf), (mv, gm) = fixed, moving
    return warp(mv, np.linalg.inv(gm) @ np.linalg.inv(m) @ gf, f.shape)


def _overlap(fixed: np.ndarray, moving: np.ndarray, valid: np.ndarray, lin_px: np.ndarray) -> float:
    area_m = moving.size * abs(np.linalg.det(lin_px))
    return float(min(1.0, valid.sum() / max(1.0, min(fixed.size, area_m))))


def _channels(img: xr.DataArray, channel: str | int | None, what: str) -> list[Prepared]:
    """The registration channel, or each of :data:`COMPOSITE_CHANNELS` for an RGB fluorescence composite.

    The channel whose coarse pose is the least ambiguous (largest lead) is kept by the caller.
    """
    p = prepare(img, channel, what=what)
    if channel is None and p.channel == "B" and img.sizes.get("c") == 3:
        return [p] + [prepare(img, c, what=what) for c in COMPOSITE_CHANNELS if c != "B"]
    return [p]


def _thumbs(pf: Prepared, pm: Prepared, max_size: int) -> tuple:
    extent = max(max(p.shape) * p.pixel_size_um for p in (pf, pm))
    native = min(pf.pixel_size_um, pm.pixel_size_um)
    for p in (pf, pm):  # read each image once, at the finest refinement level; the rest derives from it
        p.level(max(extent / max_size, native))
    s_coarse = max(extent / COARSE_SIZE, 2 * pf.pixel_size_um, 2 * pm.pixel_size_um)
    s_grid = max(extent / GRID_SIZE, s_coarse)
    sizes = (("grid", s_grid), ("coarse", s_coarse), ("fine", s_coarse / 2))
    thumbs = {k: (_thumb(pf, s), _thumb(pm, s)) for k, s in sizes}
    return pf, pm, thumbs, extent, native


def _search(thumbs: dict, model: str, allow_flip: bool, scales: tuple) -> list[Candidate]:
    sm = [((smooth(f, _SIGMA), gf), (smooth(mv, _SIGMA), gm)) for (f, gf), (mv, gm) in thumbs.values()]
    return coarse_search(
        [a for a, _ in sm], [b for _, b in sm], allow_flip=allow_flip, scales=scales, model=model
    )


def _margin(cands: list[Candidate], pm: Prepared, extent: float) -> tuple[float, float]:
    """Lead of the best candidate's score over the best *distinct* one, and that runner-up score.

    Distinct: its moving corners land more than 5 % of the extent away. No runner-up: score −1.
    """
    h, w = pm.shape
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1.0]]) @ pm.grid.T
    best = cands[0]
    for c in cands[1:]:
        d = np.linalg.norm((corners @ c.matrix.T - corners @ best.matrix.T)[:, :2], axis=1).max()
        if d > 0.05 * extent:
            return best.score - c.score, c.score
    return best.score + 1.0, -1.0


def _check_args(model: str, working_size: int, max_size: int, metric: str = "ncc") -> None:
    if model not in ("rigid", "similarity", "affine"):
        raise DataModelError(f"model must be 'rigid', 'similarity' or 'affine', got {model!r}")
    if metric not in ("ncc", "nmi"):
        raise DataModelError(f"metric must be 'ncc' or 'nmi', got {metric!r}")
    if not (isinstance(max_size, (int, np.integer)) and max_size >= 2 * COARSE_SIZE):
        raise DataModelError(f"max_size must be an integer ≥ {2 * COARSE_SIZE} pixels, got {max_size!r}")
    if not (isinstance(working_size, (int, np.integer)) and 2 * COARSE_SIZE <= working_size <= max_size):
        raise DataModelError(
            f"working_size must be an integer between {2 * COARSE_SIZE} and max_size={max_size}, "
            f"got {working_size!r}"
        )


def _one_blas_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with single-threaded BLAS.

    The registration's matrix products are small (≤ 60,000 × 6); on a loaded machine BLAS threads waiting
    for a core made ECC 14× slower (FIHC4 candidates: 11.2 s → 0.8 s).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


@_one_blas_thread
def register_images(
    fixed: xr.DataArray,
    moving: xr.DataArray,
    *,
    fixed_channel: str | int | None = None,
    moving_channel: str | int | None = None,
    model: Literal["rigid", "similarity", "affine"] = "affine",
    metric: Literal["ncc", "nmi"] = "ncc",
    nonrigid: bool = False,
    allow_flip: bool = True,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    working_size: int = 512,
    max_size: int = 2048,
    min_similarity: float = MIN_SIMILARITY,
    min_overlap: float = MIN_OVERLAP,
    min_margin: float = MIN_MARGIN,
    source: str = "moving",
    target: str = "fixed",
    progress: bool = True,
) -> RegistrationResult:
    """Find the transform that maps ``moving`` µm coordinates onto ``fixed`` µm coordinates.

    Parameters
    ----------
    fixed, moving
        Images with µm coordinates (``(c, y, x)``, ``(y, x)`` or ``(y, x, c)`` DataArrays, numpy or dask),
        or integer label masks ``(y, x)`` (registered through their foreground: nuclei).
    fixed_channel, moving_channel
        The channel to register: a name or index, ``"hematoxylin"`` (colour deconvolution of an RGB
        brightfield image), or ``"luminance"``. Default: a nuclear channel by name (DAPI, Hoechst, DNA…);
        for RGB, hematoxylin when the background is bright (brightfield), else the blue channel (the usual
        DAPI colour of fluorescence composites; then ``"B-G"`` and ``"luminance"`` are tried too, and the
        channel whose coarse pose leads its runner-up most is kept); a label mask's foreground; ``"B-G"``,
        ``"B-R"`` for RGB.
    model
        Class of the result: ``"rigid"`` (rotation, translation, optional mirror), ``"similarity"``
        (+ isotropic scale) or ``"affine"``.
    metric
        Similarity of the final affine step: ``"ncc"`` (ECC, then full-resolution patches: best for the same
        modality and for nuclear-like channel pairs) or ``"nmi"`` (ECC, then a normalised-mutual-information
        polish at the last level: for cross-modal pairs whose contrast changes sign with scale, e.g. nuclei
        ↔ a membrane stain where nuclei are dark holes).
    nonrigid
        Add a displacement field (:func:`spatialpath.align._nonrigid.estimate_displacement`).
    allow_flip, scales
        Search mirrored candidates; the scales (moving → fixed, µm) tried by the coarse search (0.8–1.25;
        pass ``(1.0,)`` when both pixel sizes are trusted: 9× fewer grid hypotheses).
    working_size, max_size
        Long side (px) of the first and last refinement levels; images larger than ``max_size`` get a
        final full-resolution correction from 256-px patches.
    min_similarity, min_overlap
        Raise :class:`RegistrationError` when ``similarity_after`` or ``overlap_fraction`` is below these.
    min_margin
        Raise :class:`RegistrationError` when the best coarse pose's correlation leads the best distinct
        pose (``runner_up_score``) by less than this: the pose is ambiguous.
    source, target
        Frame names of the returned :class:`~spatialpath.align.Transform`.
    progress
        Show a progress bar over the steps.

    Returns
    -------
    RegistrationResult

    Raises
    ------
    DataModelError
        Unknown units (no µm coordinates, bad pixel size), unknown channel, bad parameters.
    RegistrationError
        The registered images do not match (score below ``min_similarity``), barely overlap, or the pose
        is ambiguous (lead below ``min_margin``); the partial result is ``err.result``.

    Examples
    --------
    >>> from scipy import ndimage
    >>> from spatialpath.model import make_image
    >>> rng = np.random.default_rng(0)
    >>> img = ndimage.gaussian_filter(rng.random((300, 300)), 3)
    >>> fixed = make_image(img, channels=["DAPI"], pixel_size_um=0.5)
    >>> moving = make_image(np.rot90(img), channels=["DAPI"], pixel_size_um=0.5)
    >>> res = register_images(fixed, moving, model="rigid", progress=False)
    >>> round(res.transform.params()["rotation_deg"] % 360, 1), res.similarity_after > 0.95
    (90.0, True)
    """
    _check_args(model, working_size, max_size, metric)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    bar = tqdm(total=4 + int(nonrigid), desc="register_images", disable=not progress, leave=False)

    def step(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[name] = now - t0
        t0 = now
        bar.set_postfix_str(name)
        bar.update()

    # one coarse search per channel pair; RGB fluorescence composites try several channels
    pairs = [
        _thumbs(pf, pm, max_size)
        for pf in _channels(fixed, fixed_channel, "fixed")
        for pm in _channels(moving, moving_channel, "moving")
    ]
    step("preprocess")
    trials = [(*p, _search(p[2], model, allow_flip, scales)) for p in pairs]
    pf, pm, thumbs, extent, native, cands = max(trials, key=lambda t: _margin(t[5], t[1], t[3])[0])
    (ff, gff), (mf, gmf) = thumbs["fine"]
    _, runner_up = _margin(cands, pm, extent)
    m = cands[0].matrix.copy()
    if model != "affine":
        m[:2, :2] = project(m[:2, :2], model)
    step("coarse")

    # pyramid: halve the pixel size from the working size down to max_size (or the native pixel size)
    s = max(extent / working_size, native)
    s_last = max(extent / max_size, native)
    levels = [s]
    while s > s_last * 1.01:
        s = max(s / 2, s_last)
        levels.append(s)
    for s in levels:
        (fl, gf), (ml, gm) = pf.level(s), pm.level(s)
        pull = np.linalg.inv(gm) @ np.linalg.inv(m) @ gf
        pull, _rho = ecc_affine(
            smooth(fl, _SIGMA), smooth(ml, _SIGMA), pull, model=model, scale_to_fixed=gf[0, 0] / gm[0, 0]
        )
        m = gf @ np.linalg.inv(pull) @ np.linalg.inv(gm)
    if metric == "nmi":
        (fl, gf), (ml, gm) = pf.level(levels[-1]), pm.level(levels[-1])
        pull = np.linalg.inv(gm) @ np.linalg.inv(m) @ gf
        pull, _, _ = nmi_affine(
            smooth(fl, _SIGMA), smooth(ml, _SIGMA), pull, model=model, scale_to_fixed=gf[0, 0] / gm[0, 0]
        )
        m = gf @ np.linalg.inv(pull) @ np.linalg.inv(gm)
    elif levels[-1] > 1.5 * pf.pixel_size_um:  # phase correlation: same-polarity channels only
        m = _patch_step(pf, pm, m, model)
    step("refine")

    transform = Transform(m, source, target)
    nonrigid_record = None
    if nonrigid:
        transform, nonrigid_record = _nonrigid(pf, pm, m, levels[-1], source, target, remap=metric == "nmi")
        step("nonrigid")

    fixed_qc, moving_qc = thumbs["fine"]
    moved, valid = _resample(fixed_qc, moving_qc, m)
    before, valid0 = _resample(fixed_qc, moving_qc, np.eye(3))
    lin_px = (np.linalg.inv(gff) @ m @ gmf)[:2, :2]
    result = RegistrationResult(
        transform=transform,
        similarity_before=ncc(ff, before, valid0),
        similarity_after=ncc(ff, moved, valid),
        nmi_after=nmi(ff, moved, valid),
        overlap_fraction=_overlap(ff, mf, valid, lin_px),
        candidates=[c.to_dict() for c in cands],
        timings=timings,
        channels={"fixed": pf.channel, "moving": pm.channel},
        qc_pixel_size_um=float(gff[0, 0]),
        coarse_score=float(cands[0].score),
        runner_up_score=float(runner_up),
        nonrigid=nonrigid_record,
        _fixed_thumb=ff,
        _moved_thumb=moved,
        _valid=valid,
    )
    step("quality")
    bar.close()
    if not result.overlap_fraction >= min_overlap:
        raise RegistrationError(
            f"the registered images overlap on {result.overlap_fraction:.1%} of the smaller image, below "
            f"min_overlap={min_overlap:.0%}: they do not share tissue, or the coarse step failed (similarity "
            f"{result.similarity_after:.3f}); check that both show the same section, the channels "
            f"({pf.channel!r}, {pm.channel!r}) and the pixel sizes",
            result,
        )
    if not result.similarity_after >= min_similarity:
        undefined = (
            " (undefined: a constant image or no overlap)" if np.isnan(result.similarity_after) else ""
        )
        raise RegistrationError(
            f"registration failed: similarity (NCC) after registration is {result.similarity_after:.3f}"
            f"{undefined}, below min_similarity={min_similarity}; the images do not seem to match. Try other "
            f"channels (now {pf.channel!r} ↔ {pm.channel!r}: e.g. fixed_channel='DAPI', "
            "moving_channel='hematoxylin'), check "
            "the pixel sizes, or lower min_similarity if the overlay (err.result.plot_overlay()) looks right",
            result,
        )
    if not cands[0].score - runner_up >= min_margin:
        raise RegistrationError(
            f"registration is ambiguous: the best pose scores {cands[0].score:.3f} (correlation after the "
            f"coarse refinement) and a distinct runner-up pose scores {runner_up:.3f}, a lead below "
            f"min_margin={min_margin}; the channels ({pf.channel!r}, {pm.channel!r}) may not show the same "
            "structures: choose fixed_channel=/moving_channel=, or lower min_margin if the overlay "
            "(err.result.plot_overlay()) looks right",
            result,
        )
    return result


def _patch_step(pf: Prepared, pm: Prepared, m: np.ndarray, model: str) -> np.ndarray:
    """Full-resolution correction of ``m`` from a 6 × 6 grid of 256-px fixed windows."""
    gf, gm = pf.grid, pm.grid
    pull = np.linalg.inv(gm) @ np.linalg.inv(m) @ gf
    h, w = pf.shape
    cols, rows = np.meshgrid(np.linspace(0.1, 0.9, 6) * w, np.linspace(0.1, 0.9, 6) * h)
    centres = np.column_stack([cols.ravel(), rows.ravel()])
    pull, n = refine_patches(
        pf.patch,
        pm.patch,
        pf.shape,
        pm.shape,
        pull,
        centres=centres,
        model=model,
        scale_to_fixed=gf[0, 0] / gm[0, 0],
    )
    return gf @ np.linalg.inv(pull) @ np.linalg.inv(gm) if n >= 6 else m


def _nonrigid(
    pf: Prepared, pm: Prepared, m: np.ndarray, s: float, source: str, target: str, *, remap: bool = False
) -> tuple[Transform, dict]:
    """Affine plus a displacement field estimated at pixel size ``s`` in the fixed frame, if it helps.

    ``remap``: first map the moving intensities onto the fixed ones through their joint histogram
    (:func:`conditional_mean_map`), for cross-modal pairs registered by NMI. The field is kept only when it
    raises the quantile NMI of the fixed and the (raw, not remapped) moving image over their overlap by at
    least :data:`NONRIGID_MIN_GAIN` (:func:`nonrigid_check`); otherwise the affine transform is returned.
    Returns the transform and the check's record.
    """
    (fl, gf), (ml, gm) = pf.level(s), pm.level(s)
    moved, valid = warp(ml, np.linalg.inv(gm) @ np.linalg.inv(m) @ gf, fl.shape)
    target_img = conditional_mean_map(smooth(fl, _SIGMA), smooth(moved, _SIGMA), valid) if remap else moved
    # pull-back e in the fixed frame: fixed(y) ≈ moving(m⁻¹(y + e(y))), so T = (id + e)⁻¹ ∘ m
    e = estimate_displacement(
        fl,
        target_img,
        pixel_size_um=float(gf[0, 0]),
        origin_um=(float(gf[0, 2]), float(gf[1, 2])),
        mask=valid,
    )
    check = nonrigid_check(fl, moved, valid, e, gf)
    if not check["accepted"]:
        return Transform(m, source, target), check
    return Transform(m, source, target, displacement=e.inverse()), check
