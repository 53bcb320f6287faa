"""Noise schedules: how much signal is left at each training timestep.

A schedule is the cumulative product ``alpha_bar_t`` of ``1 - beta_t`` over ``num_steps``
training timesteps: ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``.

* ``linear`` (Ho et al. 2020): betas evenly spaced from ``1e-4`` to ``0.02``, both scaled by
  ``1000 / num_steps`` (Nichol & Dhariwal 2021) so that any length ends as noisy as DDPM's 1000.
* ``cosine`` (Nichol & Dhariwal 2021): ``alpha_bar(t) = cos((t / T + s) / (1 + s) * pi / 2)^2``
  with ``s = 0.008``, betas capped at 0.999 (diffusers' ``squaredcos_cap_v2``). It destroys
  small images' signal more gradually than ``linear`` and ends at pure noise.

Samplers use a respaced subset of the timesteps (:func:`respaced_timesteps`).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax._checks import check_int, require

__all__ = ["SCHEDULES", "NoiseSchedule", "make_schedule", "respaced_timesteps"]

SCHEDULES = ("cosine", "linear")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
    """``alphas_cumprod``: float32 ``(num_steps,)``, decreasing from about 1 towards 0."""

    alphas_cumprod: jax.Array

    @property
    def num_steps(self) -> int:
        return self.alphas_cumprod.shape[0]


def make_schedule(kind: str = "cosine", num_steps: int = 1000) -> NoiseSchedule:
    """The ``kind`` schedule (``cosine`` or ``linear``) over ``num_steps`` training timesteps."""
    require(kind in SCHEDULES, "kind", f"one of {SCHEDULES}", kind)
    check_int("num_steps", num_steps, 2)
    if kind == "linear":
        scale = 1000.0 / num_steps
        betas = np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)
    else:
        s = 0.008
        f = np.cos((np.arange(num_steps + 1) / num_steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = np.minimum(1.0 - f[1:] / f[:-1], 0.999)
    return NoiseSchedule(jnp.asarray(np.cumprod(1.0 - betas), jnp.float32))


def respaced_timesteps(num_steps: int, steps: int) -> np.ndarray:
    """``steps`` training timesteps, ascending, evenly spaced and ending at ``num_steps - 1``.

    Timestep ``i`` (1-based) is ``round(i * num_steps / steps) - 1``: the "trailing" spacing
    of Lin et al. 2024 (diffusers' ``timestep_spacing="trailing"``), so the last step always
    starts from the fully noised timestep and sampling from pure noise is consistent.
    """
    check_int("steps", steps, 1, num_steps)
    return (np.round(np.arange(1, steps + 1) * num_steps / steps) - 1).astype(np.int32)
