"""Orbax round trips of NNX models through ``pe_jax.checkpoints``."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pe_jax import checkpoints


class _TwoLayer(nnx.Module):
    def __init__(self, width: int, rngs: nnx.Rngs):
        self.dense = nnx.Linear(3, width, rngs=rngs)
        self.norm = nnx.BatchNorm(width, rngs=rngs)

    def __call__(self, x):
        return self.norm(self.dense(x))


def _model(width: int, seed: int) -> _TwoLayer:
    model = _TwoLayer(width, nnx.Rngs(seed))
    model.eval()
    return model


def test_round_trip_restores_identical_outputs_and_metadata(tmp_path):
    saved = _model(4, seed=0)
    saved.norm.mean[...] = jnp.arange(4.0)  # a non-parameter variable travels too
    checkpoints.save(tmp_path / "ckpt", saved, {"width": 4, "data": "glyphs"})
    fresh = _model(4, seed=1)
    x = jnp.linspace(-1, 1, 6).reshape(2, 3)
    assert not np.array_equal(fresh(x), saved(x))
    assert checkpoints.restore(tmp_path / "ckpt", fresh) == {"width": 4, "data": "glyphs"}
    np.testing.assert_array_equal(fresh(x), saved(x))


def test_save_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("earlier")
    with pytest.raises(ValueError, match="not empty"):
        checkpoints.save(tmp_path, _model(4, 0), {})
    assert (tmp_path / "keep.txt").read_text() == "earlier"


def test_restore_into_a_model_of_another_shape_names_the_checkpoint(tmp_path):
    checkpoints.save(tmp_path / "ckpt", _model(4, 0), {})
    with pytest.raises(ValueError, match="does not match the model"):
        checkpoints.restore(tmp_path / "ckpt", _model(5, 0))


def test_restore_without_metadata_is_refused(tmp_path):
    with pytest.raises(ValueError, match="metadata.json"):
        checkpoints.restore(tmp_path, _model(4, 0))


def test_load_builds_the_model_its_metadata_describes(tmp_path):
    saved = _model(6, seed=0)
    checkpoints.save(tmp_path / "ckpt", saved, {"width": 6})
    loaded, metadata = checkpoints.load(tmp_path / "ckpt", lambda m: _model(m["width"], seed=1))
    assert metadata == {"width": 6}
    x = jnp.linspace(-1, 1, 6).reshape(2, 3)
    np.testing.assert_array_equal(loaded(x), saved(x))
