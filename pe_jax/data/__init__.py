"""Private data sets: loaders that return images in [0, 1] and integer labels."""

from pe_jax.data.digits import load_sklearn_digits
from pe_jax.data.types import LabelledImages

__all__ = ["LabelledImages", "load_sklearn_digits"]
