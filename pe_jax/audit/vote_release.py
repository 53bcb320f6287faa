"""Canary audit of one PE vote release, repeated over many seeded runs.

The scenario is built so that one canary row decides the outcome: a public synthetic set with
a block of slots near the origin, where a bulk of private rows votes, and one slot per
"isolated" point far away. The canary sits on its own far slot (k of them when it votes k
times), so the clean histograms of D and D' differ only by the canary's vote. The clean
histograms are computed by the real kernel (``voting.nn_histogram``), and each run's T
releases by the release path's own sampler and lattice (``privacy.simulate_releases``), one
discrete Gaussian draw of shape ``(runs, T, bins)`` per dataset.

The score of a run is the likelihood-ratio direction of a Gaussian shift: the T released
histograms summed, projected on ``clean(D') - clean(D)``. For the real mechanism it is
(nearly) Gaussian with mean shift ``sqrt(T) / sigma`` standard deviations, the claimed mu.

Controls (``Control``) are broken variants of the mechanism that exist only here, never in the
release path. Each keeps the claim of the real mechanism (mu = sqrt(T) / sigma and the
accountant's epsilon) while leaking more, and the audit must flag it:

* ``NO_NOISE``: the clean histogram is released as is;
* ``HALF_NOISE``: noise multiplier sigma / 2;
* ``REPLACE_ONE``: the canary replaces a private row (which votes for another isolated slot)
  instead of being added: sensitivity sqrt(2), accounted as 1;
* ``UNWEIGHTED_KNN``: k votes of weight 1 each instead of 1 / sqrt(k), with noise of scale
  sigma per bin: sensitivity sqrt(k), accounted as 1.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np

from pe_jax import privacy, voting
from pe_jax._checks import check_int, require
from pe_jax.audit import bounds
from pe_jax.privacy.accounting import check_delta, check_noise_multiplier

__all__ = ["Control", "AuditResult", "claimed_mu", "vote_release_audit", "run_scores"]

# Geometry of the scenario (2-D embeddings): bulk slots on a grid near the origin, isolated
# slots on a circle of radius _FAR, private bulk rows scattered around the bulk slots.
_BULK_GRID = 4
_FAR = 100.0
_CHUNK_RUNS = 16384


class Control(enum.Enum):
    """The mechanism an audit run uses: the real one or a deliberately broken control."""

    NONE = "pe_jax release"
    NO_NOISE = "control: no noise"
    HALF_NOISE = "control: half the noise"
    REPLACE_ONE = "control: replace-one, sensitivity sqrt(2) accounted as 1"
    UNWEIGHTED_KNN = "control: k-NN votes without the 1/sqrt(k) weight"


@dataclasses.dataclass(frozen=True)
class AuditResult:
    """Claimed and audited bounds of one mechanism; ``flagged`` means audited > claimed."""

    name: str
    control: str
    k: int
    runs: int
    mu_claimed: float
    mu_lower: float
    epsilon_claimed: float
    epsilon_lower: float
    delta: float

    @property
    def mu_flagged(self) -> bool:
        return self.mu_lower > self.mu_claimed

    @property
    def epsilon_flagged(self) -> bool:
        return self.epsilon_lower > self.epsilon_claimed

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "mu_flagged": self.mu_flagged,
                "epsilon_flagged": self.epsilon_flagged}


def _scenario(k: int, replace: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic slots and the private sets D, D' (float32 2-D embeddings).

    Isolated slots: k for the canary, then k for the replaced row (used only with
    ``replace``), then k free ones; the bulk rows sit on the bulk slots.
    """
    grid = np.arange(_BULK_GRID, dtype=np.float32) - (_BULK_GRID - 1) / 2
    bulk_slots = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    centres = _FAR * np.stack([np.cos(angles), np.sin(angles)], -1)
    # k slots per centre, spread so that a row on the centre's first slot has them as its
    # k nearest (ties to the lower index).
    offsets = np.arange(k, dtype=np.float32)[:, None] * np.array([[0.01, 0.0]], np.float32)
    isolated = (centres[:3, None, :] + offsets[None]).reshape(-1, 2).astype(np.float32)
    synthetic = np.concatenate([isolated, bulk_slots]).astype(np.float32)
    bulk = np.repeat(bulk_slots, 3, axis=0) + 0.1
    canary, replaced = isolated[:1], isolated[k:k + 1]
    d0 = np.concatenate([bulk, replaced]) if replace else bulk
    d1 = np.concatenate([bulk, canary])
    return synthetic, d0.astype(np.float32), d1.astype(np.float32)


def run_scores(control: Control, *, noise_multiplier: float, iterations: int, runs: int,
               k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``runs`` runs on D and on D' (each run: ``iterations`` releases)."""
    synthetic, d0, d1 = _scenario(k, replace=control is Control.REPLACE_ONE)
    counts = [np.asarray(voting.nn_histogram(d, synthetic, k=k)) for d in (d0, d1)]
    # The control releases the same integer counts with weight 1 (k = 1 lattice), not 1/sqrt(k).
    lattice_k = 1 if control is Control.UNWEIGHTED_KNN else k
    direction = counts[1].astype(np.float64) - counts[0]
    sigma = noise_multiplier / 2 if control is Control.HALF_NOISE else noise_multiplier
    scores = []
    for hist in counts:
        if control is Control.NO_NOISE:
            released = hist / math.sqrt(lattice_k)
            scores.append(np.full(runs, iterations * released @ direction))
            continue
        chunks = []
        for start in range(0, runs, _CHUNK_RUNS):  # bounded memory for 10^5 runs and more
            size = min(_CHUNK_RUNS, runs - start)
            total = privacy.simulate_releases(hist, noise_multiplier=sigma, k=lattice_k,
                                              repeats=(size, iterations), rng=rng).sum(axis=1)
            chunks.append(total @ direction)
        scores.append(np.concatenate(chunks))
    return scores[0], scores[1]


def claimed_mu(noise_multiplier: float, iterations: int) -> float:
    """The mu-GDP claim the audits test: T releases of a sensitivity-1 histogram with Gaussian
    noise of this multiplier compose to mu = sqrt(T) / sigma."""
    return math.sqrt(iterations) / noise_multiplier


def vote_release_audit(control: Control = Control.NONE, *, noise_multiplier: float,
                       iterations: int, runs: int, delta: float, k: int = 1,
                       confidence: float = 0.95, seed: int = 0) -> AuditResult:
    """Audits ``iterations`` releases with this noise multiplier against its claim.

    ``runs`` runs per dataset (half choose the threshold, half bound the rates); the bounds
    hold with probability >= ``2 * confidence - 1``.
    """
    require(isinstance(control, Control), "control", f"a {Control.__name__}", control)
    check_noise_multiplier(noise_multiplier, allow_zero=False)
    check_delta(delta)
    check_int("runs", runs, 8)
    iterations = check_int("iterations", iterations, 1)
    k = check_int("k", k, 2 if control is Control.UNWEIGHTED_KNN else 1)
    require(0.5 < confidence < 1, "confidence", "in (0.5, 1)", confidence)
    null, alt = run_scores(control, noise_multiplier=noise_multiplier, iterations=iterations,
                           runs=runs, k=k, rng=np.random.default_rng(seed))
    mu_lower, eps_lower = bounds.mu_and_epsilon_lower(null, alt, delta=delta,
                                                      confidence=confidence)
    return AuditResult(
        name="vote release", control=control.value, k=k, runs=runs,
        mu_claimed=claimed_mu(noise_multiplier, iterations), mu_lower=mu_lower,
        epsilon_claimed=privacy.epsilon(noise_multiplier, delta, iterations, k=k),
        epsilon_lower=eps_lower, delta=delta)
