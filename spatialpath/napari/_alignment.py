"""The logic of the "Alignment" widget, as plain functions (no napari, no Qt).

Landmarks are two napari Points layers paired by order (row ``i`` of one with row ``i`` of the
other); their world coordinates (µm, ``(y, x)``) come from ``layer.data_to_world``. The fitted
:class:`~spatialpath.align.Transform` maps the moving side's *current* world coordinates onto the
fixed side's, so applying it composes it with the layers' current ``affine``: no pixel is
resampled, and fitting again after applying gives the identity.

napari orders axes (row, column) = (y, x); a spatialpath ``Transform`` acts on (x, y). The layer
affine of a transform is therefore its 3×3 matrix with both axes swapped: ``P · M · P`` with
``P`` the swap of the first two coordinates (:func:`napari_affine`).

Examples
--------
>>> from spatialpath.align import Transform
>>> napari_affine(Transform.from_params(translation=(5.0, -2.0))).tolist()
[[1.0, 0.0, -2.0], [0.0, 1.0, 5.0], [0.0, 0.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from spatialpath.align import (
    LandmarkRegistration,
    RegistrationResult,
    Transform,
    register_images,
    register_landmarks,
)
from spatialpath.model import DataModelError
from spatialpath.napari._compartments import world_matrix
from spatialpath.napari._keys import IMAGE_ID

__all__ = [
    "apply_to_layers",
    "auto_register",
    "fit_landmarks",
    "image_from_layer",
    "landmarks_from_layers",
    "layer_affine",
    "layers_to_move",
    "napari_affine",
    "quality_report",
    "residual_table",
    "world_transform",
    "xy_matrix",
]

#: swaps (x, y) and (y, x) in homogeneous 2-D coordinates.
SWAP = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
#: columns of the widget's residual table.
RESIDUAL_COLUMNS = ["landmark", "residual_um", "loo_tre_um", "inlier"]


def napari_affine(transform: Transform) -> np.ndarray:
    """The 3×3 layer ``affine`` in napari's (y, x) order of a Transform acting on (x, y).

    Examples
    --------
    >>> t = Transform.from_params(rotation_deg=90)  # x → y
    >>> napari_affine(t)[:2, :2].round(12).tolist()
    [[0.0, 1.0], [-1.0, 0.0]]
    """
    if not isinstance(transform, Transform):
        raise DataModelError(f"expected a spatialpath.align.Transform, got {type(transform).__name__}")
    if not transform.is_affine:
        raise DataModelError(
            "a non-rigid transform (with a displacement field) cannot be shown through a layer affine; "
            "use its affine part (transform.affine) or resample with spatialpath.align.warp_image"
        )
    return SWAP @ transform.matrix @ SWAP


def xy_matrix(affine_yx: Any) -> np.ndarray:
    """The (x, y) 3×3 matrix of a napari (…, y, x) affine (its last two spatial axes).

    Examples
    --------
    >>> xy_matrix(np.array([[1.0, 0, 3], [0, 2, 4], [0, 0, 1]])).tolist()
    [[2.0, 0.0, 4.0], [0.0, 1.0, 3.0], [0.0, 0.0, 1.0]]
    """
    a = np.asarray(getattr(affine_yx, "affine_matrix", affine_yx), float)
    yx = np.eye(3)
    yx[:2, :2], yx[:2, 2] = a[-3:-1, -3:-1], a[-3:-1, -1]
    return SWAP @ yx @ SWAP


def layer_affine(layer: Any) -> np.ndarray:
    """The layer's current ``affine`` as an ``(ndim + 1)²`` matrix (identity when it has none)."""
    a = getattr(layer, "affine", None)
    if a is None:
        return np.eye(int(getattr(layer, "ndim", 2)) + 1)
    return np.asarray(getattr(a, "affine_matrix", a), float)


def _embed(yx: np.ndarray, ndim: int) -> np.ndarray:
    """A 2-D (y, x) 3×3 affine acting on the last two axes of an ``ndim`` layer."""
    m = np.eye(ndim + 1)
    m[ndim - 2 : ndim, ndim - 2 : ndim] = yx[:2, :2]
    m[ndim - 2 : ndim, ndim] = yx[:2, 2]
    return m


def _name(layer: Any) -> str:
    return str(getattr(layer, "name", type(layer).__name__))


def _world_xy(layer: Any, side: str) -> np.ndarray:
    data = np.asarray(getattr(layer, "data", None) if layer is not None else None, dtype=float)
    if layer is None or data.ndim != 2 or data.shape[1] < 2:
        raise DataModelError(f"choose a Points layer of {side} landmarks (an (n, 2) layer of clicked points)")
    matrix = world_matrix(getattr(layer, "data_to_world", None), data.shape[1])
    world = data @ matrix[:-1, :-1].T + matrix[:-1, -1]
    return world[:, [-1, -2]]


def landmarks_from_layers(fixed_layer: Any, moving_layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """World x, y (µm) of two Points layers of landmarks, paired by order.

    Raises :class:`~spatialpath.model.DataModelError` when the layers hold different numbers of
    points or fewer than 3.

    Examples
    --------
    >>> from types import SimpleNamespace as L
    >>> f = L(name="f", data=np.array([[0.0, 0], [0, 1], [1, 0]]), data_to_world=lambda p: np.asarray(p) * 2)
    >>> fixed_xy, moving_xy = landmarks_from_layers(f, f)
    >>> fixed_xy.tolist()
    [[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]
    """
    fixed, moving = _world_xy(fixed_layer, "fixed"), _world_xy(moving_layer, "moving")
    if len(fixed) != len(moving):
        raise DataModelError(
            f"the fixed landmarks ({_name(fixed_layer)!r}) have {len(fixed)} points but the moving ones "
            f"({_name(moving_layer)!r}) have {len(moving)}; landmarks pair by order: click the same "
            "structures in the same order on both images"
        )
    if len(fixed) < 3:
        raise DataModelError(
            f"at least 3 landmark pairs are needed, got {len(fixed)}: click more landmarks spread over the "
            "tissue (6 or more for RANSAC and a meaningful TRE)"
        )
    return fixed, moving


def fit_landmarks(
    fixed_layer: Any,
    moving_layer: Any,
    *,
    model: str = "similarity",
    ransac: bool = True,
    residual_threshold_um: float | None = None,
    seed: int = 0,
) -> LandmarkRegistration:
    """Fit the moving landmarks onto the fixed ones (:func:`~spatialpath.align.register_landmarks`).

    The transform maps moving *world* µm (as shown now) to fixed world µm.

    Examples
    --------
    >>> from types import SimpleNamespace as L
    >>> pts = np.array([[0.0, 0], [0, 10], [10, 0], [7, 7]])
    >>> reg = fit_landmarks(L(data=pts + [1, 2], scale=(1, 1)), L(data=pts, scale=(1, 1)), model="rigid")
    >>> reg.transform.translation.round(9).tolist()
    [2.0, 1.0]
    """
    fixed, moving = landmarks_from_layers(fixed_layer, moving_layer)
    return register_landmarks(
        fixed,
        moving,
        model=model,  # type: ignore[arg-type]
        ransac=ransac,
        residual_threshold_um=residual_threshold_um if ransac else None,
        seed=seed,
        source="moving",
        target="fixed",
    )


def residual_table(registration: LandmarkRegistration, decimals: int = 3) -> pd.DataFrame:
    """Per landmark: residual and leave-one-out TRE (µm), inlier flag; for the widget's table."""
    t = registration.residuals[RESIDUAL_COLUMNS].copy()
    t[["residual_um", "loo_tre_um"]] = t[["residual_um", "loo_tre_um"]].round(decimals)
    return t.reset_index(drop=True)


def layers_to_move(
    layers: Iterable[Any], moving_image: Any, *, extra: Sequence[Any] = (), exclude: Sequence[Any] = ()
) -> list:
    """The moving image layer, the layers of its ``image_id`` (cells, shapes, channels) and ``extra``."""
    image_id = getattr(moving_image, "metadata", {}).get(IMAGE_ID)
    out: list = []
    for layer in [moving_image, *layers, *extra]:
        same = layer is moving_image or any(layer is e for e in extra)
        same = same or (image_id is not None and getattr(layer, "metadata", {}).get(IMAGE_ID) == image_id)
        if same and not any(layer is o for o in out) and not any(layer is e for e in exclude):
            out.append(layer)
    return out


def apply_to_layers(layers: Iterable[Any], transform: Transform) -> dict[str, np.ndarray]:
    """Compose ``transform`` (moving world → fixed world) with each layer's ``affine``; no resampling.

    Returns the previous affines by layer name (to undo).
    """
    step = napari_affine(transform)
    before = {}
    for layer in layers:
        current = layer_affine(layer)
        before[_name(layer)] = current
        layer.affine = _embed(step, current.shape[0] - 1) @ current
    return before


def image_from_layer(layer: Any):
    """An image layer's data as a spatialpath DataArray in its own µm frame (``scale``/``translate``).

    The layer's ``affine`` is left out (it is the alignment, composed with the result); a rotated
    or sheared grid, or unequal pixel sizes in y and x, are refused. Multiscale layers give their
    first (full-resolution) level, which stays lazy when it is a dask array.
    """
    import xarray as xr

    data = getattr(layer, "data", None)
    if data is None:
        raise DataModelError("choose an image layer")
    if getattr(layer, "multiscale", False):
        data = data[0]
    rgb = bool(getattr(layer, "rgb", False))
    spatial = data.ndim - (1 if rgb else 0)
    if spatial != 2:
        raise DataModelError(
            f"image layer {_name(layer)!r} has {spatial} spatial dimensions; automatic registration needs "
            "one 2-D channel (open the image with channel_axis so each channel is its own layer)"
        )
    full = world_matrix(layer.data_to_world, 2)
    physical = np.linalg.inv(SWAP @ xy_matrix(layer_affine(layer)) @ SWAP) @ full
    (sy, a), (b, sx) = physical[:2, :2]
    if abs(a) > 1e-9 * abs(sy) or abs(b) > 1e-9 * abs(sx) or not np.isclose(sy, sx, rtol=1e-6) or sy <= 0:
        raise DataModelError(
            f"image layer {_name(layer)!r} is not on a square, axis-aligned µm grid apart from its affine "
            f"(scale/rotate/shear give {physical[:2, :2].round(6).tolist()}); automatic registration needs "
            "equal positive pixel sizes in y and x and no rotate/shear"
        )
    sy = float(f"{sy:.12g}")  # the probe's rounding: 0.5 stays 0.5
    ty, tx = physical[:2, 2]
    h, w = data.shape[:2]
    dims: tuple[str, ...] = ("y", "x", "c") if rgb else ("y", "x")
    coords: dict[str, Any] = {"y": ty + sy * np.arange(h), "x": tx + sy * np.arange(w)}
    if rgb:
        data = data[..., :3]
        coords["c"] = ["R", "G", "B"]
    return xr.DataArray(data, dims=dims, coords=coords, attrs={"pixel_size_um": float(sy), "units": "um"})


def world_transform(transform: Transform, fixed_layer: Any, moving_layer: Any) -> Transform:
    """Moving world → fixed world of a transform between the layers' own µm frames: ``A_f · T · A_m⁻¹``.

    ``A`` are the layers' current affines (in (x, y) order); the result is what
    :func:`apply_to_layers` composes into the moving layers.
    """
    a_f, a_m = xy_matrix(layer_affine(fixed_layer)), xy_matrix(layer_affine(moving_layer))
    return Transform(a_f @ transform.affine.matrix @ np.linalg.inv(a_m), "moving", "fixed")


def auto_register(fixed_layer: Any, moving_layer: Any, **kwargs: Any) -> tuple[RegistrationResult, Transform]:
    """:func:`~spatialpath.align.register_images` on two image layers: the result and the world transform.

    The result's transform maps the moving layer's own µm frame to the fixed layer's
    (:func:`image_from_layer`); the world transform is :func:`world_transform`. ``kwargs`` go to
    ``register_images`` (``model``, ``scales``, ``allow_flip``…; ``progress`` defaults to False).
    Raises :class:`~spatialpath.align.RegistrationError` when the images do not match.
    """
    kwargs.setdefault("progress", False)
    result = register_images(image_from_layer(fixed_layer), image_from_layer(moving_layer), **kwargs)
    return result, world_transform(result.transform, fixed_layer, moving_layer)


def quality_report(result: RegistrationResult) -> str:
    """One-line QC summary of an automatic registration."""
    p = result.transform.params()

    def f(v: float) -> str:
        return "n/a" if not np.isfinite(v) else f"{v:.3f}"

    return (
        f"similarity (NCC) before {f(result.similarity_before)} → after {f(result.similarity_after)}, "
        f"NMI {f(result.nmi_after)}, overlap {result.overlap_fraction:.0%}; "
        f"rotation {p['rotation_deg']:.2f}°, "
        f"scale {p['scale'][0]:.4f}, shift ({p['translation'][0]:.2f}, {p['translation'][1]:.2f}) µm"
        f"{', mirrored' if p['flip'] else ''}"
    )
