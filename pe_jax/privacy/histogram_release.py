"""``release``: the one function through which private information leaves pe_jax.

Order of operations, so that a bad input or an exhausted budget never costs privacy and never
leaves a half-done release:

1. validate the clean histogram and every parameter (ValueError, nothing spent);
2. ``ledger.check``: refuse an over-budget release before any noise is drawn;
3. draw integer discrete Gaussian noise of scale ``noise_multiplier * sqrt(k)`` once for the
   whole vector (``noise.sample_discrete_gaussian``);
4. ``ledger.record`` the release;
5. return ``noisy = (counts + noise) / sqrt(k)`` and ``thresholded = max(noisy - threshold, 0)``
   (post-processing) as float64 NumPy arrays.

Only the discrete Gaussian is released; a float ``count + sigma * normal`` is never produced here
(its float32 support reveals the count, see ``noise``). The one exception is explicit:
``non_private=True`` releases the clean counts and the ledger records the run as NOT DP.
``simulate_releases`` repeats the same noise and lattice many times with a seeded generator for
privacy audits (``pe_jax.audit``); it records nothing and is never used on private data.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np

from pe_jax._checks import check_int
from pe_jax.privacy import accounting
from pe_jax.privacy.ledger import NON_PRIVATE, PrivacyLedger, ReleaseEvent
from pe_jax.privacy.noise import check_rng, describe_source, sample_discrete_gaussian

__all__ = ["Release", "release", "simulate_releases"]

# Clean values times sqrt(k) must be within this of integers, plus the input dtype's own
# rounding (2 ulp, so a float32 count/sqrt(k) of 1e5 still passes).
_LATTICE_TOL = 1e-3


@dataclasses.dataclass(frozen=True)
class Release:
    """A released histogram: ``noisy`` on the 1/sqrt(k) lattice and its ``thresholded`` version.

    Both are read-only float64 arrays of the clean histogram's shape.
    """

    noisy: np.ndarray
    thresholded: np.ndarray


def _clean_counts(clean_histogram: Any, k: int) -> np.ndarray:
    """The integer vote counts behind ``clean_histogram = counts / sqrt(k)``, validated.

    Messages report how many entries are bad, never their values (they are private).
    """
    arr = np.asarray(clean_histogram)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"clean_histogram must have an int or float dtype, got {arr.dtype}")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"clean_histogram must be 1-D and non-empty, got shape {arr.shape}")
    values = arr.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"clean_histogram has {int(np.sum(~np.isfinite(values)))} non-finite "
                         "entries; it must be finite")
    if np.any(values < 0):
        raise ValueError(f"clean_histogram has {int(np.sum(values < 0))} negative entries; "
                         "it must be >= 0")
    scaled = values * math.sqrt(k)
    counts = np.rint(scaled)
    tol = _LATTICE_TOL
    if arr.dtype.kind == "f":
        tol = tol + 2 * np.finfo(arr.dtype).eps * scaled
    off = np.abs(scaled - counts) > tol
    if np.any(off):
        raise ValueError(
            f"clean_histogram has {int(np.sum(off))} entries off the 1/sqrt(k) lattice (k={k}); "
            "it must be integer vote counts divided by sqrt(k)")
    return counts.astype(np.int64)


def _check_finite_nonneg(value: float, name: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not 0.0 <= float(value) < math.inf):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return float(value)


def release(clean_histogram: Any, *, noise_multiplier: float, threshold: float,
            ledger: PrivacyLedger, k: int = 1,
            rng: np.random.Generator | None = None, non_private: bool = False) -> Release:
    """Releases ``clean_histogram`` (counts / sqrt(k), NumPy or JAX) with discrete Gaussian noise.

    ``noise_multiplier`` is sigma relative to L2 sensitivity 1; ``threshold`` is subtracted after
    noise (values below it become 0); ``rng=None`` draws from the OS CSPRNG, a
    ``numpy.random.Generator`` gives seeded, not cryptographically secure noise. Raises
    ValueError for bad input and ``BudgetExceededError`` over budget, in both cases before any
    noise is drawn and with the ledger unchanged.

    ``non_private=True`` (with ``noise_multiplier=0``, and only then) releases the clean
    histogram without noise, for debugging and baselines: the ledger records a
    ``NON_PRIVATE`` event and its epsilon becomes infinite, so the privacy report says the run
    is NOT differentially private and any epsilon budget refuses it.
    """
    k = check_int("k", k, 1)
    if not isinstance(non_private, bool):
        raise ValueError(f"non_private must be a bool, got {non_private!r}")
    if non_private:
        if noise_multiplier != 0:
            raise ValueError("non_private=True releases without noise and needs "
                             f"noise_multiplier=0, got {noise_multiplier!r}")
        sigma = 0.0
    else:
        sigma = accounting.check_noise_multiplier(noise_multiplier, allow_zero=False)
    threshold = _check_finite_nonneg(threshold, "threshold")
    if not isinstance(ledger, PrivacyLedger):
        raise ValueError(f"ledger must be a PrivacyLedger, got {type(ledger).__name__}")
    rng = check_rng(rng)
    counts = _clean_counts(clean_histogram, k)

    if non_private:
        event = ReleaseEvent(NON_PRIVATE, 0.0, k, source="none (no noise)")
        ledger.check(event)
        noise = np.zeros_like(counts)
    else:
        event = ReleaseEvent("discrete_gaussian", sigma, k, source=describe_source(rng))
        ledger.check(event)
        noise = sample_discrete_gaussian(sigma * math.sqrt(k), counts.shape, rng=rng)
    ledger.record(event)

    noisy = _on_lattice(counts, noise, k)
    thresholded = np.maximum(noisy - threshold, 0.0)
    noisy.flags.writeable = False
    thresholded.flags.writeable = False
    return Release(noisy=noisy, thresholded=thresholded)


def simulate_releases(clean_histogram: Any, *, noise_multiplier: float, repeats: tuple[int, ...],
                      rng: np.random.Generator, k: int = 1) -> np.ndarray:
    """``repeats`` independent noisy releases of one histogram, for privacy audits only.

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
    counts = _clean_counts(clean_histogram, k)
    noise = sample_discrete_gaussian(sigma * math.sqrt(k), (*repeats, counts.size), rng=rng)
    return _on_lattice(counts, noise, k)


def _on_lattice(counts: np.ndarray, noise: np.ndarray, k: int) -> np.ndarray:
    """The released values ``(counts + noise) / sqrt(k)`` as float64."""
    return (counts + noise).astype(np.float64) / math.sqrt(k)
