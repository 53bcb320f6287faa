"""How the benchmarks measure: median wall time after a warm-up, and peak RSS growth."""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int, *, warm_up: bool = True) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one untimed call (which
    compiles); JAX results are waited for, so asynchronous dispatch is timed in full."""
    import jax

    if warm_up:
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rss_mb() -> float:
    """This process's resident memory in MB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_growth_mb(fn: Callable[[], object]) -> float:
    """Peak RSS above the starting RSS while ``fn`` runs (sampled every 5 ms)."""
    gc.collect()
    start, peak, done = rss_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.005)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(peak[0], rss_mb(), start) - start
