"""Nearest synthetic rows of one block of private rows: the search inside the voting kernel.

The synthetic rows of a class are scored in tiles of ``bs`` columns: whole tiles in a
``lax.scan`` that keeps a running minimum (k = 1) or a running top-k (k > 1), and the rows
past the last whole tile as up to two smaller blocks, so no matmul flops go to padding.
Each tile's scores are one matmul, so throughput is close to the matmul roofline.  Among
equal scores the LOWEST synthetic index wins, and for k > 1 the k nearest are k distinct
indices, ties again to lower indices.

:func:`screened_nearest` ranks a block with the bfloat16 screen
(:mod:`pe_jax.voting.bf16_screen`) and says which rows it cannot decide.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from pe_jax.voting import bf16_screen
from pe_jax.voting.metrics import LinearScore, ScoreFn

# Column chunk of the two-level row argmin (see _row_min); tiles of at least
# two chunks are rounded to a multiple of it.
_CHUNK = 128

# Column chunk of the k > 1 top-k (see _row_top_k): a search over k * _TOPK_CHUNK candidates
# after one pass of chunk minima. Smaller than _CHUNK, so the final top_k sees 8x fewer
# columns; from 4 k chunks per tile on, it beat both 128-column chunks and a plain top_k in
# every case timed (k = 2, 5, 10; XLA allowed AVX-512, or limited to AVX2 or SSE4.2).
_TOPK_CHUNK = 16

# Synthetic scans up to this many tiles are unrolled (bounded compile time).
_MAX_UNROLL = 32

# A block of prepared synthetic rows: {"z", "offset"} (+ "screen", the bfloat16 operand,
# when screening) for a LinearScore, {"y", "mask"} for any other metric.
Tile = dict[str, jax.Array]
Scores = Callable[[jax.Array, Tile], jax.Array]


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def synthetic_tile(n_syn: int, cap: int, k: int) -> int:
    """Balanced synthetic tile in [k, min(cap, n_syn)], a multiple of ``_CHUNK``
    where possible (the rows past the last whole tile become smaller
    blocks, see :func:`split_synthetic`)."""
    cap = max(cap, k)
    n_tiles = -(-n_syn // cap)
    tile = max(-(-n_syn // n_tiles), k)  # top_k needs >= k columns per tile
    if tile >= 2 * _CHUNK:
        tile = min(_round_up(tile, _CHUNK), cap)
    if tile > n_syn:
        # An aligned tile plus a short tail: the row minimum (k = 1) and the chunked
        # top-k (k > 1) both work on whole chunks; top_k needs at least k columns.
        aligned = n_syn - n_syn % _CHUNK
        tile = aligned if aligned >= k else n_syn
    return tile


def _unroll(n_tiles: int) -> int:
    """Fully unroll short synthetic scans: static tile slices feed the matmul
    directly, which measured ~15 % faster on CPU than a rolled loop."""
    return max(1, n_tiles) if n_tiles <= _MAX_UNROLL else 1


def tile_rows(tile: Tile) -> int:
    return jax.tree.leaves(tile)[0].shape[0]


def nan_to_inf(s: jax.Array) -> jax.Array:
    return jnp.where(jnp.isnan(s), jnp.inf, s)


def tile_scores(score_fn: ScoreFn, x: jax.Array, tile: Tile) -> jax.Array:
    """Float32 scores of a (Bp, Bs) block with NaN and padding columns mapped to +inf."""
    if isinstance(score_fn, LinearScore):
        return nan_to_inf(score_fn.scores(x, tile["z"], tile["offset"]))
    s = nan_to_inf(score_fn(x, tile["y"]).astype(jnp.float32))
    return jnp.where(tile["mask"][None, :], s, jnp.inf)


def _first_min(s: jax.Array, target: jax.Array) -> jax.Array:
    """First column of each row of ``s`` equal to ``target`` (a plain reduction;
    it vectorises far better on CPU than a variadic argmin)."""
    iota = lax.broadcasted_iota(jnp.int32, s.shape, s.ndim - 1)
    return jnp.min(jnp.where(s == target[..., None], iota, s.shape[-1]), axis=-1)


def _min_without(s: jax.Array, column: jax.Array) -> jax.Array:
    """Minimum of each row of ``s`` leaving out its column ``column`` (+inf if none is left)."""
    iota = lax.broadcasted_iota(jnp.int32, s.shape, 1)
    return jnp.min(jnp.where(iota == column[:, None], jnp.inf, s), axis=1)


def _row_min(s: jax.Array, second: bool = False) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Row minimum, its first column and, with ``second``, the smallest other entry.

    With ``_CHUNK``-aligned tiles the wide pass computes only chunk minima; the
    first chunk holding the row minimum (which contains its first column) is
    gathered and searched, so the tile is read once instead of twice.  The second
    smallest entry is then the smaller of the other chunks' minima and the rest of
    that chunk.
    """
    rows, cols = s.shape
    if cols % _CHUNK or cols < 2 * _CHUNK:
        row_min = jnp.min(s, axis=1)
        first = _first_min(s, row_min)
        return row_min, first, _min_without(s, first) if second else None
    chunks = s.reshape(rows, cols // _CHUNK, _CHUNK)
    chunk_min = jnp.min(chunks, axis=2)
    row_min = jnp.min(chunk_min, axis=1)
    chunk = _first_min(chunk_min, row_min)
    block = jnp.take_along_axis(chunks, chunk[:, None, None], axis=1)[:, 0, :]
    first = _first_min(block, row_min)
    runner_up = None
    if second:
        runner_up = jnp.minimum(_min_without(chunk_min, chunk), _min_without(block, first))
    return row_min, chunk * _CHUNK + first, runner_up


def split_synthetic(synthetic: Tile, bs: int) -> tuple[Tile, tuple[Tile, ...]]:
    """Every class's whole tiles and its remainder as up to two smaller blocks.

    Leaves of ``synthetic`` are ``(C, S, ...)``; the whole tiles become
    ``(C, n, bs, ...)`` and each remainder block ``(C, w, ...)``.  Nothing is padded
    (padding to a multiple of ``bs`` wasted up to a few percent of the matmul
    flops).  The remainder is split into a ``_CHUNK``-aligned head and a short
    tail, so the chunked row minimum (k = 1) and chunked top-k (k > 1) cover all
    but < ``_CHUNK`` columns.
    """
    n_syn = jax.tree.leaves(synthetic)[0].shape[1]
    n_full = n_syn // bs
    split = n_full * bs + (n_syn - n_full * bs) // _CHUNK * _CHUNK
    whole = jax.tree.map(
        lambda a: a[:, : n_full * bs].reshape(a.shape[0], n_full, bs, *a.shape[2:]), synthetic)
    bounds = [(n_full * bs, split), (split, n_syn)]
    tails = tuple(jax.tree.map(lambda a: a[:, lo:hi], synthetic) for lo, hi in bounds if hi > lo)
    return whole, tails


def _scan_tiles(step, carry, ys: Tile, tails: tuple[Tile, ...], first: int = 0):
    """Run ``step(carry, tile, col0) -> carry`` over the whole tiles
    ``ys[first:]`` (a scan) and then over the remainder blocks ``tails``."""
    n_tiles, bs = jax.tree.leaves(ys)[0].shape[:2]

    def body(carry, j):
        return step(carry, jax.tree.map(lambda a: a[j], ys), j * bs), None

    n_scan = n_tiles - first
    if n_scan:
        carry, _ = lax.scan(body, carry, jnp.arange(first, n_tiles), unroll=_unroll(n_scan))
    col0 = n_tiles * bs
    for tile in tails:
        carry = step(carry, tile, col0)
        col0 += tile_rows(tile)
    return carry


def nearest_1(
    scores: Scores,
    x: jax.Array,
    ys: Tile,
    tails: tuple[Tile, ...],
    vary: Callable,
    second: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Per row of ``x``: the smallest score, its synthetic index (lowest on ties) and,
    with ``second``, the smallest score of any other synthetic row."""

    def step(carry, tile, col0):
        best_s, best_i, next_s = carry
        tile_min, tile_arg, tile_next = _row_min(scores(x, tile), second)
        better = tile_min < best_s  # strict: earlier (lower-index) tiles win ties
        if second:
            # a new best leaves the old best as a runner-up, else this tile's minimum is one
            next_s = jnp.minimum(
                jnp.where(better, best_s, next_s), jnp.where(better, tile_next, tile_min)
            )
        best_i = jnp.where(better, col0 + tile_arg, best_i)
        return jnp.where(better, tile_min, best_s), best_i, next_s

    inf = jnp.full((x.shape[0],), jnp.inf, jnp.float32)
    init = vary((inf, jnp.zeros((x.shape[0],), jnp.int32), inf if second else None))
    return _scan_tiles(step, init, ys, tails)


def _row_top_k(s: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Negated k smallest scores of each row of ``s`` and their columns, ties to lower columns.

    On wide tiles the search first keeps the k chunks of ``_TOPK_CHUNK`` columns whose minima
    (first minimum on ties) are smallest: each of the row's k nearest lies in one of them,
    since a chunk left out is preceded by k kept chunks that each hold a nearer (or equal and
    lower-indexed) column. ``top_k`` then runs over those ``k * _TOPK_CHUNK`` columns, taken
    in column order so that its lower-position tie rule is still the lower-index rule,
    instead of over the whole tile: most of the cost of k > 1 on CPU.
    """
    rows, cols = s.shape
    if cols % _TOPK_CHUNK or cols < 4 * k * _TOPK_CHUNK:
        return lax.top_k(-s, k)  # top_k prefers the lower index among equals
    chunks = s.reshape(rows, cols // _TOPK_CHUNK, _TOPK_CHUNK)
    _, kept = lax.top_k(-jnp.min(chunks, axis=2), k)
    kept = jnp.sort(kept, axis=1)
    candidates = jnp.take_along_axis(chunks, kept[:, :, None], axis=1).reshape(rows, -1)
    neg, pos = lax.top_k(-candidates, k)
    return neg, (jnp.take_along_axis(kept, pos // _TOPK_CHUNK, axis=1) * _TOPK_CHUNK
                 + pos % _TOPK_CHUNK)


def nearest_k(
    scores: Scores, x: jax.Array, ys: Tile, tails: tuple[Tile, ...], k: int
) -> tuple[jax.Array, jax.Array]:
    """Negated scores and indices (Bp, k) of the k nearest synthetic rows, nearest
    first, ties to lower indices."""

    def tile_topk(tile, col0):
        neg, idx = _row_top_k(scores(x, tile), min(k, tile_rows(tile)))
        return neg, idx + col0

    def step(carry, tile, col0):
        best_neg, best_i = carry
        neg, idx = tile_topk(tile, col0)
        # [best, new]: on equal scores the earlier (lower-index) entries win.
        merged_neg, pos = lax.top_k(jnp.concatenate([best_neg, neg], axis=1), k)
        merged_i = jnp.take_along_axis(jnp.concatenate([best_i, idx], axis=1), pos, axis=1)
        return merged_neg, merged_i

    # The first tile (>= k rows) initialises the carry, so no placeholder can
    # tie with real scores.
    first = jax.tree.map(lambda a: a[0], ys)
    return _scan_tiles(step, tile_topk(first, 0), ys, tails, first=1)


def screened_nearest(
    score_fn: LinearScore,
    stats: bf16_screen.SyntheticStats,
    x: jax.Array,
    ys: Tile,
    tails: tuple[Tile, ...],
    k: int,
    vary: Callable,
) -> tuple[jax.Array, jax.Array]:
    """The k nearest (Bp, k) by bfloat16-screened scores, and which rows are in doubt.

    A row is in doubt unless its k-th and (k+1)-th screened scores are more than
    twice :func:`bf16_screen.error_bound` apart; every other row has exactly the
    float32 kernel's k nearest.
    """
    x_split = bf16_screen.split(x, "private")
    bound = bf16_screen.error_bound(x_split.norms, stats, x.shape[1], score_fn.scale)

    def scores(operand, tile):
        s = score_fn.scores(operand, tile["screen"], tile["offset"], dot=bf16_screen.dot)
        return nan_to_inf(s)

    if k == 1:
        best, idx, runner_up = nearest_1(scores, x_split.operand, ys, tails, vary, second=True)
        idx, margin = idx[:, None], runner_up - best
    else:
        neg, idx = nearest_k(scores, x_split.operand, ys, tails, k + 1)
        idx, margin = idx[:, :k], neg[:, k - 1] - neg[:, k]
    return idx, ~(margin > 2 * bound)  # NaN or inf: in doubt


