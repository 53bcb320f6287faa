"""Empirical privacy audits: the real release passes and every negative control is flagged.

The whole CI-sized suite runs once, through ``pe-jax audit`` (its default config: T = 4 releases
at noise multiplier 2, 16,000 seeded runs per dataset; one PE run with 10,000 canaries). A
control that an audit does not flag means that audit has no power, and fails here.
"""

import json
import math

import numpy as np
import pytest
from scipy import stats

from pe_jax import audit, cli, privacy
from pe_jax.audit import bounds

REAL = audit.Control.NONE.value
VOTE_CONTROLS = [c.value for c in audit.Control if c is not audit.Control.NONE]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "run"
    status = cli.main(["audit", "--out", str(out)])
    return status, out, json.loads((out / "audit.json").read_text())


def _rows(report, name, control):
    return [r for r in report["audits"] if r["name"] == name and r["control"] == control]


def test_command_writes_table_json_and_plot_and_exits_zero(suite, capsys):
    status, out, report = suite
    assert status == 0
    assert report["real_mechanism_flagged"] is False and report["controls_not_flagged"] == []
    assert (out / "audit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["audit", "--out", str(out)]) == 2  # never writes into an earlier result
    assert "not empty" in capsys.readouterr().err


@pytest.mark.parametrize("k", [1, 4])
def test_real_vote_release_stays_below_its_claims(suite, k):
    (row,) = [r for r in _rows(suite[2], "vote release", REAL) if r["k"] == k]
    assert row["mu_claimed"] == pytest.approx(math.sqrt(4) / 2.0)
    assert row["epsilon_claimed"] == pytest.approx(privacy.epsilon(2.0, 1e-2, 4, k=k))
    assert 0.8 * row["mu_claimed"] < row["mu_lower"] <= row["mu_claimed"]  # tight, not vacuous
    assert 0 < row["epsilon_lower"] <= row["epsilon_claimed"]


@pytest.mark.parametrize("control", VOTE_CONTROLS)
def test_vote_release_audit_flags_every_control_by_mu_and_by_epsilon(suite, control):
    (row,) = _rows(suite[2], "vote release", control)
    assert row["mu_flagged"] and row["mu_lower"] > row["mu_claimed"]
    assert row["epsilon_flagged"] and row["epsilon_lower"] > row["epsilon_claimed"]


def test_one_run_audit_of_the_pipeline_passes_and_flags_no_noise(suite):
    (real,) = _rows(suite[2], "one run, whole pipeline", REAL)
    assert real["canaries"] == 10000 and real["epsilon_claimed"] == pytest.approx(2.0, rel=1e-2)
    assert 0 < real["epsilon_lower"] < real["epsilon_claimed"]
    (no_noise,) = _rows(suite[2], "one run, whole pipeline", audit.Control.NO_NOISE.value)
    assert no_noise["correct"] == no_noise["guesses"] and no_noise["epsilon_flagged"]
    # Half the noise leaks more than the real run: the bound grows, though one run of 10^4
    # canaries cannot reach the claim; experiments/audit_large.py (10^5 canaries) flags it.
    (half,) = _rows(suite[2], "one run, whole pipeline", audit.Control.HALF_NOISE.value)
    assert half["epsilon_lower"] > 1.3 * real["epsilon_lower"]


def test_audit_noise_is_the_release_noise():
    """``simulate_releases`` draws exactly what ``release`` draws from the same seed."""
    hist = np.array([3, 0, 1, 7]) / math.sqrt(2)
    ledger = privacy.PrivacyLedger(1e-5)
    released = privacy.release(hist, noise_multiplier=1.5, threshold=0.0, ledger=ledger, k=2,
                               rng=np.random.default_rng(3))
    simulated = privacy.simulate_releases(hist, noise_multiplier=1.5, k=2, repeats=(1,),
                                          rng=np.random.default_rng(3))
    np.testing.assert_array_equal(simulated[0], released.noisy)
    with pytest.raises(ValueError, match="seeded"):
        privacy.simulate_releases(hist, noise_multiplier=1.5, k=2, repeats=(2,), rng=None)
    with pytest.raises(ValueError, match="lattice"):
        privacy.simulate_releases([0.5], noise_multiplier=1.0, repeats=(2,),
                                  rng=np.random.default_rng(0))


def test_clopper_pearson_and_gdp_bounds_match_closed_forms():
    assert bounds.clopper_pearson_upper(0, 100, 0.95) == pytest.approx(1 - 0.05 ** (1 / 100))
    assert bounds.clopper_pearson_upper(100, 100, 0.95) == 1.0
    assert bounds.clopper_pearson_upper(7, 50, 0.9) == pytest.approx(
        stats.beta.ppf(0.9, 8, 43))
    # A mu-GDP test at threshold t has FPR = Phi(-t), FNR = Phi(t - mu): exactly mu.
    t, mu = 0.7, 1.3
    assert bounds.gdp_mu_lower_bound(stats.norm.sf(t), stats.norm.cdf(t - mu)) == (
        pytest.approx(mu))
    assert bounds.gdp_mu_lower_bound(0.5, 0.5) == 0.0
    assert bounds.epsilon_lower_bound(0.01, 0.5, 0.0) == pytest.approx(math.log(50))
    assert bounds.epsilon_lower_bound(0.5, 0.01, 0.0) == pytest.approx(math.log(50))


def test_one_run_bound_is_the_binomial_tail_bound():
    # delta = 0: the p-value is P[Bin(r, e^eps / (1 + e^eps)) >= v].
    assert bounds.one_run_p_value(100, 40, 30, 1.0, 0.0) == pytest.approx(
        stats.binom.sf(29, 40, 1 / (1 + math.exp(-1.0))))
    # All r guesses right: eps = logit(q) with q^r = 1 - confidence.
    q = 0.05 ** (1 / 200)
    assert bounds.one_run_epsilon_lower_bound(1000, 200, 200, 0.0, 0.95) == pytest.approx(
        math.log(q / (1 - q)), rel=1e-4)
    # delta > 0 only raises the p-value, so it lowers the bound; chance accuracy gives 0.
    assert (bounds.one_run_epsilon_lower_bound(1000, 200, 200, 1e-5, 0.95)
            < bounds.one_run_epsilon_lower_bound(1000, 200, 200, 0.0, 0.95))
    assert bounds.one_run_epsilon_lower_bound(1000, 200, 100, 1e-6, 0.95) == 0.0


def test_split_threshold_bound_detects_a_shift_and_not_its_absence():
    rng = np.random.default_rng(0)
    null = rng.normal(size=20000)
    assert bounds.split_threshold_bound(null, rng.normal(size=20000), bounds.gdp_mu_lower_bound,
                                        confidence=0.95, tail=0.05)[0] < 0.1
    shifted = bounds.split_threshold_bound(null, rng.normal(2.0, size=20000),
                                           bounds.gdp_mu_lower_bound, confidence=0.95, tail=0.05)
    assert 1.7 < shifted[0] < 2.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(control="no noise"), "control"), (dict(noise_multiplier=0.0), "noise_multiplier"),
    (dict(delta=0.0), "delta"), (dict(runs=4), "runs"),
    (dict(k=1, control=audit.Control.UNWEIGHTED_KNN), "k"),
    (dict(confidence=1.0), "confidence")])
def test_vote_release_audit_rejects_bad_arguments(kwargs, match):
    args = dict(noise_multiplier=2.0, iterations=2, runs=16, delta=1e-2) | kwargs
    with pytest.raises(ValueError, match=match):
        audit.vote_release_audit(args.pop("control", audit.Control.NONE), **args)


def test_one_run_audit_rejects_bad_arguments():
    for kwargs, match in [(dict(canaries=10**5 + 1), "canaries"),
                          (dict(guesses=(0.0,)), "guesses"), (dict(guesses=(1.5,)), "guesses"),
                          (dict(guesses=()), "guesses"),
                          (dict(control=audit.Control.UNWEIGHTED_KNN), "control"),
                          (dict(noise_multiplier=-1.0), "noise_multiplier")]:
        args = dict(canaries=100, noise_multiplier=2.0, iterations=1, delta=1e-5) | kwargs
        with pytest.raises(ValueError, match=match):
            audit.one_run_audit(args.pop("control", audit.Control.NONE), **args)
