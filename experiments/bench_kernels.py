"""Time and recall of every registered vote kernel (pe_jax.voting.KERNELS), side by side.

    .venv/bin/python experiments/bench_kernels.py [--quick]

For a few shapes (N_priv, N_syn, D, k) of clustered random data, each kernel that supports
(l2, k) is run through ``nn_histogram`` (compiled once, then the median of ``--repeats``
timed calls; screen off for "exact" so the float32 path is timed) and compared with
``"exact"``:

* recall: the mean over private rows of |kernel's k neighbours & exact's k neighbours| / k,
  from each kernel's own per-block search on the same centred rows (block kernels), or 1 for
  "exact" itself;
* votes: the share of the exact histogram's votes the kernel's histogram also casts
  (sum of min(h, h_exact) / sum(h_exact)).

Machines are noisy: compare the ratio column of one run, not absolute times across runs.
The platform and CPU model are printed with the table.  On CPU, ``jax.lax.approx_min_k``
lowers to XLA's exact fallback (recall 1 by construction; its real approximation runs on
TPU only) and the Pallas prototype runs in interpret mode (a correctness vehicle, not a
speed claim).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from machine import cpu_name

from pe_jax.voting import KERNELS, METRICS, nn_histogram
from pe_jax.voting.kernels import _driver
from pe_jax.voting.synthetic import _centred

SHAPES = [(4096, 2048, 64, 1), (4096, 2048, 64, 5), (8192, 8192, 128, 1), (8192, 8192, 128, 5)]
QUICK = [(1024, 1024, 32, 1), (1024, 1024, 32, 5)]


def data(n_priv, n_syn, dim, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, dim))
    syn = centres[rng.integers(64, size=n_syn)] + 0.5 * rng.normal(size=(n_syn, dim))
    priv = centres[rng.integers(64, size=n_priv)] + 0.5 * rng.normal(size=(n_priv, dim))
    return priv.astype(np.float32), syn.astype(np.float32)


def timed(fn, repeats):
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def neighbour_recall(kernel, private, synthetic, k, rows=1024):
    """Per-row recall of a block kernel's search against the exact float32 top-k."""
    if kernel.name == "exact":
        return 1.0
    if not (isinstance(kernel.counts, partial) and kernel.counts.func is _driver):
        return float("nan")  # not a block kernel: no per-row search to compare
    nearest = kernel.counts.args[0]
    score_fn = METRICS["l2"]
    valid = jnp.ones((1, synthetic.shape[0]), bool)
    y, means = _centred(score_fn, jnp.asarray(synthetic)[None], valid)
    x = jnp.asarray(private[:rows]) - means[0]
    got = np.asarray(jax.jit(lambda x, y: nearest(x, y, valid[0], k=k, score_fn=score_fn))(
        x, y[0]))
    z, offset = score_fn.prepare(y[0])
    exact = np.asarray(jax.lax.top_k(-score_fn.scores(x, z, offset), k)[1])
    hits = [len(set(a) & set(b)) for a, b in zip(got.tolist(), exact.tolist())]
    return float(np.mean(hits)) / k


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two small shapes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, platform {jax.default_backend()}, devices "
          f"{jax.device_count()}, CPU {cpu_name()}")
    print(f"kernels: {', '.join(f'{n} ({k.description})' for n, k in KERNELS.items())}")
    header = (f"{'N_priv':>7} {'N_syn':>6} {'D':>4} {'k':>2}  {'kernel':<10} {'time s':>8} "
              f"{'x exact':>8} {'recall':>7} {'votes':>6}")
    print(header)
    print("-" * len(header))
    for n_priv, n_syn, dim, k in QUICK if args.quick else SHAPES:
        private, synthetic = data(n_priv, n_syn, dim)
        base_time = None
        base_hist = None
        for name, kernel in KERNELS.items():
            if (kernel.metrics and "l2" not in kernel.metrics) or (kernel.max_k or k) < k:
                continue
            screen = False if kernel.screens else None
            run = lambda: nn_histogram(private, synthetic, k=k, kernel=name,  # noqa: E731
                                       screen=screen)
            seconds = timed(run, args.repeats)
            hist = np.asarray(run()).astype(np.int64)
            if name == "exact":
                base_time, base_hist = seconds, hist
            votes = np.minimum(hist, base_hist).sum() / base_hist.sum()
            recall = neighbour_recall(kernel, private, synthetic, k)
            print(f"{n_priv:>7} {n_syn:>6} {dim:>4} {k:>2}  {name:<10} {seconds:>8.3f} "
                  f"{seconds / base_time:>8.2f} {recall:>7.4f} {votes:>6.4f}")


if __name__ == "__main__":
    main()
