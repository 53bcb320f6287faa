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
