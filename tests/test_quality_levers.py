"""The levers against population collapse: keep the top-voted samples, fresh random samples in
every generation, a threshold in units of sigma, and the final spread by variations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from point_generator import PointGenerator

from pe_jax import embeddings, evolve, population, privacy


class MarkedGenerator:
    """1-D points whose origin is visible: ``random`` gives ``-1 - label`` (or ``-100``
    without labels), ``variation`` adds ``10 * degree``."""

    def random(self, key, n, labels):
        return {"x": jnp.full((n,), -100.0) if labels is None else -1.0 - labels}

    def variation(self, key, samples, degree):
        return {"x": samples["x"] + 10.0 * degree}

    def images(self, samples):
        return samples["x"][:, None, None, None]


def test_keep_top_carries_each_classes_top_voted_samples_unchanged():
    layout = population.PopulationLayout((4, 4), keep_selected=True)  # 2 parents per class
    samples = {"x": jnp.arange(8, dtype=jnp.float32) + 0.25}
    # Class 0 holds slots 0, 1, 4, 5 and class 1 slots 2, 3, 6, 7.
    counts = jnp.array([0, 4, 0, 1, 2, 0, 3, 5], jnp.float32)
    new = population.next_population(jax.random.key(0), MarkedGenerator(), samples, counts,
                                     layout, degree=0.5, method="sample", keep="top")
    x = np.asarray(new["x"])
    np.testing.assert_array_equal(x[:4], np.asarray(samples["x"])[[1, 4, 7, 6]])  # bitwise
    # The variations still come from parents drawn by "sample", with replacement.
    parents = population.select_parents(jax.random.split(jax.random.key(0))[0], counts, layout)
    np.testing.assert_array_equal(x[4:], np.asarray(samples["x"])[parents] + 5.0)
    # "parents" (the default) keeps the drawn parents instead.
    same = population.next_population(jax.random.key(0), MarkedGenerator(), samples, counts,
                                      layout, degree=0.5, method="sample")
    np.testing.assert_array_equal(np.asarray(same["x"])[:4], np.asarray(samples["x"])[parents])
    with pytest.raises(ValueError, match="keep must be one of"):
        population.next_population(jax.random.key(0), MarkedGenerator(), samples, counts,
                                   layout, degree=0.5, keep="best")


@pytest.mark.parametrize("conditional", [True, False])
def test_random_fraction_gives_exactly_that_many_fresh_samples_per_class(conditional):
    layout = population.PopulationLayout((10, 20), random_fraction=0.2)
    assert layout.fresh == (2, 4) and layout.parents == (8, 16)
    np.testing.assert_array_equal(layout.labels[-6:], [0, 0, 1, 1, 1, 1])
    assert np.bincount(layout.labels).tolist() == [10, 20]
    samples = {"x": jnp.linspace(0.0, 1.0, 30)}
    counts = jnp.ones(30, jnp.float32)
    new = jax.jit(lambda s: population.next_population(
        jax.random.key(1), MarkedGenerator(), s, counts, layout, degree=0.5,
        conditional=conditional))(samples)
    x = np.asarray(new["x"])
    fresh = [-1.0, -1.0, -2.0, -2.0, -2.0, -2.0] if conditional else [-100.0] * 6
    np.testing.assert_array_equal(x[-6:], fresh)  # the fresh block, with its labels
    assert np.all(x[:-6] >= 5.0)  # everything else is a variation of a parent


def test_random_fraction_is_checked_before_anything_runs():
    with pytest.raises(ValueError, match="random_fraction must be a number in"):
        population.PopulationLayout((10,), random_fraction=1.0)
    with pytest.raises(ValueError, match="minus its 3 fresh random samples"):
        population.PopulationLayout((10,), keep_selected=True, random_fraction=0.3)
    with pytest.raises(ValueError, match="keep must be one of"):
        evolve.PEConfig(iterations=1, noise_multiplier=1.0, samples_per_class=(4,),
                        degrees=(0.5,), keep="best")


def test_threshold_in_sigmas_is_subtracted_from_every_release():
    config = evolve.PEConfig(iterations=2, noise_multiplier=3.0, samples_per_class=(20, 20),
                             degrees=(0.5, 0.3), threshold=0.5, threshold_sigmas=2.0,
                             image_range=(-8.0, 8.0))
    assert config.threshold_value == 6.5 and config.step_settings.threshold == 6.5
    with pytest.raises(ValueError, match="threshold_sigmas must be a finite number >= 0"):
        evolve.PEConfig(iterations=1, noise_multiplier=1.0, samples_per_class=(4,),
                        degrees=(0.5,), threshold_sigmas=-1.0)
    rng = np.random.default_rng(0)
    images = rng.normal(1.0, 0.3, (60, 1, 1, 2)).astype(np.float32)
    seen = []
    evolve.run(jax.random.key(0), config, generator=PointGenerator(),
               embedder=embeddings.PixelEmbedder(), private_images=images,
               private_labels=np.repeat([0, 1], 30), ledger=privacy.PrivacyLedger(1e-5),
               callbacks=[seen.append], noise_rng=np.random.default_rng(1), progress=False)
    for result in seen:
        np.testing.assert_allclose(result.release.thresholded,
                                   np.maximum(result.release.noisy - 6.5, 0.0))


def test_spread_adds_variations_of_the_released_population_only():
    samples = {"x": jnp.array([1.0, 2.0, 3.0])}
    grown, labels = population.spread(jax.random.key(0), MarkedGenerator(), samples,
                                      np.array([0, 1, 1]), copies=2, degree=0.1)
    np.testing.assert_array_equal(np.asarray(grown["x"]), [1, 2, 3, 2, 3, 4, 2, 3, 4])
    np.testing.assert_array_equal(labels, [0, 1, 1] * 3)
    # Each copy has its own key: random variations differ between copies.
    points = jnp.zeros((4, 2))
    grown, _ = population.spread(jax.random.key(0), PointGenerator(), points, np.zeros(4, int),
                                 copies=2, degree=0.5)
    assert not np.array_equal(grown[4:8], grown[8:])
    np.testing.assert_array_equal(grown[:4], points)
    with pytest.raises(ValueError, match="copies"):
        population.spread(jax.random.key(0), PointGenerator(), points, np.zeros(4, int),
                          copies=-1, degree=0.5)
    with pytest.raises(ValueError, match="degree must be a number in"):
        population.spread(jax.random.key(0), PointGenerator(), points, np.zeros(4, int),
                          copies=1, degree=1.5)
