"""Tabular PE's measured prior: noisy 1-way marginals that the generator draws new cells from,
paid from the same budget as the votes (one calibration, one ledger)."""

import math

import jax
import numpy as np
import pytest

from pe_jax import privacy, tabular
from pe_jax.privacy.accounting import epsilon_of_groups, noise_scale
from pe_jax.tabular.marginals import marginal_counts
from pe_jax.tabular.pe import PRIOR_CUT_SIGMAS, measured_prior, noise_multipliers, run_pe

DELTA = 1e-9


@pytest.fixture(scope="module")
def adult_train():
    return tabular.load_adult_split()[0]


@pytest.mark.parametrize("epsilon, iterations, share", [(1.0, 40, 0.2), (10.0, 5, 0.5),
                                                        (0.3, 1, 0.05)])
def test_split_calibration_never_overshoots_and_is_tight(epsilon, iterations, share):
    votes, marginals = noise_multipliers(epsilon, DELTA, iterations, share, 14)
    # The marginals' release carries `share` of mu^2: 1 / s_m^2 = share / (1 - share) * T / s^2.
    assert (1 / marginals ** 2) / (iterations / votes ** 2) == pytest.approx(share / (1 - share))

    def spent(scale):
        ratio = marginals / votes
        return epsilon_of_groups((("discrete_gaussian", scale, 1, iterations),
                                  ("discrete_gaussian", scale * ratio, 14, 1)), "add_remove",
                                 DELTA)
    assert spent(votes) <= epsilon < spent(votes * 0.998)
    # One group of ratio 1 is the ordinary calibration.
    assert noise_scale(epsilon, DELTA, (("discrete_gaussian", 1.0, 1, iterations),)) == \
        privacy.noise_multiplier(epsilon, DELTA, iterations)
    with pytest.raises(ValueError, match="noise ratio"):
        noise_scale(epsilon, DELTA, (("discrete_gaussian", 0.0, 1, iterations),))


def test_measured_prior_keeps_the_counts_above_its_cut_and_beats_uniform(adult_train):
    ledger = privacy.PrivacyLedger(DELTA)
    sigma = 5.0
    prior = measured_prior(adult_train, noise_multiplier=sigma, ledger=ledger,
                           rng=np.random.default_rng(3))
    assert len(ledger) == 1 and ledger.events[0].k == 14
    std = sigma * math.sqrt(14)
    for a, weights in enumerate(prior):
        exact = marginal_counts(adult_train.codes, adult_train.sizes, [a])
        kept = weights > 0
        assert np.all(weights[kept] > PRIOR_CUT_SIGMAS * std)
        assert np.all(np.abs(weights[kept] - exact[kept]) < 6 * std)
        assert np.all(exact[~kept] < PRIOR_CUT_SIGMAS * std + 6 * std)
    assert any(not np.all(w > 0) for w in prior)  # Adult has values rarer than the cut
    measured = tabular.TabularGenerator(adult_train.domain, prior=prior)
    uniform = tabular.TabularGenerator(adult_train.domain)
    tvd = {name: tabular.mean_marginal_tvd(
        adult_train, np.asarray(g.random(jax.random.key(0), 4000, None)), adult_train.domain)
        for name, g in (("measured", measured), ("uniform", uniform))}
    assert tvd["measured"] < 0.15 < 0.3 < tvd["uniform"], tvd


def test_an_attribute_with_nothing_above_the_cut_gets_the_uniform_prior():
    """3 rows, noise of std 71: with this seed "a" has no count above the cut (141) and falls
    back to uniform, while noise alone lifts one value of "b" over it."""
    table = tabular.Table(np.array([[0, 1], [2, 1], [1, 0]]), {"a": 3, "b": 2})
    prior = measured_prior(table, noise_multiplier=50.0, ledger=privacy.PrivacyLedger(DELTA),
                           rng=np.random.default_rng(0))
    assert prior[0].tolist() == [1.0, 1.0, 1.0]
    assert prior[1][0] > PRIOR_CUT_SIGMAS * 50.0 * math.sqrt(2) and prior[1][1] == 0


def test_run_with_a_measured_prior_spends_its_budget_in_one_ledger(adult_train):
    private = adult_train.take(np.random.default_rng(0).choice(len(adult_train), 2000,
                                                               replace=False))
    ledger = privacy.PrivacyLedger(DELTA, epsilon_budget=2.0)
    rows = run_pe(private, epsilon=2.0, delta=DELTA, ledger=ledger,
                  rng=np.random.default_rng(1), iterations=3, samples=300, marginal_share=0.3)
    assert rows.shape == (300, 14) and len(tabular.Table(rows, private.domain)) == 300
    votes, marginals = noise_multipliers(2.0, DELTA, 3, 0.3, 14)
    events = ledger.events
    assert [(e.k, e.noise_multiplier) for e in events] == [(14, marginals)] + [(1, votes)] * 3
    assert 0.99 * 2.0 < ledger.epsilon_spent() <= 2.0


def test_refusals_come_before_the_prior_is_measured(adult_train):
    tight = privacy.PrivacyLedger(DELTA, epsilon_budget=0.5)
    with pytest.raises(privacy.BudgetExceededError):
        run_pe(adult_train, epsilon=1.0, delta=DELTA, ledger=tight, iterations=3,
               samples=100, marginal_share=0.2)
    assert len(tight) == 0
    for bad in (1.0, -0.1, math.nan, "0.2"):
        with pytest.raises(ValueError, match="marginal_share"):
            run_pe(adult_train, epsilon=1.0, delta=DELTA, ledger=tight, iterations=3,
                   samples=100, marginal_share=bad)
    # Bad PE settings are refused before the prior's noise is drawn, not after.
    ledger = privacy.PrivacyLedger(DELTA)
    for settings, name in ((dict(samples=0), "samples"), (dict(degree_end=2.0), "degree"),
                           (dict(ordinal=("height",)), "ordinal")):
        with pytest.raises(ValueError, match=name):
            run_pe(adult_train, epsilon=1.0, delta=DELTA, ledger=ledger, iterations=3,
                   marginal_share=0.2, **{"samples": 100, **settings})
    assert len(tight) == 0 and len(ledger) == 0
