"""The PE loop: accounting, callbacks, reproducibility, neighbouring runs, and convergence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pe_jax import embeddings, evolve, privacy
from point_generator import PointGenerator


def _private_points(rng, n_per_class, centres):
    points = np.concatenate([rng.normal(c, 0.3, (n_per_class, 2)) for c in centres])
    labels = np.repeat(np.arange(len(centres)), n_per_class).astype(np.int32)
    return points[:, None, None, :].astype(np.float32), labels


def _config(**overrides):
    base = dict(iterations=4, noise_multiplier=2.0, samples_per_class=(40, 40),
                degrees=(0.5, 0.4, 0.3, 0.2), threshold=1.0, image_range=(-8.0, 8.0))
    return evolve.PEConfig(**{**base, **overrides})


def _run(config, images, labels, *, key=0, seed=0, callbacks=(), ledger=None):
    ledger = ledger or privacy.PrivacyLedger(1e-5)
    result = evolve.run(jax.random.key(key), config, generator=PointGenerator(),
                        embedder=embeddings.PixelEmbedder(), private_images=images,
                        private_labels=labels, ledger=ledger, callbacks=callbacks,
                        noise_rng=np.random.default_rng(seed), progress=False)
    return result


def test_class_conditional_run_records_one_release_per_iteration():
    images, labels = _private_points(np.random.default_rng(0), 50, [(2, 2), (-2, -2)])
    seen = []
    result = _run(_config(), images, labels, callbacks=[seen.append])
    assert [r.iteration for r in seen] == [1, 2, 3, 4]
    assert len(result.ledger.events) == 4  # T events, not T x classes
    assert all(e.noise_multiplier == 2.0 for e in result.ledger.events)
    assert seen[-1].epsilon_spent == pytest.approx(
        privacy.epsilon(2.0, 1e-5, 4), rel=1e-6)
    assert np.bincount(result.labels).tolist() == [40, 40]
    assert all(r.release.noisy.shape == (80,) for r in seen)


def test_same_key_and_noise_seed_reproduce_the_run():
    images, labels = _private_points(np.random.default_rng(0), 30, [(1, 1), (-1, 2)])
    first = _run(_config(), images, labels)
    second = _run(_config(), images, labels)
    np.testing.assert_array_equal(first.samples, second.samples)
    np.testing.assert_array_equal(first.labels, second.labels)


def test_neighbouring_datasets_release_the_same_public_values():
    """D and D + one row: same shapes, labels, ledger; histograms differ by one vote at most."""
    rng = np.random.default_rng(1)
    images, labels = _private_points(rng, 30, [(1, 1), (-1, 2)])
    extra_image, extra_label = images[:1] + 0.05, labels[:1]
    config = _config(iterations=1, degrees=(0.3,))
    runs = {}
    for name, (imgs, labs) in {
            "D": (images, labels),
            "D+1": (np.concatenate([images, extra_image]), np.concatenate([labels, extra_label])),
    }.items():
        seen = []
        result = _run(config, imgs, labs, callbacks=[seen.append])
        runs[name] = (result, seen[0].release)
    (a, release_a), (b, release_b) = runs["D"], runs["D+1"]
    assert release_a.noisy.shape == release_b.noisy.shape
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.ledger.to_dict() == b.ledger.to_dict()
    difference = release_b.noisy - release_a.noisy  # same noise seed: only the clean votes differ
    assert np.isclose(np.linalg.norm(difference), 1.0)


def test_bad_private_input_is_rejected_before_any_release():
    images, labels = _private_points(np.random.default_rng(0), 10, [(1, 1), (-1, 2)])
    ledger = privacy.PrivacyLedger(1e-5)
    bad_inputs = [
        (images[..., 0], labels, "private_images"),
        (images, labels[:-1], "private_labels"),
        (images, labels + 1, "private_labels"),
        (images, labels.astype(np.float32), "private_labels"),
        (images, None, "samples_per_class"),
    ]
    for imgs, labs, name in bad_inputs:
        with pytest.raises(ValueError, match=name):
            _run(_config(), imgs, labs, ledger=ledger)
    assert ledger.events == ()


def test_non_finite_private_rows_stop_the_run_and_an_empty_class_releases_noise():
    images, labels = _private_points(np.random.default_rng(0), 10, [(1, 1), (-1, 2)])
    labels[:] = 0  # class 1 has no private rows: its block is noise only
    seen = []
    _run(_config(), images, labels, callbacks=[seen.append])
    assert all(np.isfinite(r.release.noisy).all() for r in seen)
    images[3] = np.nan
    ledger = privacy.PrivacyLedger(1e-5)
    with pytest.raises(ValueError, match="private_images must be finite"):
        _run(_config(), images, labels, ledger=ledger)
    assert len(ledger) == 0  # refused before anything was spent


@pytest.mark.parametrize("field, value", [
    ("iterations", 0), ("noise_multiplier", 0.0), ("samples_per_class", ()),
    ("degrees", (0.1,)), ("degrees", (0.5, 0.4, 0.3, 1.5)), ("threshold", -1.0), ("k", 41), ("metric", "l1"),
    ("selection", "best"), ("lookahead", -1), ("variation_folds", 0)])
def test_config_rejects_bad_values_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        _config(**{field: value})


def test_degree_schedule():
    assert evolve.degree_schedule(0.8, 0.2, 4) == pytest.approx((0.8, 0.6, 0.4, 0.2))
    geometric = evolve.degree_schedule(0.8, 0.1, 4, "geometric")
    assert geometric[0] == pytest.approx(0.8) and geometric[-1] == pytest.approx(0.1)
    assert geometric[1] / geometric[0] == pytest.approx(geometric[2] / geometric[1])
    with pytest.raises(ValueError, match="kind"):
        evolve.degree_schedule(0.8, 0.1, 4, "cosine")


def _mean_distance_to_nearest_synthetic(private, synthetic):
    d = np.linalg.norm(private[:, None, :] - synthetic[None, :, :], axis=-1)
    return d.min(axis=1).mean()


@pytest.mark.parametrize("lookahead", [0, 2])
def test_pe_moves_points_toward_the_private_set(lookahead):
    images, labels = _private_points(np.random.default_rng(2), 100, [(2.5, 2.5), (-2.5, 1.0)])
    private = images.reshape(-1, 2)
    seen = []
    config = _config(iterations=6, degrees=evolve.degree_schedule(0.6, 0.1, 6),
                     noise_multiplier=1.0, lookahead=lookahead)
    initial = np.asarray(PointGenerator().random(jax.random.fold_in(jax.random.key(0), 0), 80, None))
    _run(config, images, labels, callbacks=[seen.append])
    distances = [_mean_distance_to_nearest_synthetic(private, initial)] + [
        _mean_distance_to_nearest_synthetic(private, np.asarray(r.samples)) for r in seen]
    assert distances[-1] < 0.5 * distances[0], distances


def test_pe_moves_glyphs_toward_private_digits():
    """The real default: glyph simulator, sklearn digits, generous epsilon."""
    from pe_jax.apis.glyphs import GlyphGenerator
    from pe_jax.data import load_sklearn_digits

    digits = load_sklearn_digits()
    keep = np.flatnonzero(digits.labels < 3)[:300]
    images, labels = digits.images[keep], digits.labels[keep]
    generator = GlyphGenerator(characters="012", resolution=8)
    config = evolve.PEConfig(iterations=5, noise_multiplier=1.0, samples_per_class=(60,) * 3,
                             degrees=evolve.degree_schedule(0.6, 0.15, 5, "geometric"),
                             threshold=1.0)
    snapshots = []
    key = jax.random.key(0)
    initial = generator.random(jax.random.fold_in(key, 0), 180,
                               jnp.repeat(jnp.arange(3), 60))
    evolve.run(key, config, generator=generator, embedder=embeddings.PixelEmbedder(),
               private_images=images, private_labels=labels,
               ledger=privacy.PrivacyLedger(1e-5), callbacks=[snapshots.append],
               noise_rng=np.random.default_rng(0), progress=False)

    def distance(samples, sample_labels):
        synthetic = np.asarray(generator.images(samples)).reshape(len(sample_labels), -1)
        per_class = [_mean_distance_to_nearest_synthetic(
            images[labels == c].reshape(-1, 64), synthetic[sample_labels == c]) for c in range(3)]
        return float(np.mean(per_class))

    start = distance(initial, np.repeat(np.arange(3), 60))
    end = distance(snapshots[-1].samples, snapshots[-1].labels)
    assert end < 0.85 * start, (start, end)



def test_vote_kernel_compiles_once_whatever_the_private_class_sizes():
    """Private class sizes must not show in compilation (one kernel per distinct class size
    before: 8 compilations on digits). Two runs with the same total but different class
    sizes, one with a single-row class, compile the vote kernel at most once in all."""
    from pe_jax.voting.kernel import vote_counts

    rng = np.random.default_rng(3)
    config = _config(samples_per_class=(10, 10, 10), iterations=2, degrees=(0.4, 0.2))
    before = vote_counts._cache_size()
    for sizes in [(1, 17, 42), (30, 25, 5)]:
        images, labels = _private_points(rng, 1, [(0, 0)] * 60)
        labels = np.repeat(np.arange(3), sizes).astype(np.int32)
        _run(config, images, labels)
    assert vote_counts._cache_size() - before <= 1
