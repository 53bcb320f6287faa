"""Embedders: the feature space in which private rows vote for synthetic samples.

An embedder maps images ``(n, H, W, C)`` in [0, 1] to features ``(n, D)`` float32. PE embeds
the private set once and the synthetic population every iteration, with the same embedder, and
votes by nearest neighbour in that space. Embedders are pure functions of the images (no
state, no randomness at call time), so a row's features do not depend on the batch it is in.

Registered embedders (``make_embedder(name, **options)``):

* ``pixels``: flattened pixels, optionally resized to ``resolution`` first.
* ``random_projection``: flattened pixels times a fixed Gaussian matrix (``dim`` columns,
  entries N(0, 1/dim), drawn from ``jax.random.key(seed)``; default seed 0), so the same seed
  gives the same features in every run and on every machine.
* ``encoder``: the small convolutional encoder trained on rendered glyphs only (public data),
  shipped with pe_jax (``pe_jax/assets/encoder``); ``checkpoint=`` loads another one.
* ``inception``: pool3 features of the FID Inception-v3 network; ``weights=`` is a checkpoint
  converted by ``experiments/convert_inception.py`` (pe_jax ships and downloads none).

``from_config(config)`` builds ``config.embedding`` with the options a run config holds.

Every embedder runs one jit-compiled function over fixed-size batches (``batch_size``; the last
batch is padded, so at most two shapes compile), and with ``mesh=`` splits each batch's rows
over all of the mesh's devices, with the model replicated; the features come back replicated
(the conventions of ``pe_jax.sharding``; inside an outer ``jit`` each batch is constrained to
the same layout).
"""

import pathlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax import sharding
from pe_jax._checks import check_int, require

DEFAULT_BATCH_SIZE = 256


@runtime_checkable
class Embedder(Protocol):
    """Maps a batch of images to one feature vector per image."""

    def __call__(self, images: jax.Array) -> jax.Array:
        """Features of shape ``(n, D)``, float32, for images of shape ``(n, H, W, C)``."""
        ...


class BatchedEmbedder:
    """Applies ``features(params, images)`` to fixed-size batches under one ``jax.jit``.

    ``features`` must treat rows independently (no batch statistics), so that the result does
    not depend on ``batch_size`` beyond float rounding.
    """

    def __init__(self, features: Callable[[Any, jax.Array], jax.Array], params: Any = None, *,
                 batch_size: int = DEFAULT_BATCH_SIZE,
                 mesh: jax.sharding.Mesh | None = None):
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.mesh = mesh
        self._features = jax.jit(features)
        devices = sharding.device_count(mesh)
        require(self.batch_size % devices == 0, "batch_size",
                f"a multiple of the mesh's {devices} devices", batch_size)
        self._params = sharding.replicate(params, mesh)

    def __call__(self, images: jax.Array) -> jax.Array:
        require(np.ndim(images) == 4, "images", "an array of shape (n, height, width, channels)",
                f"shape {np.shape(images)}")
        if isinstance(images, jax.core.Tracer):
            return self._traced(images)
        n = images.shape[0]
        devices = sharding.device_count(self.mesh)
        size = -(-min(self.batch_size, max(n, 1)) // devices) * devices
        outputs = []
        for start in range(0, max(n, 1), size):
            batch = jnp.asarray(images[start:start + size], jnp.float32)
            rows = batch.shape[0]
            if rows < size:
                batch = jnp.pad(batch, ((0, size - rows), (0, 0), (0, 0), (0, 0)))
            features = self._features(self._params, sharding.shard_rows(batch, self.mesh))
            # Gathered before the padding is sliced off.
            outputs.append(sharding.replicate(features, self.mesh)[:rows])
        return outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs)

    def _traced(self, images: jax.Array) -> jax.Array:
        """Inside an outer ``jit`` (the PE step): the same fixed-size batches, in a
        ``lax.map``, so the features match the eager path's batch by batch."""
        n = images.shape[0]
        size = min(self.batch_size, max(n, 1))
        batches = -(-n // size)
        padded = jnp.pad(images.astype(jnp.float32),
                         ((0, batches * size - n), (0, 0), (0, 0), (0, 0)))
        mesh = sharding.auto(self.mesh) if size % sharding.device_count(self.mesh) == 0 else None
        features = jax.lax.map(
            lambda batch: self._features(self._params, sharding.shard_rows(batch, mesh)),
            padded.reshape(batches, size, *images.shape[1:]))
        return features.reshape(batches * size, -1)[:n]


def _resize(images: jax.Array, resolution: int | None) -> jax.Array:
    if resolution is None or images.shape[1:3] == (resolution, resolution):
        return images
    return jax.image.resize(images, (images.shape[0], resolution, resolution, images.shape[3]),
                            method="bilinear")


class PixelEmbedder(BatchedEmbedder):
    """Flattened pixels: the natural feature space for tiny images such as 8x8 digits.

    ``resolution``: resize (bilinear, antialiased) to ``resolution x resolution`` first.
    """

    def __init__(self, resolution: int | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 mesh: jax.sharding.Mesh | None = None):
        if resolution is not None:
            check_int("resolution", resolution, 1)

        def features(_, images):
            return _resize(images, resolution).reshape(images.shape[0], -1)

        super().__init__(features, batch_size=batch_size, mesh=mesh)


class RandomProjectionEmbedder(BatchedEmbedder):
    """Flattened pixels times a fixed Gaussian matrix with ``dim`` columns.

    The matrix has shape ``(H * W * C, dim)`` with entries N(0, 1/dim) drawn from
    ``jax.random.key(seed)``, so squared distances are preserved in expectation
    (Johnson-Lindenstrauss) and the same seed gives the same features everywhere.
    """

    def __init__(self, dim: int = 256, seed: int = 0, *,
                 batch_size: int = DEFAULT_BATCH_SIZE, mesh: jax.sharding.Mesh | None = None):
        self.dim = check_int("dim", dim, 1)
        self.seed = check_int("seed", seed, 0)

        def features(_, images):
            flat = images.reshape(images.shape[0], -1)
            matrix = jax.random.normal(jax.random.key(self.seed), (flat.shape[1], self.dim))
            return flat @ (matrix / np.sqrt(self.dim))

        super().__init__(features, batch_size=batch_size, mesh=mesh)


def model_features(model, method: str | None = None) -> tuple[Callable, Any]:
    """A pure ``features(state, images)`` for an NNX model (split once, merged in the graph)
    and its state: ``BatchedEmbedder(*model_features(model, "embed"))`` embeds with any
    model's ``embed`` method."""
    from flax import nnx

    graphdef, state = nnx.split(model)

    def features(state, images):
        module = nnx.merge(graphdef, state)
        return (getattr(module, method) if method else module)(images).astype(jnp.float32)

    return features, state


class EncoderEmbedder(BatchedEmbedder):
    """Features of the glyph-trained convolutional encoder (``pe_jax.models.encoder``).

    Images must have the encoder's channel count (1, grey, for the shipped one); other sizes
    are resized to its resolution in the graph.
    """

    def __init__(self, checkpoint: str | pathlib.Path | None = None, *,
                 batch_size: int = DEFAULT_BATCH_SIZE, mesh: jax.sharding.Mesh | None = None):
        from pe_jax.models import encoder

        model, self.metadata = encoder.load(checkpoint)
        features, state = model_features(model, "embed")
        super().__init__(features, state, batch_size=batch_size, mesh=mesh)


class InceptionEmbedder(BatchedEmbedder):
    """2048-d pool3 features of the FID Inception-v3 network (``pe_jax.models.inception``).

    ``weights``: a checkpoint folder written by ``experiments/convert_inception.py``.
    """

    def __init__(self, weights: str | pathlib.Path, *, batch_size: int = 64,
                 mesh: jax.sharding.Mesh | None = None):
        from pe_jax import checkpoints
        from pe_jax.models import inception

        model = inception.abstract_model()
        self.metadata = checkpoints.restore(weights, model)
        features, state = model_features(model)
        super().__init__(features, state, batch_size=batch_size, mesh=mesh)


EMBEDDERS = {
    "pixels": PixelEmbedder,
    "random_projection": RandomProjectionEmbedder,
    "encoder": EncoderEmbedder,
    "inception": InceptionEmbedder,
}


def make_embedder(name: str, **options: Any) -> Embedder:
    """The embedder registered under ``name``, built with ``options`` (see each class)."""
    if name not in EMBEDDERS:
        raise ValueError(f"embedding must be one of {sorted(EMBEDDERS)}; got {name!r}")
    if name == "inception" and "weights" not in options:
        raise ValueError("embedding 'inception' needs weights=<checkpoint folder> (convert the "
                         "FID weights with experiments/convert_inception.py); got none")
    return EMBEDDERS[name](**options)


CONFIG_OPTIONS = {"inception": ("inception_weights", "weights"),
                  "encoder": ("encoder_checkpoint", "checkpoint")}
"""Embedder option each run-config key sets: ``inception_weights``, ``encoder_checkpoint``."""


def from_config(config: Any, name: str | None = None) -> Embedder:
    """``make_embedder(name)`` (default ``config.embedding``) with the run config's options.

    ``config.inception_weights`` is the Inception checkpoint and ``config.encoder_checkpoint``
    an encoder other than the shipped one; unset or empty keys leave the defaults.
    """
    name = config.embedding if name is None else name
    options = {}
    if name in CONFIG_OPTIONS:
        key, option = CONFIG_OPTIONS[name]
        if config.get(key, None):
            options[option] = config[key]
    return make_embedder(name, **options)

