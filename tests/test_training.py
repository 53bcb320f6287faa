"""Training the diffusion prior on public glyphs: loss, checkpoints, resume, the CLI."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from pe_jax import checkpoints, cli, reporting
from pe_jax.apis.diffusion import DiffusionGenerator
from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.diffusion import epsilon_loss, make_schedule
from pe_jax.training import diffusion as training
from pe_jax.training import public_data
from pe_jax.models.unet import UNet, UNetConfig

MATPLOTLIB_TTF = pathlib.Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf"
TINY = UNetConfig(resolution=8, channels=1, base_width=8, width_multipliers=(1,),
                  blocks_per_level=1, attention_resolutions=(), num_classes=3, norm_groups=4)
SCHEDULE = make_schedule("cosine", 100)


@pytest.fixture(scope="module")
def glyphs() -> GlyphGenerator:
    return GlyphGenerator(characters="012", resolution=8,
                          fonts=[MATPLOTLIB_TTF / "DejaVuSans.ttf", MATPLOTLIB_TTF / "cmr10.ttf"])


def _tiny_model(seed: int = 0) -> UNet:
    return UNet(TINY, rngs=nnx.Rngs(seed))


def _params(model: nnx.Module) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]


# --- public data -------------------------------------------------------------------------------


def test_glyph_batches_are_in_model_range_and_a_function_of_the_key(glyphs):
    batch = jax.jit(public_data.glyph_batches(glyphs, 16, channels=3))
    images, labels = batch(jax.random.key(0), 0)
    assert images.shape == (16, 8, 8, 3) and images.dtype == jnp.float32
    assert labels.shape == (16,) and labels.dtype == jnp.int32
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    assert float(images.min()) == -1.0 and float(images.max()) > 0.0  # background and ink
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
    again, _ = batch(jax.random.key(0), 0)
    other, _ = batch(jax.random.key(1), 0)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, other)


def test_fixed_glyphs_and_array_batches(glyphs):
    images, labels = public_data.fixed_glyphs(glyphs, jax.random.key(0), 10, chunk=4)
    assert images.shape == (10, 8, 8, 1) and labels.shape == (10,)
    assert 0.0 <= images.min() and images.max() <= 1.0
    batch, batch_labels = public_data.array_batches(images, labels, 32)(jax.random.key(1), 0)
    assert batch.shape == (32, 8, 8, 1)
    # Every drawn image is one of the fixed ones, in [-1, 1], with its own label.
    flat = (images.reshape(10, -1) * 2.0 - 1.0)
    match = np.abs(np.asarray(batch).reshape(32, 1, -1) - flat[None]).max(-1).argmin(1)
    np.testing.assert_allclose(np.asarray(batch).reshape(32, -1), flat[match], atol=1e-6)
    np.testing.assert_array_equal(batch_labels, labels[match])
    with pytest.raises(ValueError, match="images/labels"):
        public_data.array_batches(images, labels[:5], 4)


# --- training ----------------------------------------------------------------------------------


def test_a_few_hundred_steps_lower_the_loss(glyphs, tmp_path):
    settings = training.TrainSettings(steps=200, learning_rate=3e-3, warmup_steps=20,
                                      ema_decay=0.99, log_every=25, checkpoint_every=200)
    model = _tiny_model()
    before = _params(model)
    result = training.train(model, SCHEDULE, public_data.glyph_batches(glyphs, 32), settings,
                            key=jax.random.key(0), checkpoint_dir=tmp_path / "train",
                            progress=False)
    for a, b in zip(before, _params(model)):  # the model passed in is left as it was
        np.testing.assert_array_equal(a, b)
    assert [s for s, _ in result.losses] == list(range(25, 201, 25))
    first, last = result.losses[0][1], result.losses[-1][1]
    assert last < 0.5 * first, result.losses
    # Held out: the EMA model's loss on fresh glyphs, same timesteps and noise, drops too.
    images, labels = public_data.glyph_batches(glyphs, 512)(jax.random.key(99), 0)
    loss = jax.jit(lambda m: epsilon_loss(m, SCHEDULE, jax.random.key(7), images, labels))
    assert float(loss(result.model)) < 0.6 * float(loss(model))
    assert int(result.state.step) == 200


def _run(tmp_path, *, steps=30, resume=False, callbacks=(), glyphs=None):
    settings = training.TrainSettings(steps=steps, learning_rate=3e-3, warmup_steps=5,
                                      label_dropout=0.2, log_every=5, checkpoint_every=10)
    return training.train(_tiny_model(), SCHEDULE, public_data.glyph_batches(glyphs, 16),
                          settings, key=jax.random.key(3), checkpoint_dir=tmp_path,
                          resume=resume, callbacks=callbacks, progress=False)


def test_resume_after_interruption_equals_an_uninterrupted_run(glyphs, tmp_path):
    whole = _run(tmp_path / "whole", glyphs=glyphs)

    def crash(step, state):
        if step == 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "parts", callbacks=[crash], glyphs=glyphs)
    with pytest.raises(ValueError, match="resume"):
        _run(tmp_path / "parts", glyphs=glyphs)
    resumed = _run(tmp_path / "parts", resume=True, glyphs=glyphs)
    # Resumed from the checkpoint at step 20: the same steps, losses and final state.
    assert resumed.losses == [(s, l) for s, l in whole.losses if s > 20]
    for a, b in zip(jax.tree.leaves(whole.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)
    assert len({loss for _, loss in whole.losses}) == len(whole.losses)  # the steps differ


def test_checkpoint_round_trip_restores_identical_outputs(tmp_path):
    model = _tiny_model(seed=5)
    metadata = {"unet": TINY.to_dict(), "schedule": {"kind": "cosine", "num_steps": 100}}
    checkpoints.save(tmp_path / "ckpt", model, metadata)
    restored = UNet(TINY, rngs=nnx.Rngs(6))
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    t, labels = jnp.array([0, 10, 50, 99]), jnp.array([0, 1, 2, 3])
    assert not np.array_equal(restored(x, t, labels), model(x, t, labels))
    assert checkpoints.restore(tmp_path / "ckpt", restored) == metadata
    np.testing.assert_array_equal(restored(x, t, labels), model(x, t, labels))
    # The path PE uses: the generator built from the checkpoint samples exactly the same.
    loaded = DiffusionGenerator.from_checkpoint(tmp_path / "ckpt", steps=4, guidance=2.0)
    direct = DiffusionGenerator(model, SCHEDULE, steps=4, guidance=2.0)
    key, labels = jax.random.key(1), jnp.array([0, 1, 2, 0])
    np.testing.assert_array_equal(loaded.random(key, 4, labels).images,
                                  direct.random(key, 4, labels).images)


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="steps"):
        training.TrainSettings(steps=0)
    with pytest.raises(ValueError, match="ema_decay"):
        training.TrainSettings(steps=10, ema_decay=1.0)


# --- the command -------------------------------------------------------------------------------

SMALL = ["--set", "characters=01", "--set", "steps=4", "--set", "batch_size=8",
         "--set", "width_multipliers=[1]",
         "--set", "base_width=8", "--set", "norm_groups=4", "--set", "schedule_steps=50",
         "--set", "checkpoint_every=2", "--set", "sample_every=2", "--set", "log_every=2",
         "--set", "sample_steps=2", "--quiet"]


def test_train_prior_command_writes_checkpoint_and_grids(tmp_path, capsys):
    out = tmp_path / "prior"
    assert cli.main(["train-prior", "--out", str(out), *SMALL]) == 0
    assert "final loss" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "grids").iterdir()) == [
        "step_000002.png", "step_000004.png"]
    assert Image.open(out / "samples.png").size == (16 * 34 - 2,
                                                    2 * 34 - 2 + reporting.CAPTION_PIXELS)
    metadata = checkpoints.load_metadata(out / "checkpoint")
    assert metadata["unet"]["num_classes"] == 2 and metadata["unet"]["base_width"] == 8
    assert metadata["schedule"] == {"kind": "cosine", "num_steps": 50}
    assert metadata["class_names"] == ["0", "1"]
    assert metadata["data"]["fonts"] and "DejaVuSans.ttf" in metadata["data"]["fonts"]
    assert metadata["command"].startswith("pe-jax train-prior --config ")
    assert "--set steps=4" in metadata["command"]
    assert metadata["training"]["steps"] == 4
    assert json.loads((out / "training.json").read_text())["final_loss"] > 0
    prior = DiffusionGenerator.from_checkpoint(out / "checkpoint", steps=2)
    assert prior.random(jax.random.key(0), 3, jnp.array([0, 1, 0])).images.shape == (3, 8, 8, 1)
    # The folder now holds a run: refused without --resume, and a finished run is not resumed.
    assert cli.main(["train-prior", "--out", str(out), *SMALL]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli.main(["train-prior", "--out", str(out), "--resume", *SMALL]) == 2
    assert "not finished" in capsys.readouterr().err
    assert cli.main(["train-prior", "--out", str(out), "--resume", *SMALL,
                     "--set", "steps=5"]) == 2
    assert "settings of the run being resumed" in capsys.readouterr().err


def test_train_prior_resume_needs_an_earlier_run(tmp_path, capsys):
    assert cli.main(["train-prior", "--out", str(tmp_path / "none"), "--resume", *SMALL]) == 2
    assert "config.json" in capsys.readouterr().err
