"""A small convolutional network (the architecture only), shared by two uses.

* the downstream classifier (``pe_jax.metrics.downstream``): trained on labelled synthetic
  images, tested on real ones, with one fixed recipe so every method is measured alike;
* the glyph encoder (``pe_jax.models.encoder``): trained on rendered glyphs, whose
  penultimate layer (``ConvNet.embed``) is an embedding for PE's votes.

Training lives in ``pe_jax.training.classifier``.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
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


def build(config: ConvNetConfig, seed: int) -> ConvNet:
    """A freshly initialised ``ConvNet`` (weights from ``seed``)."""
    return ConvNet(config, rngs=nnx.Rngs(seed))

