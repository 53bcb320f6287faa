"""Privacy accounting for PE's noisy vote histograms: noise multiplier <-> (epsilon, delta).

One PE iteration releases ``(c + Z) / sqrt(k)`` where ``c`` are the integer vote counts and ``Z``
is noise of scale ``sigma * sqrt(k)`` per bin. The weighted histogram ``c / sqrt(k)`` has L2
sensitivity 1 under add/remove adjacency (one row adds 1 to k distinct bins) and sqrt(2) under
replace-one (k bins -1, k others +1), so ``sigma`` is the noise multiplier relative to L2
sensitivity 1.

Mechanisms, both accounted with Google's ``dp_accounting`` privacy loss distributions (PLDs,
pessimistic estimates, so the epsilon reported is an upper bound up to the library's tail
truncation of ~1e-15):

* ``"discrete_gaussian"`` (the released mechanism): the PLD of one bin's discrete Gaussian with
  parameter ``sigma * sqrt(k)`` and integer sensitivity 1, composed over the k (add/remove) or
  2k (replace-one) shifted bins -- independent coordinates, so composition is exact -- and then
  over the T releases.
* ``"gaussian"``: the continuous Gaussian with L2 sensitivity 1 (add/remove), or replace-one as
  add/remove with noise multiplier ``sigma / sqrt(2)``. dp_accounting's REPLACE_ONE relation is
  deliberately not used: it assumes sensitivity 2 for a Gaussian. T releases are exactly
  mu-GDP with ``mu = sqrt(T) / sigma`` (times sqrt(2) for replace-one); ``gdp_epsilon`` gives the
  closed form used to check the PLD numbers and to start calibration.

zCDP. The marginal-based baselines (``pe_jax.tabular``: MST, AIM) also release choices made by
the exponential mechanism (``"exponential"``, ``pe_jax.privacy.exponential``), which has no PLD
here. A release with noise multiplier ``s`` (Gumbel noise of scale ``s`` times the score
sensitivity, i.e. epsilon ``2 / s`` pure DP) is ``1 / (2 s^2)``-zCDP (bounded range, Cesar and
Rogers 2021), exactly like a Gaussian release with the same ``s`` (the discrete Gaussian too:
Canonne, Kamath, Steinke 2020). A composition that holds any ``"exponential"`` release is
therefore accounted in zCDP: the rhos add up, and ``zcdp_epsilon`` converts the total to
(epsilon, delta) with dp_accounting's RDP accountant (a zCDP event is RDP ``rho * alpha`` at
every order; Proposition 12 of Canonne-Kamath-Steinke for the conversion), on a fine grid of
orders. Compositions without it keep the tighter PLD accounting.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import TYPE_CHECKING, Final

import numpy as np
from scipy import optimize, special

from pe_jax._checks import check_int

if TYPE_CHECKING:
    from dp_accounting.pld.privacy_loss_distribution import PrivacyLossDistribution

__all__ = ["epsilon", "noise_multiplier", "gdp_epsilon", "zcdp_epsilon", "zcdp_rho_budget",
           "release_rho", "MECHANISMS", "ZCDP_MECHANISMS", "ADJACENCIES", "MAX_MU"]

ACCOUNTANT: Final = ("dp_accounting privacy loss distributions, pessimistic estimates "
                     "(connect-the-dots for the discrete Gaussian)")
MECHANISMS: Final = ("discrete_gaussian", "gaussian")
# Mechanisms a ledger event may name besides ``MECHANISMS``: accounted in zCDP only.
ZCDP_MECHANISMS: Final = ("exponential",)
ZCDP_ACCOUNTANT: Final = ("zCDP: rho added over releases, converted to (epsilon, delta) by "
                          "dp_accounting's RDP accountant")
# RDP orders of the zCDP conversion: 1 + 0.0101 * 1.003^j up to ~1e5, 0.3 % apart, so the
# grid costs under 0.01 % of the continuous optimum's epsilon (tests/test_tabular_privacy.py).
_ZCDP_ORDERS: Final = 1.0 + 0.0101 * 1.003 ** np.arange(5400)
ADJACENCIES: Final = ("add_remove", "replace_one")

# Largest discrete Gaussian scale the PLD accountant tabulates (memory ~ 23 * scale values).
MAX_DISCRETE_SCALE: Final = 1e5
# Largest mu-GDP parameter mu = sqrt(sum of releases * sensitivity^2 / sigma^2) the accountant
# evaluates: its PLD tables grow with the privacy loss (about 1/sigma per release and mu^2 in
# composition; ~1.4 GB at mu = 20 in the worst case, 24 GB and more at epsilon 1e5). Epsilon
# is then ~285 at delta 1e-5, far beyond any meaningful guarantee.
MAX_MU: Final = 20.0
# Calibration stops once the bracket [lo, hi] satisfies hi / lo <= 1 + _REL_TOL.
_REL_TOL: Final = 1e-3


# --------------------------------------------------------------------------- validation


def check_mechanism(mechanism: str) -> str:
    """Returns ``mechanism`` if known, else raises ValueError listing the allowed ones."""
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    return mechanism


def check_event_mechanism(mechanism: str) -> str:
    """Returns ``mechanism`` if a ledger event may name it (``MECHANISMS`` or
    ``ZCDP_MECHANISMS``), else raises ValueError listing them."""
    if mechanism not in MECHANISMS + ZCDP_MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS + ZCDP_MECHANISMS}, "
                         f"got {mechanism!r}")
    return mechanism


def check_adjacency(adjacency: str) -> str:
    """Returns ``adjacency`` if known, else raises ValueError listing the allowed ones."""
    if adjacency not in ADJACENCIES:
        raise ValueError(f"adjacency must be one of {ADJACENCIES}, got {adjacency!r}")
    return adjacency


def check_delta(delta: float) -> float:
    """Returns ``delta`` as float if it lies in the open interval (0, 1)."""
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
        raise ValueError(f"delta must be a real number in (0, 1), got {delta!r}")
    if not 0.0 < float(delta) < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    return float(delta)


def check_noise_multiplier(sigma: float, *, allow_zero: bool) -> float:
    """Returns ``sigma`` as float if it is >= 0 (or > 0 and finite when ``allow_zero`` is False)."""
    ok = isinstance(sigma, numbers.Real) and not isinstance(sigma, bool) and not math.isnan(sigma)
    if allow_zero:
        if not ok or sigma < 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {sigma!r}")
    elif not ok or not 0.0 < sigma < math.inf:
        raise ValueError(f"noise_multiplier must be finite and > 0, got {sigma!r}")
    return float(sigma)


def _check_epsilon(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0.0 < eps < math.inf:
        raise ValueError(f"epsilon must be finite and > 0, got {eps!r}")
    return float(eps)


# --------------------------------------------------------------------------- closed form


def _gdp_delta(eps: float, mu: float) -> float:
    """delta(eps) of mu-GDP: Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2), in log space."""
    a = special.ndtr(-eps / mu + mu / 2)
    b = math.exp(eps + special.log_ndtr(-eps / mu - mu / 2))
    return float(a - b)


def gdp_epsilon(mu: float, delta: float) -> float:
    """The smallest epsilon for which mu-GDP implies (epsilon, delta)-DP (Dong, Roth, Su 2019).

    Exact for T Gaussian releases with noise multiplier sigma and sensitivity 1:
    ``mu = sqrt(T) / sigma``.
    """
    delta = check_delta(delta)
    if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or math.isnan(mu) or mu < 0:
        raise ValueError(f"mu must be >= 0, got {mu!r}")
    if mu == 0:
        return 0.0
    if mu == math.inf:
        return math.inf
    if _gdp_delta(0.0, mu) <= delta:
        return 0.0
    hi = 1.0
    while _gdp_delta(hi, mu) > delta:
        hi *= 2.0
    return float(optimize.brentq(lambda e: _gdp_delta(e, mu) - delta, 0.0, hi, xtol=1e-12))


def _gdp_mu(eps: float, delta: float) -> float:
    """The mu for which mu-GDP gives exactly (eps, delta); delta(eps) grows with mu."""
    lo, hi = 1e-3, 1.0
    while _gdp_delta(eps, hi) < delta:
        hi *= 2.0
    while _gdp_delta(eps, lo) > delta:
        lo /= 2.0
    return float(optimize.brentq(lambda m: _gdp_delta(eps, m) - delta, lo, hi, xtol=1e-12))


def _sensitivity_factor(adjacency: str) -> float:
    return math.sqrt(2.0) if adjacency == "replace_one" else 1.0


# --------------------------------------------------------------------------- PLD accounting


def _pld(mechanism: str, adjacency: str, sigma: float, k: int,
         count: int) -> PrivacyLossDistribution:
    """PLD of ``count`` identical releases (sigma > 0 and finite, inputs validated).

    The PLD of one release comes from ``_base_pld`` (cached); only its self-composition
    depends on ``count``.
    """
    if mechanism == "gaussian":
        times = count
    else:
        if sigma * math.sqrt(k) > MAX_DISCRETE_SCALE:
            raise ValueError(
                f"noise_multiplier * sqrt(k) must be <= {MAX_DISCRETE_SCALE:g} for discrete "
                f"Gaussian accounting (its PLD tabulates ~23 * scale points), "
                f"got {sigma * math.sqrt(k):g}")
        times = count * k * (2 if adjacency == "replace_one" else 1)
    base = _base_pld(mechanism, adjacency if mechanism == "gaussian" else "", sigma, k)
    return base.self_compose(times) if times > 1 else base


@functools.lru_cache(maxsize=8)
def _base_pld(mechanism: str, adjacency: str, sigma: float, k: int) -> PrivacyLossDistribution:
    """The PLD that ``_pld`` self-composes: one Gaussian release, or one bin of the discrete
    Gaussian (``adjacency`` is "" there: it only changes the number of compositions).

    Cached because a ledger composes the same event for count after count (1 ms for the
    default discrete Gaussian, ~10 ms at k = 4, ~50 ms for the continuous Gaussian), and the
    result is the same object the uncached call would build: dp_accounting's ``compose`` and
    ``self_compose`` return new PLDs and never modify their inputs, so the epsilons are
    bit-for-bit those of a fresh build. Few entries (a ledger holds a handful of distinct
    events; calibration changes sigma every call and would only churn a larger cache), each
    at most ~20 MB (``MAX_DISCRETE_SCALE``).

    dp_accounting is imported here, not at module level: it costs ~1 s and only accounting
    needs it.
    """
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    if mechanism == "gaussian":
        return pld_lib.from_gaussian_mechanism(
            sigma / _sensitivity_factor(adjacency), sensitivity=1, pessimistic_estimate=True)
    # Connect-the-dots discretisation: still pessimistic, and its error does not grow
    # linearly with the number of compositions like the privacy-buckets rounding does.
    return pld_lib.from_discrete_gaussian_mechanism(
        sigma * math.sqrt(k), sensitivity=1, pessimistic_estimate=True, use_connect_dots=True)


def _check_mu(mu: float, delta: float) -> None:
    """Refuses, before any table is built, a composition beyond ``MAX_MU`` (see there; the
    tolerance lets calibration evaluate ``sigma_min`` itself whatever its rounding)."""
    if mu > MAX_MU * (1 + 1e-9):
        raise ValueError(
            f"noise_multiplier too small to account: the releases compose to mu-GDP mu = "
            f"{mu:.4g} (epsilon ~{gdp_epsilon(mu, delta):.4g} at delta={delta:g}); the "
            f"accountant evaluates mu <= {MAX_MU:g} (epsilon <= ~{gdp_epsilon(MAX_MU, delta):.4g})"
            ", beyond which its tables need gigabytes: use more noise or fewer releases")


# --------------------------------------------------------------------------- zCDP


def check_mechanism_adjacency(mechanism: str, adjacency: str) -> None:
    """Refuses a ``ZCDP_MECHANISMS`` release under replace-one adjacency: the exponential
    mechanism's score sensitivity is declared for one row added or removed."""
    if mechanism in ZCDP_MECHANISMS and adjacency != "add_remove":
        raise ValueError(f"mechanism {mechanism!r} is accounted under add_remove adjacency "
                         "only; its score sensitivity is declared for one row added or removed")


def release_rho(mechanism: str, sigma: float, adjacency: str) -> float:
    """The zCDP rho of one release with noise multiplier ``sigma`` (validated inputs).

    ``1 / (2 sigma^2)`` at sensitivity 1; replace-one doubles a Gaussian's squared
    sensitivity. The exponential mechanism's scores are declared under add/remove, so it is
    refused under replace-one rather than accounted with a guessed sensitivity.
    """
    check_mechanism_adjacency(mechanism, adjacency)
    if sigma == math.inf:
        return 0.0
    factor = 1.0 if mechanism in ZCDP_MECHANISMS else _sensitivity_factor(adjacency)
    return factor ** 2 / (2.0 * sigma ** 2)


def zcdp_epsilon(rho: float, delta: float) -> float:
    """The epsilon at ``delta`` of a ``rho``-zCDP mechanism.

    The conversion of dp_accounting's RDP accountant (Proposition 12 of Canonne, Kamath,
    Steinke 2020: ``rho a + log(1 - 1/a) - log(delta a) / (a - 1)``, minimised over the
    orders ``a > 1.01``, or 0 where the KL bound already gives ``delta``), vectorised over
    ``_ZCDP_ORDERS``: the accountant loops over orders in Python, ~40 ms a call, and a ledger
    asks once per release. Equal to dp_accounting's ``RdpAccountant(orders).get_epsilon``
    after composing ``ZCDpEvent(rho)`` (tests/test_tabular_privacy.py).
    """
    delta = check_delta(delta)
    if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or math.isnan(rho) or rho < 0:
        raise ValueError(f"rho must be >= 0, got {rho!r}")
    if rho == math.inf:
        return math.inf
    if rho == 0:
        return 0.0
    orders = _ZCDP_ORDERS
    rdp = rho * orders
    if np.any(delta ** 2 + np.expm1(-rdp) > 0):
        return 0.0
    eps = rdp + np.log1p(-1 / orders) - np.log(delta * orders) / (orders - 1)
    return float(max(0.0, eps.min()))


def zcdp_rho_budget(epsilon: float, delta: float) -> float:
    """The largest rho (to 1e-6 relative) whose ``zcdp_epsilon`` at ``delta`` is <= ``epsilon``.

    Never overshoots: the returned rho was evaluated and lies within the target.
    """
    target, delta = _check_epsilon(epsilon), check_delta(delta)
    lo, hi = 1e-12, 1.0
    while zcdp_epsilon(hi, delta) <= target:
        lo, hi = hi, hi * 4.0
    while zcdp_epsilon(lo, delta) > target:
        lo /= 4.0
    while hi / lo > 1 + 1e-6:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if zcdp_epsilon(mid, delta) <= target else (lo, mid)
    return lo


# --------------------------------------------------------------------------- composition


@functools.lru_cache(maxsize=4096)
def epsilon_of_groups(groups: tuple[tuple[str, float, int, int], ...], adjacency: str,
                      delta: float) -> float:
    """Epsilon of composing groups ``(mechanism, sigma, k, count)`` of identical releases.

    Inputs must already be validated (``check_*``); used by ``epsilon`` and the ledger. Each
    group is self-composed (fast, FFT powers), then the groups are composed; groups that hold
    a ``ZCDP_MECHANISMS`` release are composed in zCDP instead (see the module docstring).
    """
    if not groups:
        return 0.0
    if any(mechanism in ZCDP_MECHANISMS for mechanism, _, _, _ in groups):
        rho = sum(count * release_rho(mechanism, sigma, adjacency) if sigma else math.inf
                  for mechanism, sigma, _, count in groups)
        return zcdp_epsilon(rho, delta)
    if any(sigma == 0.0 for _, sigma, _, _ in groups):
        return math.inf
    finite = [g for g in groups if g[1] != math.inf]
    if not finite:
        return 0.0
    _check_mu(math.sqrt(sum(count * _sensitivity_factor(adjacency) ** 2 / sigma ** 2
                            for _, sigma, _, count in finite)), delta)
    total = None
    for mechanism, sigma, k, count in finite:
        p = _pld(mechanism, adjacency, sigma, k, count)
        total = p if total is None else total.compose(p)
    return float(total.get_epsilon_for_delta(delta))


def epsilon(noise_multiplier: float, delta: float, iterations: int, *,
            mechanism: str = "discrete_gaussian", adjacency: str = "add_remove",
            k: int = 1) -> float:
    """Epsilon at ``delta`` after ``iterations`` releases with this noise multiplier.

    ``k`` is the number of votes per private row (each weighted 1/sqrt(k)); it changes the
    discrete Gaussian's lattice but not the continuous Gaussian's epsilon. ``noise_multiplier=0``
    gives ``inf``.
    """
    sigma = check_noise_multiplier(noise_multiplier, allow_zero=True)
    groups = ((check_mechanism(mechanism), sigma, check_int("k", k, 1),
               check_int("iterations", iterations, 1)),)
    return epsilon_of_groups(groups, check_adjacency(adjacency), check_delta(delta))


def noise_multiplier(epsilon: float, delta: float, iterations: int, *,
                     mechanism: str = "discrete_gaussian", adjacency: str = "add_remove",
                     k: int = 1) -> float:
    """The noise multiplier for which ``iterations`` releases are (epsilon, delta)-DP.

    Never overshoots: the returned sigma was evaluated and has epsilon <= the target, and a
    sigma at most 0.1 % smaller was evaluated above the target (bracketing from the closed-form
    Gaussian sigma, then log-log interpolation safeguarded by bisection). The search stays at
    or above the smallest sigma the accountant evaluates (mu-GDP mu = ``MAX_MU``); a target
    beyond it (epsilon above ~285 at delta 1e-5) is refused with a ValueError, up front when
    the closed-form Gaussian sigma is already beyond it.
    """
    groups = ((check_mechanism(mechanism), 1.0, check_int("k", k, 1),
               check_int("iterations", iterations, 1)),)
    return noise_scale(epsilon, delta, groups, adjacency=adjacency)


def noise_scale(epsilon: float, delta: float, groups: tuple[tuple[str, float, int, int], ...],
                *, adjacency: str = "add_remove") -> float:
    """The smallest scale ``s`` for which releases in ``groups`` are (epsilon, delta)-DP.

    ``groups``: ``(mechanism, ratio, k, count)``: ``count`` releases with noise multiplier
    ``s * ratio`` and ``k`` votes per row. It splits one budget between releases of different
    noise in fixed proportions (``noise_multiplier`` is one group of ratio 1), with the same
    guarantees: the returned scale was evaluated within the target, one 0.1 % smaller above it.
    """
    target = _check_epsilon(epsilon)
    delta = check_delta(delta)
    adjacency = check_adjacency(adjacency)
    if not groups:
        raise ValueError("groups must hold at least one group of releases")
    groups = tuple((check_mechanism(m), _check_ratio(r), check_int("k", k, 1),
                    check_int("count", n, 1)) for m, r, k, n in groups)
    mu0 = _gdp_mu(target, delta)
    if mu0 > MAX_MU:
        raise ValueError(
            f"epsilon must be at most ~{gdp_epsilon(MAX_MU, delta):.4g} at delta={delta:g} "
            f"(mu-GDP mu <= {MAX_MU:g}, the accountant's limit) to calibrate a noise "
            f"multiplier, got {target!r}")
    # Gaussian releases compose to mu = sqrt(sum count / (s ratio)^2) / factor: s = scale / mu.
    scale = _sensitivity_factor(adjacency) * math.sqrt(sum(n / r ** 2 for _, r, _, n in groups))
    return _calibrate(
        lambda s: epsilon_of_groups(tuple((m, s * r, k, n) for m, r, k, n in groups),
                                    adjacency, delta),
        target, scale / mu0, scale / MAX_MU)


def _check_ratio(ratio: float) -> float:
    if not (isinstance(ratio, (int, float)) and 0 < ratio < math.inf):
        raise ValueError(f"each group's noise ratio must be finite and > 0, got {ratio!r}")
    return float(ratio)


def _calibrate(eps_of, target: float, sigma0: float, sigma_min: float) -> float:
    """Smallest evaluated sigma with ``eps_of(sigma) <= target``, bracketed to ``_REL_TOL``.

    ``eps_of`` decreases in sigma. ``lo`` always has epsilon > target, ``hi`` <= target; the
    next point interpolates log(epsilon) linearly in log(sigma), aimed a little past the root
    towards the side that moved least recently so that both ends close in. Sigma is searched
    within a factor 1e3 of ``sigma0`` and never below ``sigma_min``.
    """
    log_tol, log_target, x0 = math.log1p(_REL_TOL), math.log(target), math.log(sigma0)
    x_min = math.log(sigma_min)
    lo = hi = None  # (log sigma, log epsilon)
    x, last_side = x0, None
    step = 2 * log_tol  # minimum one-sided step, doubled while the root is not bracketed
    for _ in range(200):
        if abs(x - x0) > math.log(1e3):
            raise ValueError(f"cannot calibrate epsilon={target}: the accountant's epsilon stays "
                             f"on one side of it for sigma within 1e3x of {sigma0:.4g}")
        x = max(x, x_min)
        e = eps_of(math.exp(x))
        if e <= target and x == x_min:
            raise ValueError(
                f"cannot calibrate epsilon={target}: it needs a noise multiplier below "
                f"{sigma_min:.4g}, where the releases compose to more than mu-GDP mu = "
                f"{MAX_MU:g}, the accountant's limit")
        point = (x, math.log(e) if e > 0 else -math.inf)
        if e <= target:
            hi, last_side = point, "hi"
        else:
            lo, last_side = point, "lo"
        if lo is not None and hi is not None and hi[0] - lo[0] <= log_tol:
            return math.exp(hi[0])
        if hi is None or lo is None:  # epsilon ~ 1/sigma: step just past the root
            x, log_e = lo if hi is None else hi
            gap = log_e - log_target
            x += math.copysign(max(abs(gap) + log_tol, step), gap)
            step *= 2
        else:
            width = hi[0] - lo[0]
            if math.isfinite(hi[1]) and lo[1] > hi[1]:
                x = lo[0] + width * (lo[1] - log_target) / (lo[1] - hi[1])
            else:
                x = lo[0] + width / 2
            # Overshoot slightly so the next point lands on the stale side, then keep at least
            # a tenth of the bracket from either end (guarantees geometric shrinking).
            x += -log_tol / 2 if last_side == "hi" else log_tol / 2
            x = min(max(x, lo[0] + 0.1 * width), hi[0] - 0.1 * width)
    raise RuntimeError(f"noise calibration did not converge for epsilon={target}")
