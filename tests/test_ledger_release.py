"""Ledger and release tests (PRIVACY_TESTS.md B, C and E): what leaves, what is recorded."""

import dataclasses
import json
import math
import os

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


# ------------------------------------------------------------------------------ ledger


def test_ledger_epsilon_matches_accounting_and_history():
    ledger = privacy.PrivacyLedger(DELTA)
    assert ledger.epsilon_spent() == 0.0 and ledger.epsilon_history() == []
    event = privacy.ReleaseEvent("discrete_gaussian", 4.0, k=2)
    assert ledger.epsilon_after(event) == privacy.epsilon(4.0, DELTA, 1, k=2)
    assert ledger.epsilon_after(event, times=5) == privacy.epsilon(4.0, DELTA, 5, k=2)
    for _ in range(5):
        ledger.record(event)
    assert ledger.epsilon_spent() == pytest.approx(privacy.epsilon(4.0, DELTA, 5, k=2), rel=1e-9)
    history = ledger.epsilon_history()
    assert len(history) == 5 and history == sorted(history)
    assert history[0] == pytest.approx(privacy.epsilon(4.0, DELTA, 1, k=2), rel=1e-9)
    assert history[-1] == ledger.epsilon_spent()
    # One run's share of a ledger that earlier runs filled: events from ``start`` on.
    assert ledger.epsilon_spent(start=3) == pytest.approx(privacy.epsilon(4.0, DELTA, 2, k=2))
    assert ledger.epsilon_history(start=3) == history[:2]
    assert ledger.epsilon_spent(start=5) == 0.0 and ledger.epsilon_history(start=5) == []


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
    fresh = privacy.PrivacyLedger(DELTA, epsilon_budget=budget)
    fresh.check(event, times=2)
    with pytest.raises(privacy.BudgetExceededError, match="3 releases refused"):
        fresh.check(event, times=3)  # a whole run, checked before it starts


def test_events_are_read_only_and_validated():
    ledger = privacy.PrivacyLedger(DELTA)
    ledger.record(privacy.ReleaseEvent("discrete_gaussian", 2.0))
    assert isinstance(ledger.events, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ledger.events[0].noise_multiplier = 100.0
    for bad in (dict(mechanism="laplace", noise_multiplier=1.0),
                dict(mechanism="gaussian", noise_multiplier=0.0),
                dict(mechanism="gaussian", noise_multiplier=math.nan),
                dict(mechanism="gaussian", noise_multiplier=1.0, k=0),
                dict(mechanism="gaussian", noise_multiplier=1.0, seeded=1),
                dict(mechanism=privacy.NON_PRIVATE, noise_multiplier=0.0, seeded=True)):
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
    assert json.loads(text)["format"] == "pe_jax.privacy.PrivacyLedger/2"
    restored = privacy.PrivacyLedger.from_dict(json.loads(text))
    assert restored.events == ledger.events
    seeded = privacy.PrivacyLedger(DELTA)
    seeded.record(privacy.ReleaseEvent("discrete_gaussian", 2.0, source="numpy PCG64",
                                       seeded=True))
    assert privacy.PrivacyLedger.from_dict(seeded.to_dict()).events[0].seeded is True
    assert restored.delta == 1e-6 and restored.adjacency == "replace_one"
    assert restored.epsilon_budget == 50.0
    assert restored.epsilon_spent() == ledger.epsilon_spent() > 0
    assert restored.epsilon_history() == ledger.epsilon_history()


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(format="pickle"),
    lambda d: d.update(extra=1),
    lambda d: d["events"][0].update(noise_multiplier=-1.0),
    lambda d: d["events"][0].pop("k"),
    lambda d: d["events"][0].pop("seeded"),
    lambda d: d["events"][0].update(seeded="no"),
    lambda d: d["events"].append({**d["events"][0], "seeded": True}),  # mixed sources
    lambda d: d.update(delta=2.0),
])
def test_from_dict_rejects_malformed(mutate):
    ledger = privacy.PrivacyLedger(DELTA)
    ledger.record(privacy.ReleaseEvent("discrete_gaussian", 2.0))
    data = json.loads(json.dumps(ledger.to_dict()))
    mutate(data)
    with pytest.raises(ValueError):
        privacy.PrivacyLedger.from_dict(data)


def _v1_ledger(*sources):
    """A ledger as format /1 wrote it: events without the ``seeded`` field."""
    return {"format": "pe_jax.privacy.PrivacyLedger/1", "delta": DELTA, "adjacency": "add_remove",
            "epsilon_budget": None,
            "events": [{"mechanism": "discrete_gaussian", "noise_multiplier": 2.0, "k": 1,
                        "source": source} for source in sources]}


def test_format_1_ledgers_are_read_and_only_csprng_events_count_as_unseeded():
    csprng = privacy.PrivacyLedger.from_dict(_v1_ledger("os.urandom (CSPRNG)"))
    assert [e.seeded for e in csprng.events] == [False]
    seeded = privacy.PrivacyLedger.from_dict(
        _v1_ledger("numpy PCG64 (seeded, not cryptographically secure)", ""))
    assert [e.seeded for e in seeded.events] == [True, True]  # unknown source: not private
    with pytest.raises(ValueError, match="mix"):
        privacy.PrivacyLedger.from_dict(_v1_ledger("os.urandom (CSPRNG)", "numpy PCG64"))


def test_ledger_refuses_to_mix_seeded_and_csprng_noise(noise_calls):
    """Seeded noise can be recomputed by whoever knows the seed: one budget never holds both."""
    for first, second in [(None, np.random.default_rng(0)), (np.random.default_rng(0), None)]:
        ledger = privacy.PrivacyLedger(DELTA)
        privacy.release(np.array([1, 2]), noise_multiplier=2.0, threshold=0.0, ledger=ledger,
                        rng=first)
        calls, events = len(noise_calls), ledger.events
        with pytest.raises(ValueError, match="cannot mix seeded and CSPRNG noise"):
            privacy.release(np.array([1, 2]), noise_multiplier=2.0, threshold=0.0,
                            ledger=ledger, rng=second)
        assert len(noise_calls) == calls and ledger.events == events  # refused before noise
        # A release without noise is neither, and is recorded next to either.
        privacy.release(np.array([1, 2]), noise_multiplier=0.0, threshold=0.0, ledger=ledger,
                        non_private=True)
        assert ledger.events[-1].mechanism == privacy.NON_PRIVATE


def _file_events(path):
    return json.loads(path.read_text())["events"]


def test_ledger_file_is_created_rewritten_after_every_release_and_reopened(tmp_path):
    path = tmp_path / "digits-ledger.json"
    ledger = privacy.PrivacyLedger.open(path, delta=DELTA, epsilon_budget=30.0)
    assert path.is_file() and _file_events(path) == []  # a missing file is created at once
    for t in range(1, 4):
        privacy.release(np.array([4, 0, 1]), noise_multiplier=3.0, threshold=0.0, ledger=ledger)
        assert len(_file_events(path)) == t  # on disk before release() returned
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits-ledger.json"]  # no temp files
    again = privacy.PrivacyLedger.open(path, delta=DELTA)
    assert again.events == ledger.events and again.epsilon_budget == 30.0
    assert again.path == path and again.epsilon_spent() == ledger.epsilon_spent()
    privacy.release(np.array([4, 0, 1]), noise_multiplier=3.0, threshold=0.0, ledger=again)
    assert len(_file_events(path)) == 4  # the second run appended to the first run's releases


@pytest.mark.parametrize("kwargs, match", [
    (dict(delta=1e-6), "delta=1e-05, but this run uses delta=1e-06"),
    (dict(adjacency="replace_one"), "adjacency"),
    (dict(epsilon_budget=5.0), "epsilon_budget"),
])
def test_ledger_file_must_match_the_run(tmp_path, kwargs, match):
    path = tmp_path / "ledger.json"
    privacy.PrivacyLedger.open(path, delta=DELTA, epsilon_budget=30.0)
    with pytest.raises(ValueError, match=match):
        privacy.PrivacyLedger.open(path, **(dict(delta=DELTA) | kwargs))


def test_ledger_file_write_failure_or_concurrent_change_stops_the_release(tmp_path, monkeypatch,
                                                                          noise_calls):
    path = tmp_path / "ledger.json"
    ledger = privacy.PrivacyLedger.open(path, delta=DELTA)
    privacy.release(np.array([1]), noise_multiplier=2.0, threshold=0.0, ledger=ledger)
    text = path.read_text()

    def broken_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        privacy.release(np.array([1]), noise_multiplier=2.0, threshold=0.0, ledger=ledger)
    monkeypatch.undo()
    assert len(ledger) == 1 and path.read_text() == text  # nothing released, nothing lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.json"]
    other = privacy.PrivacyLedger.open(path, delta=DELTA)  # a second run on the same file
    privacy.release(np.array([1]), noise_multiplier=2.0, threshold=0.0, ledger=other)
    with pytest.raises(ValueError, match="changed since this ledger last wrote it"):
        privacy.release(np.array([1]), noise_multiplier=2.0, threshold=0.0, ledger=ledger)
    assert len(_file_events(path)) == 2


@pytest.mark.parametrize("content", ["not json", json.dumps({"format": "other"})])
def test_ledger_file_that_is_not_a_ledger_is_refused(tmp_path, content):
    path = tmp_path / "notes.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="is not a privacy ledger"):
        privacy.PrivacyLedger.open(path, delta=DELTA)
    assert path.read_text() == content  # never overwritten


# ------------------------------------------------------------------------------ release


def test_sigma_in_ledger_equals_sigma_used_and_one_draw_per_event(noise_calls):
    ledger = privacy.PrivacyLedger(DELTA)
    rng = np.random.default_rng(0)
    for t, (sigma, k) in enumerate([(3.0, 1), (3.0, 1), (2.5, 4), (7.25, 2)]):
        out = privacy.release(np.arange(6) * 2, noise_multiplier=sigma, threshold=1.0,
                              ledger=ledger, k=k, rng=rng)
        assert out.noisy.shape == (6,)
        assert len(noise_calls) == len(ledger.events) == t + 1
        event = ledger.events[-1]
        assert (event.mechanism, event.noise_multiplier, event.k) == ("discrete_gaussian", sigma, k)
        assert noise_calls[-1] == (sigma * math.sqrt(k), 6)  # one draw for the whole vector
        assert event.source == "numpy PCG64 (seeded, not cryptographically secure)"
        assert event.seeded is True
        assert event == privacy.release_event(noise_multiplier=sigma, k=k, rng=rng)


def test_csprng_release_is_labelled():
    ledger = privacy.PrivacyLedger(DELTA)
    privacy.release([1, 2], noise_multiplier=2.0, threshold=0.0, ledger=ledger)
    assert ledger.events[0].source == "os.urandom (CSPRNG)"
    assert ledger.events[0].seeded is False


def test_budget_refusal_happens_before_noise(noise_calls):
    budget = (privacy.epsilon(4.0, DELTA, 1) + privacy.epsilon(4.0, DELTA, 2)) / 2
    ledger = privacy.PrivacyLedger(DELTA, epsilon_budget=budget)
    rng = np.random.default_rng(1)
    privacy.release([3, 0, 1], noise_multiplier=4.0, threshold=0.0, ledger=ledger, rng=rng)
    state, events = rng.bit_generator.state, ledger.events
    with pytest.raises(privacy.BudgetExceededError):
        privacy.release([3, 0, 1], noise_multiplier=4.0, threshold=0.0, ledger=ledger, rng=rng)
    assert rng.bit_generator.state == state
    assert ledger.events == events
    assert len(noise_calls) == 1


@pytest.mark.parametrize("counts,kwargs,match", [
    ([1.0, 2.0], {}, "counts must be integer vote counts"),  # floats: refused, never rounded
    (np.array([1, 2], np.float32), {}, "counts must be integer vote counts"),
    (np.array([1, 2], np.float32) / math.sqrt(2), dict(k=2), "counts must be integer"),
    ([1, -1], {}, "1 negative entries"),
    (np.array([1, 2**53 + 1, 2**62]), {}, "2 entries above 2\\^53"),
    (np.array([2**64 - 1], np.uint64), {}, "1 entries above 2\\^53"),  # would wrap in int64
    ([[1, 2]], {}, "1-D"),
    (np.array([], np.int32), {}, "non-empty"),
    (np.array(["a", "b"]), {}, "dtype"),
    (np.array([True, False]), {}, "dtype"),
    ([1, 2], dict(noise_multiplier=0.0), "noise_multiplier"),
    ([1, 2], dict(noise_multiplier=-1.0), "noise_multiplier"),
    ([1, 2], dict(noise_multiplier=math.nan), "noise_multiplier"),
    ([1, 2], dict(noise_multiplier=math.inf), "noise_multiplier"),
    ([1, 2], dict(threshold=-0.1), "threshold"),
    ([1, 2], dict(threshold=math.nan), "threshold"),
    ([1, 2], dict(k=0), "k must"),
    ([1, 2], dict(k=1.5), "k must"),
    ([1, 2], dict(ledger="ledger"), "ledger"),
])
def test_bad_input_raises_before_noise_and_leaves_ledger_unchanged(counts, kwargs, match,
                                                                    noise_calls):
    ledger = privacy.PrivacyLedger(DELTA)
    privacy.release([1, 2], noise_multiplier=3.0, threshold=0.0, ledger=ledger,
                    rng=np.random.default_rng(0))
    rng = np.random.default_rng(2)
    state, events = rng.bit_generator.state, ledger.events
    args = dict(noise_multiplier=3.0, threshold=1.0, ledger=ledger, rng=rng) | kwargs
    with pytest.raises(ValueError, match=match):
        privacy.release(np.asarray(counts), **args)
    assert ledger.events == events
    assert rng.bit_generator.state == state
    assert len(noise_calls) == 1


def test_bad_counts_are_counted_never_shown():
    """Messages name how many entries are bad, never the (private) values themselves."""
    ledger = privacy.PrivacyLedger(DELTA)
    for counts in (np.array([7, -123457]), np.array([7, 2**53 + 98765])):
        with pytest.raises(ValueError) as error:
            privacy.release(counts, noise_multiplier=3.0, threshold=0.0, ledger=ledger)
        assert "1 " in str(error.value)
        assert str(abs(int(counts[1]))) not in str(error.value)


def test_bad_rng_is_refused():
    ledger = privacy.PrivacyLedger(DELTA)
    with pytest.raises(ValueError, match="rng"):
        privacy.release([1], noise_multiplier=1.0, threshold=0.0, ledger=ledger, rng=3)
    assert ledger.events == ()


@pytest.mark.parametrize("k", [1, 3])
def test_threshold_applied_after_noise_and_output_on_lattice(k):
    counts = np.array([0, 0, 5, 40, 0, 12] * 50)
    sigma, threshold = 2.0, 1.5
    out = privacy.release(counts, noise_multiplier=sigma, threshold=threshold,
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


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32",
                                   "int64", "uint64"])
@pytest.mark.parametrize("k", [1, 3])
def test_integer_counts_of_every_dtype_are_released_exactly(dtype, k):
    """The weight 1/sqrt(k) is applied to the released values only, in float64; counts a
    float32 histogram cannot hold (2^24 + 1) stay exact."""
    top = min(np.iinfo(dtype).max, 2**53)
    counts = np.array([0, 3, 9, top, min(top, 16_777_217)], dtype=dtype)
    out = privacy.release(counts, noise_multiplier=0.0, threshold=0.0, k=k, non_private=True,
                          ledger=privacy.PrivacyLedger(DELTA))
    np.testing.assert_array_equal(out.noisy, counts.astype(np.float64) / math.sqrt(k))


def test_jax_counts_and_large_counts_do_not_wrap():
    jnp = pytest.importorskip("jax.numpy")
    ledger = privacy.PrivacyLedger(DELTA)
    for counts in (jnp.asarray([0, 2**31 - 1], jnp.int32), jnp.asarray([0, 255], jnp.uint8),
                   np.array([0, 2**53])):
        top = int(np.asarray(counts)[1])
        out = privacy.release(counts, noise_multiplier=2.0, threshold=0.0, ledger=ledger)
        assert out.noisy.dtype == np.float64
        bound = privacy.noise_bound(2.0)
        assert top - bound <= out.noisy[1] <= top + bound  # int64 sums: no wrap-around


def test_distinct_bins_and_releases_get_distinct_noise():
    ledger = privacy.PrivacyLedger(DELTA)
    zeros = np.zeros(20_000, np.int32)
    a = privacy.release(zeros, noise_multiplier=10.0, threshold=0.0, ledger=ledger).noisy
    b = privacy.release(zeros, noise_multiplier=10.0, threshold=0.0, ledger=ledger).noisy
    assert not np.array_equal(a, b)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.05
    # Equal neighbouring bins only at the collision rate sum p(x)^2 ~ 1/(2 sqrt(pi) 10) ~ 0.028.
    assert np.mean(a[:-1] == a[1:]) < 0.045
    assert a.std() == pytest.approx(10.0, rel=0.03)
