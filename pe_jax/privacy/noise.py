"""Exact discrete Gaussian noise, sampled on the host from a CSPRNG.

``sample_discrete_gaussian(scale, shape)`` draws i.i.d. integers with
``P(x) proportional to exp(-x^2 / (2 scale^2))``, by the rejection sampler of Canonne, Kamath
and Steinke ("The Discrete Gaussian for Differential Privacy", NeurIPS 2020, Algorithm 3),
vectorised in NumPy:

1. t = floor(scale) + 1; propose Y = G1 - G2 with G1, G2 i.i.d. geometric,
   P(G >= n) = exp(-n / t), i.e. Y is discrete Laplace with P(Y = y) proportional to
   exp(-|y| / t);
2. accept Y with probability exp(-(|Y| - scale^2 / t)^2 / (2 scale^2));
3. redraw only the rejected entries until every entry is accepted.

Randomness: by default 64-bit words from ``os.urandom`` (the operating system's CSPRNG), turned
into uniforms on the grid ``(j + 1/2) / 2^52``, exactly representable, strictly inside (0, 1).
A ``numpy.random.Generator`` may be passed instead for seeded, reproducible research and tests;
that path is NOT cryptographically secure: whoever knows the seed can recompute the noise and
subtract it, so the privacy ledger marks such releases as seeded and the privacy report says
the run is NOT differentially private.

Support. The output is an integer, so there is no floating-point support attack of the kind
that breaks ``count + float32 normal`` (Mironov 2012), but its support is bounded, not all of
Z: the smallest uniform is ``U_MIN = 2^-53``, so a geometric draw ``floor(-t log U)`` is at most
``floor(53 ln 2 * t)`` (about 36.7 t), and step 2 accepts only if its uniform lies below the
acceptance probability, which must therefore exceed ``2^-53``:
``(|Y| - scale^2 / t)^2 < 106 ln 2 * scale^2``. So ``|noise| <= noise_bound(scale)``, about
``scale^2 / t + 8.57 scale`` (at most ~9.6 scale), computed exactly from the sampler's own
float64 expressions; every integer up to it can occur. The discrete Gaussian's mass beyond it
is below ``2^-53`` (1.1e-16) at every scale: at most ~0.74 * 2^-53, just below scale 0.1151
where the bound rises from 0 to 1, and below 1e-3 * 2^-53 from scale 1 on. The truncation
thus moves less than 2^-53 of probability per noisy bin, which adds at most
``(1 + e^epsilon) * 2^-53`` to delta per bin whose count differs between neighbouring data sets
(k per release, 2k under replace-one): below 1e-13 for 10 releases at epsilon 4, far below
any delta in use.

Floating point. Beyond the truncation, the geometric draws (``floor(-t log U)``) and the
acceptance test (``U < p``) use float64 and uniforms on a 2^-52 grid, so each probability the
sampler realises is off by about 2^-52 in absolute terms: negligible beside any delta in use.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Final

import numpy as np

__all__ = ["sample_discrete_gaussian", "noise_bound", "describe_source", "CSPRNG_SOURCE",
           "MAX_SCALE", "U_MIN"]

CSPRNG_SOURCE: Final = "os.urandom (CSPRNG)"
# Uniforms are (j + 1/2) / 2^52 for j < 2^52: every value is exact in float64 (53 bits).
_GRID_BITS: Final = 52
U_MIN: Final = 0.5 * 2.0 ** -_GRID_BITS
# Largest scale sampled: keeps t, every geometric draw (< 37 t) and the output exact integers
# in float64 and int64, and every integer up to ``noise_bound`` reachable; the accountant stops
# far below it (``accounting.MAX_DISCRETE_SCALE``).
MAX_SCALE: Final = 1e9


def describe_source(rng: np.random.Generator | None = None) -> str:
    """Names the randomness ``sample_discrete_gaussian`` uses with ``rng`` (for the ledger)."""
    if rng is None:
        return CSPRNG_SOURCE
    return f"numpy {type(rng.bit_generator).__name__} (seeded, not cryptographically secure)"


def _uniforms(n: int, rng: np.random.Generator | None) -> np.ndarray:
    """``n`` float64 uniforms on the grid (j + 1/2) / 2^52, j < 2^52: never 0, never 1."""
    if rng is None:
        words = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
    else:
        words = rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)
    return ((words >> np.uint64(64 - _GRID_BITS)).astype(np.float64) + 0.5) * U_MIN * 2


def _geometric(u: np.ndarray, t: int) -> np.ndarray:
    """Geometric draws with P(G >= n) = exp(-n / t) from uniforms ``u`` (float64 integers)."""
    return np.floor(-t * np.log(u))


def _acceptance(y: np.ndarray, scale: float, t: int) -> np.ndarray:
    """The probability with which the sampler accepts the proposal ``y``."""
    return np.exp(-np.square(np.abs(y) - scale * scale / t) / (2 * scale * scale))


def check_rng(rng: object) -> np.random.Generator | None:
    """Returns ``rng`` if it is None (CSPRNG) or a numpy Generator, else raises ValueError."""
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be None (CSPRNG) or a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _check_scale(scale: float) -> float:
    if (isinstance(scale, bool) or not isinstance(scale, numbers.Real)
            or not 0.0 < float(scale) <= MAX_SCALE):
        raise ValueError(f"scale must be > 0 and <= {MAX_SCALE:g}, got {scale!r}")
    return float(scale)


def _check_shape(shape: int | tuple[int, ...]) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    if any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0 for d in dims):
        raise ValueError(f"shape must be a non-negative int or a tuple of them, got {shape!r}")
    return tuple(int(d) for d in dims)


def noise_bound(scale: float) -> int:
    """The largest ``|noise|`` that ``sample_discrete_gaussian(scale, ...)`` can return.

    A proposal is accepted only if a uniform (>= ``U_MIN``) lies below its acceptance
    probability, which decreases in ``|y|`` beyond ``scale^2 / t``; it must also be a
    difference of geometric draws (<= the draw of ``U_MIN``). Evaluated with the sampler's own
    float64 expressions, so it is exact, not an estimate.
    """
    scale = _check_scale(scale)
    t = math.floor(scale) + 1
    peak = scale * scale / t
    n = math.floor(peak + scale * math.sqrt(-2 * math.log(U_MIN)))
    while _acceptance(np.float64(n + 1), scale, t) > U_MIN:
        n += 1
    while n > 0 and not _acceptance(np.float64(n), scale, t) > U_MIN:
        n -= 1
    return min(n, int(_geometric(np.float64(U_MIN), t)))


def sample_discrete_gaussian(scale: float, shape: int | tuple[int, ...], *,
                             rng: np.random.Generator | None = None) -> np.ndarray:
    """I.i.d. discrete Gaussian N_Z(0, scale^2) integers (int64) of the given shape.

    ``scale`` (in (0, ``MAX_SCALE``]) is the discrete Gaussian's parameter (its standard
    deviation is slightly below ``scale`` for small scales); outputs are bounded by
    ``noise_bound(scale)``. ``rng=None`` uses ``os.urandom``; a ``numpy.random.Generator``
    gives reproducible, NOT cryptographically secure draws.
    """
    scale = _check_scale(scale)
    dims = _check_shape(shape)
    rng = check_rng(rng)
    t = math.floor(scale) + 1
    out = np.empty(math.prod(dims), dtype=np.int64)
    pending = np.arange(out.size)
    while pending.size:
        n = pending.size
        u = _uniforms(3 * n, rng)
        y = _geometric(u[:n], t) - _geometric(u[n:2 * n], t)
        accept = u[2 * n:] < _acceptance(y, scale, t)
        out[pending[accept]] = y[accept].astype(np.int64)
        pending = pending[~accept]
    return out.reshape(dims)
