"""Tabular PE in one call: ``run_pe(table, epsilon=..., delta=..., ledger=...)``.

The cell-mutating generator (``generator``), the one-hot embedder (``embedding``) and the
project's unchanged PE driver (``pe_jax.evolve.run``: vote, discrete Gaussian release,
ledger, selection), unconditional, with the noise multiplier calibrated so that
``iterations`` releases are (epsilon, delta)-DP. The starting population is drawn from the
public prior (uniform over the domain), and the variation degree decays geometrically from
``degree_start`` to ``degree_end``.
"""

from __future__ import annotations

import jax
import numpy as np

from pe_jax import evolve, privacy
from pe_jax.tabular.data import Table
from pe_jax.tabular.embedding import OneHotEmbedder
from pe_jax.tabular.generator import TabularGenerator, as_images, image_range


def run_pe(table: Table, *, epsilon: float, delta: float, ledger: privacy.PrivacyLedger,
           rng: np.random.Generator | None = None, seed: int = 0, iterations: int = 40,
           samples: int = 4000, degree_start: float = 0.3, degree_end: float = 0.02,
           threshold: float = 0.0, keep_selected: bool = False,
           ordinal: tuple[str, ...] = ()) -> np.ndarray:
    """The final synthetic rows (int32 ``(samples, A)``) of a PE run on ``table``.

    ``rng``: None draws noise from the OS CSPRNG, a NumPy generator gives seeded, NOT private
    noise; ``seed``: the public generator's key. Every release is recorded in ``ledger``,
    which refuses the whole run before the first one if it would exceed its budget.
    ``ordinal``: attributes with ordered codes, mutated to nearby values and embedded by a
    thermometer code (``TabularGenerator`` / ``OneHotEmbedder``).
    """
    sigma = privacy.noise_multiplier(epsilon, delta, iterations)
    config = evolve.PEConfig(
        iterations=iterations, noise_multiplier=sigma, samples_per_class=(samples,),
        degrees=evolve.degree_schedule(degree_start, degree_end, iterations),
        threshold=threshold, keep_selected=keep_selected,
        image_range=image_range(table.domain))
    result = evolve.run(jax.random.key(seed), config,
                        generator=TabularGenerator(table.domain, ordinal=ordinal),
                        embedder=OneHotEmbedder(table.domain, ordinal=ordinal),
                        private_images=as_images(table.codes), private_labels=None,
                        ledger=ledger, noise_rng=rng, progress=False)
    return np.asarray(result.samples, np.int32)
