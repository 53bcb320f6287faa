"""The smallest noise predictor with the UNet's interface, for DP-SGD tests that need a
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
