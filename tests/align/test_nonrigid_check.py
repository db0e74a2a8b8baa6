"""The non-rigid acceptance check: a field is kept only if it raises NMI over the overlap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spatialpath.align._displacement import DisplacementField
from spatialpath.align._nonrigid import random_displacement
from spatialpath.align._nonrigid_check import NONRIGID_MIN_GAIN, nonrigid_check

GRID = np.diag([0.5, 0.5, 1.0])  # 0.5 µm/px, origin 0


@pytest.fixture(scope="module")
def texture():
    return ndimage.gaussian_filter(np.random.default_rng(0).random((160, 200)), 2.0).astype(np.float32)


def test_planted_field_is_accepted_and_its_negative_rejected(texture):
    """moved(y + e(y)) = fixed(y) for a planted smooth e: NMI rises; the opposite field lowers it."""
    e = random_displacement((100.0, 80.0), amplitude_um=2.0, length_scale_um=20.0, seed=1)
    h, w = texture.shape
    rows, cols = np.mgrid[0:h, 0:w]
    xy = np.column_stack([cols.ravel(), rows.ravel()]) * 0.5
    inv = e.inverse()(xy) / 0.5  # moved(z) = fixed(z + e⁻¹(z)) makes moved(y + e(y)) = fixed(y)
    moved = ndimage.map_coordinates(
        texture, [rows + inv[:, 1].reshape(h, w), cols + inv[:, 0].reshape(h, w)], order=1, mode="nearest"
    )
    valid = np.ones(texture.shape, bool)
    rec = nonrigid_check(texture, moved, valid, e, GRID)
    assert rec["accepted"], rec
    assert rec["gain"] > 0.05
    assert rec["gain"] == pytest.approx(rec["nonrigid"] - rec["affine"])
    neg = DisplacementField(-e.values, e.grid)
    rec_neg = nonrigid_check(texture, moved, valid, neg, GRID)
    assert not rec_neg["accepted"]
    assert rec_neg["gain"] < 0
    assert "kept the affine transform" in rec_neg["reason"]


def test_field_on_an_aligned_pair_is_rejected(texture):
    """Nothing to correct: a 1 µm random field can only lower NMI, below the minimum gain."""
    noisy = texture + np.random.default_rng(1).normal(0, 0.01, texture.shape).astype(np.float32)
    e = random_displacement((100.0, 80.0), amplitude_um=1.0, length_scale_um=20.0, seed=2)
    rec = nonrigid_check(texture, noisy, np.ones(texture.shape, bool), e, GRID)
    assert not rec["accepted"], rec
    assert rec["gain"] < NONRIGID_MIN_GAIN


def test_no_overlap_is_rejected(texture):
    e = random_displacement((100.0, 80.0), amplitude_um=1.0, length_scale_um=20.0, seed=2)
    rec = nonrigid_check(texture, texture, np.zeros(texture.shape, bool), e, GRID)
    assert not rec["accepted"]
    assert np.isnan(rec["gain"])
