"""Private data sets: loaders that return images in [0, 1] and integer labels."""

from pe_jax.data.digits import TUNING_HELDOUT, load_sklearn_digits
from pe_jax.data.types import HELDOUT_RULE, HELDOUT_SALT, LabelledImages, heldout_mask

__all__ = ["HELDOUT_RULE", "HELDOUT_SALT", "TUNING_HELDOUT", "LabelledImages", "heldout_mask",
           "load_sklearn_digits"]
