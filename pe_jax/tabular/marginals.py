"""Marginal counts of a table and their noisy release, as Private-PGM measurements.

``marginal_counts(codes, sizes, clique)`` counts the rows in every cell of the marginal on the
attribute indices ``clique`` (flattened row-major, the last attribute fastest, as mbi's
``datavector``). ``noisy_marginals`` releases the marginals of several cliques in ONE discrete
Gaussian release through ``pe_jax.privacy.release``, the project's only noise path: a row lies in
exactly one cell of each of the ``m`` marginals, so the count vector is a histogram in which
each row casts ``k = m`` votes, and with weight ``1 / sqrt(m)`` per vote its L2 sensitivity
under add/remove is exactly 1 (``MARGINAL_SENSITIVITY``). The ledger records one event
(noise multiplier ``sigma``, ``k = m``: ``1 / (2 sigma^2)``-zCDP); every cell gets integer
noise of scale ``sigma * sqrt(m)``. ``measure`` gives the same noisy counts as
``mbi.LinearMeasurement``s with that standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pe_jax.privacy import PrivacyLedger, release
from pe_jax.tabular.data import Table

MARGINAL_SENSITIVITY = 1.0
"""L2 change of the weighted concatenated marginals when one row is added or removed."""


def marginal_counts(codes: np.ndarray, sizes: Sequence[int], clique: Sequence[int]
                    ) -> np.ndarray:
    """Counts (int64, flat, row-major) of the marginal on attribute indices ``clique``."""
    dims = tuple(int(sizes[a]) for a in clique)
    if not dims:
        return np.asarray([len(codes)], np.int64)
    flat = np.ravel_multi_index(tuple(codes[:, a] for a in clique), dims)
    return np.bincount(flat, minlength=math.prod(dims)).astype(np.int64)


def noisy_marginals(table: Table, cliques: Sequence[tuple[str, ...]], *,
                    noise_multiplier: float, ledger: PrivacyLedger,
                    rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """The noisy counts (float, count scale) of the marginals on ``cliques`` (attribute
    names), in one release: each cell's noise has standard deviation
    ``noise_multiplier * sqrt(len(cliques))``. ``rng``: as in ``pe_jax.privacy.release``
    (None: CSPRNG)."""
    if not cliques:
        raise ValueError("cliques must name at least one marginal to measure")
    names = table.attributes
    for clique in cliques:
        unknown = [a for a in clique if a not in names]
        if unknown or not clique or len(set(clique)) != len(clique):
            raise ValueError(f"each clique must be distinct attributes of the table "
                             f"{list(names)}; got {clique!r}")
    counts = [marginal_counts(table.codes, table.sizes, [names.index(a) for a in clique])
              for clique in cliques]
    k = len(cliques)
    released = release(np.concatenate(counts), noise_multiplier=noise_multiplier,
                       threshold=0.0, ledger=ledger, k=k, rng=rng)
    noisy = np.asarray(released.noisy) * math.sqrt(k)  # back to count scale: post-processing
    return np.split(noisy, np.cumsum([len(c) for c in counts])[:-1])


def measure(table: Table, cliques: Sequence[tuple[str, ...]], *, noise_multiplier: float,
            ledger: PrivacyLedger, rng: np.random.Generator | None = None) -> list:
    """``noisy_marginals`` as one ``mbi.LinearMeasurement`` per clique, with its standard
    deviation ``noise_multiplier * sqrt(len(cliques))``."""
    from pe_jax.tabular.pgm import mbi_module

    noisy = noisy_marginals(table, cliques, noise_multiplier=noise_multiplier, ledger=ledger,
                            rng=rng)
    stddev = noise_multiplier * math.sqrt(len(cliques))
    return [mbi_module().LinearMeasurement(y, tuple(clique), stddev=stddev)
            for y, clique in zip(noisy, cliques)]
