"""scikit-learn's handwritten digits: 1,797 8x8 grey images that ship inside the wheel.

This is the embedded default private data set, so that PE runs end to end with no download.
Pixel values 0..16 are scaled to [0, 1] (bright ink on a dark background).

The rows that ``split(TUNING_HELDOUT)`` holds out (fixed by ``pe_jax.data.types.heldout_mask``)
are part of the data set's public side: the shipped glyph priors, the encoder and diffusion
prior trained with them, and the default threshold and degree schedule were all chosen on those
rows and no others, so a run must hold them out too (``pe-jax run`` checks it).
"""

import numpy as np

from pe_jax.data.source import ArraySource
from pe_jax.data.types import LabelledImages

DIGITS_MAX_VALUE = 16.0
TUNING_HELDOUT = 0.25
"""The held-out fraction whose rows (and only those) the digits default's settings were tuned on."""


def load_sklearn_digits() -> LabelledImages:
    """All 1,797 digits as ``(1797, 8, 8, 1)`` float32 images with labels 0..9."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / DIGITS_MAX_VALUE).astype(np.float32)[..., None]
    return LabelledImages(
        images=images,
        labels=bunch.target.astype(np.int32),
        class_names=tuple(str(d) for d in range(10)),
    )


def sklearn_digits_source() -> ArraySource:
    """The digits as an :class:`~pe_jax.data.source.ImageSource` (1,797 rows, in memory)."""
    digits = load_sklearn_digits()
    description = {"kind": "sklearn_digits", "name": "digits",
                   "origin": "sklearn.datasets.load_digits (UCI optical recognition of "
                             "handwritten digits, test set)",
                   "scaling": f"pixel / {DIGITS_MAX_VALUE:g}"}
    return ArraySource(digits.images, digits.labels, digits.class_names, description,
                       where="scikit-learn's digits")
