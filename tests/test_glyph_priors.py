"""The glyph pose priors: fitted to held-out digits only, shipped with their origin."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pe_jax.apis import glyph_priors
from pe_jax.apis.factory import make_generator
from pe_jax.apis.glyphs import (DEFAULT_PRIORS, DEFAULT_PRIORS_ORIGIN, PARAMETERS, GlyphGenerator,
                                ParamPrior, describe_priors, discover_fonts)
from pe_jax.configs import CONFIG_DIR, load_config
from pe_jax.data import (HELDOUT_SALT, TUNING_HELDOUT, LabelledImages, heldout_mask,
                         load_sklearn_digits)

MATPLOTLIB_TTF = pathlib.Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf"
FEW_FONTS = [MATPLOTLIB_TTF / name for name in ("DejaVuSans.ttf", "cmr10.ttf")]


@pytest.fixture(scope="module")
def digits() -> LabelledImages:
    return load_sklearn_digits()


def test_shipped_priors_record_that_they_come_from_held_out_digits_only():
    origin = DEFAULT_PRIORS_ORIGIN
    assert origin["heldout"] == TUNING_HELDOUT and origin["heldout_salt"] == HELDOUT_SALT
    assert origin["reference_rows"] == 462 and "never to private rows" in origin["description"]
    assert origin["command"].startswith("python experiments/fit_glyph_priors.py")
    assert list(DEFAULT_PRIORS) == list(PARAMETERS)


@pytest.mark.skipif(
    [p.name for p in discover_fonts()] != DEFAULT_PRIORS_ORIGIN["fonts"],
    reason="the shipped priors were fitted with other fonts installed (see their origin)")
def test_rerunning_the_fit_reproduces_the_shipped_priors(digits):
    priors, origin = glyph_priors.fit_digits_priors(digits, TUNING_HELDOUT)
    assert origin["mean_nearest_distance"] == pytest.approx(
        DEFAULT_PRIORS_ORIGIN["mean_nearest_distance"], abs=1e-3)
    for name, prior in DEFAULT_PRIORS.items():
        np.testing.assert_allclose(priors[name], prior, atol=0.011, err_msg=name)


def test_the_fit_never_reads_private_rows(digits):
    def fit(data: LabelledImages) -> tuple[dict, dict]:
        return glyph_priors.fit_digits_priors(data, TUNING_HELDOUT, bank_per_class=300,
                                              fonts=FEW_FONTS)

    priors, origin = fit(digits)
    held = heldout_mask(len(digits.labels), TUNING_HELDOUT)
    assert origin["reference_rows"] == held.sum()
    # Every private row replaced, image and label: the same fit.
    images, labels = digits.images.copy(), digits.labels.copy()
    images[~held] = np.random.default_rng(0).random(images[~held].shape, np.float32)
    labels[~held] = (labels[~held] + 1) % 10
    assert fit(LabelledImages(images, labels, digits.class_names)) == (priors, origin)
    # The held-out rows do shape it.
    images = digits.images.copy()
    images[held] = 1.0 - images[held]
    assert fit(LabelledImages(images, digits.labels, digits.class_names))[0] != priors


def test_the_fit_recovers_the_poses_of_known_glyphs():
    truth = {**DEFAULT_PRIORS, "scale": ParamPrior(0.7, 0.03, 0.6, 0.8),
             "shift_x": ParamPrior(0.2, 0.02, 0.1, 0.3)}
    generator = GlyphGenerator(fonts=FEW_FONTS, priors=truth)
    labels = jnp.arange(200) % 10
    images = np.asarray(generator.images(generator.random(jax.random.key(7), 200, labels)))
    reference = LabelledImages(images, np.asarray(labels, np.int32), tuple("0123456789"))
    priors, record = glyph_priors.fit_priors(reference, bank_per_class=2000, fonts=FEW_FONTS)
    assert abs(priors["scale"].mean - 0.7) < 0.05 and abs(priors["shift_x"].mean - 0.2) < 0.05
    assert priors["scale"].std < glyph_priors.BROAD_PRIORS["scale"].std / 2
    assert record["reference_rows"] == 200 and record["fonts"] == ["DejaVuSans.ttf", "cmr10.ttf"]


def test_the_fit_refuses_bad_input(digits):
    colour = LabelledImages(np.zeros((3, 8, 8, 3), np.float32), np.zeros(3, np.int32), ("0",))
    with pytest.raises(ValueError, match="reference must be"):
        glyph_priors.fit_priors(colour, fonts=FEW_FONTS)
    with pytest.raises(ValueError, match="bank_per_class"):
        glyph_priors.fit_priors(digits, bank_per_class=0, fonts=FEW_FONTS)
    with pytest.raises(ValueError, match="passes"):
        glyph_priors.fit_priors(digits, passes=0, fonts=FEW_FONTS)


def test_with_priors_keeps_the_atlas_and_checks_the_priors():
    generator = GlyphGenerator(fonts=FEW_FONTS)
    narrow = generator.with_priors({"rotation": ParamPrior(0.3, 0.0, 0.3, 0.3)})
    assert narrow.atlas is generator.atlas and generator.priors == DEFAULT_PRIORS
    samples = narrow.random(jax.random.key(0), 5, None)
    np.testing.assert_allclose(samples.rotation, 0.3)
    with pytest.raises(ValueError, match="priors"):
        generator.with_priors({"scale": ParamPrior(2.0, 1.0, 0.0, 1.0)})


def test_describe_priors_names_the_origin():
    shipped = describe_priors(DEFAULT_PRIORS)
    assert shipped["origin"] == DEFAULT_PRIORS_ORIGIN
    assert shipped["values"]["rotation"] == DEFAULT_PRIORS["rotation"]._asdict()
    other = describe_priors({**DEFAULT_PRIORS, "rotation": ParamPrior(0.0, 0.1, -0.5, 0.5)})
    assert "set by the caller" in other["origin"]["description"]


def test_run_configs_carry_the_priors_they_use():
    config = load_config(CONFIG_DIR / "digits_glyphs.py").generator
    assert {name: dict(p) for name, p in config.glyph_priors.items()} == {
        name: p._asdict() for name, p in DEFAULT_PRIORS.items()}
    config.glyph_priors.rotation.std = 0.05
    generator, described = make_generator(config, tuple("0123456789"), (8, 8, 1))
    assert generator.priors["rotation"] == (DEFAULT_PRIORS["rotation"].mean, 0.05,
                                            DEFAULT_PRIORS["rotation"].low,
                                            DEFAULT_PRIORS["rotation"].high)
    assert described["priors"]["values"]["rotation"]["std"] == 0.05
    assert "set by the caller" in described["priors"]["origin"]["description"]
    del config.glyph_priors["blur"]
    with pytest.raises(ValueError, match="generator.glyph_priors must be"):
        make_generator(config, tuple("0123456789"), (8, 8, 1))
