"""The compiled vote kernel: integer vote counts of private blocks over per-class synthetic tiles.

Every private row casts one vote for each of its k nearest synthetic rows of its own class.
The kernel loops over the :class:`~pe_jax.voting.layout.PrivateBlocks`; on a mesh the blocks
are split over all of its devices (``pe_jax.sharding.row_spec``) with ``jax.shard_map`` and
``lax.psum`` adds the int32 counts, so the result is the same for any number of devices.

One float32 scoring site.  Float32 votes come from a single place in the program,
:func:`_local_counts`' ``rescore``, which scores a fixed-shape ``(tile, D)`` block of rows
taken from a queue.  Without the screen every usable row is queued; with the screen
(:mod:`pe_jax.voting.bf16_screen`) each block is ranked by bfloat16 matmuls first, the rows
the screen decides vote at once (provably the float32 votes, whatever order a float32
matmul sums in), and only the rows in doubt are queued.  The queue holds one class at a
time: it is drained when the class changes.  So a row's float32 scores are computed by
the same compiled computation, on a block of the same shape, whatever else is in the
block, however many private rows there are, on any mesh, and with the screen on or off.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from pe_jax import sharding
from pe_jax.voting.layout import PrivateBlocks
from pe_jax.voting.metrics import LinearScore, ScoreFn
from pe_jax.voting.nearest import nearest_1, nearest_k, screened_nearest, tile_scores
from pe_jax.voting.synthetic import PreparedSynthetic, prepare

__all__ = ["sum_over_devices", "vote_counts"]


def _local_counts(blocks: PrivateBlocks, prepared: PreparedSynthetic, class_index: jax.Array,
                  *, score_fn: ScoreFn, k: int, n_syn: int, vary: Callable) -> jax.Array:
    """``(n_syn,)`` int32 vote counts of this device's blocks.

    ``vary`` marks loop carries as per-device values inside ``shard_map`` (identity outside).
    """
    n_blocks, bp, dim = blocks.rows.shape
    flat_rows = blocks.rows.reshape(n_blocks * bp, dim)
    screen = prepared.stats is not None

    def add_votes(hist, c, idx, voting):
        position = class_index[c][idx]  # (bp, k) population positions
        position = jnp.where(voting[:, None] & (position >= 0), position, n_syn)
        return hist.at[position.ravel()].add(1, mode="drop")

    def rescore(carry):
        """Float32 votes of the first ``bp`` queued rows (fewer when the queue is shorter)."""
        hist, queue, queued, c = carry
        ys, tails, mean = prepared.of_class(c)
        x = jnp.take(flat_rows, queue[:bp], axis=0) - mean
        scores = partial(tile_scores, score_fn)
        if k == 1:
            idx = nearest_1(scores, x, ys, tails, vary)[1][:, None]
        else:
            idx = nearest_k(scores, x, ys, tails, k)[1]
        hist = add_votes(hist, c, idx, jnp.arange(bp) < queued)
        queue = jnp.concatenate([queue[bp:], jnp.zeros((bp,), jnp.int32)])
        return hist, queue, jnp.maximum(queued - bp, 0), c

    def drain(carry, flush):
        """Rescores while a whole block is queued, or until empty when ``flush``."""
        return lax.while_loop(lambda c: (c[2] >= bp) | (flush & (c[2] > 0)), rescore, carry)

    def body(b, carry):
        # Iteration n_blocks is a sentinel that only drains the queue, so that rescore has
        # one call site.
        sentinel = b == n_blocks
        i = jnp.minimum(b, n_blocks - 1)
        c = blocks.block_class[i]
        hist, queue, queued, _ = drain(carry, sentinel | (carry[3] != c))
        voting = blocks.valid[i] & ~sentinel
        doubt = voting
        if screen:
            ys, tails, mean = prepared.of_class(c)
            idx, doubt = screened_nearest(score_fn, prepared.stats, blocks.rows[i] - mean, ys,
                                          tails, k, vary)
            doubt &= voting
            hist = add_votes(hist, c, idx, voting & ~doubt)
        slot = jnp.where(doubt, queued + jnp.cumsum(doubt) - 1, 2 * bp)
        queue = queue.at[slot].set(i * bp + jnp.arange(bp, dtype=jnp.int32), mode="drop")
        return hist, queue, queued + jnp.sum(doubt, dtype=jnp.int32), c

    init = vary((jnp.zeros((n_syn,), jnp.int32), jnp.zeros((2 * bp,), jnp.int32),
                 jnp.int32(0), jnp.int32(0)))  # empty queue (of class 0)
    return lax.fori_loop(0, n_blocks + 1, body, init)[0]


@partial(jax.jit, static_argnames=("score_fn", "k", "synthetic_tile", "screen", "mesh"))
def vote_counts(blocks: PrivateBlocks, synthetic: jax.Array, class_index: jax.Array, *,
                score_fn: ScoreFn, k: int, synthetic_tile: int, screen: bool,
                mesh: jax.sharding.Mesh | None) -> jax.Array:
    """``(N_syn,)`` int32 counts: each valid private row's k nearest synthetic rows of its class.

    Arguments are validated by :func:`pe_jax.voting.vote`.  ``screen`` applies to
    :class:`LinearScore` metrics whose classes have more than k rows.
    """
    n_syn = synthetic.shape[0]
    screen = screen and isinstance(score_fn, LinearScore) and k < class_index.shape[1]
    prepared = prepare(score_fn, synthetic, class_index, k=k, tile_cap=synthetic_tile,
                       screen=screen)
    count = partial(_local_counts, score_fn=score_fn, k=k, n_syn=n_syn)
    return sum_over_devices(count, blocks, (prepared, class_index), mesh)


def sum_over_devices(count: Callable, blocks: PrivateBlocks, public: tuple,
                     mesh: jax.sharding.Mesh | None, *, check_vma: bool = True) -> jax.Array:
    """``count(blocks, *public, vary=...)`` over all the private blocks, as int32 counts.

    Without a mesh it is one call.  On a mesh the blocks are split over the devices
    (``sharding.row_spec``), the ``public`` inputs replicated, each device counts its own
    blocks and ``lax.psum`` adds the integer counts, so the result does not depend on the
    device count.  ``vary`` marks loop carries as per-device values inside ``shard_map``
    (identity without a mesh); ``check_vma=False`` is for counts that do not type which
    values vary over the mesh (they may ignore ``vary``).
    """
    if mesh is None:
        return count(blocks, *public, vary=lambda a: a)
    rows = sharding.row_spec(mesh)
    axes = tuple(mesh.axis_names)
    if sharding.is_explicit(mesh):
        blocks = jax.reshard(blocks, rows)
        public = jax.reshard(public, jax.P())
    vary = partial(jax.tree.map, lambda a: lax.pcast(a, axes, to="varying"))

    def per_device(local_blocks, *public_rep):
        return lax.psum(count(local_blocks, *public_rep, vary=vary), axes)

    return jax.shard_map(per_device, mesh=mesh, in_specs=(rows,) + (jax.P(),) * len(public),
                         out_specs=jax.P(), check_vma=check_vma)(blocks, *public)

