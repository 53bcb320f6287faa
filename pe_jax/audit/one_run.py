"""One-run audit of the whole PE pipeline (Steinke, Nasr and Jagielski 2023).

One call of ``evolve.run`` on a synthetic-data task: a bulk of private 2-D points near the
origin and ``m`` canaries on a far circle, each included independently with probability 1/2.
The public generator starts from a fixed pool that holds a slot at every canary position and
a grid of slots near the origin; variation jitters samples slightly, and selection keeps the
best half (``rank``) plus one variation of each. Everything the auditor scores is public: the
populations and the released histograms. The score of canary i is the released mass, summed
over the T iterations, on the synthetic samples within ``_RADIUS`` of its position (minus the
mass near its partner under ``REPLACE_ONE``). The top-scored canaries are guessed in, the
bottom-scored out, for several numbers of guesses (Bonferroni-corrected), and
``bounds.one_run_epsilon_lower_bound`` turns the correct guesses into an epsilon lower bound.

Controls, again audit-only: ``NO_NOISE`` runs with ``non_private=True``; ``HALF_NOISE`` runs
with half the noise multiplier; ``REPLACE_ONE`` includes canary i or its partner (a second far
point next to it), so each canary replaces a row. All keep the claim of the real run: the
accountant's epsilon for the configured noise multiplier. ``UNWEIGHTED_KNN`` has no
whole-pipeline form (the pipeline's voting kernel always weights votes), so only the
vote-release audit covers it.

Power: one run with 1,000 canaries can certify at most about epsilon 4.5 (all of 400 guesses
right), and a Gaussian mechanism's guesses are far from all right, so this audit flags gross
violations only: no noise is flagged, while half the noise and replace-one raise the bound but
stay below the claim (as Steinke et al. find for Gaussian noise). The vote-release audit, with
thousands of runs, is the one that flags those.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax import embeddings, evolve, privacy
from pe_jax._checks import check_int, require
from pe_jax.audit import bounds
from pe_jax.audit.vote_release import Control
from pe_jax.privacy.accounting import check_delta, check_noise_multiplier

__all__ = ["OneRunResult", "one_run_audit", "ONE_RUN_CONTROLS"]

ONE_RUN_CONTROLS = (Control.NONE, Control.NO_NOISE, Control.HALF_NOISE, Control.REPLACE_ONE)
_FAR = 100.0
# Canary and partner positions are 2 pi _FAR / (2 m) >= 0.31 apart for m <= 1000, so the
# discs of radius _RADIUS around them are disjoint; a slot's random walk under variation
# (_JITTER per iteration) stays inside its disc for tens of iterations.
_RADIUS = 0.15
_BULK_GRID = 8
_JITTER = 0.01


@dataclasses.dataclass(frozen=True)
class OneRunResult:
    """The one-run epsilon bound of a pipeline run against the run's claimed epsilon."""

    name: str
    control: str
    canaries: int
    guesses: int
    correct: int
    epsilon_claimed: float
    epsilon_lower: float
    delta: float

    @property
    def epsilon_flagged(self) -> bool:
        return self.epsilon_lower > self.epsilon_claimed

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "epsilon_flagged": self.epsilon_flagged}


class _PoolGenerator:
    """Public 2-D points seen as 1x1 two-channel images; ``random`` returns the fixed pool."""

    def __init__(self, pool: np.ndarray) -> None:
        self.pool = jnp.asarray(pool, jnp.float32)

    def random(self, key, n, labels):
        require(n == self.pool.shape[0], "n", f"the pool size {self.pool.shape[0]}", n)
        return self.pool

    def variation(self, key, samples, degree):
        return samples + degree * _JITTER * jax.random.normal(key, samples.shape)

    def images(self, samples):
        return samples[:, None, None, :]


def _circle(count: int) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    return (_FAR * np.stack([np.cos(angles), np.sin(angles)], -1)).astype(np.float32)


def one_run_audit(control: Control = Control.NONE, *, canaries: int, noise_multiplier: float,
                  iterations: int, delta: float, guesses: Sequence[int] = (50, 100, 200, 400),
                  bulk: int = 512, confidence: float = 0.95, seed: int = 0) -> OneRunResult:
    """One PE run with ``canaries`` random canaries; the best Bonferroni-corrected bound."""
    require(control in ONE_RUN_CONTROLS, "control", f"one of {ONE_RUN_CONTROLS}", control)
    check_noise_multiplier(noise_multiplier, allow_zero=False)
    check_delta(delta)
    m = check_int("canaries", canaries, 2, 1000)
    iterations = check_int("iterations", iterations, 1)
    guesses = sorted({check_int("guesses", r, 2, m) for r in guesses})
    rng = np.random.default_rng(seed)
    points = _circle(2 * m)
    canary_at, partner_at = points[0::2], points[1::2]
    member = rng.random(m) < 0.5
    grid = (np.arange(_BULK_GRID, dtype=np.float32) - (_BULK_GRID - 1) / 2)
    bulk_slots = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    private = [rng.normal(0.0, 2.0, (bulk, 2)), canary_at[member]]
    if control is Control.REPLACE_ONE:
        private.append(partner_at[~member])
    private = np.concatenate(private).astype(np.float32)
    pool = np.concatenate([bulk_slots, points])

    sigma = noise_multiplier / 2 if control is Control.HALF_NOISE else noise_multiplier
    config = evolve.PEConfig(
        iterations=iterations, noise_multiplier=0.0 if control is Control.NO_NOISE else sigma,
        non_private=control is Control.NO_NOISE, samples_per_class=(len(pool),),
        degrees=(1.0,) * iterations, threshold=0.0, selection="rank", keep_selected=True)
    populations, releases = [pool], []

    def record(result: evolve.IterationResult) -> None:
        releases.append(np.asarray(result.release.noisy))
        populations.append(np.asarray(result.samples))

    evolve.run(jax.random.key(seed), config, generator=_PoolGenerator(pool),
               embedder=embeddings.PixelEmbedder(), private_images=private[:, None, None, :],
               private_labels=None, ledger=privacy.PrivacyLedger(delta), callbacks=[record],
               noise_rng=np.random.default_rng(seed + 1), progress=False)

    def mass_near(at: np.ndarray) -> np.ndarray:
        total = np.zeros(len(at))
        for population, released in zip(populations, releases):
            near = np.linalg.norm(population[None, :, :] - at[:, None, :], axis=-1) < _RADIUS
            total += near @ released
        return total

    scores = mass_near(canary_at)
    if control is Control.REPLACE_ONE:
        scores = scores - mass_near(partner_at)
    order = np.argsort(-scores, kind="stable")
    best = (0.0, guesses[0], 0)
    for r in guesses:
        top, bottom = order[:r - r // 2], order[len(order) - r // 2:]
        v = int(member[top].sum() + (~member[bottom]).sum())
        eps = bounds.one_run_epsilon_lower_bound(
            m, r, v, delta, 1 - (1 - confidence) / len(guesses))
        best = max(best, (eps, r, v))
    claimed = privacy.epsilon(noise_multiplier, delta, iterations)
    return OneRunResult(name="one run, whole pipeline", control=control.value, canaries=m,
                        guesses=best[1], correct=best[2], epsilon_claimed=claimed,
                        epsilon_lower=best[0], delta=delta)
