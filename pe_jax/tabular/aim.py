"""AIM (McKenna, Mullins, Sheldon, Miklau 2022, "AIM: An Adaptive and Iterative Mechanism for
Differentially Private Synthetic Data"): workload-driven, adaptive marginal selection.

The workload is a list of attribute sets whose marginals should be accurate (default: every
pair); the candidates are all its subsets, each weighted by how much it overlaps the workload.
With a total zCDP budget ``rho`` and at most ``rounds`` rounds (default ``16 A``):

1. measure every 1-way marginal with count noise ``sigma = sqrt(rounds / (2 * 0.9 * rho))``
   (one release, ``A / (2 sigma^2)``), and fit a Private-PGM model;
2. each round: (a) keep the candidates whose addition leaves the model's junction tree within
   ``max_model_size`` MB scaled by the share of budget spent so far (or that the model already
   holds); (b) pick one by the exponential mechanism at epsilon
   ``sqrt(8 * 0.1 * rho / rounds)`` with score ``weight * (||x - model||_1 - sqrt(2/pi) *
   sigma * cells)`` -- its error beyond the noise that measuring it would add -- whose
   sensitivity is the largest weight; (c) measure the chosen marginal with noise ``sigma`` and
   refit the model (warm start); (d) if the model's marginal moved by less than the expected
   noise, halve ``sigma`` and double epsilon (the budget grows where it pays);
3. when the budget left cannot pay two more rounds, one last round spends exactly what is left.

Noise goes through ``pe_jax.privacy.release`` and choices through
``pe_jax.privacy.exponential``, each checked against and recorded in the ledger once; the run
is refused before it starts if the ledger cannot take ``rho``. Scores read the true marginals
of the private table, but only the exponential mechanism's choice leaves.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from pe_jax._checks import check_int
from pe_jax.privacy import PrivacyLedger
from pe_jax.privacy.exponential import exponential_mechanism
from pe_jax.tabular import budget, pgm
from pe_jax.tabular.data import Table
from pe_jax.tabular.marginals import marginal_counts, measure

_MEASURE_SHARE = 0.9  # of each round's rho: the measurement; the rest picks the marginal


@dataclasses.dataclass(frozen=True)
class AIMResult:
    """AIM's synthetic ``rows``, the ``measured`` cliques in order, and the ``rho`` spent."""

    rows: np.ndarray
    measured: tuple[tuple[str, ...], ...]
    rho: float


def all_pairs(table: Table) -> list[tuple[str, ...]]:
    """The default workload: every 2-way marginal."""
    return list(itertools.combinations(table.attributes, 2))


def candidates(workload: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], float]:
    """Every non-empty subset of a workload set, weighted by its total overlap with the
    workload (``sum_w |clique & w|``), as AIM compiles its workload."""
    out: dict[tuple[str, ...], float] = {}
    for query in workload:
        for size in range(1, len(query) + 1):
            for clique in itertools.combinations(query, size):
                out.setdefault(clique, float(sum(len(set(clique) & set(w)) for w in workload)))
    return out


def aim(table: Table, *, epsilon: float, delta: float, ledger: PrivacyLedger,
        workload: Sequence[tuple[str, ...]] | None = None, rounds: int | None = None,
        max_model_size: float = 80.0, rng: np.random.Generator | None = None,
        rows: int | None = None, iters: int = 1000, final_iters: int = 2500,
        seed: int = 0, log: Callable[[str], None] | None = None) -> AIMResult:
    """Runs AIM on ``table`` at (``epsilon``, ``delta``), recording every release in ``ledger``.

    ``workload``: attribute sets (default ``all_pairs``); ``rounds``: the planned number of
    rounds, at least A, which sets the first rounds' budget (default ``16 A``);
    ``max_model_size``: the model's junction-tree size limit in MB; ``iters`` /
    ``final_iters``: mirror-descent steps per round and for the final model; ``rng``,
    ``rows``, ``seed``: as in ``mst``; ``log``: called with one line per round (runs take
    minutes to tens of minutes on a table like Adult). Bad
    settings and a ledger that cannot take the run are refused before any release.
    """
    names = table.attributes
    workload = all_pairs(table) if workload is None else [tuple(w) for w in workload]
    for query in workload:
        if not query or len(set(query)) != len(query) or not set(query) <= set(names):
            raise ValueError(f"workload must hold sets of distinct attributes of the table "
                             f"{list(names)}; got {query!r}")
    if not workload:
        raise ValueError("workload must hold at least one attribute set")
    # The 1-way marginals take A / rounds of the measuring share: at least one round must
    # remain.
    rounds = 16 * len(names) if rounds is None else check_int("rounds", rounds, len(names))
    if not 0 < max_model_size < math.inf:
        raise ValueError(f"max_model_size must be finite and > 0 (MB); got {max_model_size!r}")
    iters, final_iters = check_int("iters", iters, 1), check_int("final_iters", final_iters, 1)
    rho = budget.rho_for(epsilon, delta)
    budget.check_rho(ledger, rho, rng)

    weights = candidates(workload)
    oneway = [(a,) for a in names]
    index = {a: i for i, a in enumerate(names)}
    sigma = math.sqrt(rounds / (2 * _MEASURE_SHARE * rho))
    pick_epsilon = math.sqrt(8 * (1 - _MEASURE_SHARE) * rho / rounds)
    measurements = measure(table, oneway, noise_multiplier=sigma / math.sqrt(len(oneway)),
                           ledger=ledger, rng=rng)
    used = len(oneway) / (2 * sigma ** 2)
    model = pgm.estimate(table.domain, measurements, iters=iters)
    measured = list(oneway)
    last = False
    while not last:
        if rho - used < 2 * (1 / (2 * sigma ** 2) + pick_epsilon ** 2 / 8):
            remaining = rho - used  # one last round spends exactly what is left
            sigma = math.sqrt(1 / (2 * _MEASURE_SHARE * remaining))
            pick_epsilon = math.sqrt(8 * (1 - _MEASURE_SHARE) * remaining)
            last = True
        used += 1 / (2 * sigma ** 2) + pick_epsilon ** 2 / 8
        allowed = _small_enough(model, table.domain, weights, max_model_size * used / rho)
        scores, sensitivity = [], max(weights[c] for c in allowed)
        for clique in allowed:
            exact = marginal_counts(table.codes, table.sizes, [index[a] for a in clique])
            error = np.abs(exact - pgm.project(model, clique)).sum()
            bias = math.sqrt(2 / math.pi) * sigma * exact.size
            scores.append(weights[clique] * (error - bias))
        clique = allowed[exponential_mechanism(scores, epsilon=pick_epsilon,
                                               sensitivity=sensitivity, ledger=ledger,
                                               rng=rng)]
        measurements += measure(table, [clique], noise_multiplier=sigma, ledger=ledger, rng=rng)
        measured.append(clique)
        if log is not None:
            log(f"AIM round {len(measured) - len(oneway)}: measured {clique}, sigma "
                f"{sigma:.4g}, rho spent {used / rho:.1%} of {rho:.4g}")
        before = pgm.project(model, clique)
        model = pgm.estimate(table.domain, measurements, iters=iters, warm_start=model)
        moved = np.abs(pgm.project(model, clique) - before).sum()
        if moved <= sigma * math.sqrt(2 / math.pi) * before.size:
            sigma, pick_epsilon = sigma / 2, pick_epsilon * 2
    model = pgm.estimate(table.domain, measurements, iters=final_iters, warm_start=model)
    return AIMResult(pgm.sample_rows(model, table.domain, rows, seed), tuple(measured), used)


def _small_enough(model, domain: dict[str, int], weights: dict[tuple[str, ...], float],
                  limit_mb: float) -> list[tuple[str, ...]]:
    """The candidates the model already covers, or whose addition keeps its junction tree
    within ``limit_mb`` megabytes."""
    from mbi.clique_utils import downward_closure
    from mbi.junction_tree import hypothetical_model_size

    mbi_domain = pgm.mbi_domain(domain)
    held = [tuple(c) for c in model.cliques]
    covered = set(downward_closure(held))
    return [c for c in weights
            if c in covered or hypothetical_model_size(mbi_domain, held + [c]) <= limit_mb]
