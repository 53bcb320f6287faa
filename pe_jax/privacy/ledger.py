"""The privacy ledger: every release, its noise, and the epsilon spent so far.

A ``PrivacyLedger`` is the single record of what has left the private data. ``release`` asks it
to ``check`` a release against the budget before any noise is drawn and ``record``s it after;
the ledger travels in checkpoints as plain JSON (``to_dict`` / ``from_dict``, never pickle), so a
resumed run keeps counting from where it stopped. Epsilon is always recomputed from the events
(grouped by identical parameters and self-composed), never stored, so it cannot drift from them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections import Counter
from typing import Any, Final

from pe_jax._checks import check_int
from pe_jax.privacy import accounting

__all__ = ["ReleaseEvent", "PrivacyLedger", "BudgetExceededError", "NON_PRIVATE"]

_FORMAT: Final = "pe_jax.privacy.PrivacyLedger/1"
# The mechanism of a release made without noise (``release(..., non_private=True)``): its
# noise multiplier is 0 and the ledger's epsilon becomes infinite.
NON_PRIVATE: Final = "none (NOT differentially private)"


class BudgetExceededError(ValueError):
    """A release would take the ledger's epsilon above its budget; nothing was released."""


@dataclasses.dataclass(frozen=True)
class ReleaseEvent:
    """One noisy histogram release.

    ``mechanism`` is one of ``accounting.MECHANISMS``, or ``NON_PRIVATE`` with
    ``noise_multiplier=0``; ``noise_multiplier`` is sigma relative to L2 sensitivity 1 of the
    weighted histogram; ``k`` the votes per private row; ``source`` names
    the randomness used (``noise.describe_source``), for the privacy report.
    """

    mechanism: str
    noise_multiplier: float
    k: int = 1
    source: str = ""

    def __post_init__(self) -> None:
        if self.mechanism == NON_PRIVATE:
            if self.noise_multiplier != 0:
                raise ValueError(f"a {NON_PRIVATE!r} event must have noise_multiplier 0, got "
                                 f"{self.noise_multiplier!r}")
            object.__setattr__(self, "noise_multiplier", 0.0)
        else:
            accounting.check_mechanism(self.mechanism)
            object.__setattr__(self, "noise_multiplier", accounting.check_noise_multiplier(
                self.noise_multiplier, allow_zero=False))
        object.__setattr__(self, "k", check_int("k", self.k, 1))
        if not isinstance(self.source, str):
            raise ValueError(f"source must be a str, got {type(self.source).__name__}")


class PrivacyLedger:
    """Composes all recorded releases at a fixed ``delta`` under one adjacency relation.

    ``epsilon_budget=None`` records without a limit; otherwise ``check`` (and ``record``) refuse
    any event that would take ``epsilon_spent()`` above the budget.
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
    def events(self) -> tuple[ReleaseEvent, ...]:
        """The recorded events, oldest first (a read-only copy)."""
        return tuple(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def __repr__(self) -> str:
        return (f"PrivacyLedger(delta={self._delta}, adjacency={self._adjacency!r}, "
                f"epsilon_budget={self._budget}, events={len(self._events)})")

    def _epsilon(self, events: list[ReleaseEvent]) -> float:
        counts = Counter((e.mechanism, e.noise_multiplier, e.k) for e in events)
        groups = tuple(sorted((m, s, k, n) for (m, s, k), n in counts.items()))
        return accounting.epsilon_of_groups(groups, self._adjacency, self._delta)

    def epsilon_spent(self) -> float:
        """Epsilon at the ledger's delta of all recorded events (0 before any)."""
        return self._epsilon(self._events)

    def epsilon_after(self, event: ReleaseEvent) -> float:
        """Epsilon that would be spent after also recording ``event``."""
        return self._epsilon([*self._events, _check_event(event)])

    def epsilon_history(self) -> list[float]:
        """Epsilon spent after each recorded event, in order (for the privacy report)."""
        return [self._epsilon(self._events[:i + 1]) for i in range(len(self._events))]

    def check(self, event: ReleaseEvent) -> None:
        """Raises ``BudgetExceededError`` if recording ``event`` would exceed the budget."""
        _check_event(event)
        if self._budget is None:
            return
        after = self.epsilon_after(event)
        if after > self._budget:
            raise BudgetExceededError(
                f"release refused: epsilon spent {self.epsilon_spent():.6g}, would be "
                f"{after:.6g} after it, budget {self._budget:.6g} (delta={self._delta:g})")

    def record(self, event: ReleaseEvent) -> None:
        """Appends ``event`` after checking it against the budget."""
        self.check(event)
        self._events.append(event)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (str / float / int / None / lists / dicts only)."""
        return {
            "format": _FORMAT,
            "delta": self._delta,
            "adjacency": self._adjacency,
            "epsilon_budget": self._budget,
            "events": [dataclasses.asdict(e) for e in self._events],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyLedger:
        """Rebuilds a ledger from ``to_dict`` output, validating every field and event.

        Events are restored as recorded (they were within budget when recorded), without a
        budget re-check.
        """
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"not a privacy ledger: expected format {_FORMAT!r}")
        expected = {"format", "delta", "adjacency", "epsilon_budget", "events"}
        if set(data) != expected:
            raise ValueError(f"privacy ledger keys must be {sorted(expected)}, got {sorted(data)}")
        ledger = cls(data["delta"], adjacency=data["adjacency"],
                     epsilon_budget=data["epsilon_budget"])
        fields = {f.name for f in dataclasses.fields(ReleaseEvent)}
        for item in data["events"]:
            if not isinstance(item, dict) or set(item) != fields:
                raise ValueError(f"each ledger event must have exactly the keys {sorted(fields)}")
            ledger._events.append(ReleaseEvent(**item))
        return ledger


def _check_event(event: ReleaseEvent) -> ReleaseEvent:
    if not isinstance(event, ReleaseEvent):
        raise ValueError(f"event must be a ReleaseEvent, got {type(event).__name__}")
    return event
