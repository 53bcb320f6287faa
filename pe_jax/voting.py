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

Metrics
-------
A metric is one function ``score(x, y) -> (Bp, Bs)`` of a float32 private tile
``x (Bp, D)`` and synthetic tile ``y (Bs, D)``, lower = nearer, registered with
:func:`register_metric`.  Terms that are constant per private row may be
dropped (l2 drops ``||x||^2``).  Built in: ``l2``, ``cosine``,
``inner_product``; :data:`METRICS` maps names to score functions.

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

import math
import types
from collections.abc import Callable, Mapping
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from pe_jax._checks import check_int

__all__ = [
    "DEFAULT_TILES",
    "METRICS",
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


@register_metric("l2")
def _l2(x: jax.Array, y: jax.Array) -> jax.Array:
    """Squared L2 distance minus the per-row constant ``||x||^2``."""
    return jnp.sum(y * y, axis=1)[None, :] - 2.0 * _dot(x, y)


@register_metric("cosine")
def _cosine(x: jax.Array, y: jax.Array) -> jax.Array:
    """Negative cosine similarity up to a positive per-row factor ``1/||x||``.

    Zero synthetic rows have similarity 0 with everything (never NaN).
    """
    norm = jnp.sqrt(jnp.sum(y * y, axis=1, keepdims=True))
    tiny = jnp.finfo(jnp.float32).tiny
    return -_dot(x, y / jnp.maximum(norm, tiny))


@register_metric("inner_product")
def _inner_product(x: jax.Array, y: jax.Array) -> jax.Array:
    """Negative inner product (maximum inner product search)."""
    return -_dot(x, y)


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


def _tile_scores(score_fn: ScoreFn, x: jax.Array, y: jax.Array) -> jax.Array:
    """Scores of a (Bp, Bs) block with NaN mapped to +inf."""
    s = score_fn(x, y).astype(jnp.float32)
    return jnp.where(jnp.isnan(s), jnp.inf, s)


def _first_min(s: jax.Array, target: jax.Array) -> jax.Array:
    """First column of each row of ``s`` equal to ``target`` (a plain reduction;
    it vectorises far better on CPU than a variadic argmin)."""
    iota = lax.broadcasted_iota(jnp.int32, s.shape, s.ndim - 1)
    return jnp.min(jnp.where(s == target[..., None], iota, s.shape[-1]), axis=-1)


def _row_min(s: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Row minimum and its first column.

    With ``_CHUNK``-aligned tiles the wide pass computes only chunk minima; the
    first chunk holding the row minimum (which contains its first column) is
    gathered and searched, so the tile is read once instead of twice.
    """
    rows, cols = s.shape
    if cols % _CHUNK or cols < 2 * _CHUNK:
        row_min = jnp.min(s, axis=1)
        return row_min, _first_min(s, row_min)
    chunks = s.reshape(rows, cols // _CHUNK, _CHUNK)
    chunk_min = jnp.min(chunks, axis=2)
    row_min = jnp.min(chunk_min, axis=1)
    first = _first_min(chunk_min, row_min)
    block = jnp.take_along_axis(chunks, first[:, None, None], axis=1)[:, 0, :]
    return row_min, first * _CHUNK + _first_min(block, row_min)


def _split_synthetic(synthetic: jax.Array, bs: int) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """Whole tiles ``(n, bs, D)`` and the remainder as up to two smaller blocks.

    Nothing is padded (padding to a multiple of ``bs`` wasted up to a few
    percent of the matmul flops).  The remainder is split into a
    ``_CHUNK``-aligned head and a short tail, so the chunked row minimum (k = 1)
    and chunked top-k (k > 1) cover all but < ``_CHUNK`` columns.  The blocks are
    sliced here, once, rather than inside the private loop, where XLA copies
    them on every iteration.
    """
    n_full = synthetic.shape[0] // bs
    rest = synthetic[n_full * bs :]
    split = rest.shape[0] - rest.shape[0] % _CHUNK
    tails = tuple(b for b in (rest[:split], rest[split:]) if b.shape[0])
    return synthetic[: n_full * bs].reshape(n_full, bs, synthetic.shape[1]), tails


def _scan_tiles(step, carry, ys: jax.Array, tails: tuple[jax.Array, ...], first: int = 0):
    """Run ``step(carry, y_tile, col0) -> carry`` over the whole tiles
    ``ys[first:]`` (a scan) and then over the remainder blocks ``tails``."""
    bs = ys.shape[1]

    def body(carry, j):
        return step(carry, ys[j], j * bs), None

    n_scan = ys.shape[0] - first
    if n_scan:
        carry, _ = lax.scan(body, carry, jnp.arange(first, ys.shape[0]), unroll=_unroll(n_scan))
    col0 = ys.shape[0] * bs
    for y in tails:
        carry = step(carry, y, col0)
        col0 += y.shape[0]
    return carry


def _nearest_1(
    score_fn: ScoreFn, x: jax.Array, ys: jax.Array, tails: tuple[jax.Array, ...], vary: Callable
) -> jax.Array:
    """Index of the nearest synthetic row for each row of ``x`` (lowest index on ties)."""

    def step(carry, y, col0):
        best_s, best_i = carry
        tile_min, tile_arg = _row_min(_tile_scores(score_fn, x, y))
        better = tile_min < best_s  # strict: earlier (lower-index) tiles win ties
        return jnp.where(better, tile_min, best_s), jnp.where(better, col0 + tile_arg, best_i)

    init = vary((jnp.full((x.shape[0],), jnp.inf, jnp.float32), jnp.zeros((x.shape[0],), jnp.int32)))
    _, best_i = _scan_tiles(step, init, ys, tails)
    return best_i[:, None]


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
    score_fn: ScoreFn, x: jax.Array, ys: jax.Array, tails: tuple[jax.Array, ...], k: int
) -> jax.Array:
    """Indices (Bp, k) of the k nearest synthetic rows, ties to lower indices."""

    def tile_topk(y, col0):
        neg, idx = _row_top_k(_tile_scores(score_fn, x, y), min(k, y.shape[0]))
        return neg, idx + col0

    def step(carry, y, col0):
        best_neg, best_i = carry
        neg, idx = tile_topk(y, col0)
        # [best, new]: on equal scores the earlier (lower-index) entries win.
        merged_neg, pos = lax.top_k(jnp.concatenate([best_neg, neg], axis=1), k)
        merged_i = jnp.take_along_axis(jnp.concatenate([best_i, idx], axis=1), pos, axis=1)
        return merged_neg, merged_i

    # The first tile (>= k rows) initialises the carry, so no placeholder can
    # tie with real scores.
    _, best_i = _scan_tiles(step, tile_topk(ys[0], 0), ys, tails, first=1)
    return best_i


def _local_counts(
    x: jax.Array,
    ys: jax.Array,
    tails: tuple[jax.Array, ...],
    *,
    score_fn: ScoreFn,
    k: int,
    private_tile: int,
    n_valid: jax.Array | int,
    axis: str | None = None,
) -> jax.Array:
    """int32 vote counts over ``[*ys, *tails]`` of the first ``n_valid`` rows of ``x``.

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

    def body(i, hist):
        lo = i * bp
        start = jnp.minimum(lo, n - bp)  # clamp the last window; overlap is masked
        xt = lax.dynamic_slice_in_dim(x, start, bp).astype(jnp.float32)
        row = start + jnp.arange(bp, dtype=jnp.int32)
        ok = (row >= lo) & (row < n_valid) & jnp.all(jnp.isfinite(xt), axis=1)
        xt = jnp.where(ok[:, None], xt, 0.0)
        if k == 1:
            idx = _nearest_1(score_fn, xt, ys, tails, vary)
        else:
            idx = _nearest_k(score_fn, xt, ys, tails, k)
        votes = jnp.broadcast_to(ok[:, None].astype(jnp.int32), idx.shape)
        return hist.at[idx.ravel()].add(votes.ravel(), mode="drop")

    hist0 = vary(jnp.zeros((ys.shape[0] * ys.shape[1] + sum(y.shape[0] for y in tails),), jnp.int32))
    return lax.fori_loop(0, n_tiles, body, hist0)


@partial(
    jax.jit,
    static_argnames=("score_fn", "k", "private_tile", "synthetic_tile", "mesh"),
)
def _histogram(
    private: jax.Array,
    synthetic: jax.Array,
    *,
    score_fn: ScoreFn,
    k: int,
    private_tile: int,
    synthetic_tile: int,
    mesh: jax.sharding.Mesh | None,
) -> jax.Array:
    """Compiled core; arguments are validated by :func:`nn_histogram`."""
    n_priv = private.shape[0]
    bs = _synthetic_tile(synthetic.shape[0], synthetic_tile, k)
    ys, tails = _split_synthetic(synthetic.astype(jnp.float32), bs)
    count = partial(_local_counts, score_fn=score_fn, k=k, private_tile=private_tile)

    if mesh is None:
        hist = count(private, ys, tails, n_valid=n_priv)
    else:
        axis = mesh.axis_names[0]
        n_dev = mesh.shape[axis]
        n_local = -(-n_priv // n_dev)
        if n_local * n_dev != n_priv:
            private = jnp.pad(private, ((0, n_local * n_dev - n_priv), (0, 0)))
        if mesh.axis_types[0] == jax.sharding.AxisType.Explicit:
            private = jax.reshard(private, jax.P(axis))
            ys, tails = jax.reshard((ys, tails), jax.P())

        def per_device(x_local, ys_rep, tails_rep):
            first = lax.axis_index(axis) * n_local
            n_valid = jnp.clip(n_priv - first, 0, n_local)
            return lax.psum(count(x_local, ys_rep, tails_rep, n_valid=n_valid, axis=axis), axis)

        hist = jax.shard_map(
            per_device,
            mesh=mesh,
            in_specs=(jax.P(axis), jax.P(), jax.P()),
            out_specs=jax.P(),
        )(private, ys, tails)

    if k == 1:
        return hist
    # XLA rewrites division by a broadcast scalar into multiplication by its
    # rounded reciprocal; an opaque full-size divisor keeps the division exact:
    # values are float32(count) / float32(sqrt(k)), correctly rounded.
    divisor = lax.optimization_barrier(jnp.full(hist.shape, math.sqrt(k), jnp.float32))
    return hist.astype(jnp.float32) / divisor


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
        mesh=mesh,
    )
    explicit = mesh is not None and jax.sharding.AxisType.Explicit in mesh.axis_types
    if explicit and not isinstance(private, jax.core.Tracer):
        with jax.set_mesh(mesh):  # explicit axes: resharding needs the mesh in context
            return call(private, synthetic)
    return call(private, synthetic)
