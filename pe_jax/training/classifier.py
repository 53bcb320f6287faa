"""Training and using the ``ConvNet`` of ``pe_jax.models.classifier`` with one fixed recipe.

Two uses share it: the downstream classifier (``pe_jax.metrics.downstream``), trained on
labelled synthetic images and tested on real ones, and the glyph encoder
(``pe_jax.training.encoder``). ``train`` is Adam over the steps of ``pe_jax.training.loop``.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pe_jax._checks import check_int, require
from pe_jax.models.classifier import ConvNet
from pe_jax.training import loop

__all__ = ["cross_entropy", "epoch_batches", "predict", "train"]


def cross_entropy(model: ConvNet, batch: tuple[jax.Array, jax.Array],
                  key: jax.Array | None = None) -> jax.Array:
    """Mean softmax cross-entropy of ``(images, labels)`` (``key`` unused: no dropout)."""
    images, labels = batch
    return optax.softmax_cross_entropy_with_integer_labels(model(images), labels).mean()


def train(model: ConvNet, loss_fn: loop.LossFn, batch_fn: loop.BatchFn, *, steps: int,
          learning_rate: float, key: jax.Array, chunk: int = 100,
          progress: bool = False, desc: str = "train") -> list[float]:
    """Trains ``model`` in place with Adam; returns the mean loss of each chunk of steps.

    Step ``i`` uses the batch ``batch_fn(fold_in(key, i), i)``, so a run is a pure function
    of the model's initial weights, ``key`` and the data.
    """
    check_int("steps", steps, 1)
    require(learning_rate > 0, "learning_rate", "a number > 0", learning_rate)
    graphdef, params = nnx.split(model)
    optimizer = optax.adam(learning_rate)
    step = loop.make_step(graphdef, optimizer, batch_fn, loss_fn)
    state, losses = loop.fit(step, loop.init_state(params, optimizer), key=key, steps=steps,
                             log_every=chunk, progress=progress, desc=desc)
    nnx.update(model, state.params)
    return [value for _, value in losses]


def epoch_batches(images: jax.Array, labels: jax.Array, batch_size: int,
                  key: jax.Array) -> loop.BatchFn:
    """``batch_fn`` walking through ``(images, labels)`` in a new random order every epoch.

    A final partial batch of an epoch is skipped (every step sees ``batch_size`` rows).
    """
    n = images.shape[0]
    batch_size = check_int("batch_size", batch_size, 1, n)
    per_epoch = n // batch_size

    def batch_fn(_, i):
        order = jax.random.permutation(jax.random.fold_in(key, i // per_epoch), n)
        index = jax.lax.dynamic_slice(order, ((i % per_epoch) * batch_size,), (batch_size,))
        return images[index], labels[index]

    return batch_fn


def predict(model: ConvNet, images: jax.Array, batch_size: int = 1024) -> jax.Array:
    """Argmax labels of ``images``, in batches under one ``jax.jit``."""
    graphdef, state = nnx.split(model)
    logits = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    return jnp.concatenate([jnp.argmax(logits(state, images[i:i + batch_size]), axis=-1)
                            for i in range(0, images.shape[0], batch_size)])
