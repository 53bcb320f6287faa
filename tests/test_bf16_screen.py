"""The bfloat16 screen of nn_histogram: its error bound holds, and it never changes a vote."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_voting import cosine_data, integer_data, reference_counts, to_counts

from pe_jax.voting import METRICS, bf16_screen, nn_histogram, nearest, synthetic


def screened_and_float32(metric: str, private: np.ndarray, synthetic: np.ndarray, broken=False):
    """Screened scores, float32-kernel scores, float64 scores and the per-row bound.

    ``broken``: screen with the ``hi`` parts only (one plain bfloat16 matmul), which
    the bound does not cover.
    """
    score = METRICS[metric]
    x = jnp.asarray(private, jnp.float32)
    z, offset = score.prepare(jnp.asarray(synthetic))
    hi_only = bf16_screen._round_to_bf16 if broken else (lambda a: a)
    x_split = bf16_screen.split(x, "private")
    screened = offset[None, :] - score.scale * bf16_screen.dot(
        bf16_screen.split(hi_only(x), "private").operand,
        bf16_screen.split(hi_only(z), "synthetic").operand,
    )
    float32 = score.scores(x, z, offset)
    exact = np.asarray(offset, np.float64)[None, :] - score.scale * (
        np.asarray(x, np.float64) @ np.asarray(z, np.float64).T
    )
    stats = bf16_screen.synthetic_stats(bf16_screen.split(z, "synthetic").norms, offset)
    bound = bf16_screen.error_bound(x_split.norms, stats, x.shape[1], score.scale)
    as_f64 = partial(np.asarray, dtype=np.float64)
    return as_f64(screened), as_f64(float32), exact, np.asarray(bound)


def hard_data(rng, n_priv: int, n_syn: int, dim: int):
    """Entries spread over 2^-20 .. 2^20, with near-copies of private rows among the
    synthetic ones (large cancellation in l2) and some exact duplicates."""
    scale = 2.0 ** rng.integers(-20, 21, (1, dim))
    private = (rng.standard_normal((n_priv, dim)) * scale).astype(np.float32)
    synthetic = (rng.standard_normal((n_syn, dim)) * scale).astype(np.float32)
    near = n_syn // 4
    synthetic[:near] = private[:near] * (1 + 1e-6 * rng.standard_normal((near, dim)))
    synthetic[-3:] = synthetic[:3]
    return private, synthetic


@pytest.mark.parametrize("metric", ["l2", "cosine", "inner_product"])
@pytest.mark.parametrize("data", ["normal", "hard"])
def test_error_bound_holds_and_is_not_vacuous(metric, data):
    rng = np.random.default_rng(len(metric) + len(data))
    if data == "normal":
        private = rng.standard_normal((300, 384)).astype(np.float32)
        synthetic = rng.standard_normal((500, 384)).astype(np.float32)
    else:
        private, synthetic = hard_data(rng, 300, 500, 96)
    screened, float32, exact, bound = screened_and_float32(metric, private, synthetic)
    assert np.isfinite(bound).all()
    # the bound covers the screen against the float32 kernel and against exact arithmetic
    assert (np.abs(screened - float32) <= bound[:, None]).all()
    assert (np.abs(screened - exact) <= bound[:, None]).all()
    assert (screened != float32).any()  # the screen really is inexact
    # control: a screen by one plain bfloat16 matmul breaks the bound
    broken, *_ = screened_and_float32(metric, private, synthetic, broken=True)
    assert (np.abs(broken - exact) > bound[:, None]).any()


def test_overflowing_rows_are_never_screened():
    private = np.array([[3e38, 3e38], [1.0, 0.0]], np.float32)
    synthetic = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    *_, bound = screened_and_float32("l2", private, synthetic)
    assert bound[0] == np.inf and np.isfinite(bound[1])


def doubt_fraction(metric: str, k: int, private: np.ndarray, synthetic_rows: np.ndarray) -> float:
    """Share of private rows the screen leaves to the float32 kernel."""
    score = METRICS[metric]
    one_class = np.arange(len(synthetic_rows))[None]
    prepared = synthetic.prepare(score, jnp.asarray(synthetic_rows), one_class, k=k, tile_cap=64,
                                 screen=True)
    ys, tails, centre = prepared.of_class(0)
    x = jnp.asarray(private, jnp.float32) - centre
    _, doubt = nearest.screened_nearest(score, prepared.stats, x, ys, tails, k, lambda a: a)
    return float(jnp.mean(doubt))


@pytest.mark.parametrize("metric", ["l2", "cosine", "inner_product"])
@pytest.mark.parametrize("k", [1, 3])
def test_screen_changes_no_vote(metric, k):
    """Random rows plus near-ties and exact duplicates: some rows are settled by the
    screen and some rescored, and the votes equal the float32 kernel's."""
    rng = np.random.default_rng(10 * k + len(metric))
    private, synthetic = hard_data(rng, 700, 200, 48)
    private = np.concatenate([private, rng.standard_normal((300, 48)).astype(np.float32)])
    private[5] = np.nan  # no votes either way
    private[6] = 3e38  # overflow: rescored
    doubt = doubt_fraction(metric, k, private[7:], synthetic)
    assert 0.0 < doubt < 1.0
    for pt, st in [(64, 64), (8, 200), (1000, 4096)]:  # many, few and one rescoring flush
        kwargs = dict(k=k, metric=metric, private_tile=pt, synthetic_tile=st)
        np.testing.assert_array_equal(
            nn_histogram(private, synthetic, screen=True, **kwargs),
            nn_histogram(private, synthetic, screen=False, **kwargs),
        )


@pytest.mark.parametrize("metric", ["l2", "cosine", "inner_product"])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_screened_exact_ties_match_reference(metric, k):
    """Integer data full of exact ties (every tie goes to the float32 kernel)."""
    rng = np.random.default_rng(k)
    data = cosine_data if metric == "cosine" else integer_data
    private, synthetic = data(rng, 150, 700, 4)
    hist = nn_histogram(
        private, synthetic, k=k, metric=metric, private_tile=16, synthetic_tile=384, screen=True
    )
    expected = reference_counts(private, synthetic, k, metric)
    np.testing.assert_array_equal(to_counts(hist, k), expected)


def test_screened_inside_outer_jit():
    rng = np.random.default_rng(1)
    private = rng.standard_normal((90, 32)).astype(np.float32)
    synthetic = rng.standard_normal((300, 32)).astype(np.float32)
    jitted = jax.jit(lambda p, s: nn_histogram(p, s, private_tile=16, screen=True))
    expected = nn_histogram(private, synthetic, screen=False)
    np.testing.assert_array_equal(jitted(private, synthetic), expected)
