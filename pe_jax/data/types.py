"""The in-memory form of a labelled image data set."""

import dataclasses

import numpy as np


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

    def split(self, fraction: float, seed: int = 0) -> tuple["LabelledImages", "LabelledImages"]:
        """``(rest, held_out)``: a fixed random ``fraction`` of the rows set aside.

        The held-out part is real data that PE never sees, e.g. the reference set of the
        quality metrics (measuring against the private set would leak it without noise).
        """
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be in (0, 1); got {fraction!r}")
        order = np.random.default_rng(seed).permutation(len(self.labels))
        cut = len(order) - round(fraction * len(order))
        if not 0 < cut < len(order):
            raise ValueError(f"fraction {fraction!r} of {len(order)} rows leaves a part empty")
        return (self._take(np.sort(order[:cut])), self._take(np.sort(order[cut:])))

    def _take(self, rows: np.ndarray) -> "LabelledImages":
        return LabelledImages(self.images[rows], self.labels[rows], self.class_names)
