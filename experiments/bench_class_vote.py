"""Class-conditional voting in one kernel call against one call per class.

A PE run votes every class at once: private rows are laid out in single-class blocks once
(``voting.prepare_private``) and ``voting.vote`` scores each block against its own class's
synthetic rows, so the kernel compiles once whatever the class sizes.  The alternative is
one ``nn_histogram`` call per class (what ``evolve.run`` did before), which compiles one
kernel per distinct private class size.  Both give the same counts (checked here); this
script times them side by side, steady state (after compilation), interleaved.

    .venv/bin/python experiments/bench_class_vote.py [--quick] [--repeats 3]

Cases: scikit-learn-digits-sized (10 classes, 1,348 x 1,000 x 64) and a 10-class
60k x 60k x 256 case (6k private and 6k synthetic rows per class).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from machine import cpu_name

from pe_jax import voting


def _case(rng: np.random.Generator, n_priv: int, n_syn: int, dim: int, classes: int):
    private = jnp.asarray(rng.standard_normal((n_priv, dim)), jnp.float32)
    synthetic = jnp.asarray(rng.standard_normal((n_syn, dim)), jnp.float32)
    private_labels = rng.integers(0, classes, n_priv).astype(np.int32)
    synthetic_labels = np.repeat(np.arange(classes, dtype=np.int32), n_syn // classes)
    return private, synthetic, private_labels, synthetic_labels


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the digits-sized case")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cases = [("digits-sized", 1348, 1000, 64, 10)]
    if not args.quick:
        cases.append(("60k x 60k x 256", 60_000, 60_000, 256, 10))
    print(f"CPU: {cpu_name()}, backend {jax.default_backend()}")
    print(f"{'case':>16} {'one call (s)':>13} {'per class (s)':>14} {'one / per class':>16}")
    rng = np.random.default_rng(0)
    for name, n_priv, n_syn, dim, classes in cases:
        private, synthetic, p_labels, s_labels = _case(rng, n_priv, n_syn, dim, classes)
        blocks = voting.prepare_private(private, p_labels, num_classes=classes)
        table = voting.class_index(s_labels, classes)
        rows = [np.flatnonzero(p_labels == c) for c in range(classes)]
        columns = [np.flatnonzero(s_labels == c) for c in range(classes)]

        def one_call():
            return voting.vote(blocks, synthetic, table)

        def per_class():
            return [voting.nn_histogram(private[r], synthetic[c]) for r, c in zip(rows, columns)]

        together = np.asarray(one_call())
        separate = np.zeros(n_syn, np.int64)
        for c, counts in zip(columns, per_class()):
            separate[c] = np.asarray(counts)
        np.testing.assert_array_equal(together, separate)
        times = {"one": [], "per": []}
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            times["one"].append(_seconds(one_call))
            times["per"].append(_seconds(per_class))
        one, per = (statistics.median(times[key]) for key in ("one", "per"))
        print(f"{name:>16} {one:>13.3f} {per:>14.3f} {one / per:>16.2f}")


if __name__ == "__main__":
    main()
