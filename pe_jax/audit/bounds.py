"""Statistical lower bounds on privacy from membership guesses.

Three bounds, each valid with probability at least the stated confidence whatever the
mechanism, so a bound above the claimed guarantee is evidence of a violation:

* ``gdp_mu_lower_bound``: a threshold test on a score separates runs on D from runs on its
  neighbour D'. Its false-positive and false-negative rates are bounded above with
  Clopper--Pearson intervals (``confidence`` each); a mu-GDP mechanism admits no test with
  ``FNR < Phi(Phi^-1(1 - FPR) - mu)``, i.e. every test has
  ``mu >= Phi^-1(1 - FPR) - Phi^-1(FNR)``, which gives the bound.
* ``epsilon_lower_bound``: the same rates against (epsilon, delta)-DP, which requires
  ``FPR + e^epsilon FNR >= 1 - delta`` and the same with the roles swapped, so
  ``epsilon >= log((1 - delta - FNR) / FPR)`` in both directions.
* ``one_run_epsilon_lower_bound``: Steinke, Nasr and Jagielski 2023 ("Privacy auditing with
  one (1) training run"), Theorem 5.2: m canaries, each included independently with
  probability 1/2; of r guesses, v are right. Under (epsilon, delta)-DP,
  ``P[V >= v] <= P[Bin(r, q) >= v] + 2 m delta max_i P[v - i <= Bin(r, q) < v] / i`` with
  ``q = e^epsilon / (1 + e^epsilon)``; the bound is the largest epsilon whose p-value is below
  ``1 - confidence``.
* ``one_run_mu_lower_bound``: the same one-run game against mu-GDP (after Mahloujifar, Melis
  and Chaudhuri 2024, "Auditing f-differential privacy in one run"), see below. Much tighter
  than the epsilon bound for Gaussian noise, whose likelihood ratio is unbounded.

The thresholds are chosen on one half of the runs and the bounds evaluated on the other
(``split_threshold_bound``), so picking the best threshold does not inflate them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special, stats

__all__ = [
    "clopper_pearson_upper",
    "gdp_mu_lower_bound",
    "epsilon_lower_bound",
    "mu_and_epsilon_lower",
    "split_threshold_bound",
    "one_run_p_value",
    "one_run_epsilon_lower_bound",
    "one_run_gdp_least_mass",
    "one_run_mu_lower_bound",
]


def clopper_pearson_upper(errors: np.ndarray, trials: int, confidence: float) -> np.ndarray:
    """One-sided Clopper--Pearson upper bound on an error rate from ``errors`` of ``trials``."""
    errors = np.asarray(errors, np.float64)
    upper = stats.beta.ppf(confidence, errors + 1, np.maximum(trials - errors, 1e-300))
    return np.where(errors >= trials, 1.0, upper)


def gdp_mu_lower_bound(fpr_upper: np.ndarray, fnr_upper: np.ndarray) -> np.ndarray:
    """Largest mu that the rate bounds rule out: ``Phi^-1(1 - FPR) - Phi^-1(FNR)``, >= 0."""
    fpr, fnr = np.asarray(fpr_upper, np.float64), np.asarray(fnr_upper, np.float64)
    return np.maximum(special.ndtri(1 - fpr) - special.ndtri(fnr), 0.0)


def epsilon_lower_bound(fpr_upper: np.ndarray, fnr_upper: np.ndarray,
                        delta: float) -> np.ndarray:
    """Largest epsilon the rate bounds rule out at ``delta``, both directions, >= 0."""
    fpr, fnr = np.asarray(fpr_upper, np.float64), np.asarray(fnr_upper, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        forward = np.log(np.maximum(1 - delta - fnr, 0) / fpr)
        backward = np.log(np.maximum(1 - delta - fpr, 0) / fnr)
    return np.maximum(np.nan_to_num(np.maximum(forward, backward), neginf=0.0), 0.0)


def _rate_bounds(null: np.ndarray, alt: np.ndarray, thresholds: np.ndarray,
                 confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Upper bounds on FPR = P(null >= t) and FNR = P(alt < t) for each threshold t."""
    null, alt = np.sort(null), np.sort(alt)
    false_pos = len(null) - np.searchsorted(null, thresholds, side="left")
    false_neg = np.searchsorted(alt, thresholds, side="left")
    return (clopper_pearson_upper(false_pos, len(null), confidence),
            clopper_pearson_upper(false_neg, len(alt), confidence))


def split_threshold_bound(null: np.ndarray, alt: np.ndarray, bound, *, confidence: float,
                          tail: float = 0.005, max_thresholds: int = 512) -> tuple[float, float]:
    """``bound(fpr_upper, fnr_upper)`` of the threshold test "score >= t means D'".

    ``null`` holds scores of runs on D, ``alt`` of runs on D'. The threshold maximising the
    bound on the first half of each is evaluated on the second half; returns
    ``(bound, threshold)``. Candidates are the pooled first-half scores between their
    ``tail`` and ``1 - tail`` quantiles: a threshold further out rests on a handful of
    first-half errors and is chosen for its luck, which the second half then takes back.
    """
    null, alt = np.asarray(null, np.float64), np.asarray(alt, np.float64)
    if null.ndim != 1 or alt.ndim != 1 or min(len(null), len(alt)) < 4:
        raise ValueError("null and alt must be 1-D with at least 4 scores each")
    n0, n1 = len(null) // 2, len(alt) // 2
    pooled = np.concatenate([null[:n0], alt[:n1]])
    lo, hi = np.quantile(pooled, [tail, 1 - tail], method="inverted_cdf")
    pooled = np.unique(pooled[(pooled >= lo) & (pooled <= hi)])
    if len(pooled) > max_thresholds:
        pooled = np.unique(np.quantile(pooled, np.linspace(0, 1, max_thresholds),
                                       method="inverted_cdf"))
    candidates = pooled
    chosen = candidates[np.argmax(bound(*_rate_bounds(null[:n0], alt[:n1], candidates,
                                                      confidence)))]
    fpr, fnr = _rate_bounds(null[n0:], alt[n1:], np.array([chosen]), confidence)
    return float(bound(fpr, fnr)[0]), float(chosen)


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P-value of ``v`` correct out of ``r`` guesses on ``m`` canaries under (epsilon, delta)-DP."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1.0 / (1.0 + math.exp(-epsilon))
    tail = stats.binom.sf(v - 1, r, q)
    if delta == 0 or v == 0:
        return min(float(tail), 1.0)
    below = np.cumsum(stats.binom.pmf(v - np.arange(1, v + 1), r, q))  # P[v - i <= B < v]
    return min(float(tail + 2 * m * delta * np.max(below / np.arange(1, v + 1))), 1.0)


def one_run_epsilon_lower_bound(m: int, r: int, v: int, delta: float,
                                confidence: float) -> float:
    """Largest epsilon at which ``v`` of ``r`` correct guesses has p-value < 1 - confidence."""
    alpha = 1.0 - confidence
    if one_run_p_value(m, r, v, 0.0, delta) >= alpha:
        return 0.0
    hi = 1.0
    while one_run_p_value(m, r, v, hi, delta) < alpha:
        hi *= 2.0
        if hi > 1e3:
            return math.inf
    return float(optimize.brentq(lambda e: one_run_p_value(m, r, v, e, delta) - alpha, 0.0, hi,
                                 xtol=1e-6))


def one_run_gdp_least_mass(m: int, r: int, v: int, tail: float,
                           mu: np.ndarray) -> np.ndarray:
    """The least total probability that a mu-GDP mechanism needs for ``P[V >= v] = tail``.

    V counts the right guesses among ``r`` made on ``m`` canaries, each included with
    probability 1/2; p_j = P[V = j]. For any level l, guessing canary I (uniform) only when
    the other guesses have at least l - 1 right is a test of I's membership: its right-guess
    probability is ``sum_{j>=l} j p_j / m`` and its wrong-guess probability
    ``sum_{j>=l-1} (r - j) p_j / m``, and mu-GDP bounds the first by
    ``h(x) = Phi(Phi^-1(x) + mu)`` of the second (averaged over canaries, by concavity of h).
    Given ``p_v = tail`` (mass above v only tightens these), the least p_{l-1} that meets level
    l's bound is found from l = v down to 1; moving any more mass from level l - 1 down to
    l - 2 loosens every lower level's bound, so this greedy choice needs the least total. A
    total above 1 means no mu-GDP mechanism reaches ``P[V >= v] >= tail``. Vectorised over
    ``mu``.
    """
    mu = np.asarray(mu, np.float64)
    right = np.full(mu.shape, v * tail)      # m * (right-guess mass at the current level)
    wrong = np.full(mu.shape, (r - v) * tail)
    total = np.full(mu.shape, float(tail))
    for level in range(v, 0, -1):
        needed = m * special.ndtr(special.ndtri(np.minimum(right / m, 1.0)) - mu) - wrong
        mass = np.maximum(needed, 0.0) / (r - level + 1)
        total += mass
        right += (level - 1) * mass
        wrong += (r - level + 1) * mass
    return total


def one_run_mu_lower_bound(m: int, r: int, v: int, confidence: float) -> float:
    """Largest mu at which ``v`` of ``r`` right guesses on ``m`` canaries has p-value below
    ``1 - confidence`` under mu-GDP (``one_run_gdp_least_mass``); 0 when none has, to 1e-3."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    alpha = 1.0 - confidence

    def rejected(mu: np.ndarray) -> np.ndarray:
        return one_run_gdp_least_mass(m, r, v, alpha, mu) > 1.0

    if v == 0 or not rejected(np.zeros(1))[0]:
        return 0.0
    lo, hi = 0.0, 1.0
    while rejected(np.array([hi]))[0]:
        lo, hi = hi, 2.0 * hi
        if hi > 64.0:
            return math.inf
    while hi - lo > 1e-3:
        grid = np.linspace(lo, hi, 17)
        last = int(np.flatnonzero(rejected(grid)).max())
        lo, hi = grid[last], grid[last + 1]
    return float(lo)


def mu_and_epsilon_lower(null: np.ndarray, alt: np.ndarray, *, delta: float,
                         confidence: float) -> tuple[float, float]:
    """Lower bounds on mu (GDP) and on epsilon at ``delta`` from one audit's scores.

    A Gaussian shift gives the same mu at every threshold, so the mu test stays central,
    where the rates are estimated best; epsilon needs the tails.
    """
    mu_lower, _ = split_threshold_bound(null, alt, gdp_mu_lower_bound, confidence=confidence,
                                        tail=0.05)
    eps_lower, _ = split_threshold_bound(
        null, alt, lambda fpr, fnr: epsilon_lower_bound(fpr, fnr, delta),
        confidence=confidence, tail=0.005)
    return mu_lower, eps_lower
