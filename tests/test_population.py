"""Selection from a released histogram and the next population built from it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pe_jax import population


class ShiftGenerator:
    """A tiny public generator on 1-D points: variation adds ``degree`` (no randomness)."""

    def random(self, key, n, labels):
        return {"x": jax.random.uniform(key, (n,))}

    def variation(self, key, samples, degree):
        return {"x": samples["x"] + degree}

    def images(self, samples):
        return samples["x"][:, None, None, None]


def test_sample_is_proportional_to_counts():
    counts = jnp.array([0.0, 1.0, 3.0, 0.0])
    chosen = np.asarray(population.select(jax.random.key(0), counts, 40_000))
    freq = np.bincount(chosen, minlength=4) / chosen.size
    np.testing.assert_allclose(freq, [0.0, 0.25, 0.75, 0.0], atol=0.01)


def test_rank_keeps_largest_counts_with_ties_to_lower_index():
    counts = jnp.array([2.0, 5.0, 5.0, 1.0, 5.0])
    chosen = population.select(jax.random.key(0), counts, 3, method="rank")
    np.testing.assert_array_equal(chosen, [1, 2, 4])


@pytest.mark.parametrize("method", population.SELECTION_METHODS)
def test_all_zero_counts_fall_back_to_equal_weights(method):
    counts = jnp.zeros(6)
    key = jax.random.key(3)
    chosen = np.asarray(population.select(key, counts, 6, method=method))
    np.testing.assert_array_equal(chosen, population.select(key, counts, 6, method=method))
    if method == "rank":
        np.testing.assert_array_equal(chosen, np.arange(6))
    else:
        many = np.asarray(population.select(key, counts, 60_000))
        np.testing.assert_allclose(np.bincount(many, minlength=6) / 60_000, 1 / 6, atol=0.01)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"num": 0}, "num"), ({"num": 9, "method": "rank"}, "num"),
     ({"num": 2, "method": "best"}, "method")])
def test_select_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        population.select(jax.random.key(0), jnp.ones(4), **kwargs)


def test_parents_per_class_needs_a_multiple():
    assert population.parents_per_class(10, 1, True) == 5
    with pytest.raises(ValueError, match="multiple"):
        population.parents_per_class(9, 1, True)
    with pytest.raises(ValueError, match="variation_folds"):
        population.parents_per_class(9, 0, False)


def test_layout_keeps_class_blocks_in_every_group():
    layout = population.PopulationLayout((4, 6), variation_folds=1, keep_selected=True)
    assert layout.parents == (2, 3)
    np.testing.assert_array_equal(layout.labels, [0, 0, 1, 1, 1, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(layout.members, [[0, 1, 5, 6, -1, -1], [2, 3, 4, 7, 8, 9]])
    with pytest.raises(ValueError, match="multiple"):
        population.PopulationLayout((5,), keep_selected=True)


def test_next_population_keeps_the_layout_and_uses_only_voted_parents():
    generator = ShiftGenerator()
    layout = population.PopulationLayout((4, 4), keep_selected=True)
    np.testing.assert_array_equal(layout.labels, [0, 0, 1, 1, 0, 0, 1, 1])
    samples = {"x": jnp.arange(8, dtype=jnp.float32)}
    counts = jnp.array([0, 4, 0, 0, 0, 0, 1, 0], jnp.float32)
    new = population.next_population(jax.random.key(0), generator, samples, counts, layout,
                                     degree=0.5, method="rank")
    x = np.asarray(new["x"])
    # Kept parents first (top 2 per class: slots 1, 0 of class 0; 6, 2 of class 1), then
    # their variations (+ degree).
    np.testing.assert_array_equal(x[:4], [1.0, 0.0, 6.0, 2.0])
    np.testing.assert_array_equal(x[4:], x[:4] + 0.5)


def test_next_population_sample_mode_draws_only_from_voted_candidates():
    generator = ShiftGenerator()
    layout = population.PopulationLayout((6,), variation_folds=2)
    samples = {"x": jnp.arange(6, dtype=jnp.float32)}
    counts = jnp.array([0, 3, 0, 0, 7, 0], jnp.float32)
    new = jax.jit(lambda s, c: population.next_population(
        jax.random.key(1), generator, s, c, layout, degree=0.0))(samples, counts)
    assert new["x"].shape == (6,)
    assert set(np.asarray(new["x"]).tolist()) <= {1.0, 4.0}


def test_a_class_without_votes_falls_back_to_its_own_members_only():
    """Unequal classes: padding slots of the smaller class are never chosen, and a class
    whose counts are all zero draws uniformly from its own members."""
    layout = population.PopulationLayout((2, 6))
    counts = jnp.array([0, 0, 0, 0, 0, 0, 0, 5], jnp.float32)
    parents = np.asarray(population.select_parents(jax.random.key(2), counts, layout))
    assert len(parents) == 8
    assert set(parents[:2]) <= {0, 1} and set(parents[2:]) == {7}
