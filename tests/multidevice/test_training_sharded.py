"""Data-parallel training over a mesh (8 forced CPU devices): the diffusion prior, and DP-SGD
fine-tuning on the mesh that ``pe-jax dp-finetune --devices N`` builds (the parameters of one
device up to float rounding, and exactly the same privacy accounting):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 .venv/bin/python -m pytest tests/multidevice -q
"""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pe_jax import cli, privacy
from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.commands import device_mesh
from pe_jax.data import load_sklearn_digits
from pe_jax.diffusion import make_schedule
from pe_jax.training import diffusion as training
from pe_jax.training import dpsgd, public_data
from pe_jax.models.unet import UNet, UNetConfig

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: tiny_denoisers
from tiny_denoisers import ConvDenoiser  # noqa: E402

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


def test_dp_finetune_on_8_devices_matches_one_device(capsys):
    private, _ = load_sklearn_digits().split(0.25)
    images = public_data.to_model_range(private.images[:200])
    labels = jnp.asarray(private.labels[:200])
    settings = dpsgd.DPSGDSettings(
        training.TrainSettings(steps=6, learning_rate=0.02, warmup_steps=1, ema_decay=0.5,
                               checkpoint_every=3, log_every=3),
        sampling_rate=0.25, expected_batch_size=50.0, clipping_norm=1.0, noise_multiplier=0.8,
        pad_multiple=64)

    def run(mesh):
        ledger = privacy.PrivacyLedger(1e-5)
        result = dpsgd.finetune(
            ConvDenoiser(nnx.Rngs(0)), make_schedule("cosine", 100), images, labels,
            settings, key=jax.random.key(1), noise_key=jnp.asarray([3, 4], jnp.uint32),
            sampler_seed=5, ledger=ledger, recorded_steps=0, source="test", seeded=True,
            mesh=mesh)
        return result, ledger

    mesh = device_mesh(None, settings.pad_multiple, "the padded batches")  # as the command
    assert mesh.size == 8
    single, single_ledger = run(None)
    sharded, sharded_ledger = run(mesh)
    leaf = jax.tree.leaves(sharded.state.params)[0]
    assert len(leaf.sharding.device_set) == 8 and leaf.sharding.is_fully_replicated
    start = jax.tree.leaves(nnx.state(ConvDenoiser(nnx.Rngs(0))))
    moved = max(float(np.abs(a - s).max())
                for a, s in zip(jax.tree.leaves(single.state.params), start))
    assert moved > 1e-2  # six noisy steps moved the weights well beyond the tolerance
    for a, b in zip(jax.tree.leaves(single.state), jax.tree.leaves(sharded.state)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)
    assert sharded_ledger.to_dict() == single_ledger.to_dict() and len(single_ledger) == 2
    assert sharded_ledger.epsilon_spent() == single_ledger.epsilon_spent()
    # The command uses the most devices that split the padded batches, or refuses N > 8.
    assert device_mesh(None, 12, "12 rows").size == 6 and "running on 6" in capsys.readouterr().err
    assert device_mesh(1, 64, "64 rows") is None
    assert cli.main(["dp-finetune", "--devices", "9", "--out", "unused"]) == 2
    assert "--devices" in capsys.readouterr().err
