"""Private-PGM through mbi: estimation recovers a known distribution from exact marginals,
the NumPy marginals equal mbi's own, and sampling is seeded."""

import itertools

import numpy as np
import pytest

from pe_jax.tabular import pgm

DOMAIN = {"a": 3, "b": 4, "c": 2}


def _chain() -> np.ndarray:
    """A known joint P(a) P(b | a) P(c | b), as counts of 10,000 rows (float)."""
    rng = np.random.default_rng(0)
    pa = rng.dirichlet(np.ones(3))
    pb = rng.dirichlet(np.ones(4), size=3)
    pc = rng.dirichlet(np.ones(2), size=4)
    return 10_000 * pa[:, None, None] * pb[:, :, None] * pc[None, :, :]


def test_estimation_recovers_a_chain_from_its_exact_two_way_marginals():
    joint = _chain()
    mbi = pgm.mbi_module()
    exact = [mbi.LinearMeasurement(joint.sum(axis=2).ravel(), ("a", "b"), stddev=1.0),
             mbi.LinearMeasurement(joint.sum(axis=0).ravel(), ("b", "c"), stddev=1.0)]
    model = pgm.estimate(DOMAIN, exact, iters=1000)
    # (a, c) was never measured: it follows from the chain's structure alone.
    truth = joint.sum(axis=1).ravel()
    assert np.abs(pgm.project(model, ("a", "c")) - truth).sum() / 10_000 < 2e-3
    for clique in itertools.chain(itertools.combinations(DOMAIN, 1),
                                  itertools.combinations(DOMAIN, 2)):
        ours = pgm.project(model, clique)
        theirs = np.asarray(model.project(clique).datavector(), np.float64)
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)
    rows = pgm.sample_rows(model, DOMAIN, 5000, seed=0)
    assert rows.shape == (5000, 3) and rows.dtype == np.int32
    counts = np.bincount(rows[:, 0], minlength=3) / 5000
    np.testing.assert_allclose(counts, joint.sum(axis=(1, 2)) / 10_000, atol=0.03)
    # Sampling is seeded and leaves NumPy's global generator where it was.
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    first = pgm.sample_rows(model, DOMAIN, 200, seed=5)
    assert np.random.random() == before
    np.testing.assert_array_equal(first, pgm.sample_rows(model, DOMAIN, 200, seed=5))
    with pytest.raises(ValueError, match="rows must be"):
        pgm.sample_rows(model, DOMAIN, 0, seed=5)
