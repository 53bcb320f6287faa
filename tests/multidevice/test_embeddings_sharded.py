"""Embedders over a device mesh (run with 8 forced CPU devices; tests/test_multidevice.py
does):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 .venv/bin/python -m pytest tests/multidevice -q
"""

import jax
import numpy as np
import pytest

from pe_jax import embeddings

pytestmark = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8",
)


@pytest.mark.parametrize("name", ["pixels", "random_projection", "encoder"])
def test_sharded_batches_give_the_single_device_features(name):
    images = np.random.default_rng(0).random((21, 8, 8, 1), dtype=np.float32)
    expected = np.asarray(embeddings.make_embedder(name)(images))
    mesh = jax.make_mesh((8,), ("data",))
    embedder = embeddings.make_embedder(name, batch_size=16, mesh=mesh)
    batch = embedder._features(embedder._params, jax.device_put(
        images[:16], jax.NamedSharding(mesh, jax.P("data"))))
    assert len(batch.sharding.device_set) == 8  # rows are computed on all devices
    np.testing.assert_allclose(embedder(images), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="batch_size must be a multiple"):
        embeddings.make_embedder(name, batch_size=12, mesh=mesh)
