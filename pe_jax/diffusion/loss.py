"""The training loss: mean squared error of the predicted noise (Ho et al. 2020)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from pe_jax._checks import require
from pe_jax.diffusion.schedules import NoiseSchedule

__all__ = ["epsilon_loss"]


def epsilon_loss(model: Callable[..., jax.Array], schedule: NoiseSchedule, key: jax.Array,
                 images: jax.Array, labels: jax.Array | None = None, *,
                 label_dropout: float = 0.1) -> jax.Array:
    """``E ||eps - model(x_t, t, labels)||^2`` over uniform timesteps ``t`` and noise ``eps``.

    ``model(x, t, labels, dropout_key=...)``; ``images``: ``(B, H, W, C)`` in [-1, 1]. When
    the model is class-conditional (``model.config.num_classes > 0``), each label is replaced
    by the "no label" index with probability ``label_dropout``, which teaches the
    unconditional prediction that classifier-free guidance needs; an unconditional model gets
    no labels. Dropout inside the model gets its own key from ``key``.
    """
    require(0.0 <= label_dropout <= 1.0, "label_dropout", "in [0, 1]", label_dropout)
    t_key, noise_key, label_key, dropout_key = jax.random.split(key, 4)
    images = jnp.asarray(images, jnp.float32)
    batch = images.shape[0]
    t = jax.random.randint(t_key, (batch,), 0, schedule.num_steps, jnp.int32)
    noise = jax.random.normal(noise_key, images.shape, jnp.float32)
    alpha_bar = schedule.alphas_cumprod[t][:, None, None, None]
    noisy = jnp.sqrt(alpha_bar) * images + jnp.sqrt(1.0 - alpha_bar) * noise
    num_classes = getattr(getattr(model, "config", None), "num_classes", 0)
    if num_classes and labels is not None:
        dropped = jax.random.bernoulli(label_key, label_dropout, (batch,))
        labels = jnp.where(dropped, num_classes, jnp.asarray(labels, jnp.int32))
    prediction = model(noisy, t, labels if num_classes else None, dropout_key=dropout_key)
    return jnp.mean((prediction - noise) ** 2)
