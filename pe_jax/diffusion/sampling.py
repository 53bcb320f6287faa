"""DDIM and DDPM sampling over a respaced schedule, compiled with fixed shapes.

Both samplers run ``steps`` denoising steps over the timesteps of
:func:`~pe_jax.diffusion.schedules.respaced_timesteps` inside one ``lax.fori_loop``, so a whole
batch is one compiled loop whose shapes never change. One step from timestep ``tau`` to the
previous respaced one ``tau'`` (``alpha_bar = 1`` after the last) is DDIM (Song et al. 2021):

    x0   = clip((x - sqrt(1 - a) eps) / sqrt(a), -1, 1)       a = alpha_bar[tau]
    sig  = eta * sqrt((1 - a') / (1 - a) * (1 - a / a'))      a' = alpha_bar[tau']
    x'   = sqrt(a') x0 + sqrt(1 - a' - sig^2) eps + sig z

``eta = 0`` is deterministic DDIM; ``eta = 1`` is exactly DDPM's ancestral step with the
posterior variance of the respaced chain (Song et al. 2021, eq. 16), which is what
:func:`ddpm_sample` runs. The noise of step ``j`` comes from ``fold_in(key, j)``.

Starting part-way (SDEdit, Meng et al. 2022): ``start_images`` (clean, in [-1, 1]) are noised to
the ``start_step``-th respaced timestep and only the last ``start_step`` steps run; 0 returns
them unchanged, ``steps`` starts from (almost) pure noise. ``start_step`` may be a traced
integer, so one compiled function serves every variation degree.

``model`` is any callable ``model(x, t, labels) -> eps`` (a :class:`~pe_jax.models.unet.UNet`,
or an analytic denoiser); its ``config`` gives the image shape and the "no label" index unless
``shape`` is passed.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax._checks import check_int, require
from pe_jax.diffusion.schedules import NoiseSchedule, respaced_timesteps

__all__ = ["ddim_sample", "ddpm_sample", "noise_to_step"]

Model = Callable[..., jax.Array]


def noise_to_step(schedule: NoiseSchedule, key: jax.Array, images: jax.Array,
                  start_step: jax.Array | int, steps: int) -> jax.Array:
    """``images`` noised to the ``start_step``-th of ``steps`` respaced timesteps (0: as is)."""
    ab = schedule.alphas_cumprod[jnp.asarray(respaced_timesteps(schedule.num_steps, steps))]
    a = jnp.concatenate([jnp.ones((1,), jnp.float32), ab])[start_step]
    noise = jax.random.normal(key, images.shape, jnp.float32)
    return jnp.sqrt(a) * images + jnp.sqrt(1.0 - a) * noise


def ddim_sample(model: Model, schedule: NoiseSchedule, key: jax.Array,
                labels_or_n: jax.Array | int, *, steps: int = 50, eta: float = 0.0,
                guidance: float = 1.0, start_images: jax.Array | None = None,
                start_step: jax.Array | int | None = None,
                shape: tuple[int, int, int] | None = None,
                sharding: jax.sharding.Sharding | None = None) -> jax.Array:
    """Samples float32 images in [-1, 1] of shape ``(n, H, W, C)``.

    Args:
      model: ``model(x, t, labels) -> eps`` (see the module docstring).
      schedule: the training schedule of ``model``.
      key: PRNG key; the same key gives the same images.
      labels_or_n: ``(n,)`` int labels for a class-conditional model, or the count ``n``
        (no label).
      steps: respaced sampling steps, 1 to ``schedule.num_steps``.
      eta: 0 (deterministic DDIM) to 1 (DDPM); a Python float.
      guidance: classifier-free guidance scale; 1 is plain conditional sampling, > 1 mixes in
        the "no label" prediction (``model.config.num_classes``). A Python float.
      start_images: clean images in [-1, 1] to start from (SDEdit); None starts from noise.
      start_step: with ``start_images``: how many of the ``steps`` to run (0 to ``steps``).
      shape: ``(H, W, C)``; default from ``model.config``.
      sharding: when given, the batch is laid out with it via ``with_sharding_constraint``
        (a ``NamedSharding`` over Auto mesh axes, e.g. ``P("data")``).
    """
    steps = check_int("steps", steps, 1, schedule.num_steps)
    require(0.0 <= eta <= 1.0, "eta", "in [0, 1]", eta)
    require(guidance >= 0.0, "guidance", ">= 0", guidance)
    labels, n = _labels_and_count(labels_or_n)
    init_key, loop_key = jax.random.split(key)
    if start_images is None:
        require(start_step is None, "start_step", "None without start_images", start_step)
        if shape is None:
            config = model.config
            shape = (config.resolution, config.resolution, config.channels)
        x = jax.random.normal(init_key, (n, *shape), jnp.float32)
        start_step = steps
    else:
        start_images = jnp.asarray(start_images, jnp.float32)
        require(start_images.ndim == 4 and start_images.shape[0] == n, "start_images",
                f"an array of shape ({n}, H, W, C)", getattr(start_images, "shape", None))
        require(start_step is not None, "start_step", "given with start_images", start_step)
        if not isinstance(start_step, jax.core.Tracer):
            check_int("start_step", start_step, 0, steps)
        x = noise_to_step(schedule, init_key, _constrain(start_images, sharding), start_step,
                          steps)
    x = _constrain(x, sharding)
    if labels is not None:
        labels = _constrain(labels, sharding)
    null_label = getattr(getattr(model, "config", None), "num_classes", None)
    if guidance != 1.0:
        require(labels is not None and null_label, "guidance",
                "1.0 unless a class-conditional model gets labels", guidance)

    timesteps = jnp.asarray(respaced_timesteps(schedule.num_steps, steps))
    ab = schedule.alphas_cumprod[timesteps]
    ab_prev = jnp.concatenate([jnp.ones((1,), jnp.float32), ab[:-1]])

    def predict_noise(x, t):
        t = jnp.full((n,), t, jnp.int32)
        if guidance == 1.0:
            return model(x, t, labels)
        both = model(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                     jnp.concatenate([labels, jnp.full_like(labels, null_label)]))
        cond, uncond = jnp.split(both, 2)
        return uncond + guidance * (cond - uncond)

    def step(i, x):
        j = start_step - 1 - i
        a, a_prev = ab[j], ab_prev[j]
        eps = predict_noise(x, timesteps[j])
        x0 = jnp.clip((x - jnp.sqrt(1.0 - a) * eps) / jnp.sqrt(a), -1.0, 1.0)
        x_next = jnp.sqrt(a_prev) * x0
        if eta == 0.0:
            return x_next + jnp.sqrt(1.0 - a_prev) * eps
        sigma = eta * jnp.sqrt((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev))
        z = jax.random.normal(jax.random.fold_in(loop_key, j), x.shape, jnp.float32)
        return x_next + jnp.sqrt(jnp.maximum(1.0 - a_prev - sigma**2, 0.0)) * eps + sigma * z

    return jax.lax.fori_loop(0, start_step, step, x)


def ddpm_sample(model: Model, schedule: NoiseSchedule, key: jax.Array,
                labels_or_n: jax.Array | int, *, steps: int | None = None,
                guidance: float = 1.0, start_images: jax.Array | None = None,
                start_step: jax.Array | int | None = None,
                shape: tuple[int, int, int] | None = None,
                sharding: jax.sharding.Sharding | None = None) -> jax.Array:
    """DDPM ancestral sampling (``ddim_sample`` with ``eta = 1``); ``steps`` defaults to all
    training timesteps, fewer gives the respaced chain of Nichol & Dhariwal 2021."""
    return ddim_sample(model, schedule, key, labels_or_n,
                       steps=schedule.num_steps if steps is None else steps, eta=1.0,
                       guidance=guidance, start_images=start_images, start_step=start_step,
                       shape=shape, sharding=sharding)


def _labels_and_count(labels_or_n: jax.Array | int) -> tuple[jax.Array | None, int]:
    if isinstance(labels_or_n, (int, np.integer)) and not isinstance(labels_or_n, bool):
        return None, check_int("labels_or_n", labels_or_n, 1)
    labels = jnp.asarray(labels_or_n)
    require(labels.ndim == 1 and labels.shape[0] >= 1
            and jnp.issubdtype(labels.dtype, jnp.integer), "labels_or_n",
            "a count >= 1 or a non-empty 1-d int array of labels",
            f"{labels.dtype}{labels.shape}")
    return labels.astype(jnp.int32), labels.shape[0]


def _constrain(x: jax.Array, sharding: jax.sharding.Sharding | None) -> jax.Array:
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)
