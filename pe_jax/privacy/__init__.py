"""Differential privacy for Private Evolution: accounting, noise, the ledger and ``release``.

Privacy model. Each PE iteration releases one vote histogram: every private row votes for its k
nearest synthetic rows with weight 1/sqrt(k), so one row's vote vector has L2 norm 1. The
voting kernel counts integer votes; ``release`` adds integer noise to the counts and applies
the weight 1/sqrt(k) to the released values only. Under add/remove adjacency (the default)
adding or removing a row changes the weighted histogram by L2 norm exactly 1 (k distinct bins
move by 1/sqrt(k)); under replace-one by at most sqrt(2). The noise multiplier ``sigma`` is
relative to sensitivity 1: each bin gets noise of scale ``sigma`` in the weighted histogram,
``sigma * sqrt(k)`` in count space. T iterations of the Gaussian mechanism are exactly mu-GDP
with ``mu = sqrt(T) / sigma`` (``gdp_epsilon``); the PLD accountant (``epsilon`` /
``noise_multiplier``, on Google's dp_accounting) gives the tight (epsilon, delta).

Why discrete. Votes are integers, so the released noise is an exact discrete Gaussian integer
drawn on the host from the OS CSPRNG and the output lies on the lattice ``Z / sqrt(k)`` whatever
the counts. A float32 ``count + sigma * normal`` has a sparse, count-dependent support: most
outputs from a count of 0 are impossible from a count of 1 (about 87 % at sigma ~ 12), so one
release would reveal membership. The discrete mechanism is accounted exactly, per bin, by its
own PLD.

Every private release goes through ``release``, which validates, checks the ``PrivacyLedger``
budget, draws the noise once, records the event and thresholds. Noise from a seeded generator
is recorded as such and makes a run NOT differentially private in its report.
"""

from pe_jax.privacy.accounting import epsilon, gdp_epsilon, noise_multiplier
from pe_jax.privacy.ledger import NON_PRIVATE, BudgetExceededError, PrivacyLedger, ReleaseEvent
from pe_jax.privacy.noise import noise_bound, sample_discrete_gaussian
from pe_jax.privacy.histogram_release import (Release, draw_noise, release, release_event,
                                              released_values, simulate_releases)

__all__ = [
    "epsilon",
    "noise_multiplier",
    "gdp_epsilon",
    "release",
    "release_event",
    "draw_noise",
    "released_values",
    "simulate_releases",
    "Release",
    "PrivacyLedger",
    "ReleaseEvent",
    "BudgetExceededError",
    "NON_PRIVATE",
    "sample_discrete_gaussian",
    "noise_bound",
]
