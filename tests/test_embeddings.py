"""Embedders: pixels, random projection, the shipped glyph encoder and the FID Inception port."""

import json
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from pe_jax import checkpoints, embeddings
from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.models import encoder, inception

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def _images(n: int, side: int = 8, channels: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, side, side, channels), dtype=np.float32)


def test_pixels_flatten_and_resize():
    images = _images(5)
    np.testing.assert_array_equal(embeddings.PixelEmbedder()(images), images.reshape(5, -1))
    assert embeddings.make_embedder("pixels", resolution=4)(images).shape == (5, 16)
    constant = np.full((2, 8, 8, 1), 0.25, np.float32)  # resizing keeps a flat image flat
    np.testing.assert_allclose(embeddings.PixelEmbedder(resolution=16)(constant), 0.25,
                               rtol=1e-6)


@pytest.mark.parametrize("name", ["pixels", "random_projection", "encoder"])
def test_same_features_for_any_batch_size(name):
    images = _images(11)
    whole = np.asarray(embeddings.make_embedder(name, batch_size=64)(images))
    for batch_size in (1, 4):
        parts = np.asarray(embeddings.make_embedder(name, batch_size=batch_size)(images))
        np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-5)
    single_device = jax.make_mesh((1,), ("data",))
    sharded = embeddings.make_embedder(name, batch_size=4, mesh=single_device)(images)
    np.testing.assert_allclose(sharded, whole, rtol=1e-5, atol=1e-5)


def test_random_projection_is_fixed_by_its_seed_and_keeps_distances():
    images = _images(64, seed=1)
    first = np.asarray(embeddings.RandomProjectionEmbedder(dim=512, seed=3)(images))
    again = np.asarray(embeddings.RandomProjectionEmbedder(dim=512, seed=3)(images))
    other = np.asarray(embeddings.RandomProjectionEmbedder(dim=512, seed=4)(images))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    flat = images.reshape(64, -1)
    ratio = (np.linalg.norm(first[1:] - first[0], axis=1)
             / np.linalg.norm(flat[1:] - flat[0], axis=1))
    assert abs(ratio.mean() - 1) < 0.05 and ratio.min() > 0.8 and ratio.max() < 1.2


def test_bad_names_and_options_are_refused():
    with pytest.raises(ValueError, match="embedding must be one of"):
        embeddings.make_embedder("vgg")
    with pytest.raises(ValueError, match="needs weights"):
        embeddings.make_embedder("inception")
    with pytest.raises(ValueError, match="batch_size"):
        embeddings.PixelEmbedder(batch_size=0)
    with pytest.raises(ValueError, match="images must be"):
        embeddings.PixelEmbedder()(np.zeros((3, 8, 8)))


def test_from_config_passes_the_run_config_options():
    import ml_collections

    config = ml_collections.ConfigDict({"embedding": "inception", "inception_weights": ""})
    with pytest.raises(ValueError, match="needs weights"):
        embeddings.from_config(config)
    config.encoder_checkpoint = str(encoder.SHIPPED)
    embedder = embeddings.from_config(config, "encoder")
    assert embedder.metadata == checkpoints.load_metadata(encoder.SHIPPED)
    assert isinstance(embeddings.from_config(config, "pixels"), embeddings.PixelEmbedder)


def test_shipped_encoder_is_small_public_and_separates_glyph_classes():
    size = sum(f.stat().st_size for f in encoder.SHIPPED.rglob("*") if f.is_file())
    assert size < 5_000_000
    metadata = checkpoints.load_metadata(encoder.SHIPPED)
    assert "glyph" in metadata["data"] and metadata["command"].startswith("pe-jax train-encoder")
    generator = GlyphGenerator()
    samples = generator.random(jax.random.key(123), 400)
    features = np.asarray(embeddings.make_embedder("encoder")(generator.images(samples)))
    labels = np.asarray(samples.char)
    assert features.shape == (400, metadata["model"]["hidden"])
    # 1-nearest-neighbour accuracy among fresh glyphs: the embedding groups characters.
    d2 = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    assert np.mean(labels[d2.argmin(1)] == labels) > 0.8


@pytest.fixture(scope="module")
def torch_names() -> dict[str, tuple[int, ...]]:
    """Names and shapes of pytorch-fid's FID Inception state dict (written by
    ``experiments/convert_inception.py --write-names`` from a PyTorch definition)."""
    names = json.loads((FIXTURES / "fid_inception_torch_state.json").read_text())
    return {name: tuple(shape) for name, shape in names}


@pytest.fixture(scope="module")
def torch_state(torch_names) -> dict[str, np.ndarray]:
    """Random tensors named and shaped like that state dict."""
    rng = np.random.default_rng(0)
    state = {}
    for name, shape in torch_names.items():
        if name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif name.endswith("conv.weight"):
            fan_in = int(np.prod(shape[1:]))
            state[name] = (rng.standard_normal(shape) * np.sqrt(2 / fan_in)).astype(np.float32)
        else:
            state[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return state


def test_inception_maps_every_torch_tensor_by_name_and_shape(torch_names):
    names = torch_names
    model = inception.abstract_model()
    mapping = inception.torch_state_map(model)
    used = {n for n in names if not inception.is_ignored_torch_tensor(n)}
    assert set(mapping) == used  # every tensor of the file has a place, and nothing else
    assert {n for n in names if n not in used} >= set(inception.IGNORED_TORCH_TENSORS)
    flat = {tuple(str(p) for p in k): v for k, v in nnx.to_flat_state(nnx.state(model))}
    assert len({path for path, _ in mapping.values()}) == len(flat)  # one tensor per array
    for name, (path, permutation) in mapping.items():
        shape = names[name] if permutation is None else tuple(names[name][i] for i in permutation)
        assert shape == tuple(flat[path].get_value().shape), name


def test_inception_loading_refuses_missing_and_misshaped_tensors(torch_state):
    state = dict(torch_state)
    del state["Mixed_7c.branch_pool.bn.running_var"]
    state["Conv2d_1a_3x3.conv.weight"] = state["Conv2d_1a_3x3.conv.weight"][:16]
    model = inception.abstract_model()
    with pytest.raises(ValueError, match="missing.*Mixed_7c.branch_pool.bn.running_var"):
        inception.load_torch_state(model, state)
    with pytest.raises(ValueError, match="Conv2d_1a_3x3.conv.weight: shape"):
        inception.load_torch_state(model, state)


def test_inception_features_from_a_converted_checkpoint(tmp_path, torch_state):
    state = torch_state
    model = inception.abstract_model()
    inception.load_torch_state(model, state)
    np.testing.assert_array_equal(  # OIHW -> HWIO
        model.Conv2d_1a_3x3.conv.kernel.get_value(),
        state["Conv2d_1a_3x3.conv.weight"].transpose(2, 3, 1, 0))
    checkpoints.save(tmp_path / "fid", model, {"model": "fid_inception_v3"})
    embedder = embeddings.make_embedder("inception", weights=tmp_path / "fid", batch_size=1)
    images = _images(2)
    features = np.asarray(embedder(images))
    assert features.shape == (2, inception.FEATURES) and np.all(np.isfinite(features))
    assert np.all(features >= 0) and features.std() > 0  # mean of ReLU outputs, not constant
    # One batch of two RGB copies == two batches of one grey image: batch size and channel
    # repetition change nothing.
    together = embeddings.make_embedder("inception", weights=tmp_path / "fid", batch_size=2)
    np.testing.assert_allclose(together(np.repeat(images, 3, axis=-1)), features, rtol=1e-4,
                               atol=1e-6)


def test_train_encoder_command_writes_a_checkpoint_the_embedder_loads(tmp_path):
    from pe_jax import cli

    out = tmp_path / "encoder"
    assert cli.main(["train-encoder", "--set", "steps=3", "--set", "batch_size=16",
                     "--set", "characters=01", "--set", "hidden=8",
                     "--out", str(out)]) == 0
    metadata = checkpoints.load_metadata(out)
    assert metadata["config"]["steps"] == 3 and "--set=steps=3" in metadata["command"]
    embedder = embeddings.make_embedder("encoder", checkpoint=out)
    assert embedder(_images(3)).shape == (3, metadata["config"]["hidden"])
