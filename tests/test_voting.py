"""Tests of pe_jax.voting.nn_histogram: exactness, sensitivity, robustness, memory."""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pe_jax import voting
from pe_jax.voting import METRICS, nn_histogram
from pe_jax.voting.kernel import vote_counts

TINY = np.finfo(np.float32).tiny


def reference_scores(private: np.ndarray, synthetic: np.ndarray, metric: str) -> np.ndarray:
    """Full float64 distance matrix (lower = nearer)."""
    p, s = private.astype(np.float64), synthetic.astype(np.float64)
    if metric == "l2":
        return ((p[:, None, :] - s[None, :, :]) ** 2).sum(-1)
    if metric == "inner_product":
        return -p @ s.T
    norm = np.linalg.norm(s, axis=1, keepdims=True)
    return -p @ (s / np.maximum(norm, TINY)).T


def reference_neighbours(private, synthetic, k, metric) -> list[np.ndarray]:
    """k nearest indices per private row (stable argsort: lowest index on ties);
    an empty array for rows with a non-finite entry."""
    d = reference_scores(private, synthetic, metric)
    ok = np.isfinite(private).all(axis=1)
    return [np.argsort(d[i], kind="stable")[:k] if ok[i] else np.array([], int) for i in range(len(d))]


def reference_counts(private, synthetic, k, metric) -> np.ndarray:
    counts = np.zeros(len(synthetic), np.int64)
    for idx in reference_neighbours(private, synthetic, k, metric):
        np.add.at(counts, idx, 1)
    return counts


def to_counts(hist, k: int) -> np.ndarray:
    """The kernel's counts as int64, asserting they come as int32 for every k (the release,
    not the kernel, applies the 1/sqrt(k) weight)."""
    hist = np.asarray(hist)
    assert hist.dtype == np.int32
    return hist.astype(np.int64)


def integer_data(rng, n_priv, n_syn, dim, lo=-3, hi=4):
    """Small integers (exact in float32) with duplicated rows to force exact ties."""
    private = rng.integers(lo, hi, (n_priv, dim)).astype(np.float32)
    synthetic = rng.integers(lo, hi, (n_syn, dim)).astype(np.float32)
    synthetic[n_syn - 1] = synthetic[0]  # duplicate: index 0 must win
    synthetic[n_syn // 2] = synthetic[1]
    private[n_priv - 1] = private[0]
    private[n_priv // 2] = synthetic[n_syn // 2]  # exact match with a duplicated row
    return private, synthetic


def cosine_data(rng, n_priv, n_syn, dim):
    """Synthetic rows are power-of-two multiples of signed unit vectors (or zero), so
    their normalisation is exact; duplicates in direction give exact ties."""
    axis = rng.integers(0, dim, n_syn)
    sign = rng.choice([-1.0, 1.0], n_syn)
    scale = 2.0 ** rng.integers(-2, 3, n_syn)
    synthetic = np.zeros((n_syn, dim), np.float32)
    synthetic[np.arange(n_syn), axis] = sign * scale
    synthetic[3] = 0.0  # zero row: similarity 0, never NaN
    private = rng.integers(-3, 4, (n_priv, dim)).astype(np.float32)
    return private, synthetic


SHAPES = [
    # n_priv, n_syn, dim, private_tile, synthetic_tile
    (37, 23, 5, 8, 7),  # neither axis a multiple of its tile
    (64, 40, 3, 1, 3),  # one-row private tiles, many synthetic tiles
    (50, 45, 4, 16, 45),  # one synthetic tile
    (9, 12, 6, 1024, 16384),  # tiles larger than the problem
    (20, 6, 3, 4, 5),  # N_syn = 6 with tiles of <= 5: k = 5 needs full tiles
    (130, 70, 8, None, None),  # platform defaults
    (150, 700, 4, 64, 384),  # two 384-column tiles: chunked row argmin
    (64, 1000, 4, None, None),  # one 1024-column tile at the defaults
    (40, 5200, 4, 16, 5120),  # k > 1: top-k over the k best 128-column chunks of a tile
]


@pytest.mark.parametrize("metric", ["l2", "inner_product", "cosine"])
@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference_exactly(metric, k, shape):
    n_priv, n_syn, dim, pt, st = shape
    rng = np.random.default_rng(zlib.crc32(repr((metric, k, shape)).encode()))
    data = cosine_data if metric == "cosine" else integer_data
    private, synthetic = data(rng, n_priv, n_syn, dim)
    hist = nn_histogram(private, synthetic, k=k, metric=metric, private_tile=pt, synthetic_tile=st)
    assert hist.shape == (n_syn,)
    np.testing.assert_array_equal(
        to_counts(hist, k), reference_counts(private, synthetic, k, metric)
    )


def test_ties_go_to_lowest_index():
    synthetic = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], np.float32)
    private = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.5, 0.0]], np.float32)
    # [0.5, 0] is equidistant from 0, 1, 2, 3, 4: index 0 wins.
    for pt, st in [(1, 1), (2, 2), (4, 5)]:
        hist = nn_histogram(private, synthetic, private_tile=pt, synthetic_tile=st)
        np.testing.assert_array_equal(hist, [3, 1, 0, 0, 0])
        hist3 = nn_histogram(private, synthetic, k=3, private_tile=pt, synthetic_tile=st)
        # rows 0,1 -> {0,2,4}; row 2 -> {1,3,0}; row 3 -> {0,1,2}
        np.testing.assert_array_equal(to_counts(hist3, 3), [4, 2, 3, 1, 2])


@pytest.mark.parametrize("metric", ["l2", "cosine", "inner_product"])
@pytest.mark.parametrize("k", [1, 3])
def test_random_floats_match_float64_up_to_near_ties(metric, k):
    rng = np.random.default_rng(7)
    private = rng.standard_normal((400, 16)).astype(np.float32)
    synthetic = rng.standard_normal((90, 16)).astype(np.float32)
    hist = nn_histogram(private, synthetic, k=k, metric=metric, private_tile=32, synthetic_tile=20)
    counts = to_counts(hist, k)
    ref = reference_counts(private, synthetic, k, metric)
    d = np.sort(reference_scores(private, synthetic, metric), axis=1)
    gap = np.abs(d[:, k] - d[:, k - 1]) / (1.0 + np.abs(d[:, k - 1]))
    near_ties = int(np.sum(gap < 1e-5))
    # each near-tie row may move one vote: L1 change <= 2 per such row
    assert np.abs(counts - ref).sum() <= 2 * near_ties
    assert counts.sum() == k * len(private)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_counts_and_weights(k):
    rng = np.random.default_rng(k)
    private, synthetic = integer_data(rng, 57, 19, 4)
    private[3, 1], private[10, 0] = np.nan, np.inf  # two non-finite rows
    hist = np.asarray(nn_histogram(private, synthetic, k=k, private_tile=8, synthetic_tile=5))
    assert hist.dtype == np.int32  # integer counts for every k
    assert to_counts(hist, k).sum() == k * 55
    assert to_counts(hist, k).max() <= 55  # k distinct indices per row


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("metric", ["l2", "inner_product", "cosine"])
def test_add_remove_sensitivity(k, metric):
    """PRIVACY_TESTS A: adding one row changes the histogram by L2 norm exactly 1
    for k = 1 and at most 1 for any k (k distinct indices, weight 1/sqrt(k)),
    including duplicated rows and exact distance ties."""
    rng = np.random.default_rng(100 + k)
    data = cosine_data if metric == "cosine" else integer_data
    private, synthetic = data(rng, 41, 17, 3)
    base = np.asarray(nn_histogram(private, synthetic, k=k, metric=metric, private_tile=8, synthetic_tile=6))
    extra_rows = np.concatenate([private[:4], data(rng, 4, 17, 3)[0]])  # duplicates + fresh
    for extra in extra_rows:
        neighbour = np.concatenate([private, extra[None]])
        hist = np.asarray(
            nn_histogram(neighbour, synthetic, k=k, metric=metric, private_tile=8, synthetic_tile=6)
        )
        diff = (hist.astype(np.float64) - base) / np.sqrt(k)  # the released weight 1/sqrt(k)
        np.testing.assert_allclose(np.linalg.norm(diff), 1.0, rtol=1e-6)
        assert np.count_nonzero(diff) == k and (diff >= 0).all()
        if k == 1:
            assert np.linalg.norm(diff) == 1.0


def test_row_vote_independent_of_other_rows_and_tiles():
    rng = np.random.default_rng(3)
    private, synthetic = integer_data(rng, 60, 33, 4)
    for k in (1, 3):
        per_row = sum(
            to_counts(nn_histogram(private[i : i + 1], synthetic, k=k), k) for i in range(60)
        )
        for pt, st in [(1, 1), (7, 5), (60, 33), (16, 11)]:
            whole = to_counts(nn_histogram(private, synthetic, k=k, private_tile=pt, synthetic_tile=st), k)
            np.testing.assert_array_equal(whole, per_row)
    # random floats too: same tile shapes, different companions and positions
    private = rng.standard_normal((96, 8)).astype(np.float32)
    synthetic = rng.standard_normal((50, 8)).astype(np.float32)
    full = np.asarray(nn_histogram(private, synthetic, private_tile=16))
    halves = np.asarray(nn_histogram(private[:40], synthetic, private_tile=16)) + np.asarray(
        nn_histogram(private[40:], synthetic, private_tile=16)
    )
    np.testing.assert_array_equal(full, halves)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_inputs_equal_float32_upcast(dtype):
    rng = np.random.default_rng(11)
    private = jnp.asarray(rng.standard_normal((70, 12)), dtype)
    synthetic = jnp.asarray(rng.standard_normal((30, 12)), dtype)
    for k in (1, 2):
        low = nn_histogram(private, synthetic, k=k, private_tile=16, synthetic_tile=8)
        up = nn_histogram(
            private.astype(jnp.float32), synthetic.astype(jnp.float32), k=k, private_tile=16, synthetic_tile=8
        )
        assert low.dtype == up.dtype
        np.testing.assert_array_equal(low, up)


@pytest.mark.parametrize("metric", ["l2", "cosine", "inner_product"])
def test_non_finite_private_rows_get_zero_votes(metric):
    rng = np.random.default_rng(5)
    private, synthetic = integer_data(rng, 30, 10, 3)
    bad = private.copy()
    bad[[0, 7, 29], 1] = [np.nan, np.inf, -np.inf]
    for k in (1, 2):
        hist = np.asarray(nn_histogram(bad, synthetic, k=k, metric=metric, private_tile=4, synthetic_tile=3))
        assert np.isfinite(hist).all()
        clean = np.asarray(
            nn_histogram(np.delete(private, [0, 7, 29], axis=0), synthetic, k=k, metric=metric)
        )
        np.testing.assert_array_equal(hist, clean)
    all_bad = np.full((5, 3), np.nan, np.float32)
    np.testing.assert_array_equal(nn_histogram(all_bad, synthetic), np.zeros(10, np.int32))


def test_rows_up_to_max_magnitude_vote_and_larger_ones_do_not():
    """Rows at MAX_MAGNITUDE vote k times, as their direction says; rows beyond it (where
    float32 squared norms would overflow and every vote went to index 0) get none."""
    m = voting.MAX_MAGNITUDE
    synthetic = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    private = np.array([[m, 0], [0, m], [-m, 0], [3e38, 3e38], [-2 * m, 0], [1, 0]], np.float32)
    nearest = {"l2": [2, 1, 1], "cosine": [2, 1, 1], "inner_product": [2, 1, 1]}
    for metric in METRICS:
        if metric not in nearest:
            continue
        for k in (1, 2):
            counts = to_counts(nn_histogram(private, synthetic, k=k, metric=metric), k)
            assert counts.sum() == 4 * k
            if k == 1:
                np.testing.assert_array_equal(counts, nearest[metric])


def test_empty_private_set_gives_zeros():
    synthetic = np.ones((4, 3), np.float32)
    h1 = nn_histogram(np.zeros((0, 3), np.float32), synthetic)
    h2 = nn_histogram(np.zeros((0, 3), np.float32), synthetic, k=2)
    assert h1.dtype == jnp.int32 and h2.dtype == jnp.int32
    np.testing.assert_array_equal(h1, np.zeros(4))
    np.testing.assert_array_equal(h2, np.zeros(4))


def test_zero_synthetic_row_cosine_is_not_nan():
    synthetic = np.array([[0.0, 0.0], [1.0, 0.0]], np.float32)
    private = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]], np.float32)
    # similarities: row0 -> (0, -1): index 0; row1 -> (0, 1): index 1; row2 tie -> 0
    np.testing.assert_array_equal(nn_histogram(private, synthetic, metric="cosine"), [2, 1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(private=np.zeros(3)), "private"),
        (dict(synthetic=np.zeros((2, 2, 2))), "synthetic"),
        (dict(private=np.zeros((3, 5))), "feature dimension D"),
        (dict(synthetic=np.zeros((0, 4))), "synthetic"),
        (dict(synthetic=np.array([[0.0, 1, 2, np.nan]] * 2)), "synthetic.*finite"),
        (dict(synthetic=np.array([[0.0, 1, 2, np.inf]] * 2)), "synthetic.*finite"),
        (dict(k=0), "k must be"),
        (dict(k=-1), "k must be"),
        (dict(k=6), r"k must be in \[1, 5\]"),
        (dict(k=1.0), "k must be an integer"),
        (dict(k=True), "k must be an integer"),
        (dict(metric="manhattan"), "metric must be one of"),
        (dict(private_tile=0), "private_tile"),
        (dict(synthetic_tile=-4), "synthetic_tile"),
        (dict(private_tile=2.5), "private_tile"),
        (dict(mesh="data"), "mesh"),
        (dict(screen="yes"), "screen must be True, False or None"),
    ],
)
def test_validation_errors(kwargs, match):
    args = dict(private=np.zeros((3, 4), np.float32), synthetic=np.ones((5, 4), np.float32))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        nn_histogram(args.pop("private"), args.pop("synthetic"), **args)


def test_metric_error_lists_available_metrics():
    with pytest.raises(ValueError, match="l2.*cosine.*inner_product"):
        nn_histogram(np.zeros((1, 2)), np.ones((2, 2)), metric="L2")


def test_inside_outer_jit_skips_only_value_checks():
    rng = np.random.default_rng(0)
    private, synthetic = integer_data(rng, 20, 8, 3)
    jitted = jax.jit(lambda p, s: nn_histogram(p, s, k=2, private_tile=4))
    np.testing.assert_array_equal(jitted(private, synthetic), nn_histogram(private, synthetic, k=2))
    with pytest.raises(ValueError, match="feature dimension D"):
        jitted(private, synthetic[:, :2])


def test_register_metric_is_one_function():
    name = "l1_test_only"
    if name not in METRICS:

        @voting.register_metric(name)
        def _l1(x, y):
            return jnp.abs(x[:, None, :] - y[None, :, :]).sum(-1)

    assert name in METRICS
    rng = np.random.default_rng(2)
    private, synthetic = integer_data(rng, 25, 9, 3)
    d = np.abs(private[:, None, :] - synthetic[None]).sum(-1)
    expected = np.bincount(np.argmin(d, axis=1), minlength=9)  # argmin: first (lowest) index
    np.testing.assert_array_equal(
        nn_histogram(private, synthetic, metric=name, private_tile=4, synthetic_tile=4), expected
    )
    with pytest.raises(ValueError, match="already registered"):
        voting.register_metric("l2")(lambda x, y: x @ y.T)


def test_compiled_once_per_shape():
    rng = np.random.default_rng(4)
    synthetic = rng.standard_normal((16, 4)).astype(np.float32)
    kwargs = dict(k=2, private_tile=8, synthetic_tile=8)
    nn_histogram(rng.standard_normal((20, 4)).astype(np.float32), synthetic, **kwargs)
    before = vote_counts._cache_size()
    for n_priv in (17, 20, 24, 19):  # 3 blocks of 8 rows each: no new compilation
        nn_histogram(rng.standard_normal((n_priv, 4)).astype(np.float32), synthetic, **kwargs)
    assert vote_counts._cache_size() == before


@pytest.mark.parametrize("k", [1, 4])
def test_memory_flat_in_n_priv(k):
    """The per-iteration kernel's temp memory depends on the tiles, not on N_priv (the
    private blocks are laid out once per run, by voting.prepare_private)."""

    def temp_bytes(n_priv):
        blocks = jax.eval_shape(
            lambda p: voting.prepare_private(p, private_tile=256),
            jax.ShapeDtypeStruct((n_priv, 128), jnp.float32))
        compiled = (
            jax.jit(lambda b, s: voting.vote(b, s, np.arange(3000)[None], k=k,
                                             synthetic_tile=1024))
            .lower(blocks, jax.ShapeDtypeStruct((3000, 128), jnp.float32))
            .compile()
        )
        return compiled.memory_analysis().temp_size_in_bytes

    small, large = temp_bytes(4096), temp_bytes(65536)
    assert large <= small * 1.01 + 4096
    # far below one N_priv x N_syn float32 score matrix, or even a private-array copy
    assert large < 65536 * 128 * 4
