"""Ordinal attributes in tabular PE: nearby mutation and thermometer embedding."""

import jax
import numpy as np
import pytest

from pe_jax import tabular

DOMAIN = {"age": 11, "job": 4}


def test_ordinal_variation_steps_near_and_stays_in_the_domain():
    generator = tabular.TabularGenerator(DOMAIN, ordinal=["age"], ordinal_width=0.2)
    rows = np.tile(np.array([[5, 2], [0, 3], [10, 0]], np.int32), (200, 1))
    varied = np.asarray(jax.jit(generator.variation)(jax.random.key(0), rows, 1.0))
    assert np.all((varied >= 0) & (varied < np.asarray([11, 4])))
    step = np.abs(varied[:, 0] - rows[:, 0])
    assert step.max() == 2 and (step > 0).mean() > 0.5  # w = round(0.2 * 11) = 2
    assert set(np.unique(varied[:, 1])) == {0, 1, 2, 3}  # "job" is re-drawn from the prior
    with pytest.raises(ValueError, match="ordinal names attributes outside"):
        tabular.TabularGenerator(DOMAIN, ordinal=["height"])


def test_thermometer_distance_grows_with_the_gap_and_one_hot_stays_hamming():
    embedder = tabular.OneHotEmbedder(DOMAIN, weights=[2.0, 1.0], ordinal=["age"])
    rows = np.array([[0, 0], [1, 0], [10, 0], [0, 3]], np.float32)[:, :, None, None]
    features = np.asarray(embedder(rows))
    squared = ((features[:, None] - features[None]) ** 2).sum(-1)
    assert squared[0, 1] == pytest.approx(4 * 1 / 10)  # weight^2 * |x - y| / (size - 1)
    assert squared[0, 2] == pytest.approx(4.0)
    assert squared[0, 3] == pytest.approx(1.0)  # one-hot: weight^2 where they differ
