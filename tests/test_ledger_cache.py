"""The ledger's epsilon table and reservations (issue 12, item 3): microseconds per release,
the very same floats as a fresh composition, and never a value for other events."""

import math

import pytest

from pe_jax import privacy
from pe_jax.privacy import accounting

DELTA = 1e-5
SIGMA = 3.4196174772067733  # the default run's: epsilon 4 at delta 1e-5 over 10 releases


def _fresh_epsilon(groups, adjacency, delta):
    """Epsilon of sorted ``(mechanism, sigma, k, count)`` groups composed from scratch with
    dp_accounting, as the accountant did before any cache: the reference the cached numbers
    must equal exactly."""
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    total = None
    for mechanism, sigma, k, count in groups:
        if mechanism == "gaussian":
            factor = math.sqrt(2.0) if adjacency == "replace_one" else 1.0
            base = pld_lib.from_gaussian_mechanism(sigma / factor, sensitivity=1,
                                                   pessimistic_estimate=True)
            times = count
        else:
            base = pld_lib.from_discrete_gaussian_mechanism(
                sigma * math.sqrt(k), sensitivity=1, pessimistic_estimate=True,
                use_connect_dots=True)
            times = count * k * (2 if adjacency == "replace_one" else 1)
        pld = base.self_compose(times) if times > 1 else base
        total = pld if total is None else total.compose(pld)
    return float(total.get_epsilon_for_delta(delta))


def _fresh_history(events, adjacency, delta):
    history = []
    for i in range(1, len(events) + 1):
        counts = {}
        for e in events[:i]:
            key = (e.mechanism, e.noise_multiplier, e.k)
            counts[key] = counts.get(key, 0) + 1
        groups = tuple(sorted((*key, n) for key, n in counts.items()))
        history.append(_fresh_epsilon(groups, adjacency, delta))
    return history


@pytest.fixture
def counted(monkeypatch):
    """Counts, with every cache emptied first, the PLDs composed (``accounting._pld``: one per
    group and composition) and the base PLDs built by dp_accounting; results are untouched."""
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    accounting.epsilon_of_groups.cache_clear()
    accounting._base_pld.cache_clear()
    calls = {"compose": 0, "base": 0}

    def counting(function, name):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(accounting, "_pld", counting(accounting._pld, "compose"))
    for builder in ("from_gaussian_mechanism", "from_discrete_gaussian_mechanism"):
        monkeypatch.setattr(pld_lib, builder, counting(getattr(pld_lib, builder), "base"))
    yield calls
    accounting.epsilon_of_groups.cache_clear()
    accounting._base_pld.cache_clear()


@pytest.mark.parametrize("mechanism,sigma,k,adjacency,delta,T", [
    ("discrete_gaussian", SIGMA, 1, "add_remove", DELTA, 20),
    ("discrete_gaussian", 2.0, 3, "add_remove", 1e-6, 6),
    ("discrete_gaussian", 8.0, 1, "replace_one", DELTA, 6),
    ("gaussian", 5.0, 1, "replace_one", DELTA, 4),
])
def test_reserved_run_gives_exactly_the_fresh_epsilons(mechanism, sigma, k, adjacency, delta, T):
    event = privacy.ReleaseEvent(mechanism, sigma, k=k)
    fresh = [_fresh_epsilon(((mechanism, sigma, k, n),), adjacency, delta)
             for n in range(1, T + 1)]
    ledger = privacy.PrivacyLedger(delta, adjacency=adjacency, epsilon_budget=fresh[-1])
    ledger.check(event, times=T)  # exactly at the budget: allowed
    spent = []
    for n in range(1, T + 1):
        assert ledger.epsilon_after(event) == fresh[n - 1]
        ledger.record(event)
        spent.append(ledger.epsilon_spent())
    assert spent == fresh  # ==: the same floats, not approximately
    assert ledger.epsilon_history() == fresh
    assert ledger.epsilon_spent(start=T - 2) == fresh[1]
    assert privacy.epsilon(sigma, delta, T, mechanism=mechanism, adjacency=adjacency,
                           k=k) == fresh[-1]
    with pytest.raises(privacy.BudgetExceededError):
        ledger.check(event)


def test_mixed_groups_give_exactly_the_fresh_epsilons():
    events = [privacy.ReleaseEvent("discrete_gaussian", 4.0),
              privacy.ReleaseEvent("discrete_gaussian", 4.0, k=2),
              privacy.ReleaseEvent("gaussian", 6.0),
              privacy.ReleaseEvent("discrete_gaussian", 4.0)] * 2
    ledger = privacy.PrivacyLedger(DELTA)
    ledger.check(events[0], times=3)  # a reservation that the other events then interleave
    for event in events:
        ledger.record(event)
    fresh = _fresh_history(events, "add_remove", DELTA)
    assert ledger.epsilon_history() == fresh
    assert ledger.epsilon_spent() == fresh[-1]
    assert ledger.epsilon_history(start=4) == _fresh_history(events[4:], "add_remove", DELTA)
    extra = privacy.ReleaseEvent("discrete_gaussian", 3.0)
    assert ledger.epsilon_after(extra, 2) == _fresh_epsilon(
        (("discrete_gaussian", 3.0, 1, 2), ("discrete_gaussian", 4.0, 1, 4),
         ("discrete_gaussian", 4.0, 2, 2), ("gaussian", 6.0, 1, 2)), "add_remove", DELTA)


def test_reservation_composes_each_count_once_and_the_run_none(counted):
    T = 12
    event = privacy.ReleaseEvent("discrete_gaussian", SIGMA, source="os.urandom (CSPRNG)")
    ledger = privacy.PrivacyLedger(DELTA, epsilon_budget=6.0)
    ledger.check(event, times=T)
    assert counted == {"compose": T, "base": 1}  # counts 1..T, one base PLD
    for _ in range(T):
        ledger.check(event)
        ledger.record(event)
        ledger.epsilon_spent()
    ledger.epsilon_history()
    ledger.epsilon_spent(start=0)
    assert counted == {"compose": T, "base": 1}  # the run itself composed nothing
    # A second run on the same ledger: its own share (start=T) is composed up front too, so
    # that its report composes nothing either.
    ledger = privacy.PrivacyLedger.from_dict(ledger.to_dict() | {"epsilon_budget": None})
    ledger.check(event, times=T)
    # Counts T+1..2T; the share's 1..T are the first run's, still in the accountant's cache.
    assert counted == {"compose": 2 * T, "base": 1}
    for _ in range(T):
        ledger.record(event)
        ledger.epsilon_spent()
    ledger.epsilon_history(start=T)
    ledger.epsilon_spent(start=T)
    assert counted == {"compose": 2 * T, "base": 1}


def test_unreserved_run_composes_each_count_once(counted):
    T = 8
    event = privacy.ReleaseEvent("discrete_gaussian", SIGMA)
    ledger = privacy.PrivacyLedger(DELTA, epsilon_budget=4.0)
    for t in range(1, T + 1):
        ledger.check(event)  # as release() does, then record and the loop's epsilon_spent
        ledger.record(event)
        ledger.epsilon_spent()
        assert counted == {"compose": t, "base": 1}
    ledger.epsilon_history()
    assert counted == {"compose": T, "base": 1}


def test_refused_reservation_composes_only_the_budget_check(counted):
    event = privacy.ReleaseEvent("discrete_gaussian", SIGMA)
    ledger = privacy.PrivacyLedger(DELTA, epsilon_budget=2.0)
    with pytest.raises(privacy.BudgetExceededError, match="10 releases refused"):
        ledger.check(event, times=10)
    assert counted["compose"] == 1  # 10 releases; nothing more once refused
    ledger.check(event)  # one release is within the budget
    assert len(ledger) == 0


def test_table_never_answers_for_other_events():
    """Each variation changes what epsilon depends on (or, for ``seeded``, only privacy): the
    answer is the fresh one for that variation, never the reserved event's."""
    base = dict(mechanism="discrete_gaussian", noise_multiplier=SIGMA, k=1)
    ledger = privacy.PrivacyLedger(DELTA)
    event = privacy.ReleaseEvent(**base)
    ledger.check(event, times=3)
    ledger.record(event)
    reserved = ledger.epsilon_after(event, 2)
    for change in (dict(noise_multiplier=SIGMA * 1.5), dict(k=2), dict(mechanism="gaussian")):
        other = privacy.ReleaseEvent(**(base | change))
        expected = _fresh_epsilon(tuple(sorted([("discrete_gaussian", SIGMA, 1, 1),
                                                (other.mechanism, other.noise_multiplier,
                                                 other.k, 2)])), "add_remove", DELTA)
        assert ledger.epsilon_after(other, 2) == expected != reserved
    # A seeded event accounts the same, but the reservation does not let it into a CSPRNG
    # ledger.
    seeded = privacy.ReleaseEvent(**base, seeded=True)
    assert ledger.epsilon_after(seeded, 2) == reserved
    with pytest.raises(ValueError, match="cannot mix seeded and CSPRNG noise"):
        ledger.record(seeded)
    restored = privacy.PrivacyLedger.from_dict(ledger.to_dict())
    with pytest.raises(ValueError, match="cannot mix seeded and CSPRNG noise"):
        restored.check(seeded, times=2)
    # Delta and adjacency: one event, three ledgers in one process, each with its own table.
    for delta, adjacency in ((DELTA, "replace_one"), (1e-7, "add_remove")):
        other_ledger = privacy.PrivacyLedger(delta, adjacency=adjacency)
        other_ledger.check(event, times=3)
        other_ledger.record(event)
        expected = _fresh_epsilon((("discrete_gaussian", SIGMA, 1, 3),), adjacency, delta)
        assert other_ledger.epsilon_after(event, 2) == expected != reserved
    # The continuous Gaussian's base PLD depends on the adjacency (the discrete one's does
    # not): the cached base of one adjacency is never used for the other.
    gaussian = privacy.ReleaseEvent("gaussian", 5.0)
    for adjacency in ("add_remove", "replace_one", "add_remove"):
        other_ledger = privacy.PrivacyLedger(DELTA, adjacency=adjacency)
        other_ledger.record(gaussian)
        assert other_ledger.epsilon_spent() == _fresh_epsilon((("gaussian", 5.0, 1, 1),),
                                                              adjacency, DELTA)


def test_events_recorded_between_reservation_and_run_are_accounted():
    event = privacy.ReleaseEvent("discrete_gaussian", SIGMA)
    interloper = privacy.ReleaseEvent("discrete_gaussian", 2 * SIGMA)
    ledger = privacy.PrivacyLedger(DELTA)
    ledger.check(event, times=3)
    ledger.record(interloper)
    for _ in range(2):
        ledger.record(event)
    assert ledger.epsilon_spent() == _fresh_epsilon(
        (("discrete_gaussian", SIGMA, 1, 2), ("discrete_gaussian", 2 * SIGMA, 1, 1)),
        "add_remove", DELTA)
    ledger.record(privacy.ReleaseEvent(privacy.NON_PRIVATE, 0.0))
    assert ledger.epsilon_spent() == math.inf


def test_reservation_without_budget_keeps_refusals_where_they_were():
    """Without a budget ``check`` never composed, so an event the accountant cannot evaluate
    (mu-GDP mu > MAX_MU) passes it as before; the reservation stops quietly."""
    ledger = privacy.PrivacyLedger(DELTA)
    tiny = privacy.ReleaseEvent("discrete_gaussian", 0.01)
    ledger.check(tiny, times=5)
    ledger.record(tiny)
    with pytest.raises(ValueError, match="noise_multiplier too small"):
        ledger.epsilon_spent()
    budgeted = privacy.PrivacyLedger(DELTA, epsilon_budget=10.0)
    with pytest.raises(ValueError, match="noise_multiplier too small"):
        budgeted.check(tiny, times=5)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_check_validates_times_with_or_without_budget(bad):
    event = privacy.ReleaseEvent("discrete_gaussian", SIGMA)
    for budget in (None, 4.0):
        with pytest.raises(ValueError, match="times"):
            privacy.PrivacyLedger(DELTA, epsilon_budget=budget).check(event, times=bad)


def test_file_ledger_restores_counts_and_table_starts_empty(tmp_path):
    path = tmp_path / "ledger.json"
    event = privacy.ReleaseEvent("discrete_gaussian", SIGMA, source="os.urandom (CSPRNG)")
    ledger = privacy.PrivacyLedger.open(path, delta=DELTA, epsilon_budget=8.0)
    ledger.check(event, times=3)
    for _ in range(3):
        ledger.record(event)
    again = privacy.PrivacyLedger.open(path, delta=DELTA)
    assert again.epsilon_spent() == ledger.epsilon_spent()
    assert again.epsilon_after(event, 2) == _fresh_epsilon(
        (("discrete_gaussian", SIGMA, 1, 5),), "add_remove", DELTA)
    with pytest.raises(ValueError, match="cannot mix"):
        again.check(privacy.ReleaseEvent("discrete_gaussian", SIGMA, seeded=True))
