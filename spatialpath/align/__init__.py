"""Alignment of modalities in one µm frame: transforms, registration and transfer."""

from spatialpath.align._apply import apply_transform
from spatialpath.align._displacement import DisplacementField, InverseError
from spatialpath.align._transform import Transform

__all__ = ["DisplacementField", "InverseError", "Transform", "apply_transform"]
