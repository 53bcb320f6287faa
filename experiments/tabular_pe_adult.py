"""Tabular PE on the discretised Adult table: 2-way marginal TVD at epsilon 1 and 10.

Private data: Adult's fixed train split (``pe_jax.tabular.load_adult_split``, ~39k rows). The
generator draws every attribute uniformly over its public domain and mutates a decaying
fraction of the cells; rows vote by (Hamming) nearest neighbour in one-hot space; the vote,
release and ledger are pe_jax's own (discrete Gaussian, CSPRNG noise unless ``--seed``).

Prints the mean TVD over all 2-way marginals against the train rows (and the test rows), and
over all 3-way marginals against the train rows, for: the initial random population (public
prior only, what PE starts from), the PE result at each epsilon, and bootstrap resamples of
the train rows (of the population's size: the sampling floor; and of the train set's size).

    python experiments/tabular_pe_adult.py [--samples 4000] [--iterations 40] [--seed 0]
"""

import argparse
import time

import jax
import numpy as np

from pe_jax import evolve, privacy, tabular


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--delta", type=float, default=1e-9)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--samples", type=int, default=4000, help="synthetic population N")
    parser.add_argument("--degree-start", type=float, default=0.3)
    parser.add_argument("--degree-end", type=float, default=0.02)
    parser.add_argument("--threshold", type=float, default=0.0)
    parser.add_argument("--keep-selected", action="store_true",
                        help="keep the selected parents next to one variation each")
    parser.add_argument("--seed", type=int, default=None,
                        help="seeded research noise (NOT DP); default: CSPRNG noise")
    args = parser.parse_args()

    train, test = tabular.load_adult_split()
    domain = train.domain
    print(f"Adult: {len(train)} train rows (private), {len(test)} test rows, "
          f"{len(domain)} attributes; N = {args.samples}, T = {args.iterations}, "
          f"degrees {args.degree_start} -> {args.degree_end}, delta {args.delta:g}")
    generator = tabular.TabularGenerator(domain)
    embedder = tabular.OneHotEmbedder(domain)

    def tvd(rows) -> str:
        return (f"2-way: train {tabular.mean_marginal_tvd(train, rows, domain):.4f}  "
                f"test {tabular.mean_marginal_tvd(test, rows, domain):.4f}; 3-way: train "
                f"{tabular.mean_marginal_tvd(train, rows, domain, way=3):.4f}")

    rng = np.random.default_rng(0)
    boot = train.codes[rng.integers(0, len(train), args.samples)]
    print(f"bootstrap of train, {args.samples} rows: {tvd(boot)}")
    full = train.codes[rng.integers(0, len(train), len(train))]
    print(f"bootstrap of train, {len(train)} rows: {tvd(full)}")
    initial = generator.random(jax.random.key(0), args.samples, None)
    print(f"initial random population:      {tvd(np.asarray(initial))}")

    degrees = evolve.degree_schedule(args.degree_start, args.degree_end, args.iterations)
    for epsilon in args.epsilons:
        sigma = privacy.noise_multiplier(epsilon, args.delta, args.iterations)
        config = evolve.PEConfig(iterations=args.iterations, noise_multiplier=sigma,
                                 samples_per_class=(args.samples,), degrees=degrees,
                                 threshold=args.threshold, keep_selected=args.keep_selected,
                                 image_range=tabular.image_range(domain))
        history, measuring = [], [0.0]

        def measure(result, history=history, measuring=measuring):
            begin = time.perf_counter()
            history.append(tabular.mean_marginal_tvd(train, np.asarray(result.samples),
                                                     domain))
            measuring[0] += time.perf_counter() - begin

        noise_rng = None if args.seed is None else np.random.default_rng(args.seed)
        start = time.perf_counter()
        result = evolve.run(jax.random.key(1), config, generator=generator, embedder=embedder,
                            private_images=tabular.as_images(train.codes),
                            private_labels=None, ledger=privacy.PrivacyLedger(args.delta),
                            callbacks=[measure], noise_rng=noise_rng, progress=False)
        wall = time.perf_counter() - start
        print(f"PE epsilon {epsilon:g} (sigma {sigma:.3f}, spent "
              f"{result.ledger.epsilon_spent():.3f}): {tvd(np.asarray(result.samples))}  "
              f"[PE {wall - measuring[0]:.1f} s + per-iteration TVD {measuring[0]:.1f} s]")
        print("  2-way train TVD by iteration: " + " ".join(f"{h:.3f}" for h in history))


if __name__ == "__main__":
    main()
