"""Diffusion for PE's public prior: noise schedules, the epsilon loss, DDIM/DDPM sampling.

Interface notes for callers (additions to the issue-3 interface; nothing was removed):

* ``UNet.__call__(x, t, labels=None, *, dropout_key=None)``: dropout runs only when a key is
  given (training), so sampling needs no train/eval switch; ``epsilon_loss`` passes one.
* ``epsilon_loss(...)`` ignores ``labels`` when the model is unconditional.
* ``ddim_sample`` / ``ddpm_sample`` take any callable ``model(x, t, labels) -> eps`` and two
  more keywords: ``shape=(H, W, C)`` (default from ``model.config``) and ``sharding`` (lays the
  batch out over a mesh). ``start_images`` are *clean* images in [-1, 1]; ``start_step`` (0 to
  ``steps``, may be traced) is how many of the respaced steps they are noised back and
  denoised again.
* ``DiffusionGenerator`` samples are :class:`pe_jax.apis.diffusion.DiffusionSamples`
  ``(images, labels)``: images float32 ``(n, H, W, C)`` in [0, 1] and the int32 labels that
  condition their variations (``variation`` also accepts a plain image array: no label).
  ``images(samples)`` returns the images.

Modules: :mod:`~pe_jax.diffusion.schedules` (``make_schedule``, ``NoiseSchedule``),
:mod:`~pe_jax.diffusion.loss` (``epsilon_loss``), :mod:`~pe_jax.diffusion.sampling`
(``ddim_sample``, ``ddpm_sample``). The model is :mod:`pe_jax.models.unet`; the PE APIs on top
are :mod:`pe_jax.apis.diffusion`.
"""

from pe_jax.diffusion.loss import epsilon_loss
from pe_jax.diffusion.sampling import ddim_sample, ddpm_sample
from pe_jax.diffusion.schedules import NoiseSchedule, make_schedule

__all__ = ["NoiseSchedule", "ddim_sample", "ddpm_sample", "epsilon_loss", "make_schedule"]
