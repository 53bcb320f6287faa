"""Data-parallel training of the diffusion prior over a mesh (8 forced CPU devices):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 .venv/bin/python -m pytest tests/multidevice -q
"""

import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.diffusion import make_schedule
from pe_jax.training import diffusion as training
from pe_jax.training import public_data
from pe_jax.models.unet import UNet, UNetConfig

pytestmark = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8",
)

MATPLOTLIB_TTF = pathlib.Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf"


def test_sharded_training_matches_single_device(tmp_path):
    glyphs = GlyphGenerator(characters="01", resolution=8,
                            fonts=[MATPLOTLIB_TTF / "DejaVuSans.ttf"])
    config = UNetConfig(resolution=8, base_width=8, width_multipliers=(1,),
                        attention_resolutions=(), num_classes=2, norm_groups=4)
    settings = training.TrainSettings(steps=4, learning_rate=1e-3, warmup_steps=1, log_every=1)
    schedule = make_schedule("cosine", 100)
    batches = public_data.glyph_batches(glyphs, 16)

    def run(mesh, name):
        return training.train(UNet(config, rngs=nnx.Rngs(0)), schedule, batches, settings,
                              key=jax.random.key(0), checkpoint_dir=tmp_path / name,
                              mesh=mesh, progress=False)

    single = run(None, "single")
    sharded = run(jax.make_mesh((8,), ("data",)), "sharded")
    leaf = jax.tree.leaves(sharded.state.params)[0]
    assert len(leaf.sharding.device_set) == 8 and leaf.sharding.is_fully_replicated
    np.testing.assert_allclose([l for _, l in sharded.losses], [l for _, l in single.losses],
                               rtol=1e-5)
    # Compare the trained models, not raw weights: a conv bias followed by GroupNorm has a zero
    # true gradient, so Adam turns the all-reduce's rounding noise into +-lr steps on it, and
    # such weights differ without changing what the model computes.
    start = jax.tree.leaves(nnx.state(UNet(config, rngs=nnx.Rngs(0))))
    moved = max(float(np.abs(a - s).max()) for a, s in zip(jax.tree.leaves(single.state.params),
                                                           start))
    assert moved > 2e-3
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    t, labels = jax.numpy.array([10, 40, 70, 99]), jax.numpy.array([0, 1, 0, 2])

    def predict(params):
        model = UNet(config, rngs=nnx.Rngs(0))
        nnx.update(model, params)
        return np.asarray(model(x, t, labels))

    initial, trained = predict(nnx.state(UNet(config, rngs=nnx.Rngs(0)))), predict(single.state.params)
    assert np.abs(trained - initial).max() > 1e-2  # training changed the model's output
    np.testing.assert_allclose(predict(sharded.state.params), trained, rtol=0, atol=1e-4)
