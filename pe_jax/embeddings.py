"""Embedders: the feature space in which private rows vote for synthetic samples.

An embedder maps images ``(n, H, W, C)`` in [0, 1] to features ``(n, D)`` float32. PE embeds
the private set once and the synthetic population every iteration, with the same embedder, and
votes by nearest neighbour in that space. Embedders are pure functions of the images (no
state, no randomness at call time), so a row's features do not depend on the batch it is in.
"""

from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp


@runtime_checkable
class Embedder(Protocol):
    """Maps a batch of images to one feature vector per image."""

    def __call__(self, images: jax.Array) -> jax.Array:
        """Features of shape ``(n, D)``, float32, for images of shape ``(n, H, W, C)``."""
        ...


class PixelEmbedder:
    """Flattened pixels: the natural feature space for tiny images such as 8x8 digits."""

    def __call__(self, images: jax.Array) -> jax.Array:
        images = jnp.asarray(images)
        if images.ndim != 4:
            raise ValueError(
                f"images must have shape (n, height, width, channels); got shape {images.shape}"
            )
        return images.reshape(images.shape[0], -1).astype(jnp.float32)


EMBEDDERS = {"pixels": PixelEmbedder}


def make_embedder(name: str) -> Embedder:
    """The embedder registered under ``name``."""
    if name not in EMBEDDERS:
        raise ValueError(f"embedding must be one of {sorted(EMBEDDERS)}; got {name!r}")
    return EMBEDDERS[name]()
