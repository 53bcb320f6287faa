"""Tabular PE in one call: ``run_pe(table, epsilon=..., delta=..., ledger=...)``.

The cell-mutating generator (``generator``), the one-hot embedder (``embedding``) and the
project's unchanged PE driver (``pe_jax.evolve.run``: vote, discrete Gaussian release,
ledger, selection), unconditional. The variation degree decays geometrically from
``degree_start`` to ``degree_end``.

The generator draws new cells (the starting population and every mutation) from a prior over
each attribute: uniform over the domain, or, with ``marginal_share > 0``, the table's 1-way
marginals measured with noise (``measured_prior``), which spends that share of the budget.
The budget is split in mu-GDP terms: the marginals' release gets ``marginal_share`` of
``mu^2``, the ``iterations`` vote releases the rest, and both noise multipliers come from one
calibration of the whole run (``pe_jax.privacy.accounting.noise_scale``).
"""

from __future__ import annotations

import math

import jax
import numpy as np

from pe_jax import evolve, privacy
from pe_jax._checks import require
from pe_jax.privacy.accounting import noise_scale
from pe_jax.privacy.histogram_release import release_event
from pe_jax.tabular.data import Table
from pe_jax.tabular.embedding import OneHotEmbedder
from pe_jax.tabular.generator import TabularGenerator, as_images, image_range
from pe_jax.tabular.marginals import noisy_marginals

PRIOR_CUT_SIGMAS = 2.0
"""A measured prior keeps a value only where its noisy count exceeds this many noise standard
deviations (a count that noise alone rarely reaches), so values the data hardly holds are not
drawn at the noise's rate."""


def measured_prior(table: Table, *, noise_multiplier: float, ledger: privacy.PrivacyLedger,
                   rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Prior weights per attribute: the noisy 1-way marginals of ``table`` (one release,
    recorded in ``ledger``), zero where below ``PRIOR_CUT_SIGMAS`` noise standard deviations;
    an attribute left with no value above it gets the uniform prior."""
    noisy = noisy_marginals(table, [(a,) for a in table.attributes],
                            noise_multiplier=noise_multiplier, ledger=ledger, rng=rng)
    cut = PRIOR_CUT_SIGMAS * noise_multiplier * math.sqrt(len(noisy))
    kept = [np.where(counts > cut, counts, 0.0) for counts in noisy]
    return [weights if weights.sum() > 0 else np.ones_like(weights) for weights in kept]


def noise_multipliers(epsilon: float, delta: float, iterations: int, marginal_share: float,
                      num_attributes: int) -> tuple[float, float | None]:
    """``(votes, marginals)``: the noise multipliers of the vote releases and of the 1-way
    marginals' release (None without one) that spend (epsilon, delta) in all."""
    if marginal_share == 0:
        return privacy.noise_multiplier(epsilon, delta, iterations), None
    # marginals: 1 / s_m^2 = share * mu^2; votes: iterations / s^2 = (1 - share) * mu^2.
    ratio = math.sqrt((1 - marginal_share) / (marginal_share * iterations))
    scale = noise_scale(epsilon, delta, (("discrete_gaussian", 1.0, 1, iterations),
                                         ("discrete_gaussian", ratio, num_attributes, 1)))
    return scale, scale * ratio


def run_pe(table: Table, *, epsilon: float, delta: float, ledger: privacy.PrivacyLedger,
           rng: np.random.Generator | None = None, seed: int = 0, iterations: int = 5,
           samples: int = 16000, degree_start: float = 0.3, degree_end: float = 0.1,
           threshold: float = 0.0, keep_selected: bool = False,
           ordinal: tuple[str, ...] = (), marginal_share: float = 0.2) -> np.ndarray:
    """The final synthetic rows (int32 ``(samples, A)``) of a PE run on ``table``.

    ``rng``: None draws noise from the OS CSPRNG, a NumPy generator gives seeded, NOT private
    noise; ``seed``: the public generator's key. Every release is recorded in ``ledger``,
    which refuses the whole run before the first one if it would exceed its budget.
    ``ordinal``: attributes with ordered codes, mutated to nearby values and embedded by a
    thermometer code (``TabularGenerator`` / ``OneHotEmbedder``). ``marginal_share``: the
    share of the budget spent on a measured prior (module docstring); 0 keeps it uniform.
    The defaults are those of ``pe-jax tabular`` (``pe_jax/configs/adult.py``), chosen by
    the sweep on Adult at epsilon 1 in ``experiments/RESULTS.md``.
    """
    require(isinstance(marginal_share, (int, float)) and 0 <= marginal_share < 1,
            "marginal_share", "a number in [0, 1)", marginal_share)
    sigma, sigma_prior = noise_multipliers(epsilon, delta, iterations, marginal_share,
                                           len(table.domain))
    # Every setting is checked (here and by the embedder) before the prior's noise is drawn.
    config = evolve.PEConfig(
        iterations=iterations, noise_multiplier=sigma, samples_per_class=(samples,),
        degrees=evolve.degree_schedule(degree_start, degree_end, iterations),
        threshold=threshold, keep_selected=keep_selected,
        image_range=image_range(table.domain))
    embedder = OneHotEmbedder(table.domain, ordinal=ordinal)
    prior = None
    if sigma_prior is not None:
        scratch = privacy.PrivacyLedger.from_dict(ledger.to_dict())
        scratch.record(release_event(noise_multiplier=sigma_prior, k=len(table.domain),
                                     rng=rng))
        scratch.check(release_event(noise_multiplier=sigma, rng=rng), times=iterations)
        prior = measured_prior(table, noise_multiplier=sigma_prior, ledger=ledger, rng=rng)
    result = evolve.run(jax.random.key(seed), config,
                        generator=TabularGenerator(table.domain, prior=prior,
                                                   ordinal=ordinal),
                        embedder=embedder, private_images=as_images(table.codes),
                        private_labels=None, ledger=ledger, noise_rng=rng, progress=False)
    return np.asarray(result.samples, np.int32)
