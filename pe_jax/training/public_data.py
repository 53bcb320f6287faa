"""Public training data for the diffusion prior: rendered glyphs in the model's range [-1, 1].

The prior may only see public data, so it learns from the glyph simulator
(``pe_jax.apis.glyphs``): characters drawn in many fonts under random poses, at any
resolution. The batch functions follow ``pe_jax.training.loop``'s convention,
``(key, step) -> (images, labels)`` with fixed shapes (these ignore ``step``), so the training
step draws its batch inside the compiled step and batch ``t`` is a pure function of its key:
a resumed run sees exactly the batches of an uninterrupted one.

Two sources: :func:`glyph_batches` renders fresh glyphs for every batch (an endless data set;
rendering 256 8x8 glyphs takes a few milliseconds), :func:`array_batches` draws from a fixed
array such as :func:`fixed_glyphs` (a finite data set, for studying memorisation or for data
that is not rendered on the fly).
"""

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax._checks import check_int, require
from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.training.loop import BatchFn

__all__ = ["array_batches", "fixed_glyphs", "glyph_batches", "to_model_range"]


def to_model_range(images: jax.Array, channels: int = 1) -> jax.Array:
    """Grey ``[0, 1]`` images as float32 in [-1, 1], repeated to ``channels`` channels."""
    images = jnp.asarray(images, jnp.float32) * 2.0 - 1.0
    return jnp.repeat(images, channels, axis=-1) if channels != images.shape[-1] else images


def glyph_batches(generator: GlyphGenerator, batch_size: int, channels: int = 1) -> BatchFn:
    """Fresh glyphs for every key: uniform characters, fonts and poses from the priors."""
    batch_size = check_int("batch_size", batch_size, 1)
    check_int("channels", channels, 1)

    def batch(key: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
        samples = generator.random(key, batch_size, None)
        return to_model_range(generator.images(samples), channels), samples.char

    return batch


def fixed_glyphs(generator: GlyphGenerator, key: jax.Array, n: int,
                 chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rendered glyphs as a fixed array: images ``(n, H, W, 1)`` in [0, 1], labels.

    Rendered in chunks of ``chunk`` so that large sets do not hold every sub-pixel grid at once.
    """
    n = check_int("n", n, 1)
    samples = generator.random(key, n, None)
    images = [np.asarray(generator.images(jax.tree.map(lambda a: a[i:i + chunk], samples)))
              for i in range(0, n, chunk)]
    return np.concatenate(images), np.asarray(samples.char, np.int32)


def array_batches(images: np.ndarray, labels: np.ndarray, batch_size: int,
                  channels: int = 1) -> BatchFn:
    """Batches drawn uniformly with replacement from fixed ``[0, 1]`` images and labels."""
    images, labels = jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32)
    require(images.ndim == 4 and labels.shape == images.shape[:1], "images/labels",
            "(n, H, W, C) images with one label each", (images.shape, labels.shape))
    batch_size = check_int("batch_size", batch_size, 1)
    check_int("channels", channels, 1)

    def batch(key: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
        index = jax.random.randint(key, (batch_size,), 0, images.shape[0])
        return to_model_range(images[index], channels), labels[index]

    return batch
