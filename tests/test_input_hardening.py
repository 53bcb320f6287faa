"""Bad input at every public entry point: a clear ValueError before anything is released, or a
well-defined (noise-only) release; never NaN output, never an error after noise was drawn.

One test per item of the checklist (docs: PRIVACY_TESTS.md, section E). Checks that other test
files already make (voting, release, ledger, accounting, PEConfig) are not repeated here.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pe_jax import cli, embeddings, evolve, population, privacy, reporting
from pe_jax.voting import nn_histogram
from point_generator import PointGenerator


def _points(n=20, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 1.0, (n, 1, 1, 2)).astype(np.float32)
    return images, np.arange(n, dtype=np.int32) % 2


def _config(**overrides):
    base = dict(iterations=2, noise_multiplier=2.0, samples_per_class=(16, 16),
                degrees=(0.4, 0.2), threshold=0.5, image_range=(-8.0, 8.0))
    return evolve.PEConfig(**{**base, **overrides})


def _run(config, images, labels, ledger=None, seed=0):
    """Returns (ledger, releases) of a PE run with seeded noise."""
    ledger = ledger if ledger is not None else privacy.PrivacyLedger(1e-5)
    seen = []
    evolve.run(jax.random.key(0), config, generator=PointGenerator(),
               embedder=embeddings.PixelEmbedder(), private_images=images, private_labels=labels,
               ledger=ledger, callbacks=[seen.append], noise_rng=np.random.default_rng(seed),
               progress=False)
    return ledger, [r.release.noisy for r in seen]


@pytest.mark.parametrize("embedding", ["pixels", "encoder"])
def test_bad_private_images_stop_the_run_before_anything_is_spent(embedding):
    """One ingestion policy for every embedder: NaN/Inf values or values outside the declared
    image range are a ValueError that counts them (never shows them), with the ledger empty.
    Before, NaN images got zero votes with the pixel embedding but finite features, and so
    votes, with the encoder; raw 0..16 digits ran without a word."""
    from pe_jax.apis.glyphs import GlyphGenerator
    from pe_jax.data import load_sklearn_digits

    digits = load_sklearn_digits()
    images, labels = digits.images[:40].copy(), digits.labels[:40] % 2
    embedder = embeddings.make_embedder(embedding)
    config = evolve.PEConfig(iterations=1, noise_multiplier=2.0, samples_per_class=(8, 8),
                             degrees=(0.3,))
    nan_images = images.copy()
    nan_images[[2, 5], 3, 3, 0] = np.nan
    nan_images[7, 0, 0, 0] = np.inf
    for bad, message in [(nan_images, "3 NaN or infinite values"),
                         (images * 16.0, "values outside it")]:
        ledger = privacy.PrivacyLedger(1e-5)
        with pytest.raises(ValueError, match="private_images must be") as error:
            evolve.run(jax.random.key(0), config, generator=GlyphGenerator(characters="01"),
                       embedder=embedder, private_images=bad, private_labels=labels,
                       ledger=ledger, progress=False)
        assert len(ledger) == 0
        assert str(error.value).endswith(f"{message}'")  # counts only, never pixel values


def test_empty_private_set_gives_noise_only_releases():
    images, _ = _points()
    ledger, releases = _run(_config(samples_per_class=(16,)), images[:0], None)
    assert len(ledger.events) == 2
    # The population is public and the clean votes are zero: each release is the noise alone.
    noise = np.random.default_rng(0)
    for released in releases:
        expected = privacy.simulate_releases(np.zeros(16, np.int32), noise_multiplier=2.0,
                                             repeats=(1,),
                                             rng=noise)[0]
        np.testing.assert_array_equal(released, expected)


def test_empty_class_block_is_zero_without_noise_and_noise_only_with_it():
    images, labels = _points()
    labels[:] = 0  # class 1 has no private rows
    config = _config(noise_multiplier=0.0, non_private=True)
    _, clean = _run(config, images, labels)
    for released in clean:
        assert released[:16].sum() == len(images) and not released[16:].any()
    _, noisy = _run(_config(), images, labels)
    assert all(np.isfinite(r).all() and r[16:].any() for r in noisy)


def test_mismatched_dimensions_are_refused_before_any_release():
    images, labels = _points()
    ledger = privacy.PrivacyLedger(1e-5)
    three_channels = np.concatenate([images, images[..., :1]], axis=-1)  # D = 3, population D = 2
    with pytest.raises(ValueError, match="feature dimension"):
        _run(_config(), three_channels, labels, ledger=ledger)
    assert ledger.events == ()


@pytest.mark.parametrize("images", [
    np.zeros((20, 1, 1, 2), np.int64),
    np.zeros((20, 1, 1, 2), np.uint8),
    np.zeros((20, 1, 1, 2), bool),
    np.zeros((20, 1, 1, 2), np.complex64),
    np.full((20, 1, 1, 2), "a"),
], ids=["int64", "uint8", "bool", "complex", "str"])
def test_wrong_dtypes_are_refused_with_a_named_error(images):
    _, labels = _points()
    ledger = privacy.PrivacyLedger(1e-5)
    with pytest.raises(ValueError, match="private_images"):
        _run(_config(), images, labels, ledger=ledger)
    assert ledger.events == ()
    flat = images.reshape(20, 2)
    if flat.dtype.kind in "cUb":  # integer embeddings are valid votes; these are not
        with pytest.raises(ValueError, match="private"):
            nn_histogram(flat, np.ones((3, 2), np.float32))
        with pytest.raises(ValueError, match="counts"):
            population.select(jax.random.key(0), flat[:, 0], 2)
    with pytest.raises(ValueError, match="counts must be integer vote counts"):
        privacy.release(np.ones(3, np.complex64), noise_multiplier=1.0, threshold=0.0,
                        ledger=ledger)
    assert ledger.events == ()


def test_bf16_images_and_embeddings_vote_like_their_float32_values():
    images, labels = _points()
    as_bf16 = jnp.asarray(images, jnp.bfloat16)
    _, low = _run(_config(), np.asarray(as_bf16), labels)
    _, full = _run(_config(), np.asarray(as_bf16.astype(jnp.float32)), labels)
    for a, b in zip(low, full):
        np.testing.assert_array_equal(a, b)
    # A bf16 histogram cannot hold counts above 256 exactly: the release refuses it.
    ledger = privacy.PrivacyLedger(1e-5)
    with pytest.raises(ValueError, match="dtype"):
        privacy.release(jnp.ones(4, jnp.bfloat16), noise_multiplier=1.0, threshold=0.0,
                        ledger=ledger)
    assert ledger.events == ()


def test_sigma_zero_needs_the_explicit_non_private_flag_and_is_reported_as_not_dp():
    ledger = privacy.PrivacyLedger(1e-5)
    for sigma in (0.0, -1.0):
        with pytest.raises(ValueError, match="noise_multiplier"):
            privacy.release([1, 2], noise_multiplier=sigma, threshold=0.0, ledger=ledger)
        with pytest.raises(ValueError, match="noise_multiplier"):
            _config(noise_multiplier=sigma)
    with pytest.raises(ValueError, match="noise_multiplier=0"):
        privacy.release([1, 2], noise_multiplier=1.0, threshold=0.0, ledger=ledger,
                        non_private=True)
    with pytest.raises(ValueError, match="non_private"):
        privacy.release([1, 2], noise_multiplier=0.0, threshold=0.0, ledger=ledger,
                        non_private=1)
    with pytest.raises(ValueError, match="noise_multiplier"):
        _config(noise_multiplier=1.0, non_private=True)
    assert ledger.events == ()
    budgeted = privacy.PrivacyLedger(1e-5, epsilon_budget=10.0)
    with pytest.raises(privacy.BudgetExceededError):  # infinite epsilon: refused up front
        privacy.release([1, 2], noise_multiplier=0.0, threshold=0.0, ledger=budgeted,
                        non_private=True)
    assert budgeted.events == ()

    released = privacy.release([3, 0], noise_multiplier=0.0, threshold=1.0, ledger=ledger,
                               non_private=True)
    np.testing.assert_array_equal(released.noisy, [3, 0])
    np.testing.assert_array_equal(released.thresholded, [2, 0])
    assert ledger.events[0].mechanism == privacy.NON_PRIVATE
    assert ledger.epsilon_spent() == math.inf
    restored = privacy.PrivacyLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))
    assert restored.events == ledger.events
    report = reporting.privacy_report(ledger, target_epsilon=None, public={},
                                      private_data={"description": "two points", "rows": 2})
    assert report["differentially_private"] is False and report["epsilon"] is None
    assert "without noise" in report["not_private_because"][0]
    json.dumps(report, allow_nan=False)  # valid JSON: no Infinity


def test_seeded_noise_is_reported_as_not_differentially_private(tmp_path):
    """Rerunning a seed recovers the clean counts, so a seeded run is NOT DP, and says why."""
    images, labels = _points()
    ledger, first = _run(_config(), images, labels, seed=3)
    _, again = _run(_config(), images, labels, seed=3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)  # the same noise: anyone with the seed can undo it
    assert all(event.seeded for event in ledger.events)
    report = reporting.privacy_report(ledger, target_epsilon=None, public={},
                                      private_data={"description": "twenty points", "rows": 20})
    assert report["differentially_private"] is False and report["epsilon"] is None
    assert report["epsilon_cumulative"] is None
    (reason,) = report["not_private_because"]
    assert "2 release(s) drew their noise from a seeded generator (numpy PCG64" in reason
    reporting.write_privacy_report(tmp_path, report)
    assert json.loads((tmp_path / "privacy.json").read_text())["differentially_private"] is False
    text = " ".join((tmp_path / "privacy.txt").read_text().split())  # unwrapped
    assert "This run is NOT differentially private" in text and "recompute the noise" in text
    with pytest.raises(ValueError, match="cannot mix"):  # and its ledger takes no CSPRNG release
        privacy.release([1, 2], noise_multiplier=2.0, threshold=0.0, ledger=ledger)


def test_negative_or_non_finite_counts_and_thresholds_are_refused():
    key = jax.random.key(0)
    for counts in ([1.0, -0.5, 2.0], [1.0, np.nan, 2.0], [np.inf, 0.0, 1.0]):
        with pytest.raises(ValueError, match="counts"):
            population.select(key, np.asarray(counts), 2)
    for bad in (-1.0, math.inf):
        with pytest.raises(ValueError, match="threshold"):
            _config(threshold=bad)


@pytest.mark.parametrize("override, name", [
    ("pe.threshold=-1.0", "pe.threshold"), ("privacy.epsilon=NaN", "privacy.epsilon"),
    ("privacy.epsilon=Infinity", "privacy.epsilon"), ("privacy.delta=0.0", "privacy.delta"),
    ("privacy.delta=1.5", "privacy.delta"), ("pe.iterations=0", "pe.iterations")])
def test_command_line_refuses_out_of_range_privacy_settings(tmp_path, capsys, override, name):
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out), "--set", override, "--quiet"]) == 2
    assert name in capsys.readouterr().err
    assert not out.exists()  # refused before the output folder, let alone a release
