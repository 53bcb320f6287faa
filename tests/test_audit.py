"""Empirical privacy audits: the real release passes and every negative control is flagged.

The whole CI-sized suite runs once, through ``pe-jax audit`` (its default config: T = 4 releases
at noise multiplier 2, 16,000 seeded runs per dataset; one PE run with 30,000 canaries). A
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


def test_one_run_audit_of_the_pipeline_passes(suite):
    (real,) = _rows(suite[2], "one run, whole pipeline", REAL)
    assert real["canaries"] == 30000 and real["epsilon_claimed"] == pytest.approx(2.0, rel=1e-2)
    assert real["mu_claimed"] == pytest.approx(
        math.sqrt(4) / privacy.noise_multiplier(2.0, 1e-6, 4))
    assert 0 < real["mu_lower"] < real["mu_claimed"]
    assert 0 < real["epsilon_lower"] < real["epsilon_claimed"]


@pytest.mark.parametrize("control", VOTE_CONTROLS)
def test_one_run_audit_of_the_pipeline_flags_every_control_by_mu(suite, control):
    (row,) = _rows(suite[2], "one run, whole pipeline", control)
    assert row["k"] == (4 if control == audit.Control.UNWEIGHTED_KNN.value else 1)
    assert row["mu_flagged"] and row["mu_lower"] > row["mu_claimed"]


def test_one_run_unweighted_knn_control_votes_as_unweighted_knn_of_one_row():
    """The control's k rows per canary, voting with k = 1, give exactly the k-NN vote counts of
    one row at the canary (which the real release weighs 1/sqrt(k), the control 1)."""
    from pe_jax import voting
    from pe_jax.audit import one_run

    k, member = 4, np.random.default_rng(0).random(50) < 0.5
    slots = one_run._canary_slots(50, audit.Control.UNWEIGHTED_KNN, k)
    pool = one_run._pool(slots)
    control_rows = one_run._private_canaries(slots, member, audit.Control.UNWEIGHTED_KNN)
    one_row_each = one_run._private_canaries(slots, member, audit.Control.NONE)
    control_counts = voting.nn_histogram(control_rows, pool, k=1)
    counts = voting.nn_histogram(one_row_each, pool, k=k)
    assert control_counts.dtype == counts.dtype == np.int32
    np.testing.assert_array_equal(control_counts, counts)


def test_audit_noise_is_the_release_noise():
    """``simulate_releases`` draws exactly what ``release`` draws from the same seed."""
    hist = np.array([3, 0, 1, 7])
    ledger = privacy.PrivacyLedger(1e-5)
    released = privacy.release(hist, noise_multiplier=1.5, threshold=0.0, ledger=ledger, k=2,
                               rng=np.random.default_rng(3))
    simulated = privacy.simulate_releases(hist, noise_multiplier=1.5, k=2, repeats=(1,),
                                          rng=np.random.default_rng(3))
    np.testing.assert_array_equal(simulated[0], released.noisy)
    with pytest.raises(ValueError, match="seeded"):
        privacy.simulate_releases(hist, noise_multiplier=1.5, k=2, repeats=(2,), rng=None)
    for floats in ([0.5], hist / math.sqrt(2)):  # a float histogram is refused, not rounded
        with pytest.raises(ValueError, match="counts must be integer vote counts"):
            privacy.simulate_releases(floats, noise_multiplier=1.0, repeats=(2,),
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


def _max_tail_by_linear_program(m: int, r: int, v: int, mu: float) -> float:
    """The largest P[V >= v] under the constraints of ``one_run_gdp_least_mass``, by an LP:
    each constraint ``right_l <= h(wrong_l)`` imposed through 200 tangents of the concave h
    (an outer approximation, so the LP optimum is at least the exact one)."""
    from scipy import optimize, special

    j = np.arange(r + 1)
    points = np.logspace(-14, math.log10(min(r / m, 0.999)), 200)
    z = special.ndtri(points)
    slopes = np.exp(0.5 * z ** 2 - 0.5 * (z + mu) ** 2)
    intercepts = special.ndtr(z + mu) - slopes * points
    rows, limits = [], []
    for level in range(1, r + 1):
        right = np.where(j >= level, j, 0) / m
        wrong = np.where(j >= level - 1, r - j, 0) / m
        rows += [right - slope * wrong for slope in slopes]
        limits += list(intercepts)
    objective = -(j >= v).astype(float)
    result = optimize.linprog(objective, A_ub=np.array(rows), b_ub=limits,
                              A_eq=np.ones((1, r + 1)), b_eq=[1.0], bounds=(0, None))
    return -result.fun


@pytest.mark.parametrize("m, r, v, mu", [(1000, 50, 45, 0.5), (1000, 100, 80, 0.5),
                                         (600, 120, 90, 0.3), (150, 150, 100, 0.6)])
def test_one_run_gdp_greedy_reaches_the_optimum_of_its_linear_program(m, r, v, mu):
    """The greedy least mass is exact: the largest tail it allows matches the LP's optimum
    (from below, by at most the LP's tangent slack). Were it too small, the bound would be
    invalid; were it too large, loose."""
    lo, hi = 0.0, 1.0
    for _ in range(50):
        tail = (lo + hi) / 2
        lo, hi = (tail, hi) if bounds.one_run_gdp_least_mass(m, r, v, tail, mu) <= 1 else (
            lo, tail)
    linear_program = _max_tail_by_linear_program(m, r, v, mu)
    assert lo <= linear_program * (1 + 1e-6) and linear_program <= lo * 1.005


def test_one_run_mu_bound_holds_for_gaussian_canaries_and_flags_a_quarter_of_the_noise():
    """Independent Gaussian canaries (each a mu-GDP mechanism) never push the bound past
    their mu; at four times the claimed mu the bound exceeds the claim."""
    m, fractions = 10000, (0.005, 0.01, 0.02, 0.05)

    def best_bound(mu_true: float, seed: int) -> float:
        rng = np.random.default_rng(seed)
        member = rng.random(m) < 0.5
        order = np.argsort(-(rng.normal(size=m) + mu_true * member))
        best = 0.0
        for f in fractions:
            r = round(f * m)
            v = int(member[order[:r - r // 2]].sum() + (~member[order[m - r // 2:]]).sum())
            best = max(best, bounds.one_run_mu_lower_bound(m, r, v, 1 - 0.05 / len(fractions)))
        return best

    for seed in range(5):
        assert best_bound(1.0, seed) < 1.0
        assert best_bound(0.0, seed) < 0.15
    assert min(best_bound(2.0, seed) for seed in range(5)) > 0.5


def test_one_run_mu_bound_edges():
    assert bounds.one_run_mu_lower_bound(1000, 100, 0, 0.95) == 0.0
    assert bounds.one_run_mu_lower_bound(1000, 100, 50, 0.95) == 0.0  # chance level
    perfect = bounds.one_run_mu_lower_bound(1000, 100, 100, 0.95)
    assert 0.5 < perfect < bounds.one_run_mu_lower_bound(10000, 1000, 1000, 0.95)
    with pytest.raises(ValueError, match="v <= r"):
        bounds.one_run_mu_lower_bound(100, 10, 11, 0.95)


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
                          (dict(mu_guesses=(0.0,)), "mu_guesses"),
                          (dict(epsilon_guesses=(1.5,)), "epsilon_guesses"),
                          (dict(mu_guesses=()), "mu_guesses"), (dict(k=1), "k"),
                          (dict(control="control: no noise"), "control"),
                          (dict(noise_multiplier=-1.0), "noise_multiplier")]:
        args = dict(canaries=100, noise_multiplier=2.0, iterations=1, delta=1e-5) | kwargs
        with pytest.raises(ValueError, match=match):
            audit.one_run_audit(args.pop("control", audit.Control.NONE), **args)
