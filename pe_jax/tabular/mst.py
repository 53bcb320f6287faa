"""MST (McKenna, Miklau, Sheldon 2021, "Winning the NIST Contest"): a tree of noisy 2-way
marginals, fitted with Private-PGM.

With a total zCDP budget ``rho`` (``budget.rho_for(epsilon, delta)``), split in thirds:

1. all 1-way marginals, in one discrete Gaussian release with noise multiplier
   ``sigma = sqrt(3 / (2 rho))`` (``rho / 3``; each count gets noise of scale ``sigma *
   sqrt(A)``, see ``marginals.measure``);
2. a maximum spanning tree over the attributes, chosen edge by edge by the exponential
   mechanism (``A - 1`` choices at epsilon ``sqrt(8 (rho / 3) / (A - 1))`` each, ``rho / 3``
   in all). An edge's score is the L1 distance between the pair's true 2-way counts and those
   of the model fitted to the noisy 1-way marginals alone: how badly independence explains
   the pair (the paper's stand-in for mutual information). One row added or removed moves one
   true count by 1, so the score's sensitivity is 1. As in Kruskal's algorithm only edges
   joining two components are candidates;
3. the 2-way marginals on the tree's ``A - 1`` edges, in one release (``rho / 3``);

then Private-PGM estimates a graphical model from all noisy marginals and rows are sampled
from it. Between steps 1 and 2, values whose noisy 1-way count is below 3 noise standard
deviations are merged (``compress``, post-processing); steps 2 and 3 and the model work on
the compressed domain, and the rows are mapped back at the end. Steps 1 and 3 draw from
``pe_jax.privacy.release`` and step 2 from ``pe_jax.privacy.exponential``: each is checked
against and recorded in the ledger once.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from pe_jax._checks import check_int
from pe_jax.privacy import PrivacyLedger
from pe_jax.privacy.exponential import exponential_mechanism
from pe_jax.tabular import budget, compress, pgm
from pe_jax.tabular.data import Table
from pe_jax.tabular.marginals import marginal_counts, measure


@dataclasses.dataclass(frozen=True)
class MSTResult:
    """MST's synthetic ``rows`` (int32 ``(n, A)``), the tree's ``edges`` and the ``rho`` spent."""

    rows: np.ndarray
    edges: tuple[tuple[str, str], ...]
    rho: float


def mst(table: Table, *, epsilon: float, delta: float, ledger: PrivacyLedger,
        rng: np.random.Generator | None = None, rows: int | None = None,
        iters: int = 3000, seed: int = 0) -> MSTResult:
    """Runs MST on ``table`` at (``epsilon``, ``delta``), recording every release in ``ledger``.

    ``rng``: None draws noise from the OS CSPRNG; a NumPy generator gives seeded, NOT private
    noise. ``rows``: synthetic rows to draw (None: the model's noisy total). ``iters``: mirror
    descent steps of the final estimate. ``seed``: sampling of rows from the fitted model
    (post-processing). Raises before any release if the table has fewer than 2 attributes or
    the ledger cannot take the run's budget.
    """
    names = table.attributes
    if len(names) < 2:
        raise ValueError(f"MST needs a table of at least 2 attributes; got {len(names)}")
    iters = check_int("iters", iters, 1)
    rho = budget.rho_for(epsilon, delta)
    budget.check_rho(ledger, rho, rng)
    sigma = math.sqrt(3.0 / (2.0 * rho))
    oneway = measure(table, [(a,) for a in names], noise_multiplier=sigma, ledger=ledger,
                     rng=rng)
    small, oneway, mappings = compress.compress(table, oneway)
    edges = _select_tree(small, oneway, rho / 3.0, ledger, rng)
    twoway = measure(small, list(edges), noise_multiplier=sigma, ledger=ledger, rng=rng)
    model = pgm.estimate(small.domain, oneway + twoway, iters=iters)
    synthetic = pgm.sample_rows(model, small.domain, rows, seed)
    return MSTResult(compress.expand(synthetic, names, mappings, seed), edges, rho)


def _select_tree(table: Table, oneway: list, rho: float, ledger: PrivacyLedger,
                 rng: np.random.Generator | None) -> tuple[tuple[str, str], ...]:
    """The ``A - 1`` tree edges, each picked by the exponential mechanism (``rho`` in all)."""
    names = table.attributes
    # The model of the 1-way marginals alone is a product of its 1-way marginals.
    independent = pgm.estimate(table.domain, oneway, iters=1000)
    single = [pgm.project(independent, (a,)) for a in names]
    total = single[0].sum()
    scores = {}
    for i, j in itertools.combinations(range(len(names)), 2):
        exact = marginal_counts(table.codes, table.sizes, (i, j))
        scores[i, j] = np.abs(exact - np.outer(single[i], single[j]).ravel() / total).sum()
    picks = len(names) - 1
    epsilon = math.sqrt(8.0 * rho / picks)
    component = list(range(len(names)))  # union-find parent of each attribute
    edges = []

    def root(a: int) -> int:
        while component[a] != a:
            a = component[a]
        return a

    for _ in range(picks):
        candidates = [e for e in scores if root(e[0]) != root(e[1])]
        chosen = candidates[exponential_mechanism(
            [scores[e] for e in candidates], epsilon=epsilon, sensitivity=1.0, ledger=ledger,
            rng=rng)]
        component[root(chosen[0])] = root(chosen[1])
        edges.append((names[chosen[0]], names[chosen[1]]))
    return tuple(edges)
