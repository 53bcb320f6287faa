"""The synthetic side of the voting kernel, prepared once per call: per-class tiles.

Class ``c``'s rows are gathered through the public :func:`~pe_jax.voting.layout.class_index`
table into ``(C, S, D)`` (padding columns score +inf, so they are never nearest), centred
on their class mean when the metric is translation invariant (l2), turned into the
metric's operands, and cut into tiles (:func:`~pe_jax.voting.nearest.split_synthetic`).

Why centre.  ``||z||^2 - 2 x.z`` loses everything to cancellation when the features share
a large offset (Inception-like features sit around 1e3-1e4): the float32 error scales
with ``||x|| ||z||``, not with the distances that decide the vote.  Shifting private and
synthetic rows by the same public vector ``m`` changes no l2 distance, and after the
shift the error scales with the spread of the data.  ``m`` is the class's synthetic
mean: public, and the same for every private row of the class.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pe_jax.voting import bf16_screen
from pe_jax.voting.metrics import LinearScore, ScoreFn
from pe_jax.voting.nearest import Tile, split_synthetic, synthetic_tile

__all__ = ["PreparedSynthetic", "prepare"]


class PreparedSynthetic(NamedTuple):
    """Per-class tiles of the synthetic rows (leading axis: class) and what scoring needs."""

    whole: Tile  # leaves (C, n_tiles, bs, ...)
    tails: tuple[Tile, ...]  # leaves (C, w, ...)
    means: jax.Array  # (C, D) float32 centres: subtracted from the class's private rows
    stats: bf16_screen.SyntheticStats | None  # the screen's maxima, None without screening

    def of_class(self, c: jax.Array) -> tuple[Tile, tuple[Tile, ...], jax.Array]:
        """Class ``c``'s tiles, remainder blocks and centring vector (``c`` may be traced)."""
        pick = lambda tree: jax.tree.map(lambda a: a[c], tree)  # noqa: E731
        return pick(self.whole), pick(self.tails), self.means[c]


def _centres(y: jax.Array, valid: jax.Array) -> jax.Array:
    """``(C, D)``: each class's mean over its valid rows, rounded per feature to a power of
    two at most the feature's spread.

    The rounding removes the offset up to less than the spread (all that centring is for)
    while keeping data on a coarse grid on it: integer features with spread >= 1 get an
    integer centre, so their centred values, and scores, stay exact and exact ties stay
    ties (broken to the lowest index).
    """
    count = jnp.maximum(jnp.sum(valid, axis=1), 1)[:, None]
    masked = lambda a: jnp.where(valid[..., None], a, 0.0)  # noqa: E731
    mean = jnp.sum(masked(y), axis=1) / count
    spread = jnp.sqrt(jnp.sum(masked(y - mean[:, None, :]) ** 2, axis=1) / count)
    grid = jnp.exp2(jnp.floor(jnp.log2(jnp.maximum(spread, jnp.finfo(jnp.float32).tiny))))
    return jnp.round(mean / grid) * grid


def _centred(score_fn: ScoreFn, y: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``y (C, S, D)`` minus its class centre (l2 only; zero otherwise), and the centres."""
    centres = jnp.zeros((y.shape[0], y.shape[2]), jnp.float32)
    if isinstance(score_fn, LinearScore) and score_fn.translation_invariant:
        centres = _centres(y, valid)
    return jnp.where(valid[..., None], y - centres[:, None, :], 0.0), centres


def prepare(score_fn: ScoreFn, synthetic: jax.Array, class_index: jax.Array, *, k: int,
            tile_cap: int, screen: bool) -> PreparedSynthetic:
    """Prepares ``synthetic (N_syn, D)`` by class for scoring against private blocks.

    ``class_index (C, S)`` lists each class's population positions (-1: padding).  With
    ``screen`` (LinearScore only) the tiles also carry the bfloat16 operand and the
    statistics of the screen's error bound; tiles are then at least ``k + 1`` wide,
    because the screen ranks one neighbour more than it votes for.
    """
    num_classes, width = class_index.shape
    valid = class_index >= 0
    y = synthetic.astype(jnp.float32)[jnp.maximum(class_index, 0)]
    y, means = _centred(score_fn, y, valid)
    bs = synthetic_tile(width, tile_cap, k + 1 if screen else k)
    if not isinstance(score_fn, LinearScore):
        return PreparedSynthetic(*split_synthetic({"y": y, "mask": valid}, bs), means, None)
    z, offset = score_fn.prepare(y.reshape(num_classes * width, -1))
    offset = jnp.where(valid.ravel(), offset, jnp.inf)  # padding is never nearest
    tiles = {"z": z, "offset": offset}
    stats = None
    if screen:
        z_split = bf16_screen.split(z, "synthetic")
        tiles["screen"] = z_split.operand
        stats = bf16_screen.synthetic_stats(z_split.norms, jnp.where(valid.ravel(), offset, 0.0))
    tiles = jax.tree.map(lambda a: a.reshape(num_classes, width, *a.shape[1:]), tiles)
    return PreparedSynthetic(*split_synthetic(tiles, bs), means, stats)
