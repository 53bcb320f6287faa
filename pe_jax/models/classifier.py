"""A small convolutional network and its optax training loop, shared by two uses.

* the downstream classifier (``pe_jax.metrics.downstream``): trained on labelled synthetic
  images, tested on real ones, with one fixed recipe so every method is measured alike;
* the glyph encoder (``pe_jax.models.encoder``): trained on rendered glyphs, whose
  penultimate layer (``ConvNet.embed``) is an embedding for PE's votes.

``train`` runs ``steps`` calls of one jit-compiled step: the batch comes from
``batch_fn(key, step)``, a pure function (an index into arrays in memory, or a generator
rendering fresh glyphs), so data, loss and update compile together. (A ``lax.scan`` over the same
steps ran 9-19x slower on XLA:CPU, measured side by side.)
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pe_jax._checks import check_int, require


@dataclasses.dataclass(frozen=True)
class ConvNetConfig:
    """Shape of a ``ConvNet``: input ``resolution x resolution x in_channels``, one
    3x3 convolution + ReLU + 2x2 average pool per entry of ``channels``, a ``hidden``-wide
    dense layer (the embedding) and ``outputs`` logits."""

    resolution: int
    in_channels: int
    outputs: int
    channels: tuple[int, ...] = (32, 64)
    hidden: int = 128

    def __post_init__(self) -> None:
        check_int("resolution", self.resolution, 2 ** len(self.channels))
        check_int("in_channels", self.in_channels, 1)
        check_int("outputs", self.outputs, 1)
        check_int("hidden", self.hidden, 1)
        require(len(self.channels) >= 1 and all(isinstance(c, int) and c >= 1
                                                for c in self.channels),
                "channels", "one or more ints >= 1", self.channels)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ConvNetConfig":
        return cls(**{**values, "channels": tuple(values["channels"])})


class ConvNet(nnx.Module):
    """Images ``(n, H, W, C)`` -> logits ``(n, outputs)``; ``embed`` gives the hidden layer.

    Images of another size are resized to ``config.resolution`` in the graph.
    """

    def __init__(self, config: ConvNetConfig, *, rngs: nnx.Rngs):
        self.config = config
        widths = (config.in_channels,) + tuple(config.channels)
        self.convs = nnx.List([nnx.Conv(a, b, (3, 3), padding="SAME", rngs=rngs)
                               for a, b in zip(widths[:-1], widths[1:])])
        side = config.resolution // 2 ** len(config.channels)
        self.dense = nnx.Linear(side * side * widths[-1], config.hidden, rngs=rngs)
        self.head = nnx.Linear(config.hidden, config.outputs, rngs=rngs)

    def embed(self, images: jax.Array) -> jax.Array:
        r, c = self.config.resolution, self.config.in_channels
        x = jnp.asarray(images, jnp.float32)
        require(x.shape[-1] == c, "images", f"{c} channel(s)", f"shape {x.shape}")
        if x.shape[1:3] != (r, r):
            x = jax.image.resize(x, (x.shape[0], r, r, c), method="bilinear")
        for conv in self.convs:
            x = nnx.avg_pool(jax.nn.relu(conv(x)), (2, 2), strides=(2, 2))
        return jax.nn.relu(self.dense(x.reshape(x.shape[0], -1)))

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.head(self.embed(images))


LossFn = Callable[[ConvNet, Any], jax.Array]
BatchFn = Callable[[jax.Array, jax.Array], Any]


def cross_entropy(model: ConvNet, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Mean softmax cross-entropy of ``(images, labels)``."""
    images, labels = batch
    return optax.softmax_cross_entropy_with_integer_labels(model(images), labels).mean()


def train(model: ConvNet, loss_fn: LossFn, batch_fn: BatchFn, *, steps: int,
          learning_rate: float, key: jax.Array, chunk: int = 100) -> list[float]:
    """Trains ``model`` in place with Adam; returns the mean loss of each chunk of steps.

    Step ``i`` uses the batch ``batch_fn(fold_in(key, i), i)``, so a run is a pure function
    of the model's initial weights, ``key`` and the data.
    """
    check_int("steps", steps, 1)
    require(learning_rate > 0, "learning_rate", "a number > 0", learning_rate)
    graphdef, params = nnx.split(model)
    optimizer = optax.adam(learning_rate)

    def loss(params, batch):
        return loss_fn(nnx.merge(graphdef, params), batch)

    @jax.jit
    def step(params, opt_state, i):
        value, grads = jax.value_and_grad(loss)(params, batch_fn(jax.random.fold_in(key, i), i))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    opt_state = optimizer.init(params)
    losses, chunk_losses = [], []
    for i in range(steps):
        params, opt_state, value = step(params, opt_state, jnp.asarray(i))
        chunk_losses.append(value)
        if len(chunk_losses) == chunk or i == steps - 1:
            losses.append(float(jnp.mean(jnp.stack(chunk_losses))))
            chunk_losses = []
    nnx.update(model, params)
    return losses


def epoch_batches(images: jax.Array, labels: jax.Array, batch_size: int,
                  key: jax.Array) -> BatchFn:
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


def build(config: ConvNetConfig, seed: int) -> ConvNet:
    """A freshly initialised ``ConvNet`` (weights from ``seed``)."""
    return ConvNet(config, rngs=nnx.Rngs(seed))

