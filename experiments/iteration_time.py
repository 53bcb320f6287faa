"""Steady-state time of one PE iteration of the default digits run (metrics off).

Uses only ``evolve.run``'s long-standing signature, so the same script times any checkout:
run it once per checkout, alternating, and compare the medians (a ratio measured side by
side on one machine; these machines are noisy)::

    .venv/bin/python experiments/iteration_time.py [--iterations 12]
    PYTHONPATH=/path/to/other/checkout .venv/bin/python experiments/iteration_time.py

Prints the median wall time between consecutive iteration callbacks from the third
iteration on (the first ones include compilation), and the time to the first callback.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from pe_jax import embeddings, evolve, privacy
from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.data import load_sklearn_digits

PRIVATE_ROWS = 1335  # the default run's private set size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=12)
    args = parser.parse_args()
    digits = load_sklearn_digits()
    images, labels = digits.images[:PRIVATE_ROWS], digits.labels[:PRIVATE_ROWS]
    T = args.iterations
    config = evolve.PEConfig(
        iterations=T, noise_multiplier=privacy.noise_multiplier(4.0, 1e-5, T),
        samples_per_class=(100,) * 10,
        degrees=evolve.degree_schedule(0.6, 0.15, T, "geometric"), threshold=0.0)
    stamps = []
    start = time.perf_counter()
    evolve.run(jax.random.key(0), config, generator=GlyphGenerator(),
               embedder=embeddings.PixelEmbedder(), private_images=images,
               private_labels=labels, ledger=privacy.PrivacyLedger(1e-5, epsilon_budget=4.0),
               callbacks=[lambda result: stamps.append(time.perf_counter())], progress=False)
    steady = statistics.median(np.diff(stamps[1:]))
    print(f"first iteration (with compilation) {stamps[0] - start:.2f} s, "
          f"steady-state iteration {steady * 1e3:.1f} ms (median of {len(stamps) - 2})")


if __name__ == "__main__":
    main()
