"""The compiled PE step: one program without host round trips, compiled once per run, equal
to its parts and to the whole-run scan on the same noise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pe_jax import embeddings, evolve, population, privacy, step, voting
from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.data import load_sklearn_digits

T = 3


@pytest.fixture(scope="module")
def digits():
    private, _ = load_sklearn_digits().split(0.25)
    return private


def _setup(digits, *, classes=3, per_class=12, keep_selected=False, k=1, selection="sample",
           lookahead=0, keep_rule="parents", random_fraction=0.0):
    keep = np.flatnonzero(digits.labels < classes)
    generator = GlyphGenerator(characters="".join(map(str, range(classes))), resolution=8)
    embedder = embeddings.PixelEmbedder()
    layout = population.PopulationLayout((per_class,) * classes, keep_selected=keep_selected,
                                         random_fraction=random_fraction)
    settings = step.StepSettings(k=k, threshold=0.5, selection=selection, lookahead=lookahead,
                                 keep=keep_rule)
    private = voting.prepare_private(embedder(digits.images[keep]), digits.labels[keep],
                                     num_classes=classes)
    state = step.initial_state(jax.random.key(7), generator, layout, conditional=True)
    noise = np.random.default_rng(0).integers(-3, 4, (T, len(layout.labels)))
    return generator, embedder, layout, settings, private, state, noise


def test_the_step_makes_no_host_round_trip(digits):
    generator, embedder, layout, settings, private, state, noise = _setup(digits, lookahead=2)
    one_step = step.make_step(generator, embedder, layout, settings)
    noise = jax.device_put(jnp.asarray(noise[0], jnp.int32))
    degree = jax.device_put(jnp.float32(0.4))
    one_step(jax.tree.map(jnp.copy, state), private, noise, degree)  # compile outside the guard
    with jax.transfer_guard("disallow"):
        state, output = one_step(state, private, noise, degree)
        state, output = one_step(state, private, noise, degree)
    assert int(state.iteration) == 2 and output.noisy_counts.dtype == jnp.int32


def test_a_run_compiles_the_step_once_whatever_the_degrees_and_class_sizes(digits):
    generator, embedder, layout, settings, private, state, noise = _setup(digits)
    one_step = step.make_step(generator, embedder, layout, settings)
    for t, degree in enumerate([0.6, 0.3, 0.15]):
        state, _ = one_step(state, private, jnp.asarray(noise[t], jnp.int32),
                            jnp.float32(degree))
    assert one_step._cache_size() == 1
    # Other private class sizes with the same total: the same compiled step.
    labels = np.random.default_rng(1).permutation(np.repeat([0, 1, 2], [1, 7, 28]))
    rows = private.rows.reshape(-1, private.rows.shape[-1])[:36]
    other = voting.prepare_private(rows, labels, num_classes=3)
    assert jax.tree.map(jnp.shape, other) == jax.tree.map(jnp.shape, private)
    one_step(state, other, jnp.asarray(noise[0], jnp.int32), jnp.float32(0.1))
    assert one_step._cache_size() == 1


@pytest.mark.parametrize("keep_selected, k, selection, levers", [
    (False, 1, "sample", {}), (True, 3, "rank", {}),
    (True, 1, "sample", dict(keep_rule="top", random_fraction=1 / 6))])
def test_the_step_releases_counts_plus_noise_and_the_scan_equals_the_loop(
        digits, keep_selected, k, selection, levers):
    generator, embedder, layout, settings, private, state, noise = _setup(
        digits, keep_selected=keep_selected, k=k, selection=selection, **levers)
    degrees = jnp.asarray([0.6, 0.3, 0.15], jnp.float32)
    # Iteration 1 by its parts: the vote of the initial population, plus the same noise.
    images = generator.images(state.samples)
    counts = voting.vote(private, embedder(images), layout.members, k=k)
    one_step = step.make_step(generator, embedder, layout, settings)
    loop_state, outputs = jax.tree.map(jnp.copy, state), []
    for t in range(T):
        loop_state, output = one_step(loop_state, private, jnp.asarray(noise[t], jnp.int32),
                                      degrees[t])
        outputs.append(output)
    assert one_step._cache_size() == 1  # with every lever on, too
    np.testing.assert_array_equal(outputs[0].noisy_counts, np.asarray(counts) + noise[0])
    expected = privacy.Release.of(np.asarray(counts) + noise[0], k, settings.threshold)
    np.testing.assert_allclose(outputs[0].thresholded, expected.thresholded, rtol=1e-6)
    # The whole run as one scan: bitwise the same populations and releases.
    scan = step.make_scan(generator, embedder, layout, settings)
    final, (populations, scanned) = scan(state, private, jnp.asarray(noise, jnp.int32), degrees)
    for t in range(T):
        np.testing.assert_array_equal(scanned.noisy_counts[t], outputs[t].noisy_counts)
    jax.tree.map(np.testing.assert_array_equal, final.samples, loop_state.samples)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[-1], b), populations,
                 loop_state.samples)
    np.testing.assert_array_equal(final.labels, layout.labels)


def test_fused_and_looped_runs_agree_and_both_record_every_release(digits):
    """evolve.run with fused=True and fused=False draw the same seeded noise, one iteration
    at a time, so they must give the same populations, releases and ledgers."""
    keep = np.flatnonzero(digits.labels < 2)[:60]
    config = evolve.PEConfig(iterations=T, noise_multiplier=3.0, samples_per_class=(10, 10),
                             degrees=(0.5, 0.3, 0.2), threshold=0.5)
    results = {}
    for fused in (False, True):
        seen, ledger = [], privacy.PrivacyLedger(1e-5)
        result = evolve.run(jax.random.key(3), config, generator=GlyphGenerator(characters="01"),
                            embedder=embeddings.PixelEmbedder(), private_images=digits.images[keep],
                            private_labels=digits.labels[keep], ledger=ledger,
                            callbacks=[seen.append], noise_rng=np.random.default_rng(5),
                            progress=False, fused=fused)
        assert len(ledger) == T and [r.iteration for r in seen] == [1, 2, 3]
        results[fused] = (result, seen, ledger)
    (loop, loop_seen, loop_ledger), (fused, fused_seen, fused_ledger) = results[False], results[True]
    jax.tree.map(np.testing.assert_array_equal, loop.samples, fused.samples)
    for a, b in zip(loop_seen, fused_seen):
        np.testing.assert_array_equal(a.release.noisy, b.release.noisy)
        jax.tree.map(np.testing.assert_array_equal, a.samples, b.samples)
        assert a.epsilon_spent == b.epsilon_spent
    assert loop_ledger.epsilon_history() == fused_ledger.epsilon_history()
