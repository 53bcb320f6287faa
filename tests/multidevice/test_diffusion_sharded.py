"""Diffusion sampling with batches sharded over 8 CPU devices equals single-device sampling:

    XLA_FLAGS=--xla_force_host_platform_device_count=8 .venv/bin/python -m pytest tests/multidevice -q
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pe_jax.apis.diffusion import DiffusionGenerator
from pe_jax.diffusion import make_schedule
from pe_jax.models.unet import UNetConfig, init_unet

pytestmark = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8",
)

CONFIG = UNetConfig(resolution=8, channels=1, base_width=8, width_multipliers=(1, 2),
                    blocks_per_level=1, attention_resolutions=(4,), num_classes=2, norm_groups=4)


@pytest.fixture(scope="module")
def generators():
    model, schedule = init_unet(CONFIG), make_schedule("cosine", 1000)
    mesh = jax.make_mesh((8,), ("data",))
    return (DiffusionGenerator(model, schedule, steps=5),
            DiffusionGenerator(model, schedule, steps=5, mesh=mesh))


def test_sharded_random_and_variation_equal_single_device(generators):
    single, sharded = generators
    labels = jnp.arange(16) % 2
    expected = single.random(jax.random.key(0), 16, labels)
    got = sharded.random(jax.random.key(0), 16, labels)
    assert len(got.images.sharding.device_set) == 8
    np.testing.assert_allclose(got.images, expected.images, atol=1e-5)
    varied = sharded.variation(jax.random.key(1), got, 0.6)
    assert len(varied.images.sharding.device_set) == 8
    np.testing.assert_allclose(varied.images, single.variation(jax.random.key(1), expected,
                                                               0.6).images, atol=1e-5)


def test_sharded_variation_inside_an_outer_jit(generators):
    single, sharded = generators
    x = single.random(jax.random.key(2), 16).images
    expected = single.variation(jax.random.key(3), x, 0.4)
    got = jax.jit(lambda key, d: sharded.variation(key, x, d))(jax.random.key(3), 0.4)
    np.testing.assert_allclose(got, expected, atol=1e-5)
