"""The PE step on a device mesh equals the single-device step bitwise (8 forced CPU devices;
tests/test_multidevice.py runs this file in its own process):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 .venv/bin/python -m pytest \
        tests/multidevice/test_step_sharded.py -q

The population is sharded over the devices for generation and embedding and gathered for the
vote; each device votes with its shard of the private blocks. Every row is computed the same
way on any number of devices, so samples and noisy counts must match exactly, with the default
digits run's generator (glyphs with the shipped pose priors) and embedding (pixels).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pe_jax import evolve, population, privacy, sharding, step, voting
from pe_jax.apis.factory import make_generator
from pe_jax.configs import CONFIG_DIR, build, load_config
from pe_jax.data import load_sklearn_digits

pytestmark = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8",
)

T = 3
PER_CLASS = 8  # 10 digits: a population of 80, 10 rows per device


@pytest.fixture(scope="module")
def run_inputs():
    """The glyph digits run's private rows, generator and embedder (the glyph generator: its
    samples are bitwise the same on any device count, the diffusion prior's only to ~1e-7)."""
    config = load_config(CONFIG_DIR / "digits_glyphs.py", [])
    private, _ = load_sklearn_digits().split(config.data.heldout)
    generator, _ = make_generator(config.generator, private.class_names,
                                  private.images.shape[1:])
    return config, private, generator, build.embedder(config.embedding.name,
                                                      config.embedding.checkpoint)


def _step_run(run_inputs, mesh, *, keep_selected=False, k=1, selection="sample", lookahead=0,
              keep="parents", random_fraction=0.0):
    """T steps through the compiled step (compiled once, as ``evolve.run`` does), with the
    inputs placed first and no transfer allowed while the steps run."""
    _, private, generator, embedder = run_inputs
    layout = population.PopulationLayout((PER_CLASS,) * private.num_classes,
                                         keep_selected=keep_selected,
                                         random_fraction=random_fraction)
    settings = step.StepSettings(k=k, threshold=0.5, selection=selection, lookahead=lookahead,
                                 keep=keep)
    blocks = voting.prepare_private(embedder(private.images), private.labels,
                                    num_classes=private.num_classes, mesh=mesh)
    state = step.initial_state(jax.random.key(7), generator, layout, conditional=True,
                               mesh=mesh)
    noise = np.random.default_rng(0).integers(-3, 4, (T, len(layout.labels)))
    degrees = jnp.asarray([0.6, 0.3, 0.15], jnp.float32)
    one_step = step.make_step(generator, embedder, layout, settings, mesh)
    # Compiled once: calling the compiled step checks that each output layout is the input's.
    noise = [sharding.replicate(jnp.asarray(n, jnp.int32), mesh) for n in noise]
    degrees = [sharding.replicate(d, mesh) for d in degrees]
    one_step = one_step.lower(state, blocks, noise[0], degrees[0]).compile()
    outputs = []
    with jax.transfer_guard("disallow"):  # no host round trip, on a mesh or not
        for t in range(T):
            state, output = one_step(state, blocks, noise[t], degrees[t])
            outputs.append(output)
    return state, outputs


def _assert_same(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("keep_selected, k, selection, lookahead, levers",
                         [(False, 1, "sample", 0, {}),
                          (True, 3, "rank", 2, dict(keep="top", random_fraction=0.25))])
def test_the_step_on_8_devices_equals_1_bitwise(run_inputs, keep_selected, k, selection,
                                                lookahead, levers):
    options = dict(keep_selected=keep_selected, k=k, selection=selection, lookahead=lookahead,
                   **levers)
    single, single_out = _step_run(run_inputs, None, **options)
    mesh = sharding.local_mesh()
    sharded, sharded_out = _step_run(run_inputs, mesh, **options)
    _assert_same(sharded.samples, single.samples)
    for a, b in zip(sharded_out, single_out):
        np.testing.assert_array_equal(a.noisy_counts, b.noisy_counts)
        np.testing.assert_array_equal(a.thresholded, b.thresholded)
    assert int(sharded.iteration) == T
    # The population stays sharded over all 8 devices; the release is replicated.
    for leaf in jax.tree.leaves(sharded.samples):
        assert leaf.sharding.is_equivalent_to(sharding.data_sharding(mesh), leaf.ndim)
        assert len(leaf.addressable_shards) == 8 and leaf.addressable_shards[0].data.shape[0] == 10
    assert sharded_out[-1].noisy_counts.sharding.is_fully_replicated


def test_the_scan_on_8_devices_equals_1_bitwise(run_inputs):
    _, private, generator, embedder = run_inputs
    layout = population.PopulationLayout((PER_CLASS,) * private.num_classes)
    settings = step.StepSettings(threshold=0.5)
    noise = jnp.asarray(np.random.default_rng(1).integers(-3, 4, (T, len(layout.labels))),
                        jnp.int32)
    degrees = jnp.asarray([0.6, 0.3, 0.15], jnp.float32)
    results = []
    for mesh in (None, sharding.local_mesh()):
        blocks = voting.prepare_private(embedder(private.images), private.labels,
                                        num_classes=private.num_classes, mesh=mesh)
        state = step.initial_state(jax.random.key(2), generator, layout, conditional=True,
                                   mesh=mesh)
        scan = step.make_scan(generator, embedder, layout, settings, mesh)
        results.append(scan(state, blocks, noise, degrees))
    (final_1, (populations_1, out_1)), (final_8, (populations_8, out_8)) = results
    _assert_same(final_8.samples, final_1.samples)
    _assert_same(populations_8, populations_1)
    np.testing.assert_array_equal(out_8.noisy_counts, out_1.noisy_counts)


@pytest.mark.parametrize("mesh_kind", ["local", "explicit", "two_axes"])
def test_evolve_run_on_a_mesh_equals_one_device(run_inputs, mesh_kind):
    """The whole driver with seeded noise: any mesh (Auto or Explicit axes, one axis or two)
    gives the single-device run's populations and releases."""
    _, private, generator, embedder = run_inputs
    meshes = {
        "local": lambda: sharding.local_mesh(),
        "explicit": lambda: jax.make_mesh((8,), ("data",)),  # Explicit axes by default
        "two_axes": lambda: jax.make_mesh((2, 4), ("a", "b"),
                                          axis_types=(jax.sharding.AxisType.Auto,) * 2),
    }
    config = evolve.PEConfig(iterations=2, noise_multiplier=3.0,
                             samples_per_class=(PER_CLASS,) * private.num_classes,
                             degrees=(0.5, 0.2), threshold=0.5)
    runs = []
    for mesh in (None, meshes[mesh_kind]()):
        seen = []
        result = evolve.run(jax.random.key(3), config, generator=generator, embedder=embedder,
                            private_images=private.images, private_labels=private.labels,
                            ledger=privacy.PrivacyLedger(1e-5), callbacks=[seen.append],
                            mesh=mesh, noise_rng=np.random.default_rng(5), progress=False)
        runs.append((result, seen))
    (single, single_seen), (sharded, sharded_seen) = runs
    _assert_same(sharded.samples, single.samples)
    for a, b in zip(sharded_seen, single_seen):
        np.testing.assert_array_equal(a.release.noisy, b.release.noisy)
        _assert_same(a.samples, b.samples)


def test_a_population_that_does_not_split_evenly_is_refused(run_inputs):
    _, private, generator, embedder = run_inputs
    layout = population.PopulationLayout((9,) * private.num_classes)  # 90 rows on 8 devices
    with pytest.raises(ValueError, match=r"population size .* multiple of the mesh's 8 devices"):
        step.make_step(generator, embedder, layout, step.StepSettings(), sharding.local_mesh())
