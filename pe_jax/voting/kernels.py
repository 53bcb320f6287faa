"""Vote kernels as plug-ins: the interface every kernel meets, and the registry.

A vote kernel turns laid-out private embeddings (:class:`~pe_jax.voting.layout.PrivateBlocks`),
the synthetic embeddings and the public class table into int32 vote counts::

    counts(blocks, synthetic, classes, *, k, metric, mesh, synthetic_tile, screen) -> (N_syn,)

:func:`pe_jax.voting.vote` and :func:`pe_jax.voting.nn_histogram` pick one with
``kernel=<name>`` (default ``"exact"``) and validate every argument before calling it.

The contract (what makes the histogram's sensitivity hold, whatever the kernel)
-------------------------------------------------------------------------------
1. Votes.  Each valid private row casts AT MOST ``k`` votes, to ``k`` DISTINCT synthetic rows
   of its own class: one row adds at most 1 to any count.  Exact kernels cast exactly ``k``.
2. Row independence.  A private row's votes are a function of that row, the synthetic set and
   the class table only: never of the other private rows, how many there are, the block or
   position they are scored in, the private tile, or the mesh.  Every block has one compiled
   shape (``pe_jax.voting.layout``), so a kernel keeps this by scoring each row on its own
   (no reduction, sort or normalisation across rows) with a computation whose shapes do not
   depend on the data.

Sensitivity.  Under 1 and 2, adding or removing one private row changes the integer counts
by that row's own votes: at most ``k`` entries by 1 each, so L1 <= k, L-inf <= 1 and L2 <=
``sqrt(k)`` (:meth:`VoteKernel.count_sensitivity`).  The release weighs every count by
``1/sqrt(k)``, so the weighted histogram has add/remove L2 sensitivity at most 1
(:meth:`VoteKernel.sensitivity`), which is what the noise is calibrated to.  Point 1 is
enforced for every block kernel by :func:`block_kernel`'s driver (indices out of range,
padding and repeats within a row are dropped); point 2 cannot be enforced, only tested:
``tests/test_vote_kernels.py`` runs every registered kernel through add-one-row checks on
near-tie data, and rejects a deliberately broken control kernel.

Writing a kernel: one function and its test.  Most kernels only need a new nearest-neighbour
search over one block; :func:`block_kernel` wraps such a function
``nearest(x (bp, D) f32, y (S, D) f32, valid (S,) bool, *, k, score_fn) -> (bp, k) int``
(``x`` one block of private rows of one class, ``y`` that class's synthetic rows, centred
for translation-invariant metrics, ``valid`` false on padding) into a full kernel with the
layout, class tables, sharding (``jax.shard_map`` + ``lax.psum`` of int32 counts) and vote
counting done once for all; :func:`register_kernel` makes it reachable by name.  A whole
:class:`VoteKernel` may also be passed as ``kernel=`` without registering it.

Registered here: ``"exact"`` (the tiled float32 kernel of :mod:`pe_jax.voting.kernel`, every
metric, any k, with the optional bfloat16 screen).  :mod:`pe_jax.voting.approx` adds
``"approx"`` (``jax.lax.approx_min_k``) and :mod:`pe_jax.voting.pallas_argmin` adds
``"pallas_l2"`` (a fused distance + argmin prototype).
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from pe_jax._checks import require
from pe_jax.voting.kernel import sum_over_devices, vote_counts
from pe_jax.voting.layout import PrivateBlocks
from pe_jax.voting.metrics import METRICS, ScoreFn
from pe_jax.voting.synthetic import _centred

__all__ = ["KERNELS", "CountsFn", "NearestFn", "VoteKernel", "block_kernel", "get_kernel",
           "register_kernel"]

CountsFn = Callable[..., jax.Array]
"""``counts(blocks, synthetic, classes, *, k, metric, mesh, synthetic_tile, screen)``."""

NearestFn = Callable[..., jax.Array]
"""``nearest(x (bp, D), y (S, D), valid (S,), *, k, score_fn) -> (bp, k)`` column indices."""


@dataclasses.dataclass(frozen=True)
class VoteKernel:
    """A vote kernel and what it declares (see the module docstring for the contract).

    Attributes:
      name: the registry name (``kernel=`` in :func:`pe_jax.voting.vote`).
      counts: the kernel, ``counts(blocks, synthetic, classes, *, k, metric, mesh,
        synthetic_tile, screen) -> (N_syn,) int32``, called with validated arguments.
      exact: True if every row's votes are the k nearest by the float32 scores of
        :mod:`pe_jax.voting.metrics`, ties to the lowest index, as the ``"exact"`` kernel
        computes them (tested on near-tie data); False for approximate or unproven kernels.
      metrics: the metric names it supports (None: every registered metric).
      max_k: the largest k it supports (None: any k the data allows).
      screens: whether it takes ``screen`` (the bfloat16 pre-ranking); kernels that do not
        refuse ``screen=True``.
      description: one line for listings and error messages.
    """

    name: str
    counts: CountsFn
    exact: bool
    metrics: tuple[str, ...] | None = None
    max_k: int | None = None
    screens: bool = False
    description: str = ""

    def count_sensitivity(self, k: int) -> float:
        """L2 norm bound of one private row's integer votes: ``sqrt(k)`` (k distinct bins,
        at most 1 each; L1 <= k, L-inf <= 1)."""
        return math.sqrt(k)

    def sensitivity(self, k: int) -> float:
        """Add/remove L2 sensitivity of the released histogram, whose counts are weighted
        ``1/sqrt(k)``: ``count_sensitivity(k) / sqrt(k) = 1`` for every k."""
        return self.count_sensitivity(k) / math.sqrt(k)

    def check(self, metric: str, k: int, screen: bool | None) -> None:
        """``ValueError`` unless this kernel supports ``metric``, ``k`` and ``screen``."""
        if self.metrics is not None:
            require(metric in self.metrics, "metric", f"one of {self.metrics} for kernel "
                    f"{self.name!r}", metric)
        if self.max_k is not None:
            require(k <= self.max_k, "k", f"at most {self.max_k} for kernel {self.name!r}", k)
        require(self.screens or not screen, "screen", f"None or False for kernel {self.name!r} "
                "(only kernels that declare screens=True take the bfloat16 screen)", screen)


_KERNELS: dict[str, VoteKernel] = {}
KERNELS: Mapping[str, VoteKernel] = types.MappingProxyType(_KERNELS)
"""Read-only view of the kernel registry: name -> :class:`VoteKernel`."""


def register_kernel(kernel: VoteKernel) -> VoteKernel:
    """Adds ``kernel`` to :data:`KERNELS` under ``kernel.name`` and returns it.

    Registering a name twice is a ``ValueError``.
    """
    require(isinstance(kernel, VoteKernel), "kernel", "a VoteKernel", type(kernel).__name__)
    require(isinstance(kernel.name, str) and bool(kernel.name), "kernel.name",
            "a non-empty string", kernel.name)
    require(kernel.name not in _KERNELS, "kernel.name", "a name not yet registered "
            f"(registered: {tuple(_KERNELS)})", kernel.name)
    _KERNELS[kernel.name] = kernel
    return kernel


def get_kernel(kernel: str | VoteKernel) -> VoteKernel:
    """The registered kernel called ``kernel`` (a :class:`VoteKernel` is returned as is).

    An unknown name is a ``ValueError`` that lists the registered ones.
    """
    if isinstance(kernel, VoteKernel):
        return kernel
    require(isinstance(kernel, str) and kernel in _KERNELS, "kernel",
            f"a VoteKernel or one of the registered kernels {tuple(_KERNELS)}", kernel)
    return _KERNELS[kernel]


# ---------------------------------------------------------------------------------------------
# The exact tiled kernel (pe_jax.voting.kernel), unchanged.


def _exact_counts(blocks, synthetic, classes, *, k, metric, mesh, synthetic_tile, screen):
    return vote_counts(blocks, synthetic, classes, score_fn=METRICS[metric], k=k,
                       synthetic_tile=synthetic_tile, screen=bool(screen), mesh=mesh)


register_kernel(VoteKernel(
    name="exact", counts=_exact_counts, exact=True, screens=True,
    description="tiled float32 k-NN, every metric, optional bfloat16 screen (never changes "
                "a vote)"))


# ---------------------------------------------------------------------------------------------
# Block kernels: a per-block nearest-neighbour search + one shared driver.


def _row_votes(idx: jax.Array, members: jax.Array, voting: jax.Array, n_syn: int) -> jax.Array:
    """``(bp, k)`` population positions a block's rows vote for; ``n_syn`` (dropped) for
    rows that do not vote, indices out of range or on padding, and repeats within a row."""
    width = members.shape[0]
    idx = idx.astype(jnp.int32)
    k = idx.shape[1]
    in_range = (idx >= 0) & (idx < width)
    position = members[jnp.clip(idx, 0, width - 1)]
    earlier = jnp.tril(jnp.ones((k, k), bool), -1)  # earlier[j, i]: i < j
    repeat = jnp.any((idx[:, :, None] == idx[:, None, :]) & earlier[None], axis=2)
    keep = voting[:, None] & in_range & (position >= 0) & ~repeat
    return jnp.where(keep, position, n_syn)


def _local_block_counts(blocks: PrivateBlocks, y: jax.Array, valid: jax.Array,
                        means: jax.Array, classes: jax.Array, *, nearest: NearestFn,
                        score_fn: ScoreFn, k: int, n_syn: int, vary: Callable) -> jax.Array:
    del vary  # run with check_vma=False (see _block_counts)
    def body(i, hist):
        c = blocks.block_class[i]
        idx = nearest(blocks.rows[i] - means[c], y[c], valid[c], k=k, score_fn=score_fn)
        require(idx.shape == (blocks.tile, k), "nearest(...)",
                f"an array of shape ({blocks.tile}, {k})", idx.shape)
        position = _row_votes(idx, classes[c], blocks.valid[i], n_syn)
        return hist.at[position.ravel()].add(1, mode="drop")

    hist = jnp.zeros((n_syn,), jnp.int32)
    return lax.fori_loop(0, blocks.rows.shape[0], body, hist)


@partial(jax.jit, static_argnames=("nearest", "score_fn", "k", "mesh"))
def _block_counts(blocks: PrivateBlocks, synthetic: jax.Array, classes: jax.Array, *,
                  nearest: NearestFn, score_fn: ScoreFn, k: int,
                  mesh: jax.sharding.Mesh | None) -> jax.Array:
    n_syn = synthetic.shape[0]
    valid = classes >= 0
    y = synthetic.astype(jnp.float32)[jnp.maximum(classes, 0)]  # (C, S, D)
    y, means = _centred(score_fn, y, valid)  # l2: centred on the class's synthetic mean
    count = partial(_local_block_counts, nearest=nearest, score_fn=score_fn, k=k, n_syn=n_syn)
    # check_vma=False: a plug-in search (a Pallas call in interpret mode, say) need not
    # type which of its values vary over the mesh; the psum of the per-device counts is
    # what the result is, either way.
    return sum_over_devices(count, blocks, (y, valid, means, classes), mesh, check_vma=False)


def _driver(nearest: NearestFn, blocks, synthetic, classes, *, k, metric, mesh,
            synthetic_tile=None, screen=None):
    del synthetic_tile, screen  # a block kernel scores a class's synthetic rows at once
    return _block_counts(blocks, synthetic, classes, nearest=nearest, score_fn=METRICS[metric],
                         k=k, mesh=mesh)


def block_kernel(nearest: NearestFn, *, name: str, exact: bool,
                 metrics: tuple[str, ...] | None = None, max_k: int | None = None,
                 description: str = "") -> VoteKernel:
    """A :class:`VoteKernel` (not registered) from a per-block search ``nearest``.

    ``nearest(x, y, valid, *, k, score_fn) -> (bp, k)`` int column indices into ``y``:

    * ``x (bp, D)`` float32: one block of private rows, all of one class, at the fixed
      private tile ``bp`` (rows that do not vote are zeros, their output is ignored);
    * ``y (S, D)`` float32: that class's synthetic rows (``S`` the largest class), centred
      on the class's synthetic mean when the metric is translation invariant (l2);
    * ``valid (S,)`` bool: false on padding rows (never vote for them);
    * ``score_fn``: ``METRICS[metric]`` (a :class:`~pe_jax.voting.metrics.LinearScore` for
      the built-in metrics; lower = nearer).

    Row i of the output must depend on ``x[i]``, ``y`` and ``valid`` only (the contract in
    the module docstring).  The driver loops over the blocks (``lax.fori_loop``), splits
    them over the mesh with ``jax.shard_map`` and sums the int32 counts with ``lax.psum``;
    it drops indices out of range, on padding and repeated within a row, so no row ever
    adds more than 1 to a count or more than ``k`` in all.
    """
    require(callable(nearest), "nearest", "a function", type(nearest).__name__)
    return VoteKernel(name=name, counts=partial(_driver, nearest), exact=exact, metrics=metrics,
                      max_k=max_k, screens=False, description=description)
