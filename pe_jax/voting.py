"""Nearest-neighbour vote histograms: the only place PE touches private data.

In every Private Evolution iteration each private embedding votes for its ``k``
nearest synthetic embeddings with weight ``1/sqrt(k)``, so one row's vote vector
has L2 norm exactly 1 (k = 1) or at most 1 (any k): the histogram has add/remove
L2 sensitivity 1 and the discrete Gaussian noise added by ``pe_jax.privacy``
is calibrated to that.  This module computes the *clean* histogram; noise is added
elsewhere.

Why a dedicated kernel
----------------------
A brute-force ``argmin(cdist(private, synthetic))`` materialises an
``N_priv x N_syn`` matrix (16 GB for 200k x 20k in float32).  Here the work is
tiled over both axes: a loop over blocks of ``private_tile`` private rows and,
inside, a scan over blocks of ``synthetic_tile`` synthetic rows that keeps a
running minimum (k = 1) or a running top-k (k > 1).  Peak memory therefore
depends on the tile sizes, not on ``N_priv``; the private array is read in
place (windows of ``private_tile`` rows, the last one clamped to the end and
masked), never padded or copied.  The synthetic set is not padded either: the
rows past the last whole tile are scored as one or two smaller blocks, so no
matmul flops are spent on padding and no padding mask is needed.  Each block's
scores are one big matmul, so throughput is close to the matmul roofline.
Votes are int32 counts (integer histograms are what the discrete-Gaussian
release expects); for k > 1 they are divided by ``sqrt(k)`` once, at the end.

With a ``jax.sharding.Mesh`` the private rows are split over the mesh's first
axis with ``jax.shard_map``; every device votes over its local rows against the
replicated synthetic set and ``lax.psum`` adds the integer counts, so the
result is identical for any number of devices.  (Only there are the private
rows padded, to a multiple of the device count, when they do not divide.)

Exactness and tie-breaking
--------------------------
Scores are computed in float32 (inputs of any float dtype are cast first) with
``precision=HIGHEST``.  Whenever the distances are exactly representable (e.g.
small integer-valued embeddings) the result equals a float64 brute force with a
stable argsort: among equal scores the LOWEST synthetic index wins, and for
k > 1 the k nearest are k distinct indices, ties again to lower indices.

Screening
---------
For the built-in metrics and large enough problems each block is first ranked
with one bfloat16 matmul over three-part splits of the operands
(:mod:`pe_jax.bf16_screen`; 1.7-2x a float32 matmul on this repository's CPU).
A private row keeps the screen's answer only when its k-th and (k+1)-th
screened scores are further apart than twice a proven bound on the screen's
error against the float32 kernel; the other rows (a few percent on random
data) are queued and rescored by the float32 kernel.  So the votes are exactly
the float32 kernel's, and the screen changes only the speed.

Metrics
-------
A metric is one function ``score(x, y) -> (Bp, Bs)`` of a float32 private tile
``x (Bp, D)`` and synthetic tile ``y (Bs, D)``, lower = nearer, registered with
:func:`register_metric`.  Terms that are constant per private row may be
dropped (l2 drops ``||x||^2``).  Built in: ``l2``, ``cosine``,
``inner_product``, each a :class:`LinearScore` (the form the screen needs; a
registered plain function is always scored in float32); :data:`METRICS` maps
names to score functions.

Robustness
----------
Private rows containing NaN or Inf get zero votes (documented behaviour, so a
corrupt row can neither crash a DP run nor poison the histogram); an empty
private set gives an all-zero histogram.  Synthetic embeddings are public and
must be finite (``ValueError`` otherwise).  A NaN score (only possible through
float32 overflow of a finite row) is treated as +inf, so every finite row casts
exactly k votes for k distinct synthetic rows.
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

from pe_jax import bf16_screen
from pe_jax._checks import check_int

__all__ = [
    "DEFAULT_TILES",
    "METRICS",
    "LinearScore",
    "nn_histogram",
    "register_metric",
]

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]

# Default (private_tile, synthetic_tile) per platform.  CPU: measured with
# experiments/bench_voting.py on a 2-core AVX-512 machine, where 512 x 4096
# (an 8 MiB score block) ran at 1.1-1.9x plain-matmul GFLOP/s and was the best
# of the tiles tried from 128 x 1024 to 4096 x 20000 (most within ~10 %).  Accelerators: larger blocks
# keep the matrix units busy (not measured here; override per call if needed).
DEFAULT_TILES: Mapping[str, tuple[int, int]] = types.MappingProxyType(
    {"cpu": (512, 4096), "gpu": (4096, 16384), "tpu": (4096, 16384)}
)

# Column chunk of the two-level row argmin (see _row_min); tiles of at least
# two chunks are rounded to a multiple of it.
_CHUNK = 128

# Synthetic scans up to this many tiles are unrolled (bounded compile time).
_MAX_UNROLL = 32

# nn_histogram screens by default from this N_syn * D on.  Measured on the 2-core
# CPU, screened over float32 time: 1.0-1.33 at (10k, 2k, 64), 0.91 at
# (20k, 10k, 32), 0.75 at (20k, 10k, 64), 0.65-0.70 at D = 512.
_SCREEN_MIN_SIZE = 2**18

_SCORES: dict[str, ScoreFn] = {}
METRICS: Mapping[str, ScoreFn] = types.MappingProxyType(_SCORES)
"""Read-only view of the metric registry: name -> score function."""


def register_metric(name: str) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator registering ``score(x (Bp,D) f32, y (Bs,D) f32) -> (Bp,Bs)``.

    Lower scores are nearer.  The function must be jit-traceable and treat rows
    independently (row i of the output depends only on ``x[i]`` and ``y``).
    Registering an existing name is a ``ValueError``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"metric name must be a non-empty string, got {name!r}")
    if name in _SCORES:
        raise ValueError(f"metric {name!r} is already registered")

    def decorate(fn: ScoreFn) -> ScoreFn:
        _SCORES[name] = fn
        return fn

    return decorate


def _dot(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x @ y.T`` in float32 at full precision (no TF32/bf16 passes)."""
    return lax.dot_general(
        x,
        y,
        (((1,), (1,)), ((), ())),
        precision=lax.Precision.HIGHEST,
        preferred_element_type=jnp.float32,
    )


@dataclasses.dataclass(frozen=True)
class LinearScore:
    """A score ``offset - scale * (x . z)`` of prepared synthetic rows ``z``: every built-in metric.

    ``z`` is ``y``, or ``y / ||y||`` with ``normalise`` (zero rows stay zero, similarity
    0 with everything, never NaN); ``offset`` is ``||z||^2`` with ``squared_norm_offset``,
    else 0.  The kernel prepares ``z`` and the offsets once per call, and can screen such
    scores with bfloat16 matmuls (:mod:`pe_jax.bf16_screen`).  Called as
    ``score(x, y)`` it scores like any registered metric function.
    """

    scale: float
    normalise: bool = False
    squared_norm_offset: bool = False

    def prepare(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Float32 ``z (Bs, D)`` and ``offset (Bs,)`` of synthetic rows ``y``."""
        z = y.astype(jnp.float32)
        if self.normalise:
            norm = jnp.sqrt(jnp.sum(z * z, axis=1, keepdims=True))
            z = z / jnp.maximum(norm, jnp.finfo(jnp.float32).tiny)
        if not self.squared_norm_offset:
            return z, jnp.zeros(z.shape[:1], z.dtype)
        return z, jnp.sum(z * z, axis=1)

    def scores(self, x: jax.Array, z: jax.Array, offset: jax.Array, dot=_dot) -> jax.Array:
        """Float32 ``(Bp, Bs)`` scores of private rows ``x`` against prepared rows.

        ``dot(x, z) -> (Bp, Bs)`` is the float32 matmul, or the screen's on its operands.
        """
        return offset[None, :] - self.scale * dot(x, z)

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return self.scores(x, *self.prepare(y))


# Squared L2 distance minus the per-row constant ||x||^2.
register_metric("l2")(LinearScore(scale=2.0, squared_norm_offset=True))
# Negative cosine similarity up to the positive per-row factor 1/||x||.
register_metric("cosine")(LinearScore(scale=1.0, normalise=True))
# Negative inner product (maximum inner product search).
register_metric("inner_product")(LinearScore(scale=1.0))


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _synthetic_tile(n_syn: int, cap: int, k: int) -> int:
    """Balanced synthetic tile in [k, min(cap, n_syn)], a multiple of ``_CHUNK``
    where possible (the rows past the last whole tile become smaller
    blocks, see :func:`_split_synthetic`)."""
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


# A block of synthetic rows, prepared: {"z", "offset"} (+ "screen", the bfloat16
# operand, when screening) for a LinearScore, {"y"} for any other metric.
Tile = dict[str, jax.Array]


def _prepare(
    score_fn: ScoreFn, synthetic: jax.Array, screen: bool
) -> tuple[Tile, bf16_screen.SyntheticStats | None]:
    """The whole synthetic set as one :data:`Tile`, prepared once per call, and the
    screen's statistics of it (``None`` without screening)."""
    if not isinstance(score_fn, LinearScore):
        return {"y": synthetic.astype(jnp.float32)}, None
    z, offset = score_fn.prepare(synthetic)
    if not screen:
        return {"z": z, "offset": offset}, None
    z_split = bf16_screen.split(z, "synthetic")
    tile = {"z": z, "offset": offset, "screen": z_split.operand}
    return tile, bf16_screen.synthetic_stats(z_split.norms, offset)


def _tile_rows(tile: Tile) -> int:
    return jax.tree.leaves(tile)[0].shape[0]


def _nan_to_inf(s: jax.Array) -> jax.Array:
    return jnp.where(jnp.isnan(s), jnp.inf, s)


def _tile_scores(score_fn: ScoreFn, x: jax.Array, tile: Tile) -> jax.Array:
    """Float32 scores of a (Bp, Bs) block with NaN mapped to +inf."""
    if isinstance(score_fn, LinearScore):
        return _nan_to_inf(score_fn.scores(x, tile["z"], tile["offset"]))
    return _nan_to_inf(score_fn(x, tile["y"]).astype(jnp.float32))


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


def _split_synthetic(synthetic: Tile, bs: int) -> tuple[Tile, tuple[Tile, ...]]:
    """Whole tiles (leaves ``(n, bs, ...)``) and the remainder as up to two smaller blocks.

    Nothing is padded (padding to a multiple of ``bs`` wasted up to a few
    percent of the matmul flops).  The remainder is split into a
    ``_CHUNK``-aligned head and a short tail, so the chunked row minimum (k = 1)
    and chunked top-k (k > 1) cover all but < ``_CHUNK`` columns.  The blocks are
    sliced here, once, rather than inside the private loop, where XLA copies
    them on every iteration.
    """
    n_syn = _tile_rows(synthetic)
    n_full = n_syn // bs
    split = n_full * bs + (n_syn - n_full * bs) // _CHUNK * _CHUNK
    whole = jax.tree.map(lambda a: a[: n_full * bs].reshape(n_full, bs, *a.shape[1:]), synthetic)
    bounds = [(n_full * bs, split), (split, n_syn)]
    tails = tuple(jax.tree.map(lambda a: a[lo:hi], synthetic) for lo, hi in bounds if hi > lo)
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
        col0 += _tile_rows(tile)
    return carry


Scores = Callable[[jax.Array, Tile], jax.Array]


def _nearest_1(
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

    On wide tiles the search first keeps the k chunks of ``_CHUNK`` columns whose minima
    (first minimum on ties) are smallest: each of the row's k nearest lies in one of them,
    since a chunk left out is preceded by k kept chunks that each hold a nearer (or equal and
    lower-indexed) column. ``top_k`` then runs over those ``k * _CHUNK`` columns, taken in
    column order so that its lower-position tie rule is still the lower-index rule, instead
    of over the whole tile: most of the cost of k > 1 on CPU.
    """
    rows, cols = s.shape
    if cols % _CHUNK or cols < 4 * k * _CHUNK:
        return lax.top_k(-s, k)  # top_k prefers the lower index among equals
    chunks = s.reshape(rows, cols // _CHUNK, _CHUNK)
    _, kept = lax.top_k(-jnp.min(chunks, axis=2), k)
    kept = jnp.sort(kept, axis=1)
    candidates = jnp.take_along_axis(chunks, kept[:, :, None], axis=1).reshape(rows, -1)
    neg, pos = lax.top_k(-candidates, k)
    return neg, jnp.take_along_axis(kept, pos // _CHUNK, axis=1) * _CHUNK + pos % _CHUNK


def _nearest_k(
    scores: Scores, x: jax.Array, ys: Tile, tails: tuple[Tile, ...], k: int
) -> tuple[jax.Array, jax.Array]:
    """Negated scores and indices (Bp, k) of the k nearest synthetic rows, nearest
    first, ties to lower indices."""

    def tile_topk(tile, col0):
        neg, idx = _row_top_k(scores(x, tile), min(k, _tile_rows(tile)))
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


def _screened_nearest(
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
        return _nan_to_inf(s)

    if k == 1:
        best, idx, runner_up = _nearest_1(scores, x_split.operand, ys, tails, vary, second=True)
        idx, margin = idx[:, None], runner_up - best
    else:
        neg, idx = _nearest_k(scores, x_split.operand, ys, tails, k + 1)
        idx, margin = idx[:, :k], neg[:, k - 1] - neg[:, k]
    return idx, ~(margin > 2 * bound)  # NaN or inf: in doubt


def _local_counts(
    x: jax.Array,
    ys: Tile,
    tails: tuple[Tile, ...],
    stats: bf16_screen.SyntheticStats | None,
    *,
    score_fn: ScoreFn,
    k: int,
    private_tile: int,
    n_valid: jax.Array | int,
    axis: str | None = None,
) -> jax.Array:
    """int32 vote counts over ``[*ys, *tails]`` of the first ``n_valid`` rows of ``x``.

    With ``stats`` (screening) each block of private rows is scored in bfloat16;
    rows in doubt are queued, and every ``private_tile`` of them are rescored
    by the float32 kernel (the rest at the end), so memory stays flat in ``N_priv``.
    Inside ``shard_map`` over ``axis`` the loop carries are marked as varying
    over it (they hold per-device values).
    """
    if axis is None:
        vary = lambda a: a  # noqa: E731
    else:
        vary = partial(jax.tree.map, lambda a: lax.pcast(a, axis, to="varying"))
    n = x.shape[0]
    bp = min(private_tile, n)
    n_tiles = -(-n // bp)
    n_syn = math.prod(jax.tree.leaves(ys)[0].shape[:2]) + sum(_tile_rows(t) for t in tails)
    exact = partial(_tile_scores, score_fn)

    def nearest(xt):
        if k == 1:
            return _nearest_1(exact, xt, ys, tails, vary)[1][:, None]
        return _nearest_k(exact, xt, ys, tails, k)[1]

    def add_votes(hist, idx, voting):
        votes = jnp.broadcast_to(voting[:, None].astype(jnp.int32), idx.shape)
        return hist.at[idx.ravel()].add(votes.ravel(), mode="drop")

    def window(i):
        """Private block ``i``: float32 rows (invalid ones zeroed), row indices, validity."""
        lo = i * bp
        start = jnp.minimum(lo, n - bp)  # clamp the last window; overlap is masked
        xt = lax.dynamic_slice_in_dim(x, start, bp).astype(jnp.float32)
        row = start + jnp.arange(bp, dtype=jnp.int32)
        ok = (row >= lo) & (row < n_valid) & jnp.all(jnp.isfinite(xt), axis=1)
        return jnp.where(ok[:, None], xt, 0.0), row, ok

    hist0 = vary(jnp.zeros((n_syn,), jnp.int32))
    if stats is None:

        def body(i, hist):
            xt, _, ok = window(i)
            return add_votes(hist, nearest(xt), ok)

        return lax.fori_loop(0, n_tiles, body, hist0)

    def rescore(carry):
        """Float32 votes of the first ``bp`` queued rows (fewer at the end)."""
        hist, queue, queued = carry
        xt = jnp.take(x, queue[:bp], axis=0).astype(jnp.float32)
        hist = add_votes(hist, nearest(xt), jnp.arange(bp) < queued)
        queue = jnp.concatenate([queue[bp:], jnp.zeros((bp,), jnp.int32)])
        return hist, queue, jnp.maximum(queued - bp, 0)

    def screened_body(i, carry):
        hist, queue, queued = carry
        xt, row, ok = window(i)
        idx, doubt = _screened_nearest(score_fn, stats, xt, ys, tails, k, vary)
        doubt &= ok
        hist = add_votes(hist, idx, ok & ~doubt)
        slot = jnp.where(doubt, queued + jnp.cumsum(doubt) - 1, 2 * bp)
        queue = queue.at[slot].set(row, mode="drop")
        carry = (hist, queue, queued + jnp.sum(doubt, dtype=jnp.int32))
        return lax.cond(carry[2] >= bp, rescore, lambda c: c, carry)

    init = (hist0, vary(jnp.zeros((2 * bp,), jnp.int32)), vary(jnp.int32(0)))
    carry = lax.fori_loop(0, n_tiles, screened_body, init)
    return lax.cond(carry[2] > 0, rescore, lambda c: c, carry)[0]


@partial(
    jax.jit,
    static_argnames=("score_fn", "k", "private_tile", "synthetic_tile", "screen", "mesh"),
)
def _histogram(
    private: jax.Array,
    synthetic: jax.Array,
    *,
    score_fn: ScoreFn,
    k: int,
    private_tile: int,
    synthetic_tile: int,
    screen: bool,
    mesh: jax.sharding.Mesh | None,
) -> jax.Array:
    """Compiled core; arguments are validated by :func:`nn_histogram`."""
    n_priv, n_syn = private.shape[0], synthetic.shape[0]
    screen = screen and isinstance(score_fn, LinearScore) and k < n_syn
    prepared, stats = _prepare(score_fn, synthetic, screen)
    # the screen ranks k + 1 neighbours: tiles need that many columns
    bs = _synthetic_tile(n_syn, synthetic_tile, k + 1 if screen else k)
    ys, tails = _split_synthetic(prepared, bs)
    count = partial(_local_counts, score_fn=score_fn, k=k, private_tile=private_tile)

    if mesh is None:
        hist = count(private, ys, tails, stats, n_valid=n_priv)
    else:
        axis = mesh.axis_names[0]
        n_dev = mesh.shape[axis]
        n_local = -(-n_priv // n_dev)
        if n_local * n_dev != n_priv:
            private = jnp.pad(private, ((0, n_local * n_dev - n_priv), (0, 0)))
        if mesh.axis_types[0] == jax.sharding.AxisType.Explicit:
            private = jax.reshard(private, jax.P(axis))
            ys, tails, stats = jax.reshard((ys, tails, stats), jax.P())

        def per_device(x_local, ys_rep, tails_rep, stats_rep):
            first = lax.axis_index(axis) * n_local
            n_valid = jnp.clip(n_priv - first, 0, n_local)
            counts = count(x_local, ys_rep, tails_rep, stats_rep, n_valid=n_valid, axis=axis)
            return lax.psum(counts, axis)

        hist = jax.shard_map(
            per_device,
            mesh=mesh,
            in_specs=(jax.P(axis), jax.P(), jax.P(), jax.P()),
            out_specs=jax.P(),
        )(private, ys, tails, stats)

    if k == 1:
        return hist
    # XLA rewrites division by a broadcast scalar into multiplication by its
    # rounded reciprocal; an opaque full-size divisor keeps the division exact:
    # values are float32(count) / float32(sqrt(k)), correctly rounded.
    divisor = lax.optimization_barrier(jnp.full(hist.shape, math.sqrt(k), jnp.float32))
    return hist.astype(jnp.float32) / divisor


def _default_screen(n_syn: int, dim: int) -> bool:
    """Whether ``screen=None`` screens: from ``N_syn * D >= _SCREEN_MIN_SIZE`` on."""
    return n_syn * dim >= _SCREEN_MIN_SIZE


def _as_matrix(name: str, a) -> jax.Array:
    if not isinstance(a, jax.Array):
        try:
            a = jnp.asarray(a)
        except TypeError as error:  # strings, objects: JAX has no such dtype
            raise ValueError(f"{name} must be a real numeric array: {error}") from None
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows, features), got shape {a.shape}")
    if not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer)):
        raise ValueError(f"{name} must have a real numeric dtype, got {a.dtype}")
    return a


def nn_histogram(
    private,
    synthetic,
    *,
    k: int = 1,
    metric: str = "l2",
    mesh: jax.sharding.Mesh | None = None,
    private_tile: int | None = None,
    synthetic_tile: int | None = None,
    screen: bool | None = None,
) -> jax.Array:
    """Clean nearest-neighbour vote histogram of ``private`` over ``synthetic``.

    Each finite private row votes for its ``k`` nearest synthetic rows (k
    distinct indices) with weight ``1/sqrt(k)``.  Ties are broken towards the
    LOWEST synthetic index (exact whenever the float32 scores are exact).
    Private rows with any NaN/Inf entry get zero votes; an empty private set
    gives zeros.

    Args:
      private: ``(N_priv, D)`` embeddings (any real dtype; scored in float32).
      synthetic: ``(N_syn, D)`` finite embeddings, ``N_syn >= 1``.
      k: number of neighbours, ``1 <= k <= N_syn``.
      metric: a name in :data:`METRICS` (``l2``, ``cosine``, ``inner_product``).
      mesh: optional mesh; private rows are split over its first axis and the
        per-device counts summed with ``psum``.  The result does not depend on
        the number of devices.  Inside an outer ``jit`` with an Explicit-axis
        mesh, trace under ``jax.set_mesh(mesh)``.
      private_tile: private rows per block (clipped to the rows available);
        ``None`` takes the platform default from :data:`DEFAULT_TILES`.
      synthetic_tile: maximum synthetic rows per block (balanced so the last
        one is not mostly padding); ``None`` takes the platform default.
      screen: for the built-in metrics, rank every block with bfloat16 matmuls first
        and rescore only the rows whose ranking the rounding could change with the
        float32 kernel (:mod:`pe_jax.bf16_screen`).  The votes are the same either
        way.  ``None`` screens when ``N_syn * D >= 2**18`` (below that the
        screen's fixed cost per block outweighs its faster matmul on CPU);
        ``True`` always, ``False`` never.

    Returns:
      ``(N_syn,)`` int32 counts if ``k == 1``, else float32 ``counts / sqrt(k)``.
    """
    private = _as_matrix("private", private)
    synthetic = _as_matrix("synthetic", synthetic)
    n_syn, dim = synthetic.shape
    if n_syn < 1:
        raise ValueError("synthetic must have at least one row (N_syn >= 1), got 0")
    if dim < 1:
        raise ValueError("synthetic must have at least one feature column (D >= 1), got 0")
    if private.shape[1] != dim:
        raise ValueError(
            f"private and synthetic must have the same feature dimension D: "
            f"private has {private.shape[1]}, synthetic has {dim}"
        )
    k = check_int("k", k, 1, n_syn)
    if metric not in _SCORES:
        raise ValueError(f"metric must be one of {tuple(_SCORES)}, got {metric!r}")
    if screen is not None and not isinstance(screen, bool):
        raise ValueError(f"screen must be True, False or None, got {screen!r}")
    if screen is None:
        screen = _default_screen(n_syn, dim)
    if mesh is not None and not isinstance(mesh, jax.sharding.Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh or None, got {type(mesh).__name__}")
    platform = jax.default_backend() if mesh is None else mesh.devices.flat[0].platform
    default_p, default_s = DEFAULT_TILES.get(platform, DEFAULT_TILES["gpu"])
    private_tile = check_int("private_tile", default_p if private_tile is None else private_tile, 1)
    synthetic_tile = check_int(
        "synthetic_tile", default_s if synthetic_tile is None else synthetic_tile, 1
    )
    if not isinstance(synthetic, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(synthetic))):
        raise ValueError("synthetic embeddings must be finite (found NaN or Inf)")

    if private.shape[0] == 0:
        return jnp.zeros((n_syn,), jnp.int32 if k == 1 else jnp.float32)
    call = partial(
        _histogram,
        score_fn=_SCORES[metric],
        k=k,
        private_tile=private_tile,
        synthetic_tile=synthetic_tile,
        screen=screen,
        mesh=mesh,
    )
    explicit = mesh is not None and jax.sharding.AxisType.Explicit in mesh.axis_types
    if explicit and not isinstance(private, jax.core.Tracer):
        with jax.set_mesh(mesh):  # explicit axes: resharding needs the mesh in context
            return call(private, synthetic)
    return call(private, synthetic)
