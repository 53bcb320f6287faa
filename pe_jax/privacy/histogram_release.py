"""``release``: the one function through which private information leaves pe_jax.

Order of operations, so that a bad input or an exhausted budget never costs privacy and never
leaves a half-done release:

1. validate the integer vote counts and every parameter (ValueError, nothing spent);
2. ``ledger.check``: refuse an over-budget release (or one mixing seeded and CSPRNG noise)
   before any noise is drawn;
3. draw integer discrete Gaussian noise of scale ``noise_multiplier * sqrt(k)`` once for the
   whole vector (``noise.sample_discrete_gaussian``);
4. ``ledger.record`` the release;
5. return ``noisy = (counts + noise) / sqrt(k)`` and ``thresholded = max(noisy - threshold, 0)``
   (post-processing, ``released_values``) as float64 NumPy arrays.

Steps 2-4 are ``draw_noise``, which the compiled PE step uses too: its noise is drawn, and
recorded, before the step runs, and the step applies the same ``released_values``.

Counts stay integers up to the noise: the vote weight 1/sqrt(k) is applied to the released
values only, and a float histogram is refused rather than rounded (a float32 count above 2^24
is already wrong). Only the discrete Gaussian is released; a float ``count + sigma * normal``
is never produced here (its float32 support reveals the count, see ``noise``). The one
exception is explicit: ``non_private=True`` releases the clean counts and the ledger records
the run as NOT DP. ``simulate_releases`` repeats the same noise and lattice many times with a
seeded generator for privacy audits (``pe_jax.audit``); it records nothing and is never used
on private data.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Final

import numpy as np

from pe_jax._checks import check_int
from pe_jax.privacy import accounting
from pe_jax.privacy.ledger import NON_PRIVATE, PrivacyLedger, ReleaseEvent
from pe_jax.privacy.noise import check_rng, describe_source, sample_discrete_gaussian

__all__ = ["Release", "draw_noise", "release", "release_event", "released_values",
           "simulate_releases", "MAX_COUNT"]

# Largest vote count accepted: released values are float64, exact for integers up to 2^53,
# and counts plus noise (< 1e10, see noise.MAX_SCALE) stay far inside int64.
MAX_COUNT: Final = 2 ** 53


@dataclasses.dataclass(frozen=True)
class Release:
    """A released histogram: ``noisy`` on the 1/sqrt(k) lattice and its ``thresholded`` version.

    Both are read-only float64 arrays of the counts' shape.
    """

    noisy: np.ndarray
    thresholded: np.ndarray

    @classmethod
    def of(cls, noisy_counts: np.ndarray, k: int, threshold: float) -> Release:
        """The released values of integer ``noisy_counts`` (counts + noise), read-only."""
        noisy, thresholded = released_values(np.asarray(noisy_counts, np.int64), k, threshold)
        noisy.flags.writeable = False
        thresholded.flags.writeable = False
        return cls(noisy=noisy, thresholded=thresholded)


def _vote_counts(counts: Any) -> np.ndarray:
    """``counts`` as validated int64 vote counts.

    Messages report how many entries are bad, never their values (they are private).
    """
    arr = np.asarray(counts)
    if arr.dtype.kind not in "iu":
        raise ValueError(
            "counts must be integer vote counts (a NumPy or JAX array of an int or uint dtype, "
            f"as voting.nn_histogram returns), got dtype {arr.dtype}; a float histogram is "
            "refused, not rounded: pass the counts and k, and 1/sqrt(k) is applied on release")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"counts must be 1-D and non-empty, got shape {arr.shape}")
    negative = int(np.count_nonzero(arr < 0))
    if negative:
        raise ValueError(f"counts has {negative} negative entries; it must be >= 0")
    too_large = int(np.count_nonzero(arr > MAX_COUNT))
    if too_large:
        raise ValueError(f"counts has {too_large} entries above 2^53 = {MAX_COUNT}; it must be "
                         "<= 2^53 (released as float64, exact up to 2^53)")
    return arr.astype(np.int64)


def _check_finite_nonneg(value: float, name: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not 0.0 <= float(value) < math.inf):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return float(value)


def release_event(*, noise_multiplier: float, k: int = 1, rng: np.random.Generator | None = None,
                  non_private: bool = False) -> ReleaseEvent:
    """The ledger event of a ``release`` with these parameters, validated.

    Lets a caller check a whole run against a ledger (``ledger.check(event, times=T)``)
    before touching private data.
    """
    k = check_int("k", k, 1)
    if not isinstance(non_private, bool):
        raise ValueError(f"non_private must be a bool, got {non_private!r}")
    rng = check_rng(rng)
    if non_private:
        if noise_multiplier != 0:
            raise ValueError("non_private=True releases without noise and needs "
                             f"noise_multiplier=0, got {noise_multiplier!r}")
        return ReleaseEvent(NON_PRIVATE, 0.0, k, source="none (no noise)")
    sigma = accounting.check_noise_multiplier(noise_multiplier, allow_zero=False)
    return ReleaseEvent("discrete_gaussian", sigma, k, source=describe_source(rng),
                        seeded=rng is not None)


def release(counts: Any, *, noise_multiplier: float, threshold: float,
            ledger: PrivacyLedger, k: int = 1,
            rng: np.random.Generator | None = None, non_private: bool = False) -> Release:
    """Releases integer vote ``counts`` (NumPy or JAX) as ``(counts + noise) / sqrt(k)``.

    ``counts`` are the votes per synthetic sample (k per private row, each of weight
    1/sqrt(k)): 1-D, non-empty, of an integer dtype, in [0, 2^53]. ``noise_multiplier`` is
    sigma relative to L2 sensitivity 1; the integer discrete Gaussian noise has scale
    ``sigma * sqrt(k)``. ``threshold`` is subtracted after noise (values below it become 0);
    ``rng=None`` draws from the OS CSPRNG, a ``numpy.random.Generator`` gives seeded,
    reproducible noise that is NOT private (the ledger records it as seeded). Raises
    ValueError for bad input (or seeded and CSPRNG noise in one ledger) and
    ``BudgetExceededError`` over budget, in both cases before any noise is drawn and with the
    ledger unchanged.

    ``non_private=True`` (with ``noise_multiplier=0``, and only then) releases the clean
    counts without noise, for debugging and baselines: the ledger records a ``NON_PRIVATE``
    event and its epsilon becomes infinite, so the privacy report says the run is NOT
    differentially private and any epsilon budget refuses it.
    """
    event = release_event(noise_multiplier=noise_multiplier, k=k, rng=rng,
                          non_private=non_private)
    threshold = _check_finite_nonneg(threshold, "threshold")
    if not isinstance(ledger, PrivacyLedger):
        raise ValueError(f"ledger must be a PrivacyLedger, got {type(ledger).__name__}")
    clean = _vote_counts(counts)
    noise = draw_noise(event, ledger, clean.size, rng=rng)
    return Release.of(clean + noise, event.k, threshold)


def draw_noise(event: ReleaseEvent, ledger: PrivacyLedger, bins: int, *,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """The integer noise of one release of ``bins`` counts: ``(bins,)`` int64.

    ``ledger.check`` refuses the release (over budget, or mixing seeded and CSPRNG noise)
    before anything is drawn; then the noise is drawn once and the release is recorded.
    The noise does not depend on the data, so it can be drawn before the counts exist: the
    compiled PE step takes it as an input (``pe_jax.step``), and ``release`` draws it here too.
    A ``NON_PRIVATE`` event draws zeros. ``rng`` must be the generator ``event`` names.
    """
    if not isinstance(ledger, PrivacyLedger):
        raise ValueError(f"ledger must be a PrivacyLedger, got {type(ledger).__name__}")
    bins = check_int("bins", bins, 1)
    if event.seeded != (check_rng(rng) is not None) and event.mechanism != NON_PRIVATE:
        raise ValueError("rng must be a numpy Generator exactly when the event is seeded")
    ledger.check(event)
    if event.mechanism == NON_PRIVATE:
        noise = np.zeros(bins, np.int64)
    else:
        noise = sample_discrete_gaussian(event.noise_multiplier * math.sqrt(event.k), bins,
                                         rng=rng)
    ledger.record(event)
    return noise


def released_values(noisy_counts, k: int, threshold: float):
    """``(noisy, thresholded)`` of integer ``noisy_counts = counts + noise``: post-processing.

    ``noisy = noisy_counts / sqrt(k)`` (the vote weight, applied to released values only) and
    ``thresholded = max(noisy - threshold, 0)``.  One implementation for the host release
    (NumPy int64 -> float64) and the compiled step (JAX int32 -> float32).
    """
    noisy = noisy_counts / math.sqrt(k)
    return noisy, (noisy - threshold).clip(min=0.0)


def simulate_releases(counts: Any, *, noise_multiplier: float, repeats: tuple[int, ...],
                      rng: np.random.Generator, k: int = 1) -> np.ndarray:
    """``repeats`` independent noisy releases of one vote-count vector, for privacy audits only.

    The same validation, sampler and lattice as ``release`` (one discrete Gaussian draw of
    shape ``(*repeats, bins)``), but nothing is recorded and ``rng`` must be a seeded
    ``numpy.random.Generator``: audits rerun the mechanism thousands of times on made-up
    neighbouring datasets and must be reproducible. Never use it on private data.
    Returns the float64 ``noisy`` values, shape ``(*repeats, bins)``.
    """
    k = check_int("k", k, 1)
    sigma = accounting.check_noise_multiplier(noise_multiplier, allow_zero=False)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a seeded numpy.random.Generator, got {type(rng).__name__}")
    repeats = tuple(check_int("repeats", r, 1) for r in repeats)
    clean = _vote_counts(counts)
    noise = sample_discrete_gaussian(sigma * math.sqrt(k), (*repeats, clean.size), rng=rng)
    return released_values(clean + noise, k, 0.0)[0]
