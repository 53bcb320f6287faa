"""Benchmark ``pe_jax.voting.nn_histogram`` against a matmul roofline, faiss and NumPy.

Run (full grid, about 10 minutes on 2 CPU cores; ``--quick`` for a small grid)::

    .venv/bin/python experiments/bench_voting.py [--quick] [--k 1] [--repeats 3] \
        [--shapes 40000x5000x512,...]

The header names the CPU (model and its bfloat16 flags) and what the default
``screen=None`` decided from the hardware (``pe_jax.voting.bf16_probe``: the probe's
float32 and screened block times, or ``PE_JAX_BF16_SCREEN`` if pinned).  For each
(N_priv, N_syn, D) the table shows, measured side by side in the same run (these
machines are shared and noisy, so the ratios are what count; the timed repeats of
ours, float32, screened, matmul and faiss take turns, and each time is their median):

* ``ours_s`` / ``GF/s``: wall time and achieved GFLOP/s of ``nn_histogram``
  (2 * N_priv * N_syn * D flops) at its defaults, after a warm-up call that
  compiles it;
* ``screen``: whether the default screens at this shape (``on``/``off``);
* ``f32_s`` and ``dflt_x``: ``nn_histogram(..., screen=False)`` (every block in
  float32) time, and that time over ours: what the default gains;
* ``forced_x``: ``screen=False`` time over ``screen=True`` time: what screening
  would gain here whatever the default (< 1: it would lose); the run first checks
  that all three give the same histogram;
* flags: ``SLOWER`` where the default screens and took more than ``--tolerance``
  longer than ``screen=False`` (the acceptance: no such shape; the run ends by
  listing them).  Where the default does not screen it runs the very compiled
  kernel ``screen=False`` runs, so it cannot be slower and ``dflt_x`` is timing
  noise around 1.00; ``missed`` marks such a shape where ``screen=True`` was more
  than ``--tolerance`` faster (a gain the default left, not a slowdown);
* ``mm_GF/s`` and ``vs_mm``: plain ``jnp.matmul`` (N_priv, D) x (D, N_syn) and
  our GFLOP/s over its GFLOP/s.  When the float32 output would exceed
  ``--mm-max-gb`` the matmul runs on a block of ``--mm-rows`` private rows
  (same D and N_syn), marked ``*`` in the ``mm`` column;
* ``faiss_x``: faiss ``IndexFlatL2`` (add synthetic, search private with the
  same k) time over ours (> 1 means we are faster); ``-`` if faiss is missing;
* ``numpy_x``: blocked NumPy brute force (matmul + argmin / argpartition) time
  over ours; for shapes with N_priv > ``--numpy-rows`` it runs on the first
  ``--numpy-rows`` rows and the time is scaled up linearly (marked ``*``);
* memory: ``temp_MB`` is the compiled kernel's ``memory_analysis()`` temp size
  (flat in N_priv); ``faiss_MB`` / ``numpy_MB`` the peak growth of the
  process RSS during one search / brute force (sampled every 5 ms; freed
  memory reused from an earlier step is not counted).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from machine import cpu_description
from measure import rss_growth_mb

from pe_jax import voting
from pe_jax.voting import bf16_probe
from pe_jax.voting.histogram import DEFAULT_TILES, _default_screen, _platform

FULL_GRID = [
    (10_000, 2_000, 64),
    (50_000, 5_000, 128),
    (60_000, 10_000, 256),
    (100_000, 10_000, 512),
    (200_000, 20_000, 512),
]
QUICK_GRID = [(4_000, 1_000, 64), (20_000, 4_000, 256)]


def _screen_decision() -> str:
    """What screen=None decides on this backend above the size threshold, and why."""
    pinned = os.environ.get(bf16_probe.ENV_VAR, "").strip().lower()
    device = jax.devices()[0]
    if pinned not in ("", "auto"):
        pays = bf16_probe.bf16_pays(device, DEFAULT_TILES[_platform(None)])
        return f"pinned by {bf16_probe.ENV_VAR}={pinned}: {'screens' if pays else 'never screens'}"
    p = bf16_probe.probe(device, DEFAULT_TILES[_platform(None)])
    return (f"probe on {device.device_kind}: float32 block {p.float32_s * 1e3:.2f} ms, screened "
            f"{p.bfloat16_s * 1e3:.2f} ms, ratio {p.float32_s / p.bfloat16_s:.2f} (needs >= "
            f"{bf16_probe.MIN_SPEEDUP}): {'screens' if p.pays else 'does not screen'} above the "
            f"size threshold; probe took {p.cost_s:.2f} s")


def _shape(text: str) -> tuple[int, int, int]:
    n_priv, n_syn, dim = (int(v.replace("k", "000")) for v in text.lower().split("x"))
    return n_priv, n_syn, dim


def _numpy_votes(private: np.ndarray, synthetic: np.ndarray, k: int,
                 block: int = 4096) -> np.ndarray:
    """Blocked brute-force L2 k-NN votes in NumPy (float32 matmul, like faiss)."""
    sq = np.einsum("ij,ij->i", synthetic, synthetic)
    hist = np.zeros(len(synthetic), np.int64)
    for lo in range(0, len(private), block):
        d = sq[None, :] - 2.0 * (private[lo : lo + block] @ synthetic.T)
        if k == 1:
            idx = np.argmin(d, axis=1)
        else:
            idx = np.argpartition(d, k - 1, axis=1)[:, :k].ravel()
        np.add.at(hist, idx, 1)
    return hist


def _temp_mb(private: jax.Array, synthetic: jax.Array, k: int) -> float:
    """Compiled temp memory of the per-iteration kernel at the default tiles (the private
    rows laid out once, as a PE run does)."""
    blocks = voting.prepare_private(private)
    lowered = jax.jit(lambda b, s: voting.vote(b, s, np.arange(len(s))[None], k=k)).lower(
        blocks, synthetic)
    return lowered.compile().memory_analysis().temp_size_in_bytes / 2**20


def _interleaved_medians(fns: dict, repeats: int) -> dict:
    """Median wall time of each function, the repeats taken in turn so that load
    changes on a shared machine hit every contender alike; each repeat starts one
    contender later, so none always runs right after the same other one."""
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn = fns[name]
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_shape(n_priv: int, n_syn: int, dim: int, args, rng) -> dict:
    flops = 2.0 * n_priv * n_syn * dim
    private_np = rng.standard_normal((n_priv, dim), dtype=np.float32)
    synthetic_np = rng.standard_normal((n_syn, dim), dtype=np.float32)
    private, synthetic = jnp.asarray(private_np), jnp.asarray(synthetic_np)
    row = {"shape": f"{n_priv}x{n_syn}x{dim}"}

    def ours(screen=None):
        return voting.nn_histogram(private, synthetic, k=args.k, screen=screen).block_until_ready()

    row["screen"] = _default_screen(n_syn, dim)

    mm_rows = n_priv
    if 4.0 * n_priv * n_syn > args.mm_max_gb * 1e9:
        mm_rows = min(args.mm_rows, n_priv)
    row["mm_block"] = mm_rows != n_priv
    x_mm = private[:mm_rows]
    matmul = jax.jit(lambda a, b: jnp.matmul(a, b.T))

    contenders = {
        "ours": ours,
        "float32": lambda: ours(screen=False),
        "screened": lambda: ours(screen=True),
        "matmul": lambda: matmul(x_mm, synthetic).block_until_ready(),
    }
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        index = faiss.IndexFlatL2(dim)
        index.add(synthetic_np)
        contenders["faiss"] = lambda: index.search(private_np, args.k)
    expected = ours(screen=False)  # the screen changes no vote
    np.testing.assert_array_equal(ours(), expected)
    np.testing.assert_array_equal(ours(screen=True), expected)
    for fn in contenders.values():
        fn()  # compile / warm up
    times = _interleaved_medians(contenders, args.repeats)

    row["ours_s"] = times["ours"]
    row["gflops"] = flops / row["ours_s"] / 1e9
    row["f32_s"] = times["float32"]
    row["dflt_x"] = times["float32"] / times["ours"]
    row["forced_x"] = times["float32"] / times["screened"]
    # Where the default does not screen it runs the very kernel screen=False runs, so only a
    # default that screens can be slower; a default that does not may miss a gain.
    row["slower"] = row["screen"] and times["ours"] > (1 + args.tolerance) * times["float32"]
    row["missed"] = (not row["screen"]
                     and times["float32"] > (1 + args.tolerance) * times["screened"])
    row["temp_mb"] = _temp_mb(private, synthetic, args.k)
    row["mm_gflops"] = 2.0 * mm_rows * n_syn * dim / times["matmul"] / 1e9
    row["faiss_x"] = row["faiss_mb"] = None
    if faiss is not None:
        row["faiss_x"] = times["faiss"] / row["ours_s"]
        row["faiss_mb"] = rss_growth_mb(lambda: index.search(private_np, args.k))
        del index

    rows_np = min(n_priv, args.numpy_rows)
    row["numpy_sub"] = rows_np != n_priv
    t0 = time.perf_counter()
    row["numpy_mb"] = rss_growth_mb(
        lambda: _numpy_votes(private_np[:rows_np], synthetic_np, args.k))
    np_s = time.perf_counter() - t0
    row["numpy_x"] = np_s * (n_priv / rows_np) / row["ours_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid (seconds)")
    parser.add_argument("--k", type=int, default=1, help="neighbours per private row")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
    parser.add_argument("--mm-max-gb", type=float, default=2.0, help="max matmul output size")
    parser.add_argument("--mm-rows", type=int, default=16384, help="matmul row block beyond it")
    parser.add_argument("--numpy-rows", type=int, default=20000, help="NumPy row subsample")
    parser.add_argument("--shapes", default="",
                        help="extra comma-separated N_privxN_synxD shapes, e.g. 40000x5000x512")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="flag a shape where the default is this much slower than screen=False")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    grid = list(QUICK_GRID if args.quick else FULL_GRID)
    grid += [_shape(s) for s in args.shapes.split(",") if s.strip()]

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, k={args.k}, "
          f"median of {args.repeats}")
    print(f"CPU: {cpu_description()}")
    print(f"screen=None: {_screen_decision()}")
    header = (
        f"{'N_priv x N_syn x D':>22} {'ours_s':>8} {'GF/s':>7} {'screen':>6} {'f32_s':>8} "
        f"{'dflt_x':>7} {'forced_x':>8} {'mm_GF/s':>8} {'vs_mm':>6} {'faiss_x':>8} {'numpy_x':>8} "
        f"{'temp_MB':>8} {'faiss_MB':>9} {'numpy_MB':>9}"
    )
    print(header)
    print("-" * len(header))
    slower = []
    for n_priv, n_syn, dim in grid:
        r = bench_shape(n_priv, n_syn, dim, args, rng)
        faiss_x = "-" if r["faiss_x"] is None else f"{r['faiss_x']:.2f}"
        faiss_mb = "-" if r["faiss_mb"] is None else f"{r['faiss_mb']:.0f}"
        mm = f"{r['mm_gflops']:.1f}" + ("*" if r["mm_block"] else "")
        numpy_x = f"{r['numpy_x']:.2f}" + ("*" if r["numpy_sub"] else "")
        if r["slower"]:
            slower.append(r["shape"])
        print(
            f"{r['shape']:>22} {r['ours_s']:8.3f} {r['gflops']:7.1f} "
            f"{'on' if r['screen'] else 'off':>6} {r['f32_s']:8.3f} {r['dflt_x']:7.2f} "
            f"{r['forced_x']:8.2f} {mm:>8} {r['gflops'] / r['mm_gflops']:6.2f} {faiss_x:>8} "
            f"{numpy_x:>8} {r['temp_mb']:8.1f} {faiss_mb:>9} {r['numpy_mb']:9.0f}"
            + ("  SLOWER" if r["slower"] else "") + ("  missed" if r["missed"] else ""),
            flush=True,
        )
    print(
        f"* mm: matmul on a {args.mm_rows}-row block (full output > {args.mm_max_gb} GB); "
        f"numpy: first {args.numpy_rows} rows, time scaled to N_priv.\n"
        "dflt_x: screen=False time / default time; forced_x: screen=False time / screen=True "
        "time (> 1 = the screen is faster).\n"
        "faiss_x / numpy_x: their time / ours (> 1 = we are faster)."
    )
    print(f"default screened and was slower than screen=False by more than "
          f"{args.tolerance:.0%}: " + (", ".join(slower) if slower else "no shape"))


if __name__ == "__main__":
    main()
