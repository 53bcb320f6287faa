"""The smallest noise predictors with the UNet's interface, for DP-SGD tests that need a
model which compiles in a second (tests/test_dpsgd.py, tests/multidevice)."""

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class _DenoiserConfig:
    num_classes: int = 10


class LinearDenoiser(nnx.Module):
    """A linear map of the noisy pixels, the timestep and the one-hot label (10 classes and
    the null label of classifier-free guidance) to the predicted noise."""

    def __init__(self, rngs: nnx.Rngs):
        self.config = _DenoiserConfig()
        self.dense = nnx.Linear(64 + 1 + 11, 64, rngs=rngs)

    def __call__(self, x, t, labels=None, *, dropout_key=None):
        n = x.shape[0]
        labels = jnp.full((n,), 10) if labels is None else labels
        features = jnp.concatenate([x.reshape(n, -1), t[:, None] / 100.0,
                                    jax.nn.one_hot(labels, 11)], axis=1)
        return self.dense(features).reshape(x.shape)


class ConvDenoiser(nnx.Module):
    """One 3x3 convolution of the noisy pixels with the timestep and the one-hot label as
    extra channels: per-example convolution gradients, as in the UNet."""

    def __init__(self, rngs: nnx.Rngs):
        self.config = _DenoiserConfig()
        self.conv = nnx.Conv(1 + 11 + 1, 1, (3, 3), rngs=rngs)

    def __call__(self, x, t, labels=None, *, dropout_key=None):
        n = x.shape[0]
        labels = jnp.full((n,), 10) if labels is None else labels
        condition = jnp.concatenate([jax.nn.one_hot(labels, 11), t[:, None] / 100.0], axis=1)
        condition = jnp.broadcast_to(condition[:, None, None, :], (*x.shape[:3], 12))
        return self.conv(jnp.concatenate([x, condition], axis=-1))
