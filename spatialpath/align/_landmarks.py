"""Landmark registration: a rigid, similarity or affine :class:`Transform` from point pairs, with RANSAC.

:func:`register_landmarks` fits the transform mapping ``moving`` landmarks onto their ``fixed``
partners, flags outliers by RANSAC and reports, per landmark, the residual and the leave-one-out
target registration error (TRE) in µm. The estimators live in :mod:`._landmark_fit`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy.spatial import cKDTree

from spatialpath.align import _landmark_fit as lf
from spatialpath.align._transform import Transform
from spatialpath.model import DataModelError

__all__ = ["LandmarkRegistration", "register_landmarks"]

#: columns of ``LandmarkRegistration.residuals``.
COLUMNS = [
    "landmark", "fixed_x", "fixed_y", "moving_x", "moving_y", "mapped_x", "mapped_y",
    "residual_um", "inlier", "loo_tre_um",
]  # fmt: skip
_FORM = "an (n, 2) array of x, y in µm, a DataFrame with x/y columns or a napari Points layer"


@dataclass(frozen=True, eq=False)
class LandmarkRegistration:
    """The result of :func:`register_landmarks`.

    ``transform`` maps ``source`` (moving) into ``target`` (fixed). ``residuals`` has one row per
    landmark pair: ``landmark`` (row index of the input), ``fixed_x/y``, ``moving_x/y``,
    ``mapped_x/y`` (moving mapped by ``transform``), ``residual_um`` (‖mapped − fixed‖),
    ``inlier`` and ``loo_tre_um`` (for an inlier: the distance of its prediction by the model
    refitted on the other inliers; for an outlier, already held out, its residual).
    ``threshold_um`` is the RANSAC inlier threshold (``None`` without RANSAC), ``flip`` whether the
    fit mirrors x (for an affine: whether its determinant is negative), ``n_trials`` the RANSAC
    minimal sets drawn.
    """

    transform: Transform
    residuals: pd.DataFrame
    model: str
    flip: bool
    threshold_um: float | None
    n_trials: int
    seed: int

    @property
    def n_landmarks(self) -> int:
        """Number of landmark pairs."""
        return len(self.residuals)

    @property
    def n_inliers(self) -> int:
        """Number of landmarks used by the final fit."""
        return int(self.residuals["inlier"].sum())

    @property
    def tre_um(self) -> dict[str, float]:
        """Leave-one-out TRE over the inliers (µm): ``median``, ``p90`` (ACROBAT), ``mean``, ``max``."""
        tre = self.residuals.loc[self.residuals["inlier"], "loo_tre_um"].to_numpy()
        tre = tre[np.isfinite(tre)]
        if tre.size == 0:
            return dict.fromkeys(("median", "p90", "mean", "max"), float("nan"))
        return {
            "median": float(np.median(tre)),
            "p90": float(np.percentile(tre, 90)),
            "mean": float(tre.mean()),
            "max": float(tre.max()),
        }

    @property
    def rmse_um(self) -> float:
        """Root mean square residual of the inliers (µm): how well the model fits, not a TRE."""
        r = self.residuals.loc[self.residuals["inlier"], "residual_um"].to_numpy()
        return float(np.sqrt(np.mean(r**2)))

    def summary(self) -> dict[str, Any]:
        """Plain-data summary: model, mirror, counts, threshold, RMSE and TRE (µm), parameters."""
        return {
            "model": self.model,
            "flip": self.flip,
            "n_landmarks": self.n_landmarks,
            "n_inliers": self.n_inliers,
            "threshold_um": self.threshold_um,
            "rmse_um": self.rmse_um,
            "tre_um": self.tre_um,
            "params": self.transform.params(),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record for provenance: the transform, the settings and the landmark table."""
        table = self.residuals.astype({"inlier": bool}).replace({np.nan: None})
        return {
            "transform": self.transform.to_dict(),
            "model": self.model,
            "flip": self.flip,
            "threshold_um": self.threshold_um,
            "n_trials": self.n_trials,
            "seed": self.seed,
            "landmarks": table.to_dict(orient="records"),
        }

    def plot(self, ax: Axes | None = None) -> Figure:
        """Fixed landmarks, mapped moving landmarks and the residual vectors (µm, y downwards)."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5)) if ax is None else (ax.figure, ax)
        t = self.residuals
        ok = t["inlier"].to_numpy()
        ax.quiver(
            t["mapped_x"],
            t["mapped_y"],
            t["fixed_x"] - t["mapped_x"],
            t["fixed_y"] - t["mapped_y"],
            np.where(ok, 0.0, 1.0),
            cmap="coolwarm",
            angles="xy",
            scale_units="xy",
            scale=1.0,
            width=0.004,
        )
        ax.scatter(t["fixed_x"], t["fixed_y"], s=30, facecolors="none", edgecolors="k", label="fixed")
        ax.scatter(t.loc[ok, "mapped_x"], t.loc[ok, "mapped_y"], s=12, c="tab:blue", label="mapped (inlier)")
        if (~ok).any():
            ax.scatter(
                t.loc[~ok, "mapped_x"], t.loc[~ok, "mapped_y"], s=12, c="tab:red", label="mapped (outlier)"
            )
        for row in t.itertuples():
            ax.annotate(str(row.landmark), (row.fixed_x, row.fixed_y), fontsize=7, alpha=0.7)
        tre = self.tre_um
        ax.set_title(
            f"{self.model}: {self.n_inliers}/{self.n_landmarks} inliers, "
            f"TRE median {tre['median']:.3g} µm, p90 {tre['p90']:.3g} µm",
            fontsize=9,
        )
        ax.set_xlabel(f"x ({self.transform.target}, µm)")
        ax.set_ylabel(f"y ({self.transform.target}, µm)")
        ax.set_aspect("equal")
        if not ax.yaxis_inverted():
            ax.invert_yaxis()
        ax.legend(fontsize=7, loc="best")
        return fig

    def __repr__(self) -> str:
        tre = self.tre_um
        thr = "no RANSAC" if self.threshold_um is None else f"RANSAC τ={self.threshold_um:.4g} µm"
        return (
            f"LandmarkRegistration({self.model}{', flip' if self.flip else ''}, "
            f"{self.transform.source!r} → {self.transform.target!r}: {self.n_inliers}/{self.n_landmarks} "
            f"inliers ({thr}), RMSE {self.rmse_um:.4g} µm, LOO TRE median {tre['median']:.4g} µm, "
            f"p90 {tre['p90']:.4g} µm)"
        )

    def _repr_html_(self) -> str:
        table = self.residuals.to_html(index=False, float_format=lambda v: f"{v:.4g}")
        return f"<p><b>{html.escape(repr(self))}</b></p>{self.transform._repr_html_()}{table}"


def _world_xy(layer: Any) -> np.ndarray:
    """World (µm) x, y of a napari Points layer (duck-typed; napari's order is (…, row, col))."""
    data = np.asarray(layer.data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] < 2:
        raise DataModelError(
            f"a Points layer's data must be (n, D) with D ≥ 2 (…, row, col), got shape {data.shape}"
        )
    if hasattr(layer, "data_to_world"):
        world = np.array([layer.data_to_world(p) for p in data], dtype=np.float64).reshape(len(data), -1)
    else:
        world = data * np.asarray(getattr(layer, "scale", 1.0), float) + np.asarray(
            getattr(layer, "translate", 0.0), float
        )
        affine = getattr(layer, "affine", None)
        if affine is not None:
            mat = np.asarray(getattr(affine, "affine_matrix", affine), float)
            world = world @ mat[:-1, :-1].T + mat[:-1, -1]
    return world[:, [-1, -2]]


def _as_xy(obj: Any, name: str) -> np.ndarray:
    """``(n, 2)`` float64 x, y (µm) from an array, a DataFrame (x/y columns) or a Points layer."""
    if hasattr(obj, "data") and (hasattr(obj, "data_to_world") or hasattr(obj, "scale")):
        xy = _world_xy(obj)
    elif isinstance(obj, pd.DataFrame) or (hasattr(obj, "compute") and hasattr(obj, "columns")):
        df = obj.compute() if hasattr(obj, "compute") else obj
        if not {"x", "y"} <= set(df.columns):
            raise DataModelError(
                f"`{name}` is a DataFrame without 'x' and 'y' columns (got {list(df.columns)[:6]}); "
                f"expected {_FORM}"
            )
        xy = df[["x", "y"]].to_numpy(dtype=np.float64)
    else:
        try:
            xy = np.asarray(obj, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise DataModelError(f"`{name}` is a {type(obj).__name__}; expected {_FORM}") from err
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise DataModelError(
            f"`{name}` must be {_FORM}; got shape {xy.shape}. For (row, col) pixel arrays, swap the "
            "columns and multiply by the pixel size"
        )
    bad = np.flatnonzero(~np.isfinite(xy).all(axis=1))
    if bad.size:
        raise DataModelError(
            f"`{name}` has NaN or infinite coordinates in rows {bad[:10].tolist()}; every landmark needs "
            "finite x, y in µm: drop or fix those pairs"
        )
    return xy


def _check_pairs(fixed: np.ndarray, moving: np.ndarray) -> None:
    if len(fixed) != len(moving):
        raise DataModelError(
            f"`fixed` has {len(fixed)} landmarks but `moving` has {len(moving)}; row i of one must pair "
            "with row i of the other: give both the same landmarks in the same order"
        )
    if len(fixed) < 3:
        raise DataModelError(
            f"landmark registration needs at least 3 landmark pairs, got {len(fixed)}: add landmarks "
            "spread over the tissue (≥ 6 recommended for RANSAC and a meaningful TRE)"
        )
    for name, pts in (("fixed", fixed), ("moving", moving)):
        pairs = sorted(cKDTree(pts).query_pairs(1e-9 * max(lf.spread(pts), 1e-12)))
        if pairs:
            raise DataModelError(
                f"`{name}` has duplicated landmarks (rows {[list(p) for p in pairs[:5]]} coincide); each "
                "landmark must be a distinct point: remove the repeated pair"
            )
        if lf.flatness(pts) < lf.COLLINEAR_TOL:
            raise DataModelError(
                f"the `{name}` landmarks are collinear (singular-value ratio {lf.flatness(pts):.2g} < "
                f"{lf.COLLINEAR_TOL:g}): the mirror and shear are undetermined; add landmarks off the line"
            )


def register_landmarks(
    fixed: Any,
    moving: Any,
    *,
    model: Literal["rigid", "similarity", "affine"] = "similarity",
    flip: bool | None = None,
    ransac: bool = True,
    residual_threshold_um: float | None = None,
    max_trials: int = 2000,
    seed: int = 0,
    source: str = "moving",
    target: str = "fixed",
) -> LandmarkRegistration:
    """Fit the transform mapping ``moving`` landmarks onto ``fixed`` ones; report residuals and TRE.

    Parameters
    ----------
    fixed, moving
        Paired landmarks, row ``i`` of one with row ``i`` of the other: ``(n, 2)`` arrays of x, y
        in µm, DataFrames with ``x``/``y`` columns (µm), or napari Points layers (duck-typed: world
        coordinates from ``layer.data_to_world``, else ``scale``/``translate``/``affine``, must be
        µm; the last two axes are (row, col) = (y, x)). At least 3 pairs, not collinear.
    model
        ``"rigid"`` (rotation + shift), ``"similarity"`` (+ isotropic scale; Umeyama 1991) or
        ``"affine"`` (6 parameters, ordinary least squares).
    flip
        Mirror of x before the rigid/similarity fit. ``None`` decides from the data: without
        RANSAC by the sign of the least-squares affine's determinant (as spatialdata does), with
        RANSAC by running both hypotheses and keeping the larger consensus (then the smaller RMSE).
        An affine fits its own determinant sign; a forced ``flip`` must agree with it.
    ransac
        Flag outliers by RANSAC on minimal sets (2 pairs, 3 for affine) and fit the inliers;
        ``False`` fits all landmarks.
    residual_threshold_um
        RANSAC inlier threshold τ (µm). ``None``: least median of squares over minimal sets gives
        a noise scale σ̂ = (1 + 5/(n − m)) · median residual / √(2 ln 2) (Rayleigh median of
        isotropic Gaussian noise), and τ = max(3σ̂, 10⁻⁶ × RMS radius of the fixed landmarks);
        valid below 50 % outliers.
    max_trials
        Cap on RANSAC minimal sets; the count adapts to N = log(0.001)/log(1 − wᵐ) for inlier ratio w.
    seed
        Seed of ``numpy.random.default_rng`` for the minimal sets: same seed, same result.
    source, target
        Frame names of ``moving`` and ``fixed``; the transform maps ``source`` → ``target``.

    Returns
    -------
    LandmarkRegistration
        ``transform``, the per-landmark ``residuals`` table (residual and leave-one-out TRE in
        µm, inlier flag), ``tre_um`` (median/p90 over inliers), ``rmse_um``, ``n_inliers``, ``plot()``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> moving = rng.uniform(0, 1000, (12, 2))
    >>> truth = Transform.from_params(rotation_deg=30, scale=0.5, translation=(100, -20))
    >>> fixed = truth.apply_points(moving)
    >>> fixed[0] += 80.0  # a mis-clicked landmark
    >>> reg = register_landmarks(fixed, moving, source="he", target="dapi")
    >>> reg.n_inliers, bool(reg.residuals.loc[0, "inlier"])
    (11, False)
    >>> round(reg.transform.params()["rotation_deg"], 6), round(reg.tre_um["p90"], 6)
    (30.0, 0.0)
    >>> reg.transform.source, reg.transform.target
    ('he', 'dapi')
    """
    if model not in lf.MINIMAL:
        raise DataModelError(f"unknown model {model!r}; expected one of {sorted(lf.MINIMAL)}")
    if flip not in (None, True, False):
        raise DataModelError(f"flip must be None (decide from the data), True or False, got {flip!r}")
    if not isinstance(max_trials, (int, np.integer)) or max_trials < 1:
        raise DataModelError(f"max_trials must be a positive integer, got {max_trials!r}")
    if residual_threshold_um is not None:
        if not ransac:
            raise DataModelError(
                "residual_threshold_um is the RANSAC inlier threshold; with ransac=False every landmark "
                "is used: drop residual_threshold_um or set ransac=True"
            )
        if not np.isfinite(residual_threshold_um) or residual_threshold_um <= 0:
            raise DataModelError(
                f"residual_threshold_um must be a positive distance in µm, got {residual_threshold_um!r}"
            )
    fixed_xy, moving_xy = _as_xy(fixed, "fixed"), _as_xy(moving, "moving")
    _check_pairs(fixed_xy, moving_xy)

    if model == "affine":
        mirrors = [False]
    elif flip is not None:
        mirrors = [bool(flip)]
    elif ransac:
        mirrors = [False, True]
    else:
        mirrors = [bool(np.linalg.det(lf.fit("affine", moving_xy, fixed_xy, False)[:2, :2]) < 0)]

    n = len(fixed_xy)
    inliers, threshold, n_trials = np.ones(n, bool), None, 0
    if ransac:
        rng = np.random.default_rng(seed)
        threshold = (
            float(residual_threshold_um)
            if residual_threshold_um is not None
            else lf.lmeds_threshold(model, moving_xy, fixed_xy, mirrors, rng, max_trials)
        )
        best, error = None, None
        for mirror in mirrors:
            consensus, trials = lf.ransac(model, moving_xy, fixed_xy, mirror, threshold, rng, max_trials)
            n_trials += trials
            try:
                matrix, mask = lf.refine(model, moving_xy, fixed_xy, mirror, consensus, threshold)
            except DataModelError as err:
                error = error or err
                continue
            r = lf.residuals(matrix, moving_xy[mask], fixed_xy[mask])
            score = (int(mask.sum()), -float(np.mean(r**2)))
            if best is None or score > best[0]:
                best = (score, mirror, matrix, mask)
        if best is None:
            raise error  # type: ignore[misc]
        _, mirror, matrix, inliers = best
    else:
        mirror = mirrors[0]
        matrix = lf.fit(model, moving_xy, fixed_xy, mirror)

    det_negative = bool(np.linalg.det(matrix[:2, :2]) < 0)
    if model == "affine" and flip is not None and det_negative != flip:
        raise DataModelError(
            f"the affine fit {'mirrors' if det_negative else 'does not mirror'} the landmarks (determinant "
            f"{np.linalg.det(matrix[:2, :2]):.3g}) but flip={flip}: check the pairing and the axis order "
            "(x, y), or pass flip=None"
        )
    transform = Transform(matrix, source, target)
    mapped = transform.apply_points(moving_xy)
    resid = np.linalg.norm(mapped - fixed_xy, axis=1)
    loo = resid.copy()
    loo[inliers] = lf.loo_errors(model, moving_xy[inliers], fixed_xy[inliers], mirror)
    table = pd.DataFrame(
        {
            "landmark": np.arange(n),
            "fixed_x": fixed_xy[:, 0],
            "fixed_y": fixed_xy[:, 1],
            "moving_x": moving_xy[:, 0],
            "moving_y": moving_xy[:, 1],
            "mapped_x": mapped[:, 0],
            "mapped_y": mapped[:, 1],
            "residual_um": resid,
            "inlier": inliers,
            "loo_tre_um": loo,
        },
        columns=COLUMNS,
    )
    return LandmarkRegistration(
        transform=transform,
        residuals=table,
        model=model,
        flip=det_negative,
        threshold_um=threshold,
        n_trials=n_trials,
        seed=seed,
    )
