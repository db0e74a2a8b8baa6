"""Transforms between named coordinate frames (µm), with composition, inverse and serialisation.

A :class:`Transform` maps coordinates of its ``source`` frame to its ``target`` frame:
``[x', y', 1]ᵀ = M · [x, y, 1]ᵀ`` with ``x`` the column axis and ``y`` the row axis, both in µm
(the data model's convention: ``obsm["spatial"][:, 0]`` is x), optionally followed by a
:class:`~spatialpath.align.DisplacementField` ``d`` in the target frame (non-rigid):
``T(x) = z + d(z)`` with ``z = M x``. Composition checks the frames: ``(b @ a)`` applies ``a`` then
``b`` and requires ``a.target == b.source``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from spatialpath.align._displacement import DisplacementField
from spatialpath.model import DataModelError

__all__ = ["Transform"]

Kind = Literal["identity", "translation", "rigid", "similarity", "affine", "nonrigid"]
#: tolerance of the kind classification and of the invertibility check.
_TOL = 1e-9


def _check_matrix(matrix: Any) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (2, 3):
        m = np.vstack([m, [0.0, 0.0, 1.0]])
    if m.shape != (3, 3):
        raise DataModelError(f"an affine transform is a 3×3 (or 2×3) matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise DataModelError("the affine matrix has NaN or infinite entries")
    if not np.allclose(m[2], [0.0, 0.0, 1.0]):
        raise DataModelError(f"the last row of an affine matrix must be [0, 0, 1], got {m[2].tolist()}")
    if abs(np.linalg.det(m[:2, :2])) < _TOL:
        raise DataModelError(
            "the affine matrix is singular (zero area scale): it cannot map one frame onto another"
        )
    return m


@dataclass(frozen=True, eq=False)
class Transform:
    """A map from frame ``source`` to frame ``target`` (µm): an affine, optionally non-rigid.

    Parameters
    ----------
    matrix
        3×3 (or 2×3) affine matrix acting on ``[x, y, 1]``.
    source, target
        Frame names; composition requires them to chain.
    displacement
        Optional :class:`~spatialpath.align.DisplacementField` applied after the affine, in the
        target frame: ``T(x) = z + d(z)``, ``z = M x``.

    Examples
    --------
    >>> t = Transform.from_params(rotation_deg=90, translation=(10, 0), source="he", target="global")
    >>> t.apply_points([[1.0, 0.0]]).round(12).tolist()
    [[10.0, 1.0]]
    >>> (t.inverse() @ t).kind
    'identity'
    """

    matrix: np.ndarray
    source: str = "source"
    target: str = "global"
    displacement: DisplacementField | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "matrix", _check_matrix(self.matrix))
        if self.displacement is not None and not isinstance(self.displacement, DisplacementField):
            raise DataModelError(
                "Transform.displacement must be a spatialpath.align.DisplacementField or None, got "
                f"{type(self.displacement).__name__}"
            )
        for name in ("source", "target"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise DataModelError(
                    f"Transform.{name} must be a non-empty frame name, got {getattr(self, name)!r}"
                )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def identity(cls, frame: str = "global") -> Transform:
        """The identity of one frame."""
        return cls(np.eye(3), frame, frame)

    @classmethod
    def from_params(
        cls,
        *,
        rotation_deg: float = 0.0,
        scale: float | tuple[float, float] = 1.0,
        translation: tuple[float, float] = (0.0, 0.0),
        flip: bool = False,
        source: str = "source",
        target: str = "global",
    ) -> Transform:
        """``T · R · S · F``: mirror of x first (``flip``), then scale, rotation (x towards y), shift."""
        sx, sy = (scale, scale) if np.isscalar(scale) else scale
        theta = np.deg2rad(rotation_deg)
        c, s = np.cos(theta), np.sin(theta)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        sc = np.diag([float(sx), float(sy), 1.0])
        fl = np.diag([-1.0 if flip else 1.0, 1.0, 1.0])
        tr = np.array([[1.0, 0.0, translation[0]], [0.0, 1.0, translation[1]], [0.0, 0.0, 1.0]])
        return cls(tr @ rot @ sc @ fl, source, target)

    # ------------------------------------------------------------------ properties
    @property
    def linear(self) -> np.ndarray:
        """The 2×2 linear part."""
        return self.matrix[:2, :2]

    @property
    def translation(self) -> np.ndarray:
        """The translation (µm)."""
        return self.matrix[:2, 2]

    @property
    def is_affine(self) -> bool:
        """True when there is no displacement field."""
        return self.displacement is None

    @property
    def affine(self) -> Transform:
        """The affine part alone (the displacement field dropped)."""
        return Transform(self.matrix, self.source, self.target)

    @property
    def kind(self) -> Kind:
        """The class: ``"nonrigid"`` with a displacement field, else the narrowest class of the matrix.

        identity ⊂ translation ⊂ rigid ⊂ similarity ⊂ affine.
        """
        if self.displacement is not None:
            return "nonrigid"
        a = self.linear
        if np.allclose(a, np.eye(2), atol=_TOL):
            return "identity" if np.allclose(self.translation, 0.0, atol=_TOL) else "translation"
        gram = a.T @ a
        if np.allclose(gram, gram[0, 0] * np.eye(2), atol=_TOL * max(1.0, gram[0, 0])):
            return "rigid" if abs(gram[0, 0] - 1.0) < 1e-9 and np.linalg.det(a) > 0 else "similarity"
        return "affine"

    def params(self) -> dict[str, Any]:
        """Decompose into ``from_params`` arguments (exact for similarity transforms, with or without flip).

        For a general affine the scale is per axis and ``shear`` is non-zero.
        """
        a = self.linear
        flip = bool(np.linalg.det(a) < 0)
        b = a @ np.diag([-1.0, 1.0]) if flip else a  # undo the mirror applied first
        sx = float(np.hypot(b[0, 0], b[1, 0]))
        rotation = float(np.rad2deg(np.arctan2(b[1, 0], b[0, 0])))
        shear_y = float((b[0, 0] * b[0, 1] + b[1, 0] * b[1, 1]) / sx)
        sy = float((b[0, 0] * b[1, 1] - b[1, 0] * b[0, 1]) / sx)
        return {
            "rotation_deg": rotation,
            "scale": (sx, sy),
            "shear": shear_y / sy,
            "translation": tuple(float(v) for v in self.translation),
            "flip": flip,
        }

    # ------------------------------------------------------------------ algebra
    def inverse(self) -> Transform:
        """The map from ``target`` back to ``source``.

        With a displacement field ``d``: ``T⁻¹(y) = M⁻¹(y + e(y))`` with ``e`` the inverse field
        (:meth:`DisplacementField.inverse`), rewritten as affine-then-field by conjugating ``e``.
        """
        inv = np.linalg.inv(self.matrix)
        if self.displacement is None:
            return Transform(inv, self.target, self.source)
        field = self.displacement.inverse().transformed(inv)
        return Transform(inv, self.target, self.source, field)

    def __matmul__(self, other: Transform) -> Transform:
        """``self @ other``: apply ``other`` first; its target frame must be this transform's source."""
        if not isinstance(other, Transform):
            return NotImplemented
        if other.target != self.source:
            raise DataModelError(
                f"cannot compose: the first transform maps {other.source!r} → {other.target!r} but the "
                f"second starts from {self.source!r}; frames must chain (a.target == b.source for b @ a)"
            )
        matrix = self.matrix @ other.matrix
        first, second = other.displacement, self.displacement
        if first is None:
            return Transform(matrix, other.source, self.target, second)
        first = first.transformed(self.matrix)  # carry the first field through this affine: exact
        if second is None:
            return Transform(matrix, other.source, self.target, first)
        # two fields: sample D2(z + d1(z)) − z on the second field's nodes (bilinear between them)
        nodes = second.nodes()
        moved = nodes + first(nodes)
        values = (moved + second(moved) - nodes).T.reshape(2, *second.shape)
        return Transform(matrix, other.source, self.target, DisplacementField(values, second.grid))

    def apply_points(self, xy: Any) -> np.ndarray:
        """Map ``(n, 2)`` points (x, y in µm) of ``source`` into ``target``."""
        pts = np.asarray(xy, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise DataModelError(f"points must be an (n, 2) array of x, y in µm, got shape {pts.shape}")
        out = pts @ self.linear.T + self.translation
        return out if self.displacement is None else self.displacement.apply(out)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe record: ``type``, ``source``, ``target``, ``matrix`` (row-major), ``units``.

        A non-rigid transform adds ``displacement``, the field's record.
        """
        record: dict[str, Any] = {
            "type": "affine" if self.displacement is None else "affine+displacement",
            "source": self.source,
            "target": self.target,
            "units": "um",
            "matrix": self.matrix.tolist(),
        }
        if self.displacement is not None:
            record["displacement"] = self.displacement.to_dict()
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Transform:
        """Inverse of :meth:`to_dict` (exact); refuses other types and units."""
        kind = record.get("type")
        if kind not in ("affine", "affine+displacement"):
            raise DataModelError(
                f"unknown transform type {kind!r}; expected 'affine' or 'affine+displacement'"
            )
        if record.get("units", "um") != "um":
            raise DataModelError(f"transform units must be 'um', got {record.get('units')!r}")
        field = None
        if kind == "affine+displacement":
            if "displacement" not in record:
                raise DataModelError("an 'affine+displacement' record needs its 'displacement' field record")
            field = DisplacementField.from_dict(record["displacement"])
        return cls(np.asarray(record["matrix"], float), str(record["source"]), str(record["target"]), field)

    @classmethod
    def from_json(cls, text: str) -> Transform:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON (floats in shortest round-trip form)."""
        return json.dumps(self.to_dict())

    def __repr__(self) -> str:
        rows = self.matrix[:2].round(6).tolist()
        extra = "" if self.displacement is None else f", displacement={self.displacement!r}"
        return f"Transform({self.kind}, {self.source!r} → {self.target!r}, matrix={rows}{extra})"

    def _repr_html_(self) -> str:
        rows = "".join("<tr>" + "".join(f"<td>{v:.6g}</td>" for v in row) + "</tr>" for row in self.matrix)
        extra = "" if self.displacement is None else f"<br>then {self.displacement!r}"
        return f"<b>Transform</b> ({self.kind}) {self.source} → {self.target}<table>{rows}</table>{extra}"
