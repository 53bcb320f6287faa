"""An approximate k-NN vote kernel on ``jax.lax.approx_min_k`` (fast on TPU).

Kernel ``"approx"``: every block of private rows is scored against its class's synthetic
rows in one float32 matmul (``bp x S`` scores, so ``private_tile`` sets the memory), and
``jax.lax.approx_min_k`` picks each row's k smallest scores.  On TPU that op is the
partial-reduce algorithm of Chern et al., "TPU-KNN" (arXiv:2206.14286), with an expected
recall of ``recall_target`` (0.95 here; :func:`approx_kernel` makes other targets).  On CPU
and GPU XLA lowers it to its exact fallback (a sort-based top-k; the HLO says
``is_fallback = true``), so there the votes are the exact float32 k nearest and the measured
recall is 1 -- and it is no faster than ``"exact"`` there: about 1x for k = 1 and ~34x
SLOWER for k = 5 (the fallback sorts whole rows), measured on a 2-core AMD EPYC with
``experiments/bench_kernels.py`` at (N_priv, N_syn, D) = (4096, 2048, 64) and
(8192, 8192, 128).  Ties: the fallback's sort is not stable, so among EQUAL scores it
picks columns in an unspecified order (not the lowest index, unlike ``"exact"``); the
order is a deterministic function of the row's scores.
``experiments/bench_kernels.py`` measures recall against ``"exact"`` on the platform it
runs on.

Why the sensitivity still holds although the search is approximate.  The approximation
is in WHICH k columns of a row are returned, not in mixing rows: ``approx_min_k`` reduces
each row of the ``(bp, S)`` operand along ``reduction_dimension`` only (its partial
reduction bins the columns of one row; the batch dimension is never reduced), and its
shapes -- hence its bins -- are fixed by ``(bp, S)``, which are the private tile and the
largest class, never the data.  So a row's returned indices are a deterministic function
of that row's scores, which are a function of the row and the synthetic set: the row
independence of :mod:`pe_jax.voting.kernels`.  ``aggregate_to_topk`` returns k distinct
columns; if the approximate search ever returned a padding column (+inf score) the driver
drops that vote, so a row casts at most k votes, never more -- the declared sensitivity
(L2 1 after the ``1/sqrt(k)`` weight) is an upper bound either way.  Declared ``exact=False``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from pe_jax.voting.kernels import VoteKernel, block_kernel, register_kernel
from pe_jax.voting.metrics import LinearScore, ScoreFn
from pe_jax.voting.nearest import nan_to_inf

__all__ = ["DEFAULT_RECALL_TARGET", "approx_kernel", "approx_nearest"]

DEFAULT_RECALL_TARGET = 0.95


def block_scores(x: jax.Array, y: jax.Array, valid: jax.Array, score_fn: ScoreFn) -> jax.Array:
    """Float32 ``(bp, S)`` scores, +inf on padding columns and NaN."""
    if isinstance(score_fn, LinearScore):
        z, offset = score_fn.prepare(y)
        s = score_fn.scores(x, z, jnp.where(valid, offset, jnp.inf))
    else:
        s = jnp.where(valid[None, :], score_fn(x, y).astype(jnp.float32), jnp.inf)
    return nan_to_inf(s)


def approx_nearest(x: jax.Array, y: jax.Array, valid: jax.Array, *, k: int, score_fn: ScoreFn,
                   recall_target: float = DEFAULT_RECALL_TARGET) -> jax.Array:
    """``(bp, k)`` columns of ``y`` with (approximately) the smallest scores, per row of ``x``."""
    s = block_scores(x, y, valid, score_fn)
    _, idx = lax.approx_min_k(s, k, recall_target=recall_target, aggregate_to_topk=True)
    return idx


def approx_kernel(recall_target: float = DEFAULT_RECALL_TARGET, *,
                  name: str | None = None) -> VoteKernel:
    """An unregistered ``approx_min_k`` kernel with its own ``recall_target`` in (0, 1]."""
    if not 0.0 < float(recall_target) <= 1.0:
        raise ValueError(f"recall_target must be in (0, 1]; got {recall_target!r}")
    return block_kernel(
        partial(approx_nearest, recall_target=float(recall_target)),
        name=name or f"approx@{recall_target:g}", exact=False,
        description=f"jax.lax.approx_min_k (recall_target {recall_target:g}; exact fallback "
                    "on CPU/GPU)")


register_kernel(approx_kernel(DEFAULT_RECALL_TARGET, name="approx"))
