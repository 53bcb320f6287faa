"""PE with the shipped diffusion prior as its generator (the default, configs/digits.py)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pe_jax import checkpoints, embeddings, evolve, privacy
from pe_jax.apis import Generator
from pe_jax.apis.diffusion import DEFAULT_PRIOR, DiffusionGenerator
from pe_jax.apis.factory import make_generator
from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.configs import CONFIG_DIR, load_config
from pe_jax.data import load_sklearn_digits

DIGIT_NAMES = tuple("0123456789")


@pytest.fixture(scope="module")
def config():
    return load_config(CONFIG_DIR / "digits.py", ["generator.steps=10"])


def test_shipped_prior_is_small_and_records_how_it_was_made():
    size = sum(p.stat().st_size for p in DEFAULT_PRIOR.rglob("*") if p.is_file())
    assert size < 5 * 2**20
    metadata = checkpoints.load_metadata(DEFAULT_PRIOR)
    assert metadata["unet"]["resolution"] == 8 and metadata["unet"]["channels"] == 1
    assert metadata["unet"]["num_classes"] == 10
    assert metadata["class_names"] == list(DIGIT_NAMES)
    assert metadata["command"].startswith(
        "pe-jax train-prior --config pe_jax/configs/prior_digits8.py")
    assert metadata["training"]["steps"] == metadata["steps"]
    assert len(metadata["data"]["fonts"]) >= 15


def test_make_generator_builds_both_generators(config):
    generator, described = make_generator(config.generator, DIGIT_NAMES, (8, 8, 1))
    assert isinstance(generator, DiffusionGenerator) and isinstance(generator, Generator)
    assert described["name"] == "diffusion" and described["training_data"]["fonts"]
    assert described["sampling"] == {"steps": 10, "guidance": config.generator.guidance}
    glyph_config = load_config(CONFIG_DIR / "digits_glyphs.py")
    glyphs, described = make_generator(glyph_config.generator, DIGIT_NAMES, (8, 8, 1))
    assert isinstance(glyphs, GlyphGenerator) and described["fonts"] == list(glyphs.fonts)


@pytest.mark.parametrize("class_names,shape,match", [
    (tuple("012"), (8, 8, 1), "classes"), (DIGIT_NAMES, (16, 16, 1), "16x16x1"),
    (DIGIT_NAMES, (8, 8, 3), "8x8x3")])
def test_make_generator_refuses_a_prior_of_other_classes_or_size(config, class_names,
                                                                  shape, match):
    with pytest.raises(ValueError, match=match):
        make_generator(config.generator, class_names, shape)
    config = load_config(CONFIG_DIR / "digits.py", ["generator.name=gan"])
    with pytest.raises(ValueError, match="generator.name"):
        make_generator(config.generator, DIGIT_NAMES, (8, 8, 1))
    glyphs = load_config(CONFIG_DIR / "digits_glyphs.py").generator
    with pytest.raises(ValueError, match="glyphs draws grey square images"):
        make_generator(glyphs, DIGIT_NAMES, (8, 8, 3))


def _mean_nn_distance(private: np.ndarray, synthetic: np.ndarray) -> float:
    d = np.linalg.norm(private[:, None, :] - synthetic[None, :, :], axis=-1)
    return float(d.min(axis=1).mean())


def test_pe_with_the_shipped_prior_moves_toward_private_digits(config):
    digits = load_sklearn_digits()
    keep = np.concatenate([np.flatnonzero(digits.labels == c)[:30] for c in range(10)])
    images, labels = digits.images[keep], digits.labels[keep]
    generator, _ = make_generator(config.generator, digits.class_names, (8, 8, 1))
    per_class = 20
    pe_config = evolve.PEConfig(iterations=3, noise_multiplier=1.0,
                                samples_per_class=(per_class,) * 10,
                                degrees=evolve.degree_schedule(0.6, 0.3, 3), threshold=1.0)
    key = jax.random.key(0)
    snapshots = []
    evolve.run(key, pe_config, generator=generator, embedder=embeddings.PixelEmbedder(),
               private_images=images, private_labels=labels,
               ledger=privacy.PrivacyLedger(1e-5), callbacks=[snapshots.append],
               noise_rng=np.random.default_rng(0), progress=False)
    start_labels = np.repeat(np.arange(10), per_class)
    initial = generator.random(jax.random.fold_in(key, 0), 10 * per_class,
                               jnp.asarray(start_labels))

    def distance(samples, sample_labels):
        synthetic = np.asarray(generator.images(samples)).reshape(len(sample_labels), -1)
        return np.mean([_mean_nn_distance(images[labels == c].reshape(-1, 64),
                                          synthetic[sample_labels == c]) for c in range(10)])

    final = snapshots[-1]
    assert np.asarray(generator.images(final.samples)).shape == (10 * per_class, 8, 8, 1)
    start, end = distance(initial, start_labels), distance(final.samples, final.labels)
    assert end < 0.9 * start, (start, end)


def test_the_default_run_uses_the_diffusion_prior_and_a_one_sigma_threshold(tmp_path):
    from pe_jax import cli

    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out),
                     "--set", "pe.iterations=1", "--set", "pe.samples_per_class=4",
                     "--set", "generator.steps=4", "--quiet"]) == 0
    report = json.loads((out / "privacy.json").read_text())
    assert report["public"]["generator"]["name"] == "diffusion"
    assert report["public"]["generator"]["checkpoint"] == str(DEFAULT_PRIOR)
    priors = report["public"]["generator"]["training_data"]["priors"]
    assert priors["origin"]["reference_rows"] == 462  # fitted to the held-out digits only
    assert np.load(out / "samples.npz")["images"].shape == (40, 8, 8, 1)
    [sigma] = report["noise_multiplier"]  # H = threshold 0 + 1 sigma (sweep_quality's choice)
    assert report["public"]["settings"]["threshold"] == pytest.approx(sigma) and sigma > 1
