"""An unconditional diffusion prior serves PE on classes it was not trained on (a prior trained
on other classes than the private data's); a conditional one only on its own classes."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from pe_jax import checkpoints
from pe_jax.apis.diffusion import DiffusionGenerator
from pe_jax.apis.factory import make_generator
from pe_jax.models.unet import UNet, UNetConfig


def _save(path, num_classes: int):
    """A tiny untrained UNet saved as a prior of the classes "a" and "b"."""
    config = UNetConfig(resolution=8, channels=1, base_width=8, width_multipliers=(1,),
                        blocks_per_level=1, attention_resolutions=(), num_classes=num_classes,
                        norm_groups=4)
    checkpoints.save(path, UNet(config, rngs=nnx.Rngs(0)),
                     {"unet": config.to_dict(), "schedule": {"kind": "cosine", "num_steps": 50},
                      "class_names": ["a", "b"]})
    return path


def _section(prior) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"name": "diffusion", "prior": str(prior), "steps": 2,
                                      "guidance": 1.0, "glyph_priors": None})


def test_an_unconditional_prior_serves_other_classes(tmp_path):
    unconditional = _save(tmp_path / "unconditional", 0)
    generator, described = make_generator(_section(unconditional), ("x", "y", "z"), (8, 8, 1))
    assert isinstance(generator, DiffusionGenerator)
    assert described["checkpoint"] == str(unconditional)
    labels = jnp.array([0, 1, 2, 2])  # classes the prior never saw: drawn unconditionally
    samples = generator.random(jax.random.key(0), 4, labels)
    assert samples.images.shape == (4, 8, 8, 1)
    np.testing.assert_array_equal(samples.images, generator.random(jax.random.key(0), 4).images)
    varied = generator.variation(jax.random.key(1), samples, 0.5)
    assert varied.images.shape == (4, 8, 8, 1)
    with pytest.raises(ValueError, match="16x16x1"):
        make_generator(_section(unconditional), ("x", "y"), (16, 16, 1))


def test_a_conditional_prior_of_other_classes_is_refused(tmp_path):
    _save(tmp_path / "conditional", 2)
    with pytest.raises(ValueError, match=r"generator.prior must be an unconditional checkpoint"
                                         r" \(unet.num_classes 0\) or one trained on the classes"
                                         r" \['x', 'y'\]"):
        make_generator(_section(tmp_path / "conditional"), ("x", "y"), (8, 8, 1))
    generator, _ = make_generator(_section(tmp_path / "conditional"), ("a", "b"), (8, 8, 1))
    assert generator.config.num_classes == 2
