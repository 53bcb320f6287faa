"""Screening nearest-neighbour scores with bfloat16 matmuls, without changing any vote.

Matrix units that multiply bfloat16 (AMX and AVX512-BF16 on CPUs, tensor cores, TPU
MXUs) do it several times faster than float32.  A float32 array splits exactly into
``a = hi + lo + rest`` with ``hi`` and ``lo`` bfloat16 values (``lo`` about 2^-8 of
``a``, ``rest`` about 2^-16), and ``x . z`` is ``hi_x.hi_z + lo_x.hi_z + hi_x.lo_z`` up
to a relative 2^-16 or so: one bfloat16 matmul with float32 accumulation over ``3 D``
columns (:func:`split`, :func:`dot`).

:func:`error_bound` bounds, for each private row and every synthetic row at once, how
far a screened score can be from the float32 kernel's score of the same pair,
whatever order either matmul sums in.  A private row whose best screened score is
below its second best by more than twice that bound has the same nearest neighbour
(the same k nearest, with the k-th and (k+1)-th) in the float32 kernel; the voting
kernel rescores every other row exactly, so screening changes speed, never a vote.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["Split", "SyntheticStats", "dot", "error_bound", "split", "synthetic_stats"]

_UNIT = 2.0**-24  # float32 unit roundoff
_SAFETY = 1.25  # covers the float32 rounding in computing the bound itself


def _round_to_bf16(a: jax.Array) -> jax.Array:
    """``a`` (float32) rounded to the nearest bfloat16 value, ties to even, as float32.

    Done on the bits so that no compiler may keep excess precision (XLA can fold a
    float32 -> bfloat16 -> float32 round trip away); NaN/Inf never occur here.
    """
    bits = lax.bitcast_convert_type(a, jnp.uint32)
    bits = (bits + jnp.uint32(0x7FFF) + ((bits >> 16) & jnp.uint32(1))) & jnp.uint32(0xFFFF0000)
    return lax.bitcast_convert_type(bits, jnp.float32)


def _parts(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``a = hi + lo + rest`` exactly, with ``hi`` and ``lo`` bfloat16 values (float32 arrays)."""
    hi = _round_to_bf16(a)
    lo = _round_to_bf16(a - hi)
    return hi, lo, (a - hi) - lo


def _row_norm(a: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(a * a, axis=1))


class Split(NamedTuple):
    """Float32 rows ``a (n, D)`` split for the screen."""

    operand: jax.Array  # (n, 3 D) uint16: the bfloat16 bit patterns :func:`dot` multiplies
    norms: jax.Array  # (4, n) row norms of a, hi, lo and rest


def split(a: jax.Array, side: str) -> Split:
    """The matmul operand and part norms of float32 rows ``a`` (``side``: private/synthetic).

    ``dot(split(x, "private").operand, split(z, "synthetic").operand)`` is
    ``hi_x.hi_z + lo_x.hi_z + hi_x.lo_z`` summed in float32.  The bits are kept as
    uint16 until the matmul: XLA's CPU backend copies a slice of a bfloat16 array
    through float32, which measured slower than the matmul itself.
    """
    hi, lo, rest = _parts(a)
    pieces = (hi, lo, hi) if side == "private" else (hi, hi, lo)
    bits = lax.bitcast_convert_type(jnp.concatenate(pieces, axis=1), jnp.uint32) >> 16
    norms = jnp.stack([_row_norm(a), _row_norm(hi), _row_norm(lo), _row_norm(rest)])
    return Split(bits.astype(jnp.uint16), norms)


class SyntheticStats(NamedTuple):
    """Maxima over the synthetic rows that the bound needs (float32 scalars)."""

    norm: jax.Array  # max ||z||
    hi: jax.Array  # max ||hi_z||
    lo: jax.Array  # max ||lo_z||
    rest: jax.Array  # max ||rest_z||
    offset: jax.Array  # max |offset|


def synthetic_stats(norms: jax.Array, offset: jax.Array) -> SyntheticStats:
    """:class:`SyntheticStats` from the synthetic rows' :attr:`Split.norms` and score offsets."""
    return SyntheticStats(*jnp.max(norms, axis=1), jnp.max(jnp.abs(offset)))


def error_bound(norms: jax.Array, stats: SyntheticStats, dim: int, scale: float) -> jax.Array:
    """Bound on ``|screened - float32|`` scores ``offset - scale * x.z``, per private row.

    ``norms`` are the private rows' :attr:`Split.norms` (float32, as scored).  Terms,
    with ``g(n) = n u / (1 - n u)`` and ``u = 2^-24``:

    * dropped parts: ``x.z - screened dot = lo_x.lo_z + hi_x.rest_z + lo_x.rest_z + rest_x.z``;
    * float32 accumulation of the screen's ``3 D`` exact products, ``g(3D)`` times
      their absolute sum, and of the float32 kernel's ``D`` products, ``g(D) ||x|| ||z||``;
    * the final ``offset - scale * dot`` rounding in both, ``u`` times its magnitude;
    * bfloat16 subnormals read as zero and float32 underflow flushed to zero, each at
      most the smallest normal float32 per product or per element.

    Cauchy-Schwarz turns each sum over the columns into a product of row norms, and the
    synthetic norms are replaced by their maxima, so one number covers the whole row.
    A row whose scores could overflow gets ``inf``: never screened.
    """
    n_x, hi_x, lo_x, rest_x = norms
    g3, g1 = (n * _UNIT / (1 - n * _UNIT) for n in (3 * dim, dim))
    dropped = lo_x * stats.lo + (hi_x + lo_x) * stats.rest + rest_x * stats.norm
    products = (hi_x + lo_x) * (stats.hi + stats.lo)  # >= sum of |screened products|
    exact_dot = n_x * stats.norm  # >= sum of |float32 kernel products|
    magnitude = 2 * stats.offset + scale * ((1 + g3) * products + (1 + g1) * exact_dot)
    tiny = jnp.finfo(jnp.float32).tiny * (
        8 * dim + 4 * math.sqrt(3 * dim) * (n_x + hi_x + lo_x + stats.norm + stats.hi + stats.lo)
    )
    dot_error = dropped + g3 * products + g1 * exact_dot + tiny
    bound = _SAFETY * (scale * dot_error + _UNIT * magnitude)
    # every score, dot and partial sum of either kernel is below ``magnitude``
    return jnp.where(jnp.isfinite(4 * magnitude), bound, jnp.inf)


def dot(x_operand: jax.Array, z_operand: jax.Array) -> jax.Array:
    """Screened ``x . z`` for all pairs: ``(Bp, Bs)`` float32 from two :attr:`Split.operand`."""
    x_bf16, z_bf16 = (lax.bitcast_convert_type(a, jnp.bfloat16) for a in (x_operand, z_operand))
    return lax.dot_general(
        x_bf16, z_bf16, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32
    )
