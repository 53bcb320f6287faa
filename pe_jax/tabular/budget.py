"""zCDP budgets of the marginal-based mechanisms, checked against a ledger before they start.

MST and AIM plan in zCDP: ``rho_for(epsilon, delta)`` is the largest total rho whose
(epsilon, delta) conversion (``pe_jax.privacy.accounting.zcdp_epsilon``) stays within the
target. ``check_rho(ledger, rho)`` refuses a run before any private data is read if adding
``rho`` to what the ledger already holds would exceed its budget: it records a stand-in event
of exactly that rho (an exponential-mechanism event, which makes the composition zCDP like the
real run's) in a scratch copy of the ledger.
"""

from __future__ import annotations

import math

import numpy as np

from pe_jax.privacy import PrivacyLedger, accounting
from pe_jax.privacy.ledger import ReleaseEvent
from pe_jax.privacy.noise import check_rng, describe_source

# A run spends slightly less than its budget, so that the rounding of its many shares never
# sums above it.
_SAFETY = 1.0 - 1e-9


def rho_for(epsilon: float, delta: float) -> float:
    """The total zCDP rho a run at (``epsilon``, ``delta``) may spend."""
    return accounting.zcdp_rho_budget(epsilon, delta) * _SAFETY


def check_rho(ledger: PrivacyLedger, rho: float, rng: np.random.Generator | None) -> None:
    """Raises ``BudgetExceededError`` (or ValueError) if ``ledger`` cannot take ``rho`` more,
    spent with noise from ``rng``; changes nothing."""
    if not isinstance(ledger, PrivacyLedger):
        raise ValueError(f"ledger must be a PrivacyLedger, got {type(ledger).__name__}")
    if not 0 < rho < math.inf:
        raise ValueError(f"rho must be finite and > 0, got {rho!r}")
    rng = check_rng(rng)
    scratch = PrivacyLedger.from_dict(ledger.to_dict())
    scratch.check(ReleaseEvent("exponential", 1.0 / math.sqrt(2.0 * rho), 1,
                               source=describe_source(rng), seeded=rng is not None))
