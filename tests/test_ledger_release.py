"""Ledger and release tests (PRIVACY_TESTS.md B, C and E): what leaves, what is recorded."""

import dataclasses
import json
import math

import numpy as np
import pytest

from pe_jax import privacy
from pe_jax.privacy import histogram_release as release_module

DELTA = 1e-5


@pytest.fixture
def noise_calls(monkeypatch):
    """Spies on every noise draw made by ``release``: a list of (scale, shape)."""
    calls = []
    real = release_module.sample_discrete_gaussian

    def spy(scale, shape, *, rng=None):
        calls.append((scale, shape))
        return real(scale, shape, rng=rng)

    monkeypatch.setattr(release_module, "sample_discrete_gaussian", spy)
    return calls


def _hist(counts, k=1):
    return np.asarray(counts, dtype=np.float64) / math.sqrt(k)


# ------------------------------------------------------------------------------ ledger


def test_ledger_epsilon_matches_accounting_and_history():
    ledger = privacy.PrivacyLedger(DELTA)
    assert ledger.epsilon_spent() == 0.0 and ledger.epsilon_history() == []
    event = privacy.ReleaseEvent("discrete_gaussian", 4.0, k=2)
    assert ledger.epsilon_after(event) == privacy.epsilon(4.0, DELTA, 1, k=2)
    for _ in range(5):
        ledger.record(event)
    assert ledger.epsilon_spent() == pytest.approx(privacy.epsilon(4.0, DELTA, 5, k=2), rel=1e-9)
    history = ledger.epsilon_history()
    assert len(history) == 5 and history == sorted(history)
    assert history[0] == pytest.approx(privacy.epsilon(4.0, DELTA, 1, k=2), rel=1e-9)
    assert history[-1] == ledger.epsilon_spent()


def test_ledger_composes_different_events():
    # Gaussian releases with sigmas a, a, b are mu-GDP with mu^2 = 2/a^2 + 1/b^2.
    ledger = privacy.PrivacyLedger(DELTA)
    for sigma in (3.0, 5.0, 3.0):
        ledger.record(privacy.ReleaseEvent("gaussian", sigma))
    mu = math.sqrt(2 / 9 + 1 / 25)
    assert ledger.epsilon_spent() == pytest.approx(privacy.gdp_epsilon(mu, DELTA), rel=0.01)


def test_ledger_replace_one_uses_sqrt2_sensitivity():
    ledger = privacy.PrivacyLedger(DELTA, adjacency="replace_one")
    ledger.record(privacy.ReleaseEvent("gaussian", 6.0))
    assert ledger.epsilon_spent() == pytest.approx(
        privacy.epsilon(6.0 / math.sqrt(2), DELTA, 1, mechanism="gaussian"), rel=1e-9)


def test_budget_check_and_record_refuse_over_budget():
    event = privacy.ReleaseEvent("discrete_gaussian", 5.0)
    budget = (privacy.epsilon(5.0, DELTA, 2) + privacy.epsilon(5.0, DELTA, 3)) / 2
    ledger = privacy.PrivacyLedger(DELTA, epsilon_budget=budget)
    ledger.record(event)
    ledger.record(event)
    with pytest.raises(privacy.BudgetExceededError, match="spent .* would be .* budget"):
        ledger.check(event)
    with pytest.raises(ValueError):  # BudgetExceededError is a ValueError
        ledger.record(event)
    assert len(ledger.events) == 2
    assert ledger.epsilon_spent() <= budget


def test_events_are_read_only_and_validated():
    ledger = privacy.PrivacyLedger(DELTA)
    ledger.record(privacy.ReleaseEvent("discrete_gaussian", 2.0))
    assert isinstance(ledger.events, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ledger.events[0].noise_multiplier = 100.0
    for bad in (dict(mechanism="laplace", noise_multiplier=1.0),
                dict(mechanism="gaussian", noise_multiplier=0.0),
                dict(mechanism="gaussian", noise_multiplier=math.nan),
                dict(mechanism="gaussian", noise_multiplier=1.0, k=0)):
        with pytest.raises(ValueError):
            privacy.ReleaseEvent(**bad)
    with pytest.raises(ValueError, match="event"):
        ledger.record(("discrete_gaussian", 2.0))


@pytest.mark.parametrize("kwargs", [dict(delta=0.0), dict(delta=1.0), dict(adjacency="swap"),
                                    dict(epsilon_budget=0.0), dict(epsilon_budget=math.inf)])
def test_ledger_rejects_bad_parameters(kwargs):
    args = dict(delta=DELTA) | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        privacy.PrivacyLedger(args.pop("delta"), **args)


def test_ledger_round_trips_through_json():
    ledger = privacy.PrivacyLedger(1e-6, adjacency="replace_one", epsilon_budget=50.0)
    csprng = privacy.ReleaseEvent("discrete_gaussian", 3.3, k=4, source="os.urandom (CSPRNG)")
    for event in (csprng, privacy.ReleaseEvent("gaussian", 7.1), csprng):
        ledger.record(event)
    text = json.dumps(ledger.to_dict())
    restored = privacy.PrivacyLedger.from_dict(json.loads(text))
    assert restored.events == ledger.events
    assert restored.delta == 1e-6 and restored.adjacency == "replace_one"
    assert restored.epsilon_budget == 50.0
    assert restored.epsilon_spent() == ledger.epsilon_spent() > 0
    assert restored.epsilon_history() == ledger.epsilon_history()


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(format="pickle"),
    lambda d: d.update(extra=1),
    lambda d: d["events"][0].update(noise_multiplier=-1.0),
    lambda d: d["events"][0].pop("k"),
    lambda d: d.update(delta=2.0),
])
def test_from_dict_rejects_malformed(mutate):
    ledger = privacy.PrivacyLedger(DELTA)
    ledger.record(privacy.ReleaseEvent("discrete_gaussian", 2.0))
    data = json.loads(json.dumps(ledger.to_dict()))
    mutate(data)
    with pytest.raises(ValueError):
        privacy.PrivacyLedger.from_dict(data)


# ------------------------------------------------------------------------------ release


def test_sigma_in_ledger_equals_sigma_used_and_one_draw_per_event(noise_calls):
    ledger = privacy.PrivacyLedger(DELTA)
    rng = np.random.default_rng(0)
    for t, (sigma, k) in enumerate([(3.0, 1), (3.0, 1), (2.5, 4), (7.25, 2)]):
        out = privacy.release(_hist(np.arange(6) * 2, k), noise_multiplier=sigma, threshold=1.0,
                              ledger=ledger, k=k, rng=rng)
        assert out.noisy.shape == (6,)
        assert len(noise_calls) == len(ledger.events) == t + 1
        event = ledger.events[-1]
        assert (event.mechanism, event.noise_multiplier, event.k) == ("discrete_gaussian", sigma, k)
        assert noise_calls[-1] == (sigma * math.sqrt(k), (6,))  # one draw for the whole vector
        assert event.source == "numpy PCG64 (seeded, not cryptographically secure)"


def test_csprng_release_is_labelled():
    ledger = privacy.PrivacyLedger(DELTA)
    privacy.release(_hist([1, 2]), noise_multiplier=2.0, threshold=0.0, ledger=ledger)
    assert ledger.events[0].source == "os.urandom (CSPRNG)"


def test_budget_refusal_happens_before_noise(noise_calls):
    budget = (privacy.epsilon(4.0, DELTA, 1) + privacy.epsilon(4.0, DELTA, 2)) / 2
    ledger = privacy.PrivacyLedger(DELTA, epsilon_budget=budget)
    rng = np.random.default_rng(1)
    privacy.release(_hist([3, 0, 1]), noise_multiplier=4.0, threshold=0.0, ledger=ledger, rng=rng)
    state, events = rng.bit_generator.state, ledger.events
    with pytest.raises(privacy.BudgetExceededError):
        privacy.release(_hist([3, 0, 1]), noise_multiplier=4.0, threshold=0.0, ledger=ledger,
                        rng=rng)
    assert rng.bit_generator.state == state
    assert ledger.events == events
    assert len(noise_calls) == 1


@pytest.mark.parametrize("hist,kwargs,match", [
    ([1.0, math.nan], {}, "non-finite"),
    ([1.0, math.inf], {}, "non-finite"),
    ([1.0, -1.0], {}, "negative"),
    ([1.0, 0.5], {}, "lattice"),
    ([1.0, 2.0], dict(k=2), "lattice"),  # integers are not counts / sqrt(2)
    ([[1.0, 2.0]], {}, "1-D"),
    ([], {}, "non-empty"),
    (np.array(["a", "b"]), {}, "dtype"),
    (np.array([True, False]), {}, "dtype"),
    ([1.0, 2.0], dict(noise_multiplier=0.0), "noise_multiplier"),
    ([1.0, 2.0], dict(noise_multiplier=-1.0), "noise_multiplier"),
    ([1.0, 2.0], dict(noise_multiplier=math.nan), "noise_multiplier"),
    ([1.0, 2.0], dict(noise_multiplier=math.inf), "noise_multiplier"),
    ([1.0, 2.0], dict(threshold=-0.1), "threshold"),
    ([1.0, 2.0], dict(threshold=math.nan), "threshold"),
    ([1.0, 2.0], dict(k=0), "k must"),
    ([1.0, 2.0], dict(k=1.5), "k must"),
    ([1.0, 2.0], dict(ledger="ledger"), "ledger"),
])
def test_bad_input_raises_before_noise_and_leaves_ledger_unchanged(hist, kwargs, match,
                                                                    noise_calls):
    ledger = privacy.PrivacyLedger(DELTA)
    privacy.release(_hist([1, 2]), noise_multiplier=3.0, threshold=0.0, ledger=ledger,
                    rng=np.random.default_rng(0))
    rng = np.random.default_rng(2)
    state, events = rng.bit_generator.state, ledger.events
    args = dict(noise_multiplier=3.0, threshold=1.0, ledger=ledger, rng=rng) | kwargs
    with pytest.raises(ValueError, match=match):
        privacy.release(np.asarray(hist), **args)
    assert ledger.events == events
    assert rng.bit_generator.state == state
    assert len(noise_calls) == 1


def test_bad_rng_is_refused():
    ledger = privacy.PrivacyLedger(DELTA)
    with pytest.raises(ValueError, match="rng"):
        privacy.release(_hist([1]), noise_multiplier=1.0, threshold=0.0, ledger=ledger, rng=3)
    assert ledger.events == ()


@pytest.mark.parametrize("k", [1, 3])
def test_threshold_applied_after_noise_and_output_on_lattice(k):
    counts = np.array([0, 0, 5, 40, 0, 12] * 50)
    sigma, threshold = 2.0, 1.5
    out = privacy.release(_hist(counts, k), noise_multiplier=sigma, threshold=threshold,
                          ledger=privacy.PrivacyLedger(DELTA), k=k, rng=np.random.default_rng(7))
    noise = privacy.sample_discrete_gaussian(sigma * math.sqrt(k), counts.size,
                                             rng=np.random.default_rng(7))
    expected = (counts + noise) / math.sqrt(k)
    np.testing.assert_array_equal(out.noisy, expected)
    np.testing.assert_array_equal(out.thresholded, np.maximum(expected - threshold, 0.0))
    assert out.noisy.dtype == out.thresholded.dtype == np.float64
    scaled = out.noisy * math.sqrt(k)
    np.testing.assert_allclose(scaled, np.rint(scaled), atol=1e-9)
    # Empty clean bins get nonzero thresholded mass: the threshold saw noise, not clean counts.
    assert np.any(out.thresholded[counts == 0] > 0)
    with pytest.raises(ValueError):
        out.noisy[0] = 1.0  # read-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.noisy = out.thresholded


def test_accepts_float32_int_and_jax_inputs():
    jnp = pytest.importorskip("jax.numpy")
    counts = np.array([0, 3, 9, 1000, 100_003])
    for k, hist in [(1, counts.astype(np.int32)), (1, counts.astype(np.float32)),
                    (4, jnp.asarray(counts / 2.0, dtype=jnp.float32)),
                    (3, jnp.asarray(counts / math.sqrt(3), dtype=jnp.float32))]:
        out = privacy.release(hist, noise_multiplier=1e-3, threshold=0.0, k=k,
                              ledger=privacy.PrivacyLedger(DELTA), rng=np.random.default_rng(0))
        # tiny noise: the integer counts were recovered exactly from the float input
        np.testing.assert_allclose(out.noisy * math.sqrt(k), counts, atol=1e-9)


def test_distinct_bins_and_releases_get_distinct_noise():
    ledger = privacy.PrivacyLedger(DELTA)
    zeros = np.zeros(20_000)
    a = privacy.release(zeros, noise_multiplier=10.0, threshold=0.0, ledger=ledger).noisy
    b = privacy.release(zeros, noise_multiplier=10.0, threshold=0.0, ledger=ledger).noisy
    assert not np.array_equal(a, b)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.05
    # Equal neighbouring bins only at the collision rate sum p(x)^2 ~ 1/(2 sqrt(pi) 10) ~ 0.028.
    assert np.mean(a[:-1] == a[1:]) < 0.045
    assert a.std() == pytest.approx(10.0, rel=0.03)
