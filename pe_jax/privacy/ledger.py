"""The privacy ledger: every release, its noise, and the epsilon spent so far.

A ``PrivacyLedger`` is the single record of what has left the private data. ``release`` asks it
to ``check`` a release against the budget before any noise is drawn and ``record``s it after;
the ledger is plain JSON (``to_dict`` / ``from_dict``, never pickle), so it can travel in
checkpoints, and ``PrivacyLedger.open(path)`` keeps one in a file that is rewritten atomically
after every release, so that repeated runs on one data set compose. Epsilon is always
computed from the events (grouped by identical parameters and self-composed), never stored in
the file, so it cannot drift from them.

Cost. Composing a PLD takes ~0.1 s, and a PE run asks for epsilon several times per iteration
(``check``, ``record``, ``epsilon_spent``), each time one more identical event. The ledger
therefore keeps, in memory only, the running count of each group of identical events and a
table of the exact epsilons it has composed, keyed by everything epsilon depends on (the
sorted groups ``(mechanism, noise_multiplier, k, count)``; delta and adjacency are fixed per
ledger). ``check(event, times=T)``, which a run calls once before it starts, composes the
epsilons after each of its T releases up front, so that the run's own ``check`` / ``record``
/ ``epsilon_spent`` calls are table look-ups (microseconds). The table holds only values
``accounting.epsilon_of_groups`` returned for that very key, so it gives the same floats as
composing afresh and can never hand back one for other events.

Seeded noise. An event records whether its noise came from a seeded generator
(``ReleaseEvent.seeded``): whoever knows the seed can subtract that noise, so such a release is
not differentially private whatever its epsilon (the privacy report says so). A ledger is one
budget and refuses to mix seeded and CSPRNG events.

DP-SGD. An event of mechanism ``"DP-SGD"`` (``pe_jax.privacy.dpsgd_accounting``) stands for
``steps`` steps of the Poisson-subsampled Gaussian with ``sampling_rate`` and clipping norm
``clipping_norm``; the ledger counts it as ``steps`` identical steps and composes it with any
PE releases on the same data. Other events leave these three fields at their defaults, and
their JSON omits them, so PE's ledger files are unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import pathlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from pe_jax._checks import check_int
from pe_jax._files import write_atomic
from pe_jax.privacy import accounting, dpsgd_accounting
from pe_jax.privacy.noise import CSPRNG_SOURCE

__all__ = ["ReleaseEvent", "PrivacyLedger", "BudgetExceededError", "NON_PRIVATE"]

_FORMAT: Final = "pe_jax.privacy.PrivacyLedger/2"
# Format /1 had no ``seeded`` field: it is read as seeded unless ``source`` names the CSPRNG.
_FORMAT_V1: Final = "pe_jax.privacy.PrivacyLedger/1"
# The mechanism of a release made without noise (``release(..., non_private=True)``): its
# noise multiplier is 0 and the ledger's epsilon becomes infinite.
NON_PRIVATE: Final = "none (NOT differentially private)"

# What epsilon depends on, per event: (mechanism, noise_multiplier, k, sampling_rate). Not
# ``source`` or ``seeded``: those change whether a release is private at all, not its
# accounting. An event counts ``steps`` times (1 but for DP-SGD).
_Key = tuple[str, float, int, float]
# Sorted groups (mechanism, noise_multiplier, k, sampling_rate, count).
_Groups = tuple[tuple[str, float, int, float, int], ...]
# The event fields only DP-SGD sets (other events keep their defaults and omit them in JSON).
_DPSGD_FIELDS: Final = ("sampling_rate", "steps", "clipping_norm")


class BudgetExceededError(ValueError):
    """A release would take the ledger's epsilon above its budget; nothing was released."""


@dataclasses.dataclass(frozen=True)
class ReleaseEvent:
    """One noisy histogram release.

    ``mechanism`` is one of ``accounting.MECHANISMS`` or ``accounting.ZCDP_MECHANISMS``, or
    ``NON_PRIVATE`` with ``noise_multiplier=0``; ``noise_multiplier`` is sigma relative to
    L2 sensitivity 1 of the weighted histogram (for ``"exponential"``: the Gumbel noise scale
    relative to the score sensitivity); ``k`` the votes per private row; ``source`` names
    the randomness used (``noise.describe_source``), for the privacy report; ``seeded`` is
    True when the noise came from a seeded generator (reproducible, so NOT private).
    ``mechanism="DP-SGD"`` (``k=1``) stands for ``steps`` steps with this ``sampling_rate``
    and ``clipping_norm``; other mechanisms leave those three at their defaults.
    """

    mechanism: str
    noise_multiplier: float
    k: int = 1
    source: str = ""
    seeded: bool = False
    sampling_rate: float = 1.0
    steps: int = 1
    clipping_norm: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.seeded, bool):
            raise ValueError(f"seeded must be a bool, got {self.seeded!r}")
        if self.mechanism == NON_PRIVATE:
            if self.noise_multiplier != 0 or self.seeded:
                raise ValueError(f"a {NON_PRIVATE!r} event has no noise: it needs "
                                 f"noise_multiplier 0 and seeded False, got "
                                 f"{self.noise_multiplier!r} and {self.seeded!r}")
            object.__setattr__(self, "noise_multiplier", 0.0)
        else:
            if self.mechanism != dpsgd_accounting.MECHANISM:
                accounting.check_event_mechanism(self.mechanism)
            object.__setattr__(self, "noise_multiplier", accounting.check_noise_multiplier(
                self.noise_multiplier, allow_zero=False))
        object.__setattr__(self, "k", check_int("k", self.k, 1))
        if self.mechanism == dpsgd_accounting.MECHANISM:
            object.__setattr__(self, "sampling_rate",
                               dpsgd_accounting.check_sampling_rate(self.sampling_rate))
            object.__setattr__(self, "steps", check_int("steps", self.steps, 1))
            norm = self.clipping_norm
            if (isinstance(norm, bool) or not isinstance(norm, numbers.Real)
                    or not 0.0 < norm < math.inf or self.k != 1):
                raise ValueError(f"a DP-SGD event needs k 1 and a finite clipping_norm > 0, got "
                                 f"k {self.k!r} and clipping_norm {norm!r}")
            object.__setattr__(self, "clipping_norm", float(norm))
        elif (self.sampling_rate, self.steps, self.clipping_norm) != (1.0, 1, None):
            raise ValueError(f"sampling_rate, steps and clipping_norm are for DP-SGD events "
                             f"only; a {self.mechanism!r} event must leave them at 1.0, 1 and "
                             f"None, got {self.sampling_rate!r}, {self.steps!r} and "
                             f"{self.clipping_norm!r}")
        if not isinstance(self.source, str):
            raise ValueError(f"source must be a str, got {type(self.source).__name__}")


class PrivacyLedger:
    """Composes all recorded releases at a fixed ``delta`` under one adjacency relation.

    ``epsilon_budget=None`` records without a limit; otherwise ``check`` (and ``record``) refuse
    any event that would take ``epsilon_spent()`` above the budget. A ledger from ``open`` also
    rewrites its file after every recorded event.
    """

    def __init__(self, delta: float, *, adjacency: str = "add_remove",
                 epsilon_budget: float | None = None) -> None:
        self._delta = accounting.check_delta(delta)
        self._adjacency = accounting.check_adjacency(adjacency)
        if epsilon_budget is not None and (
                isinstance(epsilon_budget, bool) or not isinstance(epsilon_budget, numbers.Real)
                or not 0.0 < float(epsilon_budget) < math.inf):
            raise ValueError(
                f"epsilon_budget must be None or finite and > 0, got {epsilon_budget!r}")
        self._budget = None if epsilon_budget is None else float(epsilon_budget)
        self._events: list[ReleaseEvent] = []
        self._path: pathlib.Path | None = None
        self._written: str | None = None  # the file's text as this ledger last wrote or read it
        # Kept in step with ``_events`` by ``_append`` (the only place that adds events): the
        # number of events per ``_key``, and the ``seeded`` flags of the noisy events held.
        self._counts: Counter[_Key] = Counter()
        self._seeded_held: set[bool] = set()
        # Epsilon of every groups tuple composed so far (see the module docstring).
        self._epsilons: dict[_Groups, float] = {}

    @property
    def delta(self) -> float:
        return self._delta

    @property
    def adjacency(self) -> str:
        return self._adjacency

    @property
    def epsilon_budget(self) -> float | None:
        return self._budget

    @property
    def path(self) -> pathlib.Path | None:
        """The file this ledger rewrites after every record (``open``), or None."""
        return self._path

    @property
    def events(self) -> tuple[ReleaseEvent, ...]:
        """The recorded events, oldest first (a read-only copy)."""
        return tuple(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def __repr__(self) -> str:
        return (f"PrivacyLedger(delta={self._delta}, adjacency={self._adjacency!r}, "
                f"epsilon_budget={self._budget}, events={len(self._events)}, "
                f"path={None if self._path is None else str(self._path)!r})")

    def _epsilon_of(self, groups: _Groups) -> float:
        """Epsilon of ``groups``: looked up, or composed once and remembered.

        Exceptions (a composition the accountant refuses) are not remembered: they are raised
        again, before any table is built, on every call.
        """
        epsilon = self._epsilons.get(groups)
        if epsilon is None:
            if any(group[0] == dpsgd_accounting.MECHANISM for group in groups):
                epsilon = dpsgd_accounting.epsilon_of_groups(groups, self._adjacency,
                                                             self._delta)
            else:
                epsilon = accounting.epsilon_of_groups(
                    tuple((m, s, k, n) for m, s, k, _, n in groups), self._adjacency,
                    self._delta)
            self._epsilons[groups] = epsilon
        return epsilon

    def _epsilon(self, events: Iterable[ReleaseEvent]) -> float:
        counts: Counter[_Key] = Counter()
        for event in events:
            counts[_key(event)] += event.steps
        return self._epsilon_of(_groups(counts))

    def epsilon_spent(self, start: int = 0) -> float:
        """Epsilon at the ledger's delta of the recorded events from index ``start`` on (all by
        default; e.g. one run's part of a ledger that earlier runs share); 0 before any."""
        start = check_int("start", start, 0)
        if start == 0:
            return self._epsilon_of(_groups(self._counts))
        return self._epsilon(self._events[start:])

    def epsilon_after(self, event: ReleaseEvent, times: int = 1) -> float:
        """Epsilon that would be spent after also recording ``event`` ``times`` times."""
        times = check_int("times", times, 1)
        event = _check_event(event)
        return self._epsilon_of(_groups(self._counts, _key(event), times * event.steps))

    def epsilon_history(self, start: int = 0) -> list[float]:
        """Epsilon spent by the events from ``start`` on, after each of them, in order."""
        counts: Counter[_Key] = Counter()
        history = []
        for event in self._events[check_int("start", start, 0):]:
            counts[_key(event)] += event.steps
            history.append(self._epsilon_of(_groups(counts)))
        return history

    def check(self, event: ReleaseEvent, times: int = 1) -> None:
        """Refuses ``event`` (recorded ``times`` times) before anything is released.

        Raises ValueError if it would mix seeded and CSPRNG noise in this ledger or names a
        mechanism its adjacency cannot account (``accounting.check_mechanism_adjacency``), and
        ``BudgetExceededError`` if it would take the epsilon spent above the budget.

        ``times > 1`` reserves a run: once ``event`` x ``times`` is within the budget (or the
        ledger has none), the epsilons after each of the run's releases are composed now --
        ``epsilon_after(event, j)`` for j = 1..times, and, on a ledger that already holds
        events, the run's own share ``epsilon_spent(start=len(self))`` after each -- so that
        the run's per-release ``check``, ``record``, ``epsilon_spent`` and its report's
        ``epsilon_history(start)`` find them in the table instead of composing (one
        composition per value, the same values they would compose). Without a budget a
        composition the accountant refuses stops the precomputation silently, as ``check``
        never composed there.
        """
        event = _check_event(event)
        times = check_int("times", times, 1)
        _check_mixing(self._seeded_held, event)
        dpsgd_accounting.check_composable({event.mechanism, *(m for m, *_ in self._counts)})
        if event.mechanism == dpsgd_accounting.MECHANISM:
            dpsgd_accounting.check_adjacency(self._adjacency)
        else:
            accounting.check_mechanism_adjacency(event.mechanism, self._adjacency)
        if self._budget is not None:
            after = self.epsilon_after(event, times)
            if after > self._budget:
                what = "release" if times == 1 else f"{times} releases"
                raise BudgetExceededError(
                    f"{what} refused: epsilon spent {self.epsilon_spent():.6g}, would be "
                    f"{after:.6g} after it, budget {self._budget:.6g} (delta={self._delta:g})")
        if times > 1:
            self._reserve(event, times)

    def _reserve(self, event: ReleaseEvent, times: int) -> None:
        """Composes the epsilons a run of ``times`` releases of ``event`` will ask for."""
        key, steps = _key(event), event.steps
        series = [(self._counts, j * steps) for j in range(1, times + 1)]
        if self._events:  # the run's own share, from start=len(self): only its events
            series += [(_EMPTY, j * steps) for j in range(1, times + 1)]
        try:
            for counts, j in series:
                self._epsilon_of(_groups(counts, key, j))
        except ValueError:
            if self._budget is not None:
                raise

    def record(self, event: ReleaseEvent) -> None:
        """Appends ``event`` after checking it, first rewriting the ledger's file if it has one
        (so a failed write leaves the ledger unchanged and stops the release)."""
        self.check(event)
        if self._path is not None:
            self._write([*self._events, event])
        self._append(event)

    def _append(self, event: ReleaseEvent) -> None:
        self._events.append(event)
        self._counts[_key(event)] += event.steps
        if event.mechanism != NON_PRIVATE:
            self._seeded_held.add(event.seeded)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (str / float / int / bool / None / lists / dicts only)."""
        return self._dict(self._events)

    def _dict(self, events: Sequence[ReleaseEvent]) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "delta": self._delta,
            "adjacency": self._adjacency,
            "epsilon_budget": self._budget,
            "events": [_event_dict(e) for e in events],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyLedger:
        """Rebuilds a ledger from ``to_dict`` output (format /2, or /1), validating everything.

        Events are restored as recorded (they were within budget when recorded), without a
        budget re-check; a ledger that mixes seeded and CSPRNG events is refused. Format /1
        events have no ``seeded`` field: they count as seeded unless their ``source`` is the
        CSPRNG's (``noise.CSPRNG_SOURCE``), so unknown randomness is never taken as private.
        """
        formats = (_FORMAT, _FORMAT_V1)
        if not isinstance(data, dict) or data.get("format") not in formats:
            raise ValueError(f"not a privacy ledger: expected format {' or '.join(formats)}")
        expected = {"format", "delta", "adjacency", "epsilon_budget", "events"}
        if set(data) != expected:
            raise ValueError(f"privacy ledger keys must be {sorted(expected)}, got {sorted(data)}")
        ledger = cls(data["delta"], adjacency=data["adjacency"],
                     epsilon_budget=data["epsilon_budget"])
        fields = {f.name for f in dataclasses.fields(ReleaseEvent)} - set(_DPSGD_FIELDS)
        if data["format"] == _FORMAT_V1:
            fields.discard("seeded")
        for item in data["events"]:
            if not isinstance(item, dict) or set(item) not in (fields,
                                                                fields | set(_DPSGD_FIELDS)):
                raise ValueError(f"each ledger event must have exactly the keys {sorted(fields)} "
                                 f"(and {', '.join(_DPSGD_FIELDS)} for DP-SGD steps)")
            if data["format"] == _FORMAT_V1:
                item = {**item, "seeded": (item["mechanism"] != NON_PRIVATE
                                           and item["source"] != CSPRNG_SOURCE)}
            event = ReleaseEvent(**item)
            _check_mixing(ledger._seeded_held, event)
            ledger._append(event)
        return ledger

    @classmethod
    def open(cls, path: str | os.PathLike, *, delta: float, adjacency: str = "add_remove",
             epsilon_budget: float | None = None) -> PrivacyLedger:
        """The ledger kept in the JSON file ``path``, rewritten after every recorded event.

        An existing file is loaded and must hold this ``delta`` and ``adjacency``; its budget
        was fixed when it was created, so ``epsilon_budget`` must be None or equal to it. A
        missing file is created at once with ``epsilon_budget`` (None: no limit). Every write
        goes to a temporary file in the same folder, then ``os.replace``, so the file always
        holds a complete ledger; a write refuses to go ahead if the file changed since this
        ledger last wrote it (another process using it).
        """
        path = pathlib.Path(path)
        if path.exists():
            try:
                text = path.read_text()
                ledger = cls.from_dict(json.loads(text))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as error:
                raise ValueError(f"ledger file {str(path)!r} is not a privacy ledger: {error}"
                                 ) from None
            _check_matches(path, "delta", ledger.delta, accounting.check_delta(delta))
            _check_matches(path, "adjacency", ledger.adjacency,
                           accounting.check_adjacency(adjacency))
            if epsilon_budget is not None:
                _check_matches(path, "epsilon_budget", ledger.epsilon_budget, epsilon_budget)
            ledger._path, ledger._written = path, text
        else:
            ledger = cls(delta, adjacency=adjacency, epsilon_budget=epsilon_budget)
            ledger._path = path
            ledger._write([])
        return ledger

    def _write(self, events: Sequence[ReleaseEvent]) -> None:
        """Atomically replaces the ledger's file with ``events``, if nobody else changed it."""
        path = self._path
        try:
            current = path.read_text()
        except FileNotFoundError:
            current = None
        if current != self._written:
            raise ValueError(f"ledger file {str(path)!r} changed since this ledger last wrote "
                             "it (is another run using it?); nothing more is released")
        text = json.dumps(self._dict(events), indent=2) + "\n"
        write_atomic(path, lambda file: file.write(text.encode()))
        self._written = text


def _check_event(event: ReleaseEvent) -> ReleaseEvent:
    if not isinstance(event, ReleaseEvent):
        raise ValueError(f"event must be a ReleaseEvent, got {type(event).__name__}")
    return event


_EMPTY: Final[Mapping[_Key, int]] = {}


def _key(event: ReleaseEvent) -> _Key:
    return event.mechanism, event.noise_multiplier, event.k, event.sampling_rate


def _event_dict(event: ReleaseEvent) -> dict[str, Any]:
    """The event as JSON values; a PE release omits the DP-SGD fields."""
    item = dataclasses.asdict(event)
    if event.mechanism != dpsgd_accounting.MECHANISM:
        for name in _DPSGD_FIELDS:
            del item[name]
    return item


def _groups(counts: Mapping[_Key, int], extra: _Key | None = None, times: int = 0) -> _Groups:
    """The sorted groups of ``counts`` (plus ``times`` steps of ``extra``): the key under
    which the accountant composes them, and the ledger's table keeps them."""
    if extra is not None:
        counts = {**counts, extra: counts.get(extra, 0) + times}
    return tuple(sorted((m, s, k, q, n) for (m, s, k, q), n in counts.items() if n))


def _check_mixing(held: set[bool], event: ReleaseEvent) -> None:
    """Refuses a noisy ``event`` whose noise is seeded where the held noisy events' is not,
    or the other way round (``held``: the ``seeded`` flags of the noisy events held)."""
    if event.mechanism == NON_PRIVATE:
        return
    if held and event.seeded not in held:
        kind = {True: "a seeded generator", False: "the CSPRNG"}
        raise ValueError(
            f"a ledger is one privacy budget and cannot mix seeded and CSPRNG noise: it holds "
            f"releases with noise from {kind[not event.seeded]}, this one's is from "
            f"{kind[event.seeded]}; keep seeded (reproducible, NOT private) runs in a "
            "PrivacyLedger of their own")


def _check_matches(path: pathlib.Path, name: str, stored: object, given: object) -> None:
    if stored != given:
        raise ValueError(f"ledger file {str(path)!r} has {name}={stored!r}, but this run uses "
                         f"{name}={given!r}; a ledger composes releases of one setting only")
