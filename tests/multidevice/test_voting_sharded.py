"""nn_histogram over a device mesh (run with 8 forced CPU devices):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 .venv/bin/python -m pytest tests/multidevice -q
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from pe_jax.voting import nn_histogram

pytestmark = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8",
)

DEVICE_COUNTS = (1, 2, 4, 8)


def mesh_of(n: int) -> jax.sharding.Mesh:
    return jax.make_mesh((n,), ("data",), devices=jax.devices()[:n])


def integer_data(seed: int, n_priv: int, n_syn: int, dim: int):
    """Exact-in-float32 data with duplicates (exact ties) and non-finite rows."""
    rng = np.random.default_rng(seed)
    private = rng.integers(-3, 4, (n_priv, dim)).astype(np.float32)
    synthetic = rng.integers(-3, 4, (n_syn, dim)).astype(np.float32)
    synthetic[-1] = synthetic[0]
    private[1] = private[0]
    private[5, 2] = np.nan
    private[n_priv - 2, 0] = -np.inf
    return private, synthetic


@pytest.mark.parametrize("screen", [False, True])  # float32 only; bfloat16 screen + rescoring
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("n_priv", [203, 64, 6])  # not divisible by 2/4/8; divisible; < devices
def test_identical_for_1_2_4_8_devices(k, n_priv, screen):
    private, synthetic = integer_data(k * 1000 + n_priv, n_priv, 29, 6)
    kwargs = dict(k=k, private_tile=8, synthetic_tile=10, screen=screen)
    unsharded = np.asarray(nn_histogram(private, synthetic, **kwargs))
    finite_rows = n_priv - 2
    assert unsharded.dtype == np.int32 and unsharded.sum() == k * finite_rows
    for n in DEVICE_COUNTS:
        sharded = np.asarray(nn_histogram(private, synthetic, mesh=mesh_of(n), **kwargs))
        assert sharded.dtype == unsharded.dtype
        np.testing.assert_array_equal(sharded, unsharded, err_msg=f"{n} devices")


@pytest.mark.parametrize("metric", ["l2", "cosine", "inner_product"])
def test_random_floats_identical_across_meshes(metric):
    rng = np.random.default_rng(9)
    private = rng.standard_normal((517, 16)).astype(np.float32)
    private[100] = np.nan
    synthetic = rng.standard_normal((75, 16)).astype(np.float32)
    # Same tile shapes in every configuration (>= 16 local rows per device).
    results = [
        np.asarray(
            nn_histogram(private, synthetic, metric=metric, mesh=mesh_of(n), private_tile=16, synthetic_tile=32)
        )
        for n in DEVICE_COUNTS
    ]
    unsharded = np.asarray(nn_histogram(private, synthetic, metric=metric, private_tile=16, synthetic_tile=32))
    for n, hist in zip(DEVICE_COUNTS, results):
        np.testing.assert_array_equal(hist, unsharded, err_msg=f"{n} devices")
    assert unsharded.sum() == 516


def test_sharded_input_and_outer_jit():
    """Private rows already sharded over the mesh, and a call inside an outer jit."""
    private, synthetic = integer_data(3, 96, 20, 4)
    mesh = mesh_of(8)
    sharded = jax.device_put(private, jax.NamedSharding(mesh, jax.P("data")))
    expected = np.asarray(nn_histogram(private, synthetic, k=3, private_tile=4))
    np.testing.assert_array_equal(
        nn_histogram(sharded, synthetic, k=3, mesh=mesh, private_tile=4), expected
    )
    jitted = jax.jit(lambda p, s: nn_histogram(p, s, k=3, mesh=mesh, private_tile=4))
    with jax.set_mesh(mesh):  # make_mesh gives Explicit axes: trace under the mesh
        np.testing.assert_array_equal(jitted(sharded, synthetic), expected)


@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
def test_explicit_and_auto_meshes(axis_type):
    private, synthetic = integer_data(4, 77, 21, 5)
    expected = np.asarray(nn_histogram(private, synthetic, k=2, private_tile=4))
    kind = jax.sharding.AxisType.Explicit if axis_type == "explicit" else jax.sharding.AxisType.Auto
    mesh = jax.make_mesh((4,), ("data",), axis_types=(kind,), devices=jax.devices()[:4])
    np.testing.assert_array_equal(nn_histogram(private, synthetic, k=2, mesh=mesh, private_tile=4), expected)
