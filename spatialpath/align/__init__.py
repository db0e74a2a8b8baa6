"""Alignment of modalities in one µm frame: transforms (registration and transfer to come)."""

from spatialpath.align._apply import apply_transform
from spatialpath.align._transform import Transform

__all__ = ["Transform", "apply_transform"]
