"""The diffusion UNet: shapes and dtypes at every resolution, conditioning, dropout, config."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pe_jax.models.unet import (UNet, UNetConfig, _GroupNorm, compiler_options, init_unet,
                                timestep_embedding, with_labels)


def tiny(resolution: int, channels: int = 1, **overrides) -> UNetConfig:
    fields = dict(resolution=resolution, channels=channels, base_width=8,
                  width_multipliers=(1, 2), blocks_per_level=1,
                  attention_resolutions=(resolution // 2,), norm_groups=4)
    return UNetConfig(**(fields | overrides))


@pytest.mark.parametrize("resolution, channels, dtype", [
    (8, 1, "float32"), (16, 3, "bfloat16"), (32, 3, "float32"), (64, 1, "bfloat16")])
def test_shapes_and_dtypes_at_every_resolution(resolution, channels, dtype):
    model = init_unet(tiny(resolution, channels, dtype=dtype))
    x = jax.random.normal(jax.random.key(1), (2, resolution, resolution, channels))
    eps = nnx.jit(model)(x, jnp.array([0, 999]))
    assert eps.shape == x.shape and eps.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(eps)))
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(p.dtype == jnp.float32 for p in params)
    assert not np.allclose(eps[0], eps[1])  # the timestep (and the input) matter


@pytest.fixture(scope="module")
def conditional():
    return init_unet(tiny(8, num_classes=3, dropout=0.5))


def test_bfloat16_compute_tracks_float32_with_the_same_weights(conditional):
    f32 = conditional
    abstract = nnx.eval_shape(
        lambda: UNet(dataclasses.replace(f32.config, dtype="bfloat16"), rngs=nnx.Rngs(0)))
    bf16 = nnx.merge(nnx.split(abstract)[0], nnx.state(f32))
    x = jax.random.normal(jax.random.key(2), (4, 8, 8, 1))
    t = jnp.array([1, 10, 100, 900])
    exact, low = nnx.jit(f32)(x, t), nnx.jit(bf16)(x, t)
    assert not np.array_equal(exact, low)
    assert float(jnp.linalg.norm(exact - low) / jnp.linalg.norm(exact)) < 0.05


def test_labels_condition_the_output_none_is_the_null_label_and_dropout_needs_a_key(
        conditional):
    model = conditional
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 1))
    t = jnp.array([500, 500])

    @nnx.jit
    def outputs(model, x, t):
        label = lambda k: jnp.full((2,), k)  # noqa: E731
        return (model(x, t, label(0)), model(x, t, label(1)), model(x, t, None),
                model(x, t, label(3)), model(x, t, label(0), dropout_key=jax.random.key(5)),
                model(x, t, label(0), dropout_key=jax.random.key(6)))

    zero, one, none, null, drop5, drop6 = outputs(model, x, t)
    assert not np.allclose(zero, one)
    np.testing.assert_array_equal(none, null)
    assert not np.allclose(drop5, drop6) and not np.allclose(drop5, zero)
    np.testing.assert_array_equal(zero, outputs(model, x, t)[0])


def test_with_labels_computes_the_unconditional_function_until_trained():
    plain = init_unet(tiny(8), seed=4)
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    t = jnp.array([10, 300, 600, 900])
    labelled = with_labels(plain, 3)
    assert labelled.config.num_classes == 3 and plain.config.num_classes == 0
    want = np.asarray(plain(x, t))
    for label in range(4):  # the 3 classes and the "no label" index
        np.testing.assert_array_equal(labelled(x, t, jnp.full((4,), label)), want)
    # The label embeddings are parameters: once they move, the labels condition the output.
    embedding = labelled.label_embedding.embedding
    embedding[...] = jax.random.normal(jax.random.key(2), embedding[...].shape)
    assert not np.allclose(labelled(x, t, jnp.zeros(4, int)), labelled(x, t, jnp.ones(4, int)))
    with pytest.raises(ValueError, match="model must be an unconditional UNet"):
        with_labels(labelled, 3)


def test_parameter_count_of_the_ddpm_cifar10_configuration():
    config = UNetConfig(resolution=32, channels=3, base_width=128, width_multipliers=(1, 2, 2, 2),
                        blocks_per_level=2, attention_resolutions=(16,), norm_groups=32)
    model = nnx.eval_shape(lambda: UNet(config, rngs=nnx.Rngs(0)))
    count = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert count == 35_746_307  # diffusers' UNet2DModel of this configuration (DDPM: 35.7M)


def test_timestep_embedding_is_cos_then_sin():
    emb = timestep_embedding(jnp.array([0, 7]), 6)
    freqs = np.exp(-np.log(10_000.0) * np.arange(3) / 3)
    expected = np.concatenate([np.cos(7 * freqs), np.sin(7 * freqs)])
    np.testing.assert_allclose(emb[1], expected, rtol=1e-6)
    np.testing.assert_array_equal(emb[0], [1, 1, 1, 0, 0, 0])


def test_config_round_trips_through_json():
    config = tiny(16, 3, num_classes=10, dropout=0.1, dtype="bfloat16")
    assert UNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("overrides, name", [
    (dict(resolution=4), "resolution"),
    (dict(resolution=128), "resolution"),
    (dict(resolution=12, width_multipliers=(1, 2, 2)), "resolution"),
    (dict(norm_groups=3), "norm_groups"),
    (dict(attention_resolutions=(5,)), "attention_resolutions"),
    (dict(width_multipliers=()), "width_multipliers"),
    (dict(dtype="float16"), "dtype"),
    (dict(dropout=1.0), "dropout"),
    (dict(num_classes=-1), "num_classes"),
])
def test_bad_configs_name_the_field(overrides, name):
    with pytest.raises(ValueError, match=name):
        UNetConfig(**(tiny(8).to_dict() | overrides))


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(ValueError, match="UNetConfig fields"):
        UNetConfig.from_dict(tiny(8).to_dict() | {"widht": 3})


@pytest.mark.parametrize("shape, groups", [((4, 8, 8, 32), 8), ((2, 4, 4, 64), 32)])
def test_group_norm_matches_flax_group_norm(shape, groups):
    channels = shape[-1]
    reference = nnx.GroupNorm(channels, num_groups=groups, epsilon=1e-5, rngs=nnx.Rngs(0))
    fast = _GroupNorm(channels, num_groups=groups, epsilon=1e-5, rngs=nnx.Rngs(0))
    k_scale, k_bias, k_x = jax.random.split(jax.random.key(1), 3)
    for norm in (reference, fast):
        norm.scale[...] = jax.random.normal(k_scale, (channels,))
        norm.bias[...] = jax.random.normal(k_bias, (channels,))
    x = 3.0 + 2.0 * jax.random.normal(k_x, shape)  # an offset mean, as activations have
    assert jax.tree.structure(nnx.state(fast)) == jax.tree.structure(nnx.state(reference))
    np.testing.assert_allclose(fast(x), reference(x), atol=2e-5)


def test_compiler_options_keep_the_outputs():
    model = init_unet(tiny(8, base_width=32))  # widths above 16: the convolutions YNNPACK takes
    graphdef, state = nnx.split(model)
    x = jax.random.normal(jax.random.key(4), (4, 8, 8, 1))
    t = jnp.array([1, 10, 100, 900])

    def forward(state):
        return nnx.merge(graphdef, state)(x, t)
    options = compiler_options()
    assert bool(options) == (jax.default_backend() == "cpu")
    np.testing.assert_allclose(jax.jit(forward, compiler_options=options)(state),
                               jax.jit(forward)(state), atol=1e-5)
