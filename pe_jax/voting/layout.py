"""How the voting kernel lays out its inputs: private rows in equal blocks, synthetic rows by class.

Private side (:class:`PrivateBlocks`).  The rows are sorted by class and cut into blocks of
exactly ``tile`` rows, each block holding one class; the rest of a block is padding, masked
out.  The number of blocks is ``ceil(N_priv / tile) + num_classes - 1`` (an upper bound on
``sum_c ceil(n_c / tile)``), rounded up to a multiple of the device count.  So every block
has the same compiled shape, and the shapes of a run depend only on the total ``N_priv``,
the number of classes, the tile and the mesh -- never on how the rows fall into classes.
That is what makes a row's scores independent of the other private rows: XLA computes the
dot of a 1-row block differently (bitwise) from a 2-row one, so a block whose height
followed the data flipped near-tie votes.

Usable rows.  A private row votes only if every entry is finite and at most
:data:`MAX_MAGNITUDE` in absolute value (and its label is a class); any other row gets zero
votes, so a corrupt row can neither crash a DP run nor change what the other rows vote.

Synthetic side (:func:`class_index`).  Class ``c``'s synthetic rows, by position in the
population, ascending, padded with -1 to the largest class: a ``(num_classes, S)`` table.
It is built from the public population labels.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax import sharding

__all__ = ["MAX_MAGNITUDE", "PrivateBlocks", "block_private", "class_index", "num_blocks",
           "usable_rows"]

MAX_MAGNITUDE = 2.0**50
"""Largest absolute embedding value the kernel scores (about 1.1e15).

Squared norms of rows below it stay far from float32 overflow (3.4e38) for any practical
dimension, so every score is finite.  Private rows beyond it get zero votes; synthetic rows
beyond it are a ``ValueError``.
"""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PrivateBlocks:
    """Private embeddings in equal single-class blocks (see the module docstring).

    Attributes:
      rows: ``(B, tile, D)`` float32, zero where not valid.
      valid: ``(B, tile)`` bool, the rows that vote.
      block_class: ``(B,)`` int32, the class of every row of the block.
    """

    rows: jax.Array
    valid: jax.Array
    block_class: jax.Array

    @property
    def tile(self) -> int:
        return self.rows.shape[1]


def num_blocks(n_priv: int, num_classes: int, tile: int, devices: int = 1) -> int:
    """Blocks for ``n_priv`` rows in ``num_classes`` classes, whatever the class sizes."""
    blocks = max(1, -(-n_priv // tile) + num_classes - 1)
    return -(-blocks // devices) * devices


def usable_rows(x: jax.Array) -> jax.Array:
    """``(n,)`` bool: rows whose entries are all finite and at most ``MAX_MAGNITUDE``."""
    return jnp.all(jnp.abs(x.astype(jnp.float32)) <= MAX_MAGNITUDE, axis=1)  # NaN compares False


@partial(jax.jit, static_argnames=("num_classes", "tile", "devices"))
def block_private(private: jax.Array, labels: jax.Array, *, num_classes: int, tile: int,
                  devices: int = 1) -> PrivateBlocks:
    """Lays out ``private (N, D)`` with ``labels (N,)`` as :class:`PrivateBlocks`.

    Rows keep their order within a class.  Rows that are not usable, or whose label is
    outside ``[0, num_classes)``, are left out (they get no votes).
    """
    n, dim = private.shape
    if sharding.explicit_context():
        # Sorting and scattering rows across devices: lay out a replicated copy.
        private, labels = jax.reshard((private, labels), jax.P())
    x = private.astype(jnp.float32)
    labels = labels.astype(jnp.int32)
    ok = usable_rows(x) & (labels >= 0) & (labels < num_classes)
    label = jnp.where(ok, labels, num_classes)  # class num_classes: left out
    counts = jnp.zeros((num_classes + 1,), jnp.int32).at[label].add(1)
    blocks_per_class = -(-counts // tile)
    first_block = jnp.cumsum(blocks_per_class) - blocks_per_class
    class_start = jnp.cumsum(counts) - counts
    order = jnp.argsort(label, stable=True)
    sorted_label = label[order]
    rank = jnp.arange(n, dtype=jnp.int32) - class_start[sorted_label]
    n_blocks = num_blocks(n, num_classes, tile, devices)
    slot = jnp.where(sorted_label < num_classes, first_block[sorted_label] * tile + rank,
                     n_blocks * tile)  # out of range: dropped
    rows = jnp.zeros((n_blocks * tile, dim), jnp.float32).at[slot].set(x[order], mode="drop")
    valid = jnp.zeros((n_blocks * tile,), bool).at[slot].set(True, mode="drop")
    ends = jnp.cumsum(blocks_per_class[:num_classes])
    block_class = jnp.searchsorted(ends, jnp.arange(n_blocks), side="right")
    return PrivateBlocks(
        rows=rows.reshape(n_blocks, tile, dim),
        valid=valid.reshape(n_blocks, tile),
        block_class=jnp.minimum(block_class, num_classes - 1).astype(jnp.int32),
    )


def class_index(synthetic_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(num_classes, S)`` int32: each class's population positions, ascending, -1 padded.

    ``S`` is the largest class.  Labels are public (the population's own), so this runs on
    the host.
    """
    labels = np.asarray(synthetic_labels)
    members = [np.flatnonzero(labels == c) for c in range(num_classes)]
    table = np.full((num_classes, max(len(m) for m in members)), -1, np.int32)
    for c, m in enumerate(members):
        table[c, :len(m)] = m
    return table
