"""MST and AIM privacy: zCDP accounting against dp-accounting, the exponential mechanism's
distribution, the sensitivity of released marginals, and refusals before any release."""

import itertools
import math

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant as rdp

from pe_jax import privacy, tabular
from pe_jax.privacy import accounting
from pe_jax.privacy.exponential import exponential_mechanism
from pe_jax.tabular import budget, marginals
from pe_jax.tabular.aim import aim
from pe_jax.tabular.mst import mst

DELTA = 1e-9
DOMAIN = {"a": 3, "b": 4, "c": 2, "d": 3}


def _table(rows: int, seed: int = 0) -> tabular.Table:
    """A small correlated table: b depends on a, c on b, d on a."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, rows)
    b = np.where(rng.random(rows) < 0.7, a, rng.integers(0, 4, rows))
    c = (b + (rng.random(rows) < 0.2)) % 2
    d = np.where(rng.random(rows) < 0.6, a, rng.integers(0, 3, rows))
    return tabular.Table(np.stack([a, b, c, d], axis=1), DOMAIN)


def _rho(ledger: privacy.PrivacyLedger) -> float:
    """The ledger's events' zCDP rho, by hand: 1 / (2 s^2) each."""
    return sum(1 / (2 * e.noise_multiplier ** 2) for e in ledger.events)


def _dp_accounting_epsilon(ledger: privacy.PrivacyLedger) -> float:
    """The same events composed by dp-accounting itself: Gaussian events and the exponential
    mechanism's epsilon^2 / 8 as a ZCDpEvent."""
    accountant = rdp.RdpAccountant(orders=list(accounting._ZCDP_ORDERS))
    for e in ledger.events:
        if e.mechanism == "exponential":
            accountant.compose(dp_event.ZCDpEvent((2 / e.noise_multiplier) ** 2 / 8))
        else:
            accountant.compose(dp_event.GaussianDpEvent(e.noise_multiplier))
    return accountant.get_epsilon(ledger.delta)


@pytest.mark.parametrize("rho", [1e-7, 0.015, 1.0, 40.0])
def test_zcdp_conversion_matches_dp_accounting_and_the_continuous_optimum(rho):
    ours = accounting.zcdp_epsilon(rho, DELTA)
    accountant = rdp.RdpAccountant(orders=list(accounting._ZCDP_ORDERS))
    accountant.compose(dp_event.ZCDpEvent(rho))
    assert ours == pytest.approx(accountant.get_epsilon(DELTA), rel=1e-12)
    # The grid costs almost nothing against the best order of the same bound.
    best = min(rho * a + math.log1p(-1 / a) - math.log(DELTA * a) / (a - 1)
               for a in np.exp(np.linspace(np.log(1.0101), np.log(1e5), 200_000)))
    assert max(best, 0.0) <= ours <= max(best, 0.0) * 1.0001 + 1e-12


def test_rho_budget_never_overshoots_and_ledger_refuses_exponential_under_replace_one():
    for eps in (0.5, 1.0, 10.0):
        rho = budget.rho_for(eps, DELTA)
        assert accounting.zcdp_epsilon(rho, DELTA) <= eps
        assert accounting.zcdp_epsilon(rho * 1.001, DELTA) > eps
    ledger = privacy.PrivacyLedger(DELTA, adjacency="replace_one")
    with pytest.raises(ValueError, match="add_remove adjacency only"):
        exponential_mechanism([0.0, 1.0], epsilon=1.0, sensitivity=1.0, ledger=ledger)
    assert len(ledger) == 0


def test_mst_spends_its_budget_in_zcdp_and_matches_dp_accounting():
    table = _table(400)
    ledger = privacy.PrivacyLedger(DELTA, epsilon_budget=1.0)
    result = mst(table, epsilon=1.0, delta=DELTA, ledger=ledger,
                 rng=np.random.default_rng(0), iters=100)
    # 1-way release, A - 1 tree edges, the tree's 2-way release.
    assert [e.mechanism for e in ledger.events] == (
        ["discrete_gaussian"] + ["exponential"] * 3 + ["discrete_gaussian"])
    assert [e.k for e in ledger.events] == [4, 1, 1, 1, 3]
    assert _rho(ledger) == pytest.approx(result.rho, rel=1e-12)
    assert result.rho <= budget.rho_for(1.0, DELTA)
    spent = ledger.epsilon_spent()
    assert 0.999 < spent <= 1.0
    assert spent == pytest.approx(_dp_accounting_epsilon(ledger), rel=1e-9)
    assert len(result.edges) == 3 and result.rows.shape[1] == 4
    assert np.all((result.rows >= 0) & (result.rows < np.asarray(table.sizes)))


def test_aim_spends_exactly_its_budget_and_matches_dp_accounting():
    table = _table(400)
    ledger = privacy.PrivacyLedger(DELTA, epsilon_budget=1.0)
    result = aim(table, epsilon=1.0, delta=DELTA, ledger=ledger, rounds=5,
                 rng=np.random.default_rng(1), iters=50, final_iters=50)
    kinds = [e.mechanism for e in ledger.events]
    rounds = len(result.measured) - 4
    assert kinds == ["discrete_gaussian"] + ["exponential", "discrete_gaussian"] * rounds
    assert _rho(ledger) == pytest.approx(budget.rho_for(1.0, DELTA), rel=1e-9)
    spent = ledger.epsilon_spent()
    assert 0.999 < spent <= 1.0
    assert spent == pytest.approx(_dp_accounting_epsilon(ledger), rel=1e-9)


def test_exponential_mechanism_follows_its_distribution_and_rejects_twice_epsilon():
    # P(pick 1) = e^(eps/2) / (1 + e^(eps/2)) for scores (0, 1), sensitivity 1.
    rng = np.random.default_rng(7)
    ledger = privacy.PrivacyLedger(DELTA)
    draws = np.array([exponential_mechanism([0.0, 1.0], epsilon=2.0, sensitivity=1.0,
                                            ledger=ledger, rng=rng) for _ in range(600)])
    share, n = draws.mean(), len(draws)
    claimed, broken = math.e / (1 + math.e), math.e ** 2 / (1 + math.e ** 2)
    assert abs(share - claimed) < 4 * math.sqrt(claimed * (1 - claimed) / n)
    assert abs(share - broken) > 4 * math.sqrt(broken * (1 - broken) / n)
    assert len(ledger) == n and ledger.events[0].seeded


@pytest.mark.parametrize("rows", [1, 50])
def test_each_released_marginal_moves_by_at_most_its_declared_sensitivity(rows):
    """Add one row: with the same noise, the released (weighted) marginals move by L2 norm
    exactly ``MARGINAL_SENSITIVITY`` -- one count in each of the m marginals, weight
    1/sqrt(m) -- whatever the table, down to the 1-row table against the empty one."""
    table = _table(rows, seed=rows)
    extra = _table(1, seed=99)
    smaller = tabular.Table(table.codes[:-1], DOMAIN)  # the table without its last row
    bigger = tabular.Table(np.concatenate([table.codes, extra.codes]), DOMAIN)
    names = tuple(DOMAIN)
    for cliques in ([(a,) for a in names], list(itertools.combinations(names, 2))[:3],
                    [("a", "b", "c")]):
        released = {}
        for key, t in (("small", smaller), ("base", table), ("big", bigger)):
            ms = marginals.measure(t, cliques, noise_multiplier=2.0,
                                   ledger=privacy.PrivacyLedger(DELTA),
                                   rng=np.random.default_rng(3))
            released[key] = np.concatenate([np.asarray(m.noisy_measurement) for m in ms])
        weight = 1 / math.sqrt(len(cliques))
        for neighbour in ("small", "big"):
            gap = np.linalg.norm((released[neighbour] - released["base"]) * weight)
            assert gap == pytest.approx(marginals.MARGINAL_SENSITIVITY, rel=1e-9)
        counts = [marginals.marginal_counts(table.codes, table.sizes,
                                            [names.index(a) for a in c]) for c in cliques]
        assert all(c.sum() == rows for c in counts)


def test_refusals_come_before_any_release():
    table = _table(100)
    tight = privacy.PrivacyLedger(DELTA, epsilon_budget=0.5)
    with pytest.raises(privacy.BudgetExceededError):
        mst(table, epsilon=1.0, delta=DELTA, ledger=tight)
    with pytest.raises(privacy.BudgetExceededError):
        aim(table, epsilon=1.0, delta=DELTA, ledger=tight)
    assert len(tight) == 0
    ledger = privacy.PrivacyLedger(DELTA)
    with pytest.raises(ValueError, match="at least 2 attributes"):
        mst(tabular.Table(table.codes[:, :1], {"a": 3}), epsilon=1.0, delta=DELTA,
            ledger=ledger)
    with pytest.raises(ValueError, match="workload"):
        aim(table, epsilon=1.0, delta=DELTA, ledger=ledger, workload=[("a", "zz")])
    with pytest.raises(ValueError, match="rounds must be"):
        aim(table, epsilon=1.0, delta=DELTA, ledger=ledger, rounds=2)
    with pytest.raises(ValueError, match="scores must be"):
        exponential_mechanism([0.0, math.nan], epsilon=1.0, sensitivity=1.0, ledger=ledger)
    with pytest.raises(ValueError, match="codes must lie in"):
        tabular.Table(np.array([[3, 0, 0, 0]]), DOMAIN)
    assert len(ledger) == 0
