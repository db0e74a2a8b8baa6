"""Alignment of modalities in one µm frame: transforms, registration and transfer."""

from spatialpath.align._apply import apply_transform
from spatialpath.align._displacement import DisplacementField, InverseError
from spatialpath.align._landmarks import LandmarkRegistration, register_landmarks
from spatialpath.align._nonrigid import estimate_displacement, random_displacement
from spatialpath.align._quality import RegistrationError
from spatialpath.align._register import RegistrationResult, register_images
from spatialpath.align._resample import warp_image
from spatialpath.align._transfer import cells_to_spots, spots_to_cells
from spatialpath.align._transform import Transform

__all__ = [
    "DisplacementField",
    "InverseError",
    "LandmarkRegistration",
    "RegistrationError",
    "RegistrationResult",
    "Transform",
    "apply_transform",
    "cells_to_spots",
    "estimate_displacement",
    "random_displacement",
    "register_images",
    "register_landmarks",
    "spots_to_cells",
    "warp_image",
]
