"""Accounting tests (PRIVACY_TESTS.md section B): calibration, closed forms, edge cases."""

import ast
import itertools
import math
import pathlib

import pytest

from pe_jax import privacy
from pe_jax.privacy import accounting

MECHANISMS = ("discrete_gaussian", "gaussian")


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("eps,delta,iterations",
                         list(itertools.product([0.5, 1.0, 4.0, 8.0], [1e-5, 1e-6], [1, 5, 20])))
def test_calibrated_sigma_never_overshoots_and_is_tight(mechanism, eps, delta, iterations):
    sigma = privacy.noise_multiplier(eps, delta, iterations, mechanism=mechanism)
    assert privacy.epsilon(sigma, delta, iterations, mechanism=mechanism) <= eps
    # Tight to ~0.1 %: 0.2 % less noise already overshoots.
    assert privacy.epsilon(sigma * 0.998, delta, iterations, mechanism=mechanism) > eps


@pytest.mark.parametrize("adjacency,k", [("replace_one", 1), ("add_remove", 4), ("replace_one", 3)])
def test_calibration_never_overshoots_with_k_and_replace_one(adjacency, k):
    sigma = privacy.noise_multiplier(2.0, 1e-5, 10, adjacency=adjacency, k=k)
    assert privacy.epsilon(sigma, 1e-5, 10, adjacency=adjacency, k=k) <= 2.0
    assert privacy.epsilon(sigma * 0.998, 1e-5, 10, adjacency=adjacency, k=k) > 2.0


@pytest.mark.parametrize("iterations,sigma,delta",
                         [(10, 5.0, 1e-5), (1, 1.0, 1e-5), (1, 4.0, 1e-6), (20, 3.0, 1e-6),
                          (100, 20.0, 1e-5)])
def test_gaussian_pld_matches_gdp_closed_form(iterations, sigma, delta):
    pld = privacy.epsilon(sigma, delta, iterations, mechanism="gaussian")
    closed = privacy.gdp_epsilon(math.sqrt(iterations) / sigma, delta)
    assert pld == pytest.approx(closed, rel=0.01)
    assert pld >= closed * (1 - 1e-6)  # pessimistic PLD never undershoots the exact value


def test_reference_numbers():
    assert privacy.gdp_epsilon(math.sqrt(10) / 5, 1e-5) == pytest.approx(2.594, abs=1e-3)
    assert privacy.epsilon(5.0, 1e-5, 10, mechanism="gaussian") == pytest.approx(2.594, rel=1e-3)
    # "epsilon 1 needs sigma 11.797" holds for T = 10 iterations at delta = 1e-5.
    assert privacy.gdp_epsilon(math.sqrt(10) / 11.797, 1e-5) == pytest.approx(1.0, abs=1e-3)
    sigma = privacy.noise_multiplier(1.0, 1e-5, 10, mechanism="gaussian")
    assert sigma == pytest.approx(11.797, rel=0.01)
    assert privacy.noise_multiplier(1.0, 1e-5, 10) == pytest.approx(11.797, rel=0.01)


@pytest.mark.parametrize("sigma", [2.0, 5.0, 20.0])
@pytest.mark.parametrize("iterations", [1, 10])
def test_discrete_close_to_continuous_for_sigma_at_least_2(sigma, iterations):
    discrete = privacy.epsilon(sigma, 1e-5, iterations)
    continuous = privacy.epsilon(sigma, 1e-5, iterations, mechanism="gaussian")
    assert discrete == pytest.approx(continuous, rel=0.03)


def test_gaussian_replace_one_is_add_remove_at_sigma_over_sqrt2():
    replace = privacy.epsilon(6.0, 1e-5, 10, mechanism="gaussian", adjacency="replace_one")
    add_remove = privacy.epsilon(6.0 / math.sqrt(2), 1e-5, 10, mechanism="gaussian")
    assert replace == pytest.approx(add_remove, rel=1e-9)
    # and it is the sqrt(2)-sensitivity closed form, not dp_accounting's sensitivity-2 one
    closed = privacy.gdp_epsilon(math.sqrt(2) * math.sqrt(10) / 6.0, 1e-5)
    assert replace == pytest.approx(closed, rel=0.01)


@pytest.mark.parametrize("k", [1, 3])
def test_discrete_replace_one_costs_more_than_add_remove(k):
    add_remove = privacy.epsilon(6.0, 1e-5, 10, k=k)
    replace = privacy.epsilon(6.0, 1e-5, 10, k=k, adjacency="replace_one")
    assert replace > add_remove * 1.2
    gauss = privacy.epsilon(6.0, 1e-5, 10, mechanism="gaussian", adjacency="replace_one")
    assert replace == pytest.approx(gauss, rel=0.03)


def test_k_does_not_change_gaussian_and_barely_changes_discrete():
    base = privacy.epsilon(4.0, 1e-5, 10, mechanism="gaussian")
    for k in (2, 5, 16):
        assert privacy.epsilon(4.0, 1e-5, 10, mechanism="gaussian", k=k) == base
        # k unit shifts at scale sigma*sqrt(k): same L2 sensitivity, finer lattice
        assert privacy.epsilon(4.0, 1e-5, 10, k=k) == pytest.approx(base, rel=0.02)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sigma_zero_is_infinite_epsilon_and_infinite_sigma_is_zero(mechanism):
    assert privacy.epsilon(0.0, 1e-5, 3, mechanism=mechanism) == math.inf
    assert privacy.epsilon(math.inf, 1e-5, 3, mechanism=mechanism) == 0.0


def test_epsilon_decreases_with_sigma_and_grows_with_iterations():
    eps = [privacy.epsilon(s, 1e-5, 5) for s in (1.0, 2.0, 4.0, 8.0)]
    assert eps == sorted(eps, reverse=True)
    assert privacy.epsilon(4.0, 1e-5, 1) < privacy.epsilon(4.0, 1e-5, 2)


def test_gdp_epsilon_edges():
    assert privacy.gdp_epsilon(0.0, 1e-5) == 0.0
    assert privacy.gdp_epsilon(math.inf, 1e-5) == math.inf
    assert privacy.gdp_epsilon(1e-5, 1e-5) == 0.0  # delta(0) ~ 0.4 mu < delta already
    with pytest.raises(ValueError, match="mu"):
        privacy.gdp_epsilon(-1.0, 1e-5)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, True, "1"])
def test_noise_multiplier_rejects_bad_epsilon(bad):
    with pytest.raises(ValueError, match="epsilon"):
        privacy.noise_multiplier(bad, 1e-5, 10)


@pytest.mark.parametrize("bad", [0.0, 1.0, -1e-5, 1.5, math.nan])
def test_rejects_bad_delta(bad):
    with pytest.raises(ValueError, match="delta"):
        privacy.noise_multiplier(1.0, bad, 10)
    with pytest.raises(ValueError, match="delta"):
        privacy.epsilon(1.0, bad, 10)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_rejects_bad_iterations(bad):
    with pytest.raises(ValueError, match="iterations"):
        privacy.noise_multiplier(1.0, 1e-5, bad)
    with pytest.raises(ValueError, match="iterations"):
        privacy.epsilon(1.0, 1e-5, bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5, False])
def test_rejects_bad_k(bad):
    with pytest.raises(ValueError, match="k must"):
        privacy.noise_multiplier(1.0, 1e-5, 10, k=bad)
    with pytest.raises(ValueError, match="k must"):
        privacy.epsilon(1.0, 1e-5, 10, k=bad)


@pytest.mark.parametrize("bad", [-1.0, math.nan, "2"])
def test_epsilon_rejects_bad_sigma(bad):
    with pytest.raises(ValueError, match="noise_multiplier"):
        privacy.epsilon(bad, 1e-5, 10)


def test_out_of_range_scales_raise_instead_of_exhausting_memory():
    with pytest.raises(ValueError, match="noise_multiplier"):
        privacy.epsilon(2e5, 1e-5, 1)
    with pytest.raises(ValueError, match="noise_multiplier"):
        privacy.noise_multiplier(1e-7, 1e-5, 1)  # brackets past sigma 1e5


@pytest.fixture
def no_pld(monkeypatch):
    """Fails the test if a privacy loss distribution is built (so a refusal must come first)."""
    def refuse(*args):
        raise AssertionError("built a PLD: an absurd request could exhaust memory")

    monkeypatch.setattr(accounting, "_pld", refuse)


@pytest.mark.parametrize("delta", [1e-5, 0.5])
def test_absurd_epsilon_is_refused_before_any_table_is_built(no_pld, delta):
    """noise_multiplier(1e5, 1e-5, 10) tabulated a PLD for sigma ~0.007 and self-composed it:
    24 GB and more. Now a composition beyond mu-GDP mu = MAX_MU is refused up front."""
    limit = privacy.gdp_epsilon(accounting.MAX_MU, delta)
    with pytest.raises(ValueError, match=f"epsilon must be at most ~{limit:.4g} at delta="):
        privacy.noise_multiplier(1e5, delta, 10)
    for mechanism in MECHANISMS:  # the accountant itself, as the ledger calls it
        with pytest.raises(ValueError, match="noise_multiplier too small to account: .* mu = 31"):
            privacy.epsilon(0.1, delta, 10, mechanism=mechanism)
    ledger = privacy.PrivacyLedger(delta, epsilon_budget=10.0)
    with pytest.raises(ValueError, match="noise_multiplier too small"):
        ledger.check(privacy.ReleaseEvent("discrete_gaussian", 0.01))


def test_calibration_stays_within_the_accountant_and_says_so():
    """epsilon=250 passes the closed-form check (mu ~18.5), but the discrete Gaussian needs a
    sigma beyond mu = MAX_MU: the search stops there instead of building a larger table."""
    with pytest.raises(ValueError, match="cannot calibrate epsilon=250.0: .* below 0.05"):
        privacy.noise_multiplier(250.0, 1e-5, 1)
    sigma = privacy.noise_multiplier(100.0, 1e-5, 1)  # within reach: calibrated as usual
    assert 1 / sigma < accounting.MAX_MU and privacy.epsilon(sigma, 1e-5, 1) <= 100.0


def test_rejects_unknown_mechanism_and_adjacency():
    with pytest.raises(ValueError, match="mechanism"):
        privacy.epsilon(1.0, 1e-5, 10, mechanism="laplace")
    with pytest.raises(ValueError, match="adjacency"):
        privacy.noise_multiplier(1.0, 1e-5, 10, adjacency="REPLACE_ONE")


def test_privacy_modules_do_not_import_jax_at_module_level():
    for path in pathlib.Path(accounting.__file__).parent.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "jax" or n.startswith("jax.") for n in names), path.name
