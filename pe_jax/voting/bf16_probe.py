"""Whether the bfloat16 screen pays on this hardware: a one-off timed probe per device kind.

The screen (:mod:`pe_jax.voting.bf16_screen`) replaces each block's float32 matmul over
``D`` columns by a bfloat16 one over ``3 D`` columns.  That wins only where the hardware
multiplies bfloat16 more than three times faster than float32 (AMX-BF16, tensor cores,
TPU MXUs).  Elsewhere it loses: on an AMD EPYC that reports ``avx512_bf16`` (no AMX),
XLA's CPU backend runs both matmuls through YNNPACK and the bfloat16 one reaches only
about twice the float32 flop rate, so its three passes take 1.5x as long; the screened
block ran 1.5-1.7x slower than the float32 one, and ``nn_histogram`` 1.6x (4.2x on
another EPYC).  CPU flags and device names do not tell such machines apart from ones
where the screen wins, so ``screen=None`` asks the hardware:

* :func:`measure` times one block of the voting kernel both ways, on the device, with the
  kernel's own scoring and row-minimum code (:func:`pe_jax.voting.nearest.nearest_1`): the
  float32 scores of ``(rows, D)`` private rows against ``(cols, D)`` synthetic rows
  (``Precision.HIGHEST``), and the screen's scores of the same rows from the split
  bfloat16 operands (``3 D`` columns) with the runner-up the screen also needs.  ``D`` is
  :data:`PROBE_DIM`; ``(rows, cols)`` is the platform's default tile.  Each is compiled once, run
  once to warm up, then timed :data:`_REPEATS` times in turn; the minimum counts (on a
  shared machine other load only ever adds time).
* :func:`screen_pays` is the rule: screen only where the float32 block takes at least
  :data:`MIN_SPEEDUP` times as long as the screened one.
* :func:`probe` runs that once per process for each (platform, device kind) and caches
  it (thread-safe), so the decision never flips between calls in one process.  On a
  2-core CPU it costs about 0.2 s (two small compiles and 0.1 s of timing; 0.8 s if it
  is the process's first compile, which then pays XLA's start-up for the kernel), less
  than one compile of the voting kernel, and it runs only for problems above the size
  threshold (see :func:`pe_jax.voting.histogram._default_screen`).

Nothing is cached on disk: on CPUs JAX's device kind is just ``"cpu"``, so a cache shared
by hosts through a home directory would carry one CPU's answer to another, and the
answer can change with the XLA version; the probe is cheap enough to run per process.

Pin the decision with the environment variable ``PE_JAX_BF16_SCREEN``: ``1`` (bfloat16
pays: screen every problem above the size threshold, no probe), ``0`` (never screen by
default), ``auto`` or unset (probe).  ``screen=True``/``False`` in a call overrides all
of this.  Whichever way it goes, the votes are the same; only speed differs.
"""

from __future__ import annotations

import os
import threading
import time
from typing import NamedTuple

import jax
import numpy as np

from pe_jax.voting import bf16_screen
from pe_jax.voting.metrics import METRICS
from pe_jax.voting.nearest import nan_to_inf, nearest_1, tile_scores

__all__ = ["ENV_VAR", "MIN_SPEEDUP", "PROBE_DIM", "Probe", "bf16_pays", "measure", "probe",
           "screen_pays"]

ENV_VAR = "PE_JAX_BF16_SCREEN"

# Required float32 / screened block time.  The probe leaves out what the screen adds to its
# block (splitting the private rows and their error bound, O(rows x D) against the block's
# O(rows x cols x D), a few percent) and the rows it rescores in float32 (under 5 % of
# rows on the benchmark's data; each costs a float32 block row).  At 1.25 those take the
# screened kernel to about 0.8 x 1.05 + 0.05 = 0.89 of the float32 kernel's time, and
# the remaining ~10 % absorbs timing noise.  On the 2-core AVX-512 CPU with AMX-BF16
# that the screen was tuned on, the screened kernel took 0.65-0.70 of the float32 time
# at D = 512; on the AMD EPYC without bfloat16 matrix units the probe measures 0.6-0.7.
MIN_SPEEDUP = 1.25

# Feature dimension of the probe block: a typical embedding width (the ratio varied by
# < 10 % over D = 64 .. 512 on the EPYC).
PROBE_DIM = 256

_REPEATS = 5


class Probe(NamedTuple):
    """One probe's result on one device kind (seconds are minima over the repeats)."""

    float32_s: float  # float32 scores and row minimum of one block
    bfloat16_s: float  # the screen's scores, row minimum and runner-up of the same block
    pays: bool  # screen_pays(float32_s, bfloat16_s)
    cost_s: float  # wall time of the whole probe, compiles included


def screen_pays(float32_s: float, bfloat16_s: float) -> bool:
    """The rule: whether the screen pays, given the two block times the probe measured.

    True only where the float32 block took at least :data:`MIN_SPEEDUP` times as long as
    the screened block (both positive and finite).
    """
    if not (np.isfinite(float32_s) and np.isfinite(bfloat16_s)):
        return False
    if float32_s <= 0 or bfloat16_s <= 0:
        return False
    return float32_s >= MIN_SPEEDUP * bfloat16_s


def _l2_block(device: jax.Device, rows: int, cols: int, dim: int):
    """Float32 and bfloat16-split operands of one l2 block, on ``device``.

    The values are irrelevant to the timing (uniform in [-0.5, 0.5), no subnormals); the
    bfloat16 operand is the top half of each float32 repeated three times, as
    :func:`bf16_screen.split` lays out ``hi, lo, hi`` / ``hi, hi, lo``.
    """
    rng = np.random.default_rng(0)
    x = rng.random((rows, dim), np.float32) - np.float32(0.5)
    z = rng.random((cols, dim), np.float32) - np.float32(0.5)
    offset = np.sum(z * z, axis=1)

    def bits(a):
        return (np.tile(a, 3).view(np.uint32) >> 16).astype(np.uint16)

    float32 = jax.device_put((x, {"z": z[None], "offset": offset[None]}), device)
    screened = jax.device_put((bits(x), {"screen": bits(z)[None], "offset": offset[None]}),
                              device)
    return float32, screened


def _nearest_float32(x, tiles):
    def scores(x, tile):
        return tile_scores(METRICS["l2"], x, tile)
    return nearest_1(scores, x, tiles, (), lambda a: a)[1]


def _nearest_screened(x_operand, tiles):
    def scores(operand, tile):
        return nan_to_inf(METRICS["l2"].scores(operand, tile["screen"], tile["offset"],
                                               dot=bf16_screen.dot))
    return nearest_1(scores, x_operand, tiles, (), lambda a: a, second=True)[1]


def measure(device: jax.Device, rows: int, cols: int, dim: int = PROBE_DIM,
            repeats: int = _REPEATS) -> tuple[float, float]:
    """``(float32_s, bfloat16_s)``: minimum times of one ``(rows, cols)`` block on ``device``.

    Runs eagerly even while an outer function is being traced.
    """
    with jax.ensure_compile_time_eval():
        float32_args, screened_args = _l2_block(device, rows, cols, dim)
        contenders = {"float32": (jax.jit(_nearest_float32), float32_args),
                      "bfloat16": (jax.jit(_nearest_screened), screened_args)}
        times = {name: [] for name in contenders}
        for fn, args in contenders.values():
            fn(*args).block_until_ready()  # compile and warm up
        for _ in range(repeats):  # in turn, so load changes hit both alike
            for name, (fn, args) in contenders.items():
                t0 = time.perf_counter()
                fn(*args).block_until_ready()
                times[name].append(time.perf_counter() - t0)
    return min(times["float32"]), min(times["bfloat16"])


_PROBES: dict[tuple[str, str], Probe] = {}
_LOCK = threading.Lock()


def probe(device: jax.Device, block: tuple[int, int]) -> Probe:
    """The cached :class:`Probe` of ``device``'s kind, measured on first use.

    ``block`` is ``(rows, cols)`` of the timed block (the platform's default tiles); the
    first call for a device kind fixes it.
    """
    key = (device.platform, device.device_kind)
    with _LOCK:
        if key not in _PROBES:
            t0 = time.perf_counter()
            float32_s, bfloat16_s = measure(device, *block)
            _PROBES[key] = Probe(float32_s, bfloat16_s, screen_pays(float32_s, bfloat16_s),
                                 time.perf_counter() - t0)
        return _PROBES[key]


def bf16_pays(device: jax.Device, block: tuple[int, int]) -> bool:
    """Whether ``screen=None`` screens on ``device`` (above the size threshold):
    ``PE_JAX_BF16_SCREEN`` if set to ``1`` or ``0``, else the cached :func:`probe`."""
    pinned = os.environ.get(ENV_VAR, "").strip().lower()
    if pinned in ("", "auto"):
        return probe(device, block).pays
    if pinned in ("1", "true", "on", "yes"):
        return True
    if pinned in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{ENV_VAR} must be 1, 0 or auto (or unset), got {pinned!r}")
