"""Canary audit of the DP-SGD path (``pe_jax.training.dpsgd``), repeated over many runs.

The model is linear in its input, so a row's gradient is the row itself: a bulk of rows with
small gradients, and a canary whose gradient points along the first axis with norm 10 times
the clipping norm (an exploding example). Neighbouring data sets D (the bulk) and D' (the bulk
and the canary) go through the real pieces of a DP-SGD step: jax-privacy's Poisson sampler
(``PoissonBatches``, at sampling rate 1, so every run's batch is the whole data set and the
audit tests clipping and noise, not amplification by sampling), the per-example clipped sum
(``dp_grad``) and the noise (``privatizer``, its own key per run). The score of a run is the
sum over its steps of the noisy gradient's first coordinate: a Gaussian shift of
``sqrt(steps) / noise_multiplier`` standard deviations, the claimed mu, for the real step.

Controls (``DPSGDControl``) break one piece while the claim stays that of the real step, and
the audit must flag them: ``NO_NOISE`` (the privatizer adds nothing) and ``NO_CLIPPING`` (the
clipping norm 100 times larger than the one the noise is scaled to). CI-sized defaults run in
a few seconds on a CPU.
"""

from __future__ import annotations

import enum
import math

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax._checks import check_int, require
from pe_jax.audit import bounds
from pe_jax.audit.vote_release import AuditResult, claimed_mu
from pe_jax.privacy import dpsgd_accounting
from pe_jax.privacy.accounting import check_delta, check_noise_multiplier

__all__ = ["DPSGDControl", "dpsgd_audit", "run_scores"]

_DIM = 16
_BULK = 8
_CANARY_NORM = 10.0  # in clipping norms: the canary's gradient must be clipped


class DPSGDControl(enum.Enum):
    """The DP-SGD step an audit run uses: the real one or a deliberately broken control."""

    NONE = "pe_jax DP-SGD step"
    NO_NOISE = "control: no noise"
    NO_CLIPPING = "control: clipping norm 100x the one the noise is scaled to"


def _data(clipping_norm: float) -> tuple[np.ndarray, np.ndarray]:
    """D (the bulk) and D' (the bulk and the canary), one gradient per row."""
    rng = np.random.default_rng(0)
    bulk = rng.normal(size=(_BULK, _DIM)) * 0.1 * clipping_norm / math.sqrt(_DIM)
    canary = np.zeros((1, _DIM))
    canary[0, 0] = _CANARY_NORM * clipping_norm
    return bulk.astype(np.float32), np.concatenate([bulk, canary]).astype(np.float32)


def run_scores(control: DPSGDControl, *, noise_multiplier: float, steps: int, runs: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``runs`` runs of ``steps`` DP-SGD steps on D and on D'."""
    from pe_jax.training import dpsgd
    from pe_jax.training.diffusion import TrainSettings

    clip = 1.0
    settings = dpsgd.DPSGDSettings(
        TrainSettings(steps=steps), sampling_rate=1.0, expected_batch_size=1.0,
        clipping_norm=clip * (100.0 if control is DPSGDControl.NO_CLIPPING else 1.0),
        noise_multiplier=(0.0 if control is DPSGDControl.NO_NOISE else
                          noise_multiplier / (100.0 if control is DPSGDControl.NO_CLIPPING
                                              else 1.0)))
    grad_fn = dpsgd.dp_grad(settings.clipping_norm)
    params = jnp.zeros(_DIM)

    def loss(w, batch, key):
        return jnp.sum(batch[0] @ w)

    scores = []
    for index, rows in enumerate(_data(clip)):
        batches = dpsgd.PoissonBatches(len(rows), 1.0, steps, seed, pad_multiple=1)
        sums = []
        for step in range(steps):
            chosen, padding = batches(step)
            batch = (jnp.asarray(rows[chosen]), jnp.zeros(len(chosen), jnp.int32),
                     jnp.asarray(padding))
            sums.append(grad_fn(loss, params, batch, jax.random.key(step))[1])

        def run(key):
            privatizer = dpsgd.privatizer(settings, jax.random.key_data(key))
            state, total = privatizer.init(params), 0.0
            for clipped in sums:
                noisy, state = privatizer.update(clipped, state)
                total = total + noisy[0]
            return total

        keys = jax.random.split(jax.random.key(seed * 2 + index), runs)
        scores.append(np.asarray(jax.jit(jax.vmap(run))(keys), np.float64))
    return scores[0], scores[1]


def dpsgd_audit(control: DPSGDControl = DPSGDControl.NONE, *, noise_multiplier: float,
                steps: int = 1, runs: int = 2000, delta: float = 1e-5,
                confidence: float = 0.95, seed: int = 0) -> AuditResult:
    """Audits ``steps`` full-batch DP-SGD steps with this noise multiplier against its claim
    (mu = sqrt(steps) / noise_multiplier; epsilon from ``dpsgd_accounting``).

    ``runs`` runs per data set (half choose the threshold, half bound the rates); the bounds
    hold with probability >= ``2 * confidence - 1``.
    """
    require(isinstance(control, DPSGDControl), "control", f"a {DPSGDControl.__name__}",
            control)
    check_noise_multiplier(noise_multiplier, allow_zero=False)
    check_delta(delta)
    check_int("runs", runs, 8)
    steps = check_int("steps", steps, 1)
    require(0.5 < confidence < 1, "confidence", "in (0.5, 1)", confidence)
    null, alt = run_scores(control, noise_multiplier=noise_multiplier, steps=steps, runs=runs,
                           seed=seed)
    mu_lower, eps_lower = bounds.mu_and_epsilon_lower(null, alt, delta=delta,
                                                      confidence=confidence)
    return AuditResult(
        name="DP-SGD step", control=control.value, k=1, runs=runs,
        mu_claimed=claimed_mu(noise_multiplier, steps), mu_lower=mu_lower,
        epsilon_claimed=dpsgd_accounting.epsilon(noise_multiplier, 1.0, steps, delta),
        epsilon_lower=eps_lower, delta=delta)
