"""Data-parallel DP-SGD fine-tuning over a mesh (8 forced CPU devices): the mesh that
``pe-jax dp-finetune --devices N`` builds gives the parameters of one device up to float
rounding, and exactly the same privacy accounting.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 .venv/bin/python -m pytest \
        tests/multidevice/test_dpsgd_sharded.py -q
"""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pe_jax import cli, privacy
from pe_jax.commands import device_mesh
from pe_jax.data import load_sklearn_digits
from pe_jax.diffusion import make_schedule
from pe_jax.training import dpsgd
from pe_jax.training.diffusion import TrainSettings
from pe_jax.training.public_data import to_model_range

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: the denoiser
from linear_denoiser import LinearDenoiser  # noqa: E402

pytestmark = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8",
)


def test_dp_finetune_on_8_devices_matches_one_device(capsys):
    private, _ = load_sklearn_digits().split(0.25)
    images, labels = to_model_range(private.images[:200]), jnp.asarray(private.labels[:200])
    settings = dpsgd.DPSGDSettings(
        TrainSettings(steps=6, learning_rate=0.02, warmup_steps=1, ema_decay=0.5,
                      checkpoint_every=3, log_every=3),
        sampling_rate=0.25, expected_batch_size=50.0, clipping_norm=1.0, noise_multiplier=0.8,
        pad_multiple=64)

    def run(mesh):
        ledger = privacy.PrivacyLedger(1e-5)
        result = dpsgd.finetune(
            LinearDenoiser(nnx.Rngs(0)), make_schedule("cosine", 100), images, labels,
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
    start = jax.tree.leaves(nnx.state(LinearDenoiser(nnx.Rngs(0))))
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
