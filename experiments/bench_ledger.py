"""Benchmark the privacy ledger's per-release cost: the composition path before issue 12.3
against the cached ledger, side by side in one process, on the same events.

Run (a few seconds on 2 CPU cores at the defaults)::

    .venv/bin/python experiments/bench_ledger.py [--iterations 10] [--epsilon 4] [--k 1]

A PE run (``pe-jax run``) calls ``ledger.check(event, times=T)`` once, then per iteration
``release`` -> ``check(event)`` and ``record(event)``, then ``epsilon_spent()``; its report
calls ``epsilon_spent(start)`` and ``epsilon_history(start)``. This script replays that call
sequence on

* ``old``: a verbatim copy of the ledger's epsilon methods and ``accounting._pld`` /
  ``epsilon_of_groups`` as they were before (every call regroups all events; every new count
  rebuilds the base PLD and composes; an lru_cache on the groups), and
* ``new``: ``pe_jax.privacy.PrivacyLedger`` as it is now,

with every cache emptied before each, and prints the one-off reservation time, the median
per-call time of ``check`` / ``record`` / ``epsilon_spent`` per iteration, the whole run, and
the ratios. A second scenario replays a second run on a ledger that already holds the first
(a shared ``--ledger`` file). Both ledgers' epsilons are compared and must be identical.
"""

from __future__ import annotations

import argparse
import functools
import math
import pathlib
import statistics
import tempfile
import time
from collections import Counter

from pe_jax import privacy
from pe_jax.privacy import accounting
from pe_jax.privacy import ledger as ledger_module
from pe_jax.privacy.noise import CSPRNG_SOURCE

# ----------------------------------------------------------------- the code before issue 12.3


def _old_pld(mechanism, adjacency, sigma, k, count):
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    if mechanism == "gaussian":
        base = pld_lib.from_gaussian_mechanism(
            sigma / accounting._sensitivity_factor(adjacency), sensitivity=1,
            pessimistic_estimate=True)
        times = count
    else:
        base = pld_lib.from_discrete_gaussian_mechanism(
            sigma * math.sqrt(k), sensitivity=1, pessimistic_estimate=True, use_connect_dots=True)
        times = count * k * (2 if adjacency == "replace_one" else 1)
    return base.self_compose(times) if times > 1 else base


@functools.lru_cache(maxsize=4096)
def _old_epsilon_of_groups(groups, adjacency, delta):
    if not groups:
        return 0.0
    if any(sigma == 0.0 for _, sigma, _, _ in groups):
        return math.inf
    finite = [g for g in groups if g[1] != math.inf]
    if not finite:
        return 0.0
    accounting._check_mu(math.sqrt(sum(count * accounting._sensitivity_factor(adjacency) ** 2
                                       / sigma ** 2 for _, sigma, _, count in finite)), delta)
    total = None
    for mechanism, sigma, k, count in finite:
        p = _old_pld(mechanism, adjacency, sigma, k, count)
        total = p if total is None else total.compose(p)
    return float(total.get_epsilon_for_delta(delta))


class OldLedger(privacy.PrivacyLedger):
    """The ledger's epsilon methods before issue 12.3 (recording, files: unchanged)."""

    def _epsilon(self, events):
        counts = Counter((e.mechanism, e.noise_multiplier, e.k) for e in events)
        groups = tuple(sorted((m, s, k, n) for (m, s, k), n in counts.items()))
        return _old_epsilon_of_groups(groups, self._adjacency, self._delta)

    def epsilon_spent(self, start=0):
        return self._epsilon(self._events[start:])

    def epsilon_after(self, event, times=1):
        return self._epsilon([*self._events, *[event] * times])

    def epsilon_history(self, start=0):
        return [self._epsilon(self._events[start:i + 1])
                for i in range(start, len(self._events))]

    def check(self, event, times=1):
        held = {e.seeded for e in self._events if e.mechanism != privacy.NON_PRIVATE}
        ledger_module._check_mixing(held, event)  # the old scan of every event held
        if self._budget is None:
            return
        after = self.epsilon_after(event, times)
        if after > self._budget:
            raise privacy.BudgetExceededError("refused")

    def record(self, event):
        self.check(event)
        self._append(event)


# ----------------------------------------------------------------------------- measurement


def _clear_caches():
    _old_epsilon_of_groups.cache_clear()
    accounting.epsilon_of_groups.cache_clear()
    accounting._base_pld.cache_clear()


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def replay(ledger, event, iterations):
    """One run's calls on ``ledger``; returns timings (s) and every epsilon it saw."""
    run_start = len(ledger)
    reserve, _ = _timed(ledger.check, event, times=iterations)
    per = {"check": [], "record": [], "epsilon_spent": []}
    spent = []
    for _ in range(iterations):
        per["check"].append(_timed(ledger.check, event)[0])
        per["record"].append(_timed(ledger.record, event)[0])
        seconds, value = _timed(ledger.epsilon_spent)
        per["epsilon_spent"].append(seconds)
        spent.append(value)
    report, (history, share) = _timed(
        lambda: (ledger.epsilon_history(run_start), ledger.epsilon_spent(run_start)))
    total = reserve + sum(map(sum, per.values())) + report
    return {"reserve": reserve, "per": per, "report": report, "total": total,
            "values": (spent, history, share)}


def repeated(fn, repeats=2000):
    """Median seconds of one call of ``fn``, over ``repeats`` calls in batches of 100."""
    batches = []
    for _ in range(repeats // 100):
        start = time.perf_counter()
        for _ in range(100):
            fn()
        batches.append((time.perf_counter() - start) / 100)
    return statistics.median(batches)


def _record_and_undo(ledger, event):
    """``record`` on a ledger that stays at 0 events, so every call checks the same count."""
    ledger.record(event)
    ledger._events.pop()
    ledger._counts.subtract([ledger_module._key(event)])


def _ms(seconds):
    return f"{seconds * 1e3:9.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--epsilon", type=float, default=4.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--k", type=int, default=1)
    args = parser.parse_args()
    T = args.iterations
    sigma = privacy.noise_multiplier(args.epsilon, args.delta, T, k=args.k)
    event = privacy.ReleaseEvent("discrete_gaussian", sigma, k=args.k,
                                 source=CSPRNG_SOURCE)
    print(f"discrete Gaussian, epsilon={args.epsilon} delta={args.delta:g} T={T} k={args.k}: "
          f"sigma={sigma:.6g}")
    budget = args.epsilon * 2 * (1 + 1e-9)  # room for two runs

    for scenario, prior in (("fresh ledger", 0), ("ledger holding one earlier run", T)):
        results = {}
        for name, cls in (("old", OldLedger), ("new", privacy.PrivacyLedger)):
            _clear_caches()
            ledger = cls(args.delta, epsilon_budget=budget)
            for _ in range(prior):
                ledger._append(event)  # an earlier run's events, as a ledger file holds them
            results[name] = replay(ledger, event, T)
            results[name]["ledger"] = ledger
        old, new = results["old"], results["new"]
        assert old["values"] == new["values"], "epsilons differ between old and new"
        print(f"\n{scenario} ({prior} events before the run); epsilons identical: "
              f"after the run {new['values'][0][-1]!r}, the run's share {new['values'][2]!r}")
        print(f"  {'':34s}{'old':>12s}{'new':>12s}{'old / new':>12s}")
        rows = [("reservation check(event, times=T)", old["reserve"], new["reserve"])]
        for call in ("check", "record", "epsilon_spent"):
            rows.append((f"{call}, median per iteration", statistics.median(old["per"][call]),
                         statistics.median(new["per"][call])))
        rows.append(("per iteration, all three (median)",
                     statistics.median(map(sum, zip(*old["per"].values(), strict=True))),
                     statistics.median(map(sum, zip(*new["per"].values(), strict=True)))))
        rows.append(("report: history + spent(start)", old["report"], new["report"]))
        rows.append(("whole run", old["total"], new["total"]))
        for label, a, b in rows:
            print(f"  {label:34s}{_ms(a)}{_ms(b)}{a / b:11.3g}x")
        # Warm per-call cost of the cached ledger, repeated (the run above made one call per
        # iteration): check against a reserved count, epsilon_spent after the run.
        done = new["ledger"]
        warm_check = repeated(functools.partial(done.check, event))
        print(f"  new, repeated warm calls: check {warm_check * 1e6:.1f} us (budget composed "
              f"once), epsilon_spent {repeated(done.epsilon_spent) * 1e6:.1f} us")
        if prior == 0:
            fresh = privacy.PrivacyLedger(args.delta, epsilon_budget=budget)
            fresh.check(event, times=T)
            per_record = repeated(functools.partial(_record_and_undo, fresh, event), repeats=1000)
            print(f"  new, record (check + append) on the reserved ledger: "
                  f"{per_record * 1e6:.1f} us")
            with tempfile.TemporaryDirectory() as folder:
                on_file = privacy.PrivacyLedger.open(pathlib.Path(folder) / "ledger.json",
                                                     delta=args.delta, epsilon_budget=budget)
                on_file.check(event, times=T)
                writes = [_timed(on_file.record, event)[0] for _ in range(T)]
            print(f"  new, record on a file ledger (atomic rewrite + fsync, unchanged): "
                  f"median {_ms(statistics.median(writes)).strip()}")


if __name__ == "__main__":
    main()
