"""MST, AIM, tabular PE and a bootstrap on Adult: marginal TVD, downstream accuracy, time.

Private data: Adult's fixed train split (``pe_jax.tabular.load_adult_split``, 39,043 rows);
the test split (9,799 rows) is only used to measure. For each method and epsilon (delta
1e-9, CSPRNG noise unless ``--noise-seed``) it prints one JSON line: mean TVD over all 2-way
and 3-way marginals against the train rows and against the test rows, the accuracy on the
test rows of a logistic regression of income trained on the synthetic rows, the epsilon the
ledger composed and the method's wall time (measuring excluded). ``bootstrap`` resamples the
train rows with replacement (the sampling floor, not private); ``real`` is the train rows
themselves (real -> real accuracy); ``marginals`` draws ``--pe-samples`` rows attribute by
attribute from PE's measured prior (noisy 1-way marginals) spending the whole budget: what PE
starts from, without its votes.

    python experiments/tabular_baselines_adult.py --methods mst aim --epsilons 1 10
"""

import argparse
import json
import sys
import time

import numpy as np

from pe_jax import privacy, tabular
from pe_jax.configs.adult import get_config

TARGET = "income>50K"
# Adult's binned numeric attributes: their codes are ordered (public knowledge of the schema).
NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")


def run(method: str, epsilon: float, args, train: tabular.Table) -> tuple[np.ndarray, dict]:
    """Synthetic rows of ``method`` at ``epsilon``, and what its run reports."""
    from pe_jax.tabular.aim import aim
    from pe_jax.tabular.mst import mst

    rng = None if args.noise_seed is None else np.random.default_rng(args.noise_seed)
    ledger = privacy.PrivacyLedger(args.delta, epsilon_budget=epsilon)
    if method == "mst":
        result = mst(train, epsilon=epsilon, delta=args.delta, ledger=ledger, rng=rng,
                     iters=args.mst_iters, seed=args.seed)
        return result.rows, {"ledger_epsilon": ledger.epsilon_spent(), "rho": result.rho,
                             "releases": len(ledger)}
    if method == "aim":
        result = aim(train, epsilon=epsilon, delta=args.delta, ledger=ledger, rng=rng,
                     rounds=args.aim_rounds, iters=args.aim_iters,
                     final_iters=args.aim_final_iters, seed=args.seed,
                     log=lambda line: print(line, file=sys.stderr, flush=True))
        return result.rows, {"ledger_epsilon": ledger.epsilon_spent(), "rho": result.rho,
                             "releases": len(ledger), "measured": len(result.measured)}
    if method == "pe":
        from pe_jax.tabular.pe import run_pe

        rows = run_pe(train, epsilon=epsilon, delta=args.delta, ledger=ledger, rng=rng,
                      seed=args.seed, ordinal=tuple(args.pe_ordinal),
                      iterations=args.pe_iterations, samples=args.pe_samples,
                      degree_start=args.pe_degree_start, degree_end=args.pe_degree_end,
                      marginal_share=args.pe_marginal_share)
        return rows, {"ledger_epsilon": ledger.epsilon_spent(), "releases": len(ledger)}
    if method == "marginals":  # PE's measured prior alone, with the whole budget
        import jax

        from pe_jax.tabular.pe import measured_prior

        sigma = privacy.noise_multiplier(epsilon, args.delta, 1, k=len(train.domain))
        prior = measured_prior(train, noise_multiplier=sigma, ledger=ledger, rng=rng)
        rows = tabular.TabularGenerator(train.domain, prior=prior).random(
            jax.random.key(args.seed), args.pe_samples, None)
        return np.asarray(rows), {"ledger_epsilon": ledger.epsilon_spent(),
                                  "releases": len(ledger)}
    pick = np.random.default_rng(args.seed).integers(0, len(train), len(train))
    return (train.codes[pick] if method == "bootstrap" else train.codes), {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["bootstrap", "mst", "aim", "pe"],
                        choices=["real", "bootstrap", "marginals", "mst", "aim", "pe"])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--delta", type=float, default=1e-9)
    parser.add_argument("--seed", type=int, default=0, help="public randomness")
    parser.add_argument("--noise-seed", type=int, default=None,
                        help="seeded research noise (NOT DP); default: CSPRNG noise")
    parser.add_argument("--pe-ordinal", nargs="*", default=[], metavar="ATTRIBUTE",
                        help="PE: attributes with ordered codes (nearby mutation, thermometer "
                             "embedding), e.g. " + " ".join(NUMERIC))
    pe = get_config().pe  # the defaults of `pe-jax tabular --method pe`
    parser.add_argument("--pe-iterations", type=int, default=pe.iterations)
    parser.add_argument("--pe-samples", type=int, default=pe.samples)
    parser.add_argument("--pe-degree-start", type=float, default=pe.degree_start)
    parser.add_argument("--pe-degree-end", type=float, default=pe.degree_end)
    parser.add_argument("--pe-marginal-share", type=float, default=pe.marginal_share,
                        help="PE: budget share of the measured 1-way marginal prior (0: uniform)")
    parser.add_argument("--mst-iters", type=int, default=3000)
    parser.add_argument("--aim-rounds", type=int, default=None)
    parser.add_argument("--aim-iters", type=int, default=1000)
    parser.add_argument("--aim-final-iters", type=int, default=2500)
    args = parser.parse_args()

    train, test = tabular.load_adult_split()
    domain = train.domain
    for method in args.methods:
        for epsilon in (args.epsilons if method in ("marginals", "mst", "aim", "pe")
                        else [None]):
            start = time.perf_counter()
            rows, info = run(method, epsilon, args, train)
            seconds = time.perf_counter() - start
            print(json.dumps({
                "method": method, "epsilon": epsilon, "delta": args.delta,
                "rows": len(rows), "seconds": round(seconds, 1),
                "tvd2_train": tabular.mean_marginal_tvd(train, rows, domain),
                "tvd3_train": tabular.mean_marginal_tvd(train, rows, domain, way=3),
                "tvd2_test": tabular.mean_marginal_tvd(test, rows, domain),
                "tvd3_test": tabular.mean_marginal_tvd(test, rows, domain, way=3),
                "accuracy": tabular.downstream_accuracy(rows, test, domain, TARGET),
                **info}), flush=True)


if __name__ == "__main__":
    main()
