"""Per-image seeds of the cohort pipeline, derived from the image's identity, never from order.

An image's random stream depends on ``(seed, sample_id, image_id)`` only: adding, removing or
reordering images, or running them on other workers, changes no other image's result.

The identity is hashed with SHA-256 over a length-prefixed UTF-8 encoding of both IDs (so
``("ab", "c")`` and ``("a", "bc")`` differ) and the first 128 bits become the ``spawn_key`` of a
:class:`numpy.random.SeedSequence` whose entropy is the global seed. This follows the design of
:func:`spatialpath.gr._utils.image_seed` (a ``SeedSequence`` over the seed and a stable hash of
the ID, drawn as ``uint32``) and extends it to two IDs with a collision-resistant hash instead
of CRC-32. The pipeline passes :func:`image_seed` as the ``seed`` of the statistics it runs on
one image; those derive their own streams from it in turn.
"""

from __future__ import annotations

import hashlib
import operator

import numpy as np

__all__ = ["SEED_DOMAIN", "id_words", "image_seed", "image_seed_sequence"]

#: domain-separation prefix of the ID hash; changing it changes every pipeline seed.
SEED_DOMAIN = b"spatialpath.pipeline.image_seed.v1\x00"


def _check(seed: int, sample_id: str, image_id: str) -> int:
    for name, value in (("sample_id", sample_id), ("image_id", image_id)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}; convert the ID with str()")
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(
            f"seed must be a non-negative integer, got {type(seed).__name__} {seed!r}; pass e.g. seed=0"
        ) from None
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}; pass e.g. seed=0")
    return seed


def id_words(sample_id: str, image_id: str) -> tuple[int, int, int, int]:
    """Four 32-bit words (128 bits) of SHA-256 over the length-prefixed UTF-8 IDs.

    Examples
    --------
    >>> id_words("S1", "img1") == id_words("S1", "img1") != id_words("S1", "img2")
    True
    """
    h = hashlib.sha256(SEED_DOMAIN)
    for part in (sample_id, image_id):
        raw = part.encode("utf-8")
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    digest = h.digest()
    return tuple(int.from_bytes(digest[4 * i : 4 * i + 4], "little") for i in range(4))  # type: ignore[return-value]


def image_seed_sequence(seed: int, sample_id: str, image_id: str) -> np.random.SeedSequence:
    """The :class:`~numpy.random.SeedSequence` of one image: entropy ``seed``, spawn key the ID hash.

    Use it for a full-entropy stream: ``np.random.default_rng(image_seed_sequence(...))``.

    Raises
    ------
    TypeError
        If an ID is not a string or ``seed`` is not an integer.
    ValueError
        If ``seed`` is negative.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.random.default_rng(image_seed_sequence(0, "S1", "img1")).random()
    >>> b = np.random.default_rng(image_seed_sequence(0, "S1", "img1")).random()
    >>> a == b
    True
    """
    seed = _check(seed, sample_id, image_id)
    return np.random.SeedSequence(seed, spawn_key=id_words(sample_id, image_id))


def image_seed(seed: int, sample_id: str, image_id: str) -> int:
    """The integer seed of one image, in ``[0, 2**31)``.

    It is the first ``uint32`` word of :func:`image_seed_sequence` with its top bit cleared, so
    it fits every ``seed``/``random_state`` parameter of the package, of scikit-learn
    (``RandomState`` needs ``< 2**32``) and of numba's ``np.random.seed``, also after the
    ``seed + restart`` offsets some estimators add.

    Parameters
    ----------
    seed
        The global seed of the run (non-negative).
    sample_id, image_id
        The image's identity; the order in which images are listed or run is never used.

    Examples
    --------
    >>> image_seed(0, "S1", "img1") == image_seed(0, "S1", "img1")
    True
    >>> image_seed(0, "S1", "img1") != image_seed(0, "S1", "img2") != image_seed(1, "S1", "img2")
    True
    """
    word = image_seed_sequence(seed, sample_id, image_id).generate_state(1, np.uint32)[0]
    return int(word) & 0x7FFF_FFFF
