"""The exponential mechanism: pick one candidate, favouring high scores, with its ledger event.

``exponential_mechanism(scores, epsilon=e, sensitivity=d, ledger=...)`` returns index ``i``
with probability proportional to ``exp(e * scores[i] / (2 d))``, where ``d`` bounds how much
any score can change when one private row is added or removed. That is e-DP and, by its
bounded range, ``e^2 / 8``-zCDP (Cesar and Rogers 2021). It equals report-noisy-max with Gumbel
noise of scale ``2 d / e``, so the ledger records it as mechanism ``"exponential"`` with noise
multiplier ``2 / e`` (the Gumbel scale relative to the sensitivity), whose zCDP rho
``1 / (2 s^2)`` the accountant adds to the Gaussian releases' (``accounting``).

Order of operations as in ``histogram_release.release``: validate the scores and parameters,
``ledger.check`` (nothing drawn if refused), draw one uniform, ``ledger.record``, return the
index. The uniform comes from the same source as every noise draw in pe_jax
(``noise._uniforms``: the OS CSPRNG, or a seeded generator that makes the release NOT private
and is recorded as such). The choice is the inverse CDF of the float64 probabilities at that
uniform; rounding moves each probability by about 1e-16, far below any delta in use.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from pe_jax.privacy.ledger import PrivacyLedger, ReleaseEvent
from pe_jax.privacy.noise import _uniforms, check_rng, describe_source

__all__ = ["exponential_mechanism", "exponential_event"]


def exponential_event(epsilon: float, *, rng: np.random.Generator | None = None
                      ) -> ReleaseEvent:
    """The ledger event of one exponential-mechanism choice at pure ``epsilon`` (> 0)."""
    if (isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real)
            or not 0.0 < float(epsilon) < math.inf):
        raise ValueError(f"epsilon must be finite and > 0, got {epsilon!r}")
    rng = check_rng(rng)
    return ReleaseEvent("exponential", 2.0 / float(epsilon), 1, source=describe_source(rng),
                        seeded=rng is not None)


def exponential_mechanism(scores, *, epsilon: float, sensitivity: float,
                          ledger: PrivacyLedger, rng: np.random.Generator | None = None) -> int:
    """One index drawn with probability proportional to ``exp(epsilon * score / (2 *
    sensitivity))``; checked against and recorded in ``ledger`` (see the module docstring).

    ``scores``: a non-empty 1-D array of finite floats; ``sensitivity``: the largest change of
    any score when one private row is added or removed (> 0). Bad input raises ValueError
    and an over-budget choice ``BudgetExceededError``, both before anything is drawn.
    """
    event = exponential_event(epsilon, rng=rng)
    if (isinstance(sensitivity, bool) or not isinstance(sensitivity, numbers.Real)
            or not 0.0 < float(sensitivity) < math.inf):
        raise ValueError(f"sensitivity must be finite and > 0, got {sensitivity!r}")
    if not isinstance(ledger, PrivacyLedger):
        raise ValueError(f"ledger must be a PrivacyLedger, got {type(ledger).__name__}")
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 1 or scores.size == 0 or not np.isfinite(scores).all():
        raise ValueError(f"scores must be a non-empty 1-D array of finite numbers; got shape "
                         f"{scores.shape} with {int(np.size(scores) - np.isfinite(scores).sum())}"
                         " non-finite entries")
    logits = 0.5 * float(epsilon) / float(sensitivity) * (scores - scores.max())
    cdf = np.cumsum(np.exp(logits))
    ledger.check(event)
    u = _uniforms(1, rng)[0]
    ledger.record(event)
    return int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), scores.size - 1))
