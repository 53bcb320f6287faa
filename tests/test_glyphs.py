"""Tests of the glyph simulator (pe_jax.apis.glyphs)."""

import dataclasses
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pe_jax.apis import Generator
from pe_jax.apis.glyphs import (
    ALPHANUMERIC,
    DEFAULT_PRIORS,
    DIGITS,
    LETTERS,
    GlyphGenerator,
    GlyphSamples,
    ParamPrior,
    discover_fonts,
)

MATPLOTLIB_TTF = pathlib.Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf"


@pytest.fixture(scope="module")
def gen() -> GlyphGenerator:
    return GlyphGenerator()


@pytest.fixture(scope="module")
def gen16() -> GlyphGenerator:
    return GlyphGenerator(resolution=16, fonts=[MATPLOTLIB_TTF / "DejaVuSans.ttf",
                                                MATPLOTLIB_TTF / "cmr10.ttf"])


def _params(samples: GlyphSamples) -> dict[str, np.ndarray]:
    return {f.name: np.asarray(getattr(samples, f.name)) for f in dataclasses.fields(samples)}


def _posed(gen: GlyphGenerator, n: int, **overrides) -> GlyphSamples:
    """n samples of font 0, character 0, mean pose, with some fields overridden."""
    fields = {name: jnp.full((n,), p.mean) for name, p in DEFAULT_PRIORS.items()}
    fields.update(font=jnp.zeros(n, jnp.int32), char=jnp.zeros(n, jnp.int32))
    fields.update({k: jnp.asarray(v, jnp.float32) for k, v in overrides.items()})
    return GlyphSamples(**fields)


# --- fonts -----------------------------------------------------------------------------------


def test_discover_fonts_keeps_text_faces_and_rejects_symbol_fonts():
    names = [p.name for p in discover_fonts("0123456789")]
    assert len(names) >= 15
    assert names == sorted(names)
    for face in ("DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "STIXGeneral.ttf", "cmr10.ttf"):
        assert face in names
    for symbol in ("cmex10.ttf", "cmsy10.ttf", "LastResortHE-Regular.ttf", "DejaVuSansDisplay.ttf",
                   "STIXSizOneSymReg.ttf", "STIXNonUni.ttf"):
        assert symbol not in names


def test_discover_fonts_searches_handwriting_dirs_and_drops_duplicates(tmp_path):
    (tmp_path / "truetype" / "humor-sans").mkdir(parents=True)
    (tmp_path / "opentype" / "comic-neue").mkdir(parents=True)
    (tmp_path / "truetype" / "unrelated").mkdir(parents=True)
    # A copy of DejaVuSans sorts first, so it is kept and the original is its duplicate.
    shutil.copy(MATPLOTLIB_TTF / "DejaVuSans.ttf", tmp_path / "truetype/humor-sans/AAA.ttf")
    shutil.copy(MATPLOTLIB_TTF / "cmsy10.ttf", tmp_path / "opentype/comic-neue/BBB.ttf")
    shutil.copy(MATPLOTLIB_TTF / "cmr10.ttf", tmp_path / "truetype/unrelated/CCC.ttf")
    paths = discover_fonts("0123456789", font_root=tmp_path)
    names = [p.name for p in paths]
    assert paths[0] == tmp_path / "truetype/humor-sans/AAA.ttf"
    assert "DejaVuSans.ttf" not in names
    assert "BBB.ttf" not in names and "CCC.ttf" not in names


def test_generator_records_fonts_and_classes(gen):
    assert isinstance(gen, Generator)
    assert gen.fonts == tuple(p.name for p in discover_fonts(gen.characters))
    assert gen.characters == "0123456789" and gen.num_classes == 10
    assert gen.atlas.shape[:2] == (len(gen.fonts), 10)


# --- random / variation / images -------------------------------------------------------------


@pytest.mark.parametrize("fixture,resolution", [("gen", 8), ("gen16", 16)])
def test_images_shape_dtype_range(request, fixture, resolution):
    g = request.getfixturevalue(fixture)
    images = g.images(g.random(jax.random.key(0), 64, None))
    assert images.shape == (64, resolution, resolution, 1)
    assert images.dtype == jnp.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    # Bright ink on a dark background, like sklearn's digits: every glyph has some ink and
    # most images are mostly background (bold or blurred glyphs under the fitted priors fill
    # more than half of the image in about a quarter of the draws).
    per_image = np.asarray(images).reshape(64, -1)
    assert (per_image.max(1) > 0.5).all()
    assert 0.1 < per_image.mean() < 0.5
    assert (np.median(per_image, axis=1) < 0.3).mean() > 0.6


def test_samples_are_a_pytree_with_a_shared_leading_axis(gen):
    samples = gen.random(jax.random.key(0), 10, None)
    leaves = jax.tree.leaves(samples)
    assert len(leaves) == len(dataclasses.fields(GlyphSamples))
    assert all(leaf.shape == (10,) for leaf in leaves)
    idx = jnp.array([3, 3, 7])
    picked = jax.tree.map(lambda a: a[idx], samples)
    np.testing.assert_array_equal(gen.images(picked), gen.images(samples)[idx])


def test_same_key_same_samples_different_key_different(gen):
    a = gen.random(jax.random.key(1), 32, None)
    b = gen.random(jax.random.key(1), 32, None)
    c = gen.random(jax.random.key(2), 32, None)
    for name, value in _params(a).items():
        np.testing.assert_array_equal(value, _params(b)[name])
    np.testing.assert_array_equal(gen.images(a), gen.images(b))
    assert not np.array_equal(_params(a)["rotation"], _params(c)["rotation"])
    assert not np.allclose(gen.images(a), gen.images(c))
    va = gen.variation(jax.random.key(3), a, 0.5)
    vb = gen.variation(jax.random.key(3), a, 0.5)
    vc = gen.variation(jax.random.key(4), a, 0.5)
    np.testing.assert_array_equal(gen.images(va), gen.images(vb))
    assert not np.allclose(gen.images(va), gen.images(vc))


def test_labels_respected_and_kept_by_variation(gen):
    labels = jnp.arange(40) % 10
    samples = gen.random(jax.random.key(0), 40, labels)
    np.testing.assert_array_equal(samples.char, labels)
    for degree in (0.3, 1.0):
        varied = gen.variation(jax.random.key(1), samples, degree)
        np.testing.assert_array_equal(varied.char, labels)
    free = gen.random(jax.random.key(0), 500, None)
    assert set(np.asarray(free.char).tolist()) == set(range(10))
    assert len(set(np.asarray(free.font).tolist())) == len(gen.fonts)


def test_random_pose_follows_priors(gen):
    samples = gen.random(jax.random.key(5), 4000, None)
    for name, prior in DEFAULT_PRIORS.items():
        value = np.asarray(getattr(samples, name))
        assert value.min() >= prior.low and value.max() <= prior.high
        assert abs(np.median(value) - prior.mean) < 0.1 * prior.std + 1e-6
    spread = np.asarray(samples.rotation).std()
    assert 0.8 * DEFAULT_PRIORS["rotation"].std < spread < 1.1 * DEFAULT_PRIORS["rotation"].std


def test_variation_degree_zero_is_identity(gen):
    samples = gen.random(jax.random.key(0), 50, None)
    same = gen.variation(jax.random.key(9), samples, 0.0)
    for name, value in _params(samples).items():
        np.testing.assert_array_equal(_params(same)[name], value)


def test_variation_distance_grows_with_degree(gen):
    samples = gen.random(jax.random.key(0), 400, None)
    images = gen.images(samples)
    distances, font_changes = [], []
    for degree in (0.05, 0.2, 0.5, 1.0):
        varied = gen.variation(jax.random.key(1), samples, degree)
        distances.append(float(jnp.linalg.norm((gen.images(varied) - images).reshape(400, -1),
                                               axis=1).mean()))
        font_changes.append(float((varied.font != samples.font).mean()))
        for name, prior in DEFAULT_PRIORS.items():
            value = np.asarray(getattr(varied, name))
            assert value.min() >= prior.low and value.max() <= prior.high
    assert all(a < b for a, b in zip(distances, distances[1:])), distances
    assert distances[0] > 0 and distances[-1] > 3 * distances[0]
    assert font_changes[0] < 0.02 and font_changes[-1] > 0.8


def test_pose_parameters_move_the_ink(gen16):
    centre = _posed(gen16, 1)
    right = _posed(gen16, 1, shift_x=[0.25])
    cols = np.arange(16)

    def column_centroid(samples):
        image = np.asarray(gen16.images(samples))[0, :, :, 0]
        return (image.sum(0) * cols).sum() / image.sum()

    assert column_centroid(right) > column_centroid(centre) + 1.0
    thin, bold = _posed(gen16, 1, weight=[0.08]), _posed(gen16, 1, weight=[0.3])
    assert float(gen16.images(bold).mean()) > 1.5 * float(gen16.images(thin).mean())
    dim, full = _posed(gen16, 1, intensity=[0.6]), _posed(gen16, 1, intensity=[1.0])
    np.testing.assert_allclose(gen16.images(dim), 0.6 * gen16.images(full), atol=1e-5)
    # Blur spreads the ink of a small glyph (away from the edges) without losing it.
    sharp = _posed(gen16, 1, scale=[0.6], blur=[0.0])
    blurred = _posed(gen16, 1, scale=[0.6], blur=[0.08])
    assert float(gen16.images(blurred).max()) < 0.9 * float(gen16.images(sharp).max())
    np.testing.assert_allclose(gen16.images(blurred).sum(), gen16.images(sharp).sum(), rtol=0.01)


def test_jit_of_all_three_methods(gen):
    random = jax.jit(gen.random, static_argnums=1)
    variation = jax.jit(gen.variation)
    images = jax.jit(gen.images)
    labels = jnp.arange(12) % 10
    samples = random(jax.random.key(0), 12, labels)
    eager = gen.random(jax.random.key(0), 12, labels)
    np.testing.assert_array_equal(samples.char, labels)
    np.testing.assert_allclose(samples.rotation, eager.rotation, rtol=1e-6)
    varied = variation(jax.random.key(1), samples, jnp.float32(0.3))  # traced degree
    eager_varied = gen.variation(jax.random.key(1), samples, 0.3)
    np.testing.assert_allclose(images(varied), gen.images(eager_varied), atol=1e-5)


def test_glyphs_resemble_sklearn_digits_of_their_class(gen):
    from sklearn.datasets import load_digits

    digits = load_digits()
    real = (digits.images / 16.0).reshape(len(digits.images), -1).astype(np.float32)
    labels = jnp.repeat(jnp.arange(10), 200)
    bank = np.asarray(gen.images(gen.random(jax.random.key(0), 2000, labels))).reshape(2000, -1)
    d2 = (real**2).sum(1)[:, None] - 2 * real @ bank.T + (bank**2).sum(1)[None]
    accuracy = (np.asarray(labels)[d2.argmin(1)] == digits.target).mean()
    assert accuracy > 0.5  # chance is 0.1


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_random_rejects_bad_n(gen, n):
    with pytest.raises(ValueError, match="n must"):
        gen.random(jax.random.key(0), n, None)


@pytest.mark.parametrize("labels", [jnp.zeros(4, jnp.int32), jnp.zeros((5, 1), jnp.int32),
                                    jnp.zeros(5), jnp.array([0, 1, 2, 3, 10]),
                                    jnp.array([0, -1, 2, 3, 4])])
def test_random_rejects_bad_labels(gen, labels):
    with pytest.raises(ValueError, match="labels"):
        gen.random(jax.random.key(0), 5, labels)


@pytest.mark.parametrize("degree", [-0.1, 1.5])
def test_variation_rejects_bad_degree(gen, degree):
    samples = gen.random(jax.random.key(0), 3, None)
    with pytest.raises(ValueError, match="degree"):
        gen.variation(jax.random.key(1), samples, degree)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(resolution=3), "resolution"),
        (dict(characters=""), "characters"),
        (dict(characters="00"), "characters"),
        (dict(characters="\u4e00\u4e01"), "no usable font"),
        (dict(fonts=[MATPLOTLIB_TTF / "cmsy10.ttf"]), "fonts"),
        (dict(fonts=[MATPLOTLIB_TTF / "DejaVuSans.ttf"], priors={"tilt": ParamPrior(0, 1, -1, 1)}),
         "priors"),
        (dict(fonts=[MATPLOTLIB_TTF / "DejaVuSans.ttf"], priors={"scale": ParamPrior(2, 1, 0, 1)}),
         "priors"),
    ],
)
def test_constructor_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GlyphGenerator(**kwargs)


def test_letters_render_with_their_own_font_set():
    fonts = [MATPLOTLIB_TTF / name for name in ("DejaVuSans.ttf", "cmr10.ttf", "STIXGeneral.ttf")]
    gen = GlyphGenerator(characters="ABC", resolution=12, fonts=fonts)
    assert gen.num_classes == 3 and gen.fonts == ("DejaVuSans.ttf", "cmr10.ttf", "STIXGeneral.ttf")
    samples = gen.random(jax.random.key(0), 6, jnp.array([0, 1, 2, 0, 1, 2]))
    assert gen.images(samples).shape == (6, 12, 12, 1)


# --- character sets and resolutions ----------------------------------------------------------


def test_character_sets():
    assert DIGITS == "0123456789" and len(LETTERS) == 52 and ALPHANUMERIC == DIGITS + LETTERS
    assert len(set(ALPHANUMERIC)) == len(ALPHANUMERIC)
    names = [p.name for p in discover_fonts(ALPHANUMERIC)]
    assert "DejaVuSans.ttf" in names and "cmr10.ttf" in names
    assert "cmmi10.ttf" in [p.name for p in discover_fonts(DIGITS)]


@pytest.mark.parametrize("resolution,atlas", [(8, 64), (16, 64), (32, 64), (64, 128)])
def test_letters_at_every_resolution(resolution, atlas):
    gen = GlyphGenerator(characters="AbQ", resolution=resolution,
                         fonts=[MATPLOTLIB_TTF / "DejaVuSans.ttf"])
    assert gen.atlas.shape == (1, 3, atlas, atlas)  # the atlas grows with the resolution
    labels = jnp.array([0, 1, 2, 0])
    images = np.asarray(gen.images(gen.random(jax.random.key(0), 4, labels)))
    assert images.shape == (4, resolution, resolution, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    per_image = images.reshape(4, -1)
    assert (per_image.max(1) > 0.5).all() and (per_image.mean(1) < 0.5).all()
    # A letter looks like itself in another pose more than like another letter.
    assert np.abs(per_image[0] - per_image[3]).mean() < np.abs(per_image[0] - per_image[1]).mean()
