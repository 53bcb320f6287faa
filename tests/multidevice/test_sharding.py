"""pe_jax.sharding's conventions, and ``pe-jax run`` on all local devices (8 forced CPU
devices; tests/test_multidevice.py runs this file in its own process):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 .venv/bin/python -m pytest \
        tests/multidevice/test_sharding.py -q
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pe_jax import cli, evolve, sharding
from pe_jax.commands import run as run_command
from pe_jax.configs import CONFIG_DIR

pytestmark = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8",
)

AUTO = jax.sharding.AxisType.Auto


def test_local_mesh_puts_the_local_devices_on_one_auto_data_axis():
    mesh = sharding.local_mesh()
    assert mesh.axis_names == (sharding.DATA_AXIS,) and mesh.axis_types == (AUTO,)
    assert list(mesh.devices) == jax.local_devices() and sharding.device_count(mesh) == 8
    assert list(sharding.local_mesh(3).devices) == jax.local_devices()[:3]
    assert sharding.local_mesh(1).size == 1
    for bad in (0, 9, 2.0):
        with pytest.raises(ValueError, match="devices must be"):
            sharding.local_mesh(bad)


def test_even_devices_is_the_most_devices_that_split_the_rows():
    assert [sharding.even_devices(1000, n) for n in range(1, 9)] == [1, 2, 2, 4, 5, 5, 5, 8]
    assert sharding.even_devices(7, 8) == 7 and sharding.even_devices(11, 8) == 1


def test_mesh_views_and_counts():
    explicit = jax.make_mesh((2, 4), ("a", "b"))  # Explicit axes by default
    assert sharding.is_explicit(explicit) and not sharding.is_explicit(None)
    view = sharding.auto(explicit)
    assert view.axis_types == (AUTO, AUTO) and view.axis_names == ("a", "b")
    assert (view.devices == explicit.devices).all()
    assert sharding.auto(view) is view and sharding.auto(None) is None
    assert sharding.device_count(None) == 1 and sharding.device_count(explicit) == 8
    assert sharding.row_spec(view) == jax.P(("a", "b"))
    assert sharding.row_spec(sharding.local_mesh()) == jax.P("data")
    assert sharding.platform(explicit) == sharding.platform(None) == "cpu"
    with pytest.raises(ValueError, match="mesh must be a jax.sharding.Mesh or None"):
        sharding.device_count("data")


def test_use_enters_only_explicit_meshes():
    explicit = jax.make_mesh((8,), ("data",))
    assert not sharding.explicit_context()
    with sharding.use(explicit):
        assert sharding.explicit_context()
    with sharding.use(sharding.auto(explicit)):
        assert not sharding.explicit_context()
    with sharding.use(None):
        assert not sharding.explicit_context()


@pytest.mark.parametrize("mesh_of", [sharding.local_mesh,
                                     lambda: jax.make_mesh((2, 4), ("a", "b"),
                                                           axis_types=(AUTO, AUTO))])
def test_shard_rows_and_replicate_eagerly_and_under_jit(mesh_of):
    mesh = mesh_of()
    tree = {"x": jnp.arange(48.0).reshape(16, 3), "n": jnp.int32(5),
            "key": jax.random.key(0)}
    placed = sharding.shard_rows(tree, mesh)
    assert placed["x"].sharding == sharding.data_sharding(mesh)
    assert [s.data.shape for s in placed["x"].addressable_shards] == [(2, 3)] * 8
    assert placed["n"].sharding.is_fully_replicated and placed["key"].sharding.is_fully_replicated
    gathered = sharding.replicate(placed, mesh)
    assert all(leaf.sharding == sharding.replicated(mesh) for leaf in jax.tree.leaves(gathered))
    np.testing.assert_array_equal(gathered["x"], tree["x"])

    @jax.jit
    def f(x):
        y = sharding.shard_rows(x * 2, mesh)
        return y, sharding.replicate(y.sum(axis=1), mesh)

    rows, total = f(tree["x"])
    assert rows.sharding == sharding.data_sharding(mesh)
    assert total.sharding.is_fully_replicated
    np.testing.assert_array_equal(total, np.asarray(tree["x"]).sum(axis=1) * 2)
    assert sharding.shard_rows(tree, None) is tree and sharding.replicate(tree, None) is tree
    with pytest.raises(ValueError, match="rows must be a multiple of the mesh's 8 devices"):
        sharding.shard_rows(jnp.zeros((12, 3)), mesh)


def test_run_mesh_uses_all_local_devices_or_the_most_that_split_the_population(capsys):
    mesh = run_command.run_mesh(None, 1000)
    assert mesh.size == 8 and list(mesh.devices) == jax.local_devices()
    assert capsys.readouterr().err == ""
    assert run_command.run_mesh(6, 1000).size == 5
    assert "1000 samples does not split evenly over 6 devices; running on 5" in (
        capsys.readouterr().err)
    assert run_command.run_mesh(1, 1000) is None and run_command.run_mesh(None, 11) is None
    with pytest.raises(ValueError, match=r"--devices must be in \[1, 8\]"):
        run_command.run_mesh(9, 1000)


def test_pe_jax_run_runs_on_all_local_devices(tmp_path, monkeypatch, capsys):
    """``pe-jax run`` hands evolve.run a mesh over the 8 local devices (``--devices 2``: 2),
    with the same samples either way, and a bad ``--devices`` is refused before anything
    runs."""
    meshes = []
    real_run = evolve.run

    def spy(*args, **kwargs):
        meshes.append(kwargs.get("mesh"))
        return real_run(*args, **kwargs)

    monkeypatch.setattr(evolve, "run", spy)
    # seeded noise and the glyph generator: the runs can be compared bit for bit (the diffusion
    # prior's convolutions round differently with 10 and 40 rows per device)
    small = ["--config", str(CONFIG_DIR / "digits_glyphs.py"), "--set", "pe.iterations=1",
             "--set", "pe.samples_per_class=8", "--set", "metrics.names=",
             "--set", "privacy.noise_seed=0", "--quiet"]
    assert cli.main(["run", "--out", str(tmp_path / "all"), *small]) == 0
    assert cli.main(["run", "--out", str(tmp_path / "two"), "--devices", "2", *small]) == 0
    assert [m.size for m in meshes] == [8, 2]
    assert list(meshes[0].devices) == jax.local_devices()
    with np.load(tmp_path / "all" / "samples.npz") as a, \
            np.load(tmp_path / "two" / "samples.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
    assert cli.main(["run", "--out", str(tmp_path / "bad"), "--devices", "0", *small]) == 2
    assert "--devices must be in [1, 8]; got 0" in capsys.readouterr().err
    assert len(meshes) == 2 and not (tmp_path / "bad").exists()
