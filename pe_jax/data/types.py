"""The in-memory form of a labelled image data set, and its fixed held-out split."""

import dataclasses
import hashlib
import numbers

import numpy as np

HELDOUT_SALT = "pe_jax/heldout/v1"
"""The salt of the held-out split's hash; part of a data set's definition, never of a run."""

HELDOUT_RULE = ("row i (0-based, in the data set's own order) is held out iff the first 8 bytes "
                "of sha256(salt + ':' + str(i)) as a big-endian integer are below "
                "fraction * 2**64")
"""The held-out split rule in words, as the privacy report states it."""


def heldout_mask(rows: int, fraction: float, salt: str = HELDOUT_SALT) -> np.ndarray:
    """Which of ``rows`` rows are held out: a bool ``(rows,)`` array (see ``HELDOUT_RULE``).

    Each row's fate depends on its index, the salt and the fraction only, so the split does
    not move with a run's seed, appending rows never moves an existing one, and a larger
    fraction holds out a superset of a smaller one's rows. About ``fraction`` of the rows
    are held out (a binomial count, not an exact one).
    """
    if (not isinstance(fraction, numbers.Real) or isinstance(fraction, bool)
            or not 0 < fraction < 1):
        raise ValueError(f"fraction must be a number in (0, 1); got {fraction!r}")
    if not isinstance(salt, str):
        raise ValueError(f"salt must be a str; got {salt!r}")
    cut = int(float(fraction) * 2**64)  # exact: a float times a power of two
    digests = (hashlib.sha256(f"{salt}:{i}".encode()).digest() for i in range(rows))
    return np.fromiter((int.from_bytes(d[:8], "big") < cut for d in digests), bool, rows)


@dataclasses.dataclass(frozen=True)
class LabelledImages:
    """Images ``(n, H, W, C)`` float32 in [0, 1], labels ``(n,)`` int32, class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be (n, H, W, C); got shape {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must have shape ({self.images.shape[0]},); got {self.labels.shape}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, fraction: float, salt: str = HELDOUT_SALT
              ) -> tuple["LabelledImages", "LabelledImages"]:
        """``(rest, held_out)``: the rows ``heldout_mask`` holds out, set aside.

        The held-out part is real data that PE never sees, e.g. the reference set of the
        quality metrics (measuring against the private set would leak it without noise).
        It is fixed by the data set, the fraction and the salt: no run setting moves it.
        """
        held = heldout_mask(len(self.labels), fraction, salt)
        if held.all() or not held.any():
            raise ValueError(f"fraction {fraction!r} of {len(held)} rows leaves a part empty")
        return self._take(np.flatnonzero(~held)), self._take(np.flatnonzero(held))

    def _take(self, rows: np.ndarray) -> "LabelledImages":
        return LabelledImages(self.images[rows], self.labels[rows], self.class_names)
