"""A prototype fused distance + argmin vote kernel in Pallas (k = 1, l2).

Kernel ``"pallas_l2"``: one Pallas program per ``bm`` private rows keeps the rows in fast
memory and walks the class's synthetic rows in tiles of ``bn``, computing the l2 scores
``||z||^2 - 2 x.z`` (rows centred on the class mean, as in ``"exact"``) of a tile with one
matmul and folding them straight into a running minimum and its first column: the
``(bp, S)`` score matrix is never written out.  That is the shape a GPU/TPU kernel wants;
this module is a prototype of it.

Status.  Tested only on CPU, where ``pallas_call(..., interpret=True)`` runs the same program
through XLA (``interpret`` is chosen when the default backend is CPU).  On GPU/TPU it
compiles through Triton/Mosaic untested: block shapes there must meet the backend's tiling
rules (powers of two, ``D`` a multiple of 128 on TPU), which this prototype does not arrange
beyond padding ``bm`` to a multiple of 8 and ``S`` to a multiple of ``bn``.

What it guarantees.  Scores are float32 at full precision; ties to the lowest index (strict
``<`` across tiles, first minimum within one).  Its float32 scores are computed by a
different program than ``"exact"``'s (other matmul shapes, so possibly another summation
order), so it is declared ``exact=False``: its votes equal ``"exact"``'s for every row whose
nearest and second-nearest scores differ by more than the float32 rounding of the scores
(tested on random data), and may differ from them on closer near-ties.  Row independence
holds as for every block kernel: each row's scores and its running minimum involve only that
row, and every shape is fixed by the private tile and the largest class.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from pe_jax.voting.kernels import block_kernel, register_kernel
from pe_jax.voting.metrics import LinearScore, ScoreFn, dot

__all__ = ["BLOCK_ROWS", "BLOCK_COLS", "fused_argmin", "pallas_nearest"]

BLOCK_ROWS = 128  # private rows per Pallas program (at most; small tiles use fewer)
BLOCK_COLS = 128  # synthetic rows per step of the in-kernel loop


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _argmin_kernel(x_ref, z_ref, offset_ref, out_ref, *, bn: int, n_tiles: int, scale: float):
    from jax.experimental import pallas as pl

    x = x_ref[...]
    rows = x.shape[0]

    def step(j, carry):
        best, arg = carry
        start = pl.ds(j * bn, bn)
        s = offset_ref[start][None, :] - scale * dot(x, z_ref[start, :])
        s = jnp.where(jnp.isnan(s), jnp.inf, s)
        tile_min = jnp.min(s, axis=1)
        iota = lax.broadcasted_iota(jnp.int32, s.shape, 1)
        tile_arg = jnp.min(jnp.where(s == tile_min[:, None], iota, bn), axis=1)
        better = tile_min < best  # strict: earlier (lower-index) tiles win ties
        return jnp.where(better, tile_min, best), jnp.where(better, j * bn + tile_arg, arg)

    init = (jnp.full((rows,), jnp.inf, jnp.float32), jnp.zeros((rows,), jnp.int32))
    out_ref[...] = lax.fori_loop(0, n_tiles, step, init)[1]


def fused_argmin(x: jax.Array, z: jax.Array, offset: jax.Array, *, scale: float = 2.0,
                 interpret: bool | None = None) -> jax.Array:
    """``(n,)`` int32: per row of ``x (n, D)``, the first column of ``offset - scale x.z^T``'s
    row minimum over ``z (S, D)`` (``offset (S,)``; +inf offsets are never chosen)."""
    from jax.experimental import pallas as pl

    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    n, dim = x.shape
    bm = min(BLOCK_ROWS, _round_up(n, 8))
    n_pad = _round_up(n, bm)
    bn = min(BLOCK_COLS, _round_up(z.shape[0], 8))
    s_pad = _round_up(z.shape[0], bn)
    x = jnp.pad(x.astype(jnp.float32), ((0, n_pad - n), (0, 0)))
    z = jnp.pad(z.astype(jnp.float32), ((0, s_pad - z.shape[0]), (0, 0)))
    offset = jnp.pad(offset.astype(jnp.float32), (0, s_pad - offset.shape[0]),
                     constant_values=jnp.inf)
    out = pl.pallas_call(
        partial(_argmin_kernel, bn=bn, n_tiles=s_pad // bn, scale=float(scale)),
        out_shape=jax.ShapeDtypeStruct((n_pad,), jnp.int32),
        grid=(n_pad // bm,),
        in_specs=[pl.BlockSpec((bm, dim), lambda i: (i, 0)),
                  pl.BlockSpec((s_pad, dim), lambda i: (0, 0)),
                  pl.BlockSpec((s_pad,), lambda i: (0,))],
        out_specs=pl.BlockSpec((bm,), lambda i: (i,)),
        interpret=interpret,
    )(x, z, offset)
    return out[:n]


def pallas_nearest(x: jax.Array, y: jax.Array, valid: jax.Array, *, k: int,
                   score_fn: ScoreFn) -> jax.Array:
    """``(bp, 1)``: each row's nearest column of ``y`` by a :class:`LinearScore`."""
    if k != 1 or not isinstance(score_fn, LinearScore):
        raise ValueError("the Pallas prototype votes with k = 1 and a LinearScore metric")
    z, offset = score_fn.prepare(y)
    offset = jnp.where(valid, offset, jnp.inf)
    return fused_argmin(x, z, offset, scale=score_fn.scale)[:, None]


register_kernel(block_kernel(
    pallas_nearest, name="pallas_l2", exact=False, metrics=("l2",), max_k=1,
    description="Pallas fused l2 distance + argmin prototype, k = 1 (interpret mode on CPU)"))
