"""Displacement fields: the non-rigid part of a :class:`~spatialpath.align.Transform`.

A :class:`DisplacementField` ``d`` maps a point ``z`` of a frame to ``D(z) = z + d(z)``; ``d`` is
sampled on a regular grid (values in µm at the nodes) and interpolated bilinearly between them. The
grid is placed in the frame by a 3×3 affine ``grid`` (``[x, y, 1]ᵀ = grid · [col, row, 1]ᵀ``), so a
field stays exact when an affine transform is composed on either side (the grid is carried along,
even rotated). Outside the grid the field takes the value of the nearest edge node.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from spatialpath.model import DataModelError

__all__ = ["DisplacementField", "InverseError"]

#: the fixed-point inversion stops when no node moves more than this fraction of a grid step.
_INVERSE_TOL = 1e-6
_INVERSE_MAX_ITER = 200


class InverseError(DataModelError):
    """A displacement field could not be inverted (it folds or is too strong for its grid)."""


def _check_grid(grid: Any) -> np.ndarray:
    g = np.asarray(grid, dtype=np.float64)
    if g.shape != (3, 3) or not np.all(np.isfinite(g)) or not np.allclose(g[2], [0.0, 0.0, 1.0]):
        raise DataModelError(
            "DisplacementField.grid must be a finite 3×3 affine (last row [0, 0, 1]) mapping [col, row, 1] "
            f"of the field grid to frame µm; got {np.asarray(grid).shape}"
        )
    if abs(np.linalg.det(g[:2, :2])) < 1e-12:
        raise DataModelError("DisplacementField.grid is singular: its nodes must span an area")
    return g


@dataclass(frozen=True, eq=False)
class DisplacementField:
    """A smooth displacement ``d`` (µm) on a grid: ``D(z) = z + d(z)``.

    Parameters
    ----------
    values
        ``(2, ny, nx)`` array: ``values[0]`` is the x displacement, ``values[1]`` the y displacement
        (µm) at the grid nodes.
    grid
        3×3 affine from node index ``[col, row, 1]`` to frame µm ``[x, y, 1]``; see
        :meth:`from_spacing` for an axis-aligned grid.
    inverse_of
        Set by :meth:`inverse`: the forward field this one inverts; evaluations are then refined
        by fixed-point iteration on it (exact inverse between nodes too).

    Examples
    --------
    >>> v = np.zeros((2, 3, 3)); v[0] = 2.0  # shift everything 2 µm along x
    >>> f = DisplacementField.from_spacing(v, spacing_um=50.0)
    >>> f([[10.0, 20.0]]).tolist()
    [[2.0, 0.0]]
    >>> f.inverse()([[12.0, 20.0]]).round(9).tolist()
    [[-2.0, 0.0]]
    >>> float(f.jacobian_determinant().min())
    1.0
    """

    values: np.ndarray
    grid: np.ndarray
    inverse_of: DisplacementField | None = None

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float64)
        if v.ndim != 3 or v.shape[0] != 2 or min(v.shape[1:]) < 2:
            raise DataModelError(
                "DisplacementField.values must be a (2, ny, nx) array (x and y displacement in µm at "
                f"the grid nodes, at least 2 × 2 nodes); got shape {v.shape}"
            )
        if not np.all(np.isfinite(v)):
            raise DataModelError(
                "DisplacementField.values has NaN or infinite entries; fill or mask them first"
            )
        v = v.copy()
        v.setflags(write=False)
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "grid", _check_grid(self.grid))

    @classmethod
    def from_spacing(
        cls, values: Any, spacing_um: float | tuple[float, float], origin_um: tuple[float, float] = (0.0, 0.0)
    ) -> DisplacementField:
        """An axis-aligned grid: node ``(row, col)`` at ``origin + (col·sx, row·sy)`` µm."""
        sx, sy = (spacing_um, spacing_um) if np.isscalar(spacing_um) else spacing_um
        if not (np.isfinite(sx) and np.isfinite(sy) and sx > 0 and sy > 0):
            raise DataModelError(
                f"spacing_um must be positive and finite (µm between nodes), got {spacing_um!r}"
            )
        grid = np.array([[sx, 0.0, origin_um[0]], [0.0, sy, origin_um[1]], [0.0, 0.0, 1.0]])
        return cls(values, grid)

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` nodes."""
        return tuple(self.values.shape[1:])  # type: ignore[return-value]

    @property
    def spacing_um(self) -> tuple[float, float]:
        """Distance between neighbouring nodes along the grid's columns and rows (µm)."""
        return float(np.hypot(*self.grid[:2, 0])), float(np.hypot(*self.grid[:2, 1]))

    def nodes(self) -> np.ndarray:
        """``(ny·nx, 2)`` frame coordinates (x, y in µm) of the nodes, row-major."""
        ny, nx = self.shape
        rows, cols = np.mgrid[0:ny, 0:nx]
        idx = np.stack([cols.ravel(), rows.ravel(), np.ones(rows.size)])
        return (self.grid @ idx)[:2].T

    def _index(self, xy: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.grid)
        return xy @ inv[:2, :2].T + inv[:2, 2]  # (n, 2) fractional (col, row)

    def __call__(self, xy: Any) -> np.ndarray:
        """The displacement (µm) at ``(n, 2)`` points (x, y in µm), bilinear between nodes."""
        pts = np.asarray(xy, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise DataModelError(f"points must be an (n, 2) array of x, y in µm, got shape {pts.shape}")
        out = self._interpolate(pts)
        if self.inverse_of is not None:
            out = _polish(self.inverse_of, pts, out, _INVERSE_TOL * min(self.spacing_um))
        return out

    def _interpolate(self, pts: np.ndarray) -> np.ndarray:
        idx = self._index(pts)
        coords = [idx[:, 1], idx[:, 0]]
        return np.stack(
            [ndimage.map_coordinates(self.values[k], coords, order=1, mode="nearest") for k in (0, 1)], axis=1
        )

    def apply(self, xy: Any) -> np.ndarray:
        """``D(z) = z + d(z)`` for ``(n, 2)`` points."""
        pts = np.asarray(xy, dtype=np.float64)
        return pts + self(pts)

    # ------------------------------------------------------------------ algebra
    def transformed(self, affine: Any) -> DisplacementField:
        """The field conjugated by an affine ``A``: ``d'(w) = A_lin · d(A⁻¹ w)`` (exact: grid moves too)."""
        a = np.asarray(affine, dtype=np.float64)
        lin = a[:2, :2]
        values = np.einsum("ij,jyx->iyx", lin, self.values)
        forward = None if self.inverse_of is None else self.inverse_of.transformed(a)
        return DisplacementField(values, a @ self.grid, forward)

    def inverse(self) -> DisplacementField:
        """The field ``e`` on the same grid with ``(id + e) = (id + d)⁻¹``, by fixed-point iteration.

        ``e(y) = −d(y + e(y))`` converges when ``d`` is smooth (‖∇d‖ < 1, i.e. no folds); otherwise
        :class:`InverseError` is raised. The inverse of an inverse is the original field.
        """
        if self.inverse_of is not None:
            return self.inverse_of
        nodes = self.nodes()
        e = _polish(self, nodes, -self(nodes), _INVERSE_TOL * min(self.spacing_um))
        ny, nx = self.shape
        return DisplacementField(e.T.reshape(2, ny, nx), self.grid, self)

    def jacobian_determinant(self) -> np.ndarray:
        """det(∂D/∂z) at the nodes (``(ny, nx)``); ≤ 0 marks folding."""
        d_dcol = np.stack([np.gradient(self.values[k], axis=1) for k in (0, 1)])  # (2, ny, nx)
        d_drow = np.stack([np.gradient(self.values[k], axis=0) for k in (0, 1)])
        inv = np.linalg.inv(self.grid[:2, :2])  # d(col, row)/d(x, y)
        # ∂d_i/∂z_j = ∂d_i/∂col · ∂col/∂z_j + ∂d_i/∂row · ∂row/∂z_j
        jac = d_dcol[:, None] * inv[0][None, :, None, None] + d_drow[:, None] * inv[1][None, :, None, None]
        a = 1.0 + jac[0, 0]
        d = 1.0 + jac[1, 1]
        return a * d - jac[0, 1] * jac[1, 0]

    def max_norm(self) -> float:
        """The largest displacement at a node (µm)."""
        return float(np.sqrt((self.values**2).sum(axis=0)).max())

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe record: node values as base64 little-endian float64, grid row-major, µm.

        An inverse field also carries its forward field's record under ``inverse_of``.
        """
        raw = np.ascontiguousarray(self.values, dtype="<f8").tobytes()
        record: dict[str, Any] = {
            "type": "displacement",
            "units": "um",
            "shape": list(self.values.shape),
            "grid": self.grid.tolist(),
            "values_b64": base64.b64encode(raw).decode("ascii"),
        }
        if self.inverse_of is not None:
            record["inverse_of"] = self.inverse_of.to_dict()
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> DisplacementField:
        """Inverse of :meth:`to_dict` (bit-exact)."""
        if record.get("type") != "displacement" or record.get("units", "um") != "um":
            raise DataModelError(
                "not a displacement-field record in µm: "
                f"type={record.get('type')!r}, units={record.get('units')!r}"
            )
        values = np.frombuffer(base64.b64decode(record["values_b64"]), dtype="<f8").reshape(record["shape"])
        forward = record.get("inverse_of")
        inverse_of = None if forward is None else cls.from_dict(forward)
        return cls(values, np.asarray(record["grid"], float), inverse_of)

    def __repr__(self) -> str:
        sx, sy = self.spacing_um
        kind = "inverse " if self.inverse_of is not None else ""
        return (
            f"DisplacementField({kind}{self.shape[0]}×{self.shape[1]} nodes, spacing {sx:.4g}×{sy:.4g} µm, "
            f"max {self.max_norm():.3g} µm)"
        )


def _polish(forward: DisplacementField, y: np.ndarray, e: np.ndarray, tol: float) -> np.ndarray:
    """Fixed-point iterations ``e ← −d(y + e)`` from a starting guess, to ``tol`` µm."""
    step = np.inf
    for _ in range(_INVERSE_MAX_ITER):
        new = -forward._interpolate(y + e)
        step = float(np.max(np.abs(new - e))) if e.size else 0.0
        e = new
        if step <= tol:
            return e
    raise InverseError(
        f"the displacement field did not invert in {_INVERSE_MAX_ITER} iterations (last change "
        f"{step:.3g} µm): it folds or is too strong for its grid; check jacobian_determinant() > 0"
    )
