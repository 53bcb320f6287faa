"""Bad input a new user gives ``pe-jax``: each is one line naming the key or file and what is
allowed, exit status 2, before any output folder is created and before anything is spent."""

import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from pe_jax import checkpoints, cli, evolve
from pe_jax.apis.diffusion import DEFAULT_PRIOR, _unet_from_metadata
from pe_jax.configs import CONFIG_DIR, DEFAULT_CONFIG, load_config
from pe_jax.configs.validate import validate_run_config

SMALL = ["--set", "pe.iterations=2", "--set", "pe.samples_per_class=10", "--set", "metrics.names=",
         "--quiet"]
DIFFUSION = ["--set", "generator.steps=2"]  # the default generator, with a short chain
GLYPHS = CONFIG_DIR / "digits_glyphs.py"


def _refused(capsys, tmp_path, argv, *words):
    """Runs ``pe-jax run`` with ``argv`` (plus ``--out`` and ``--ledger`` in ``tmp_path``) and
    checks the refusal: exit 2, one error line holding ``words``, no output folder, and a
    ledger that is missing or records no release."""
    out, ledger = tmp_path / "out", tmp_path / "ledger.json"
    argv = ["run", "--out", str(out), "--ledger", str(ledger), *argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("pe-jax: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not out.exists()
    assert not ledger.exists() or json.loads(ledger.read_text())["events"] == []
    return lines[0]


@pytest.mark.parametrize("override, words", [
    ("privacy.epsilon=nan", ("--set privacy.epsilon", "finite number", "'nan'")),
    ("privacy.epsilon=inf", ("--set privacy.epsilon", "finite number", "'inf'")),
    ("privacy.epsilon=abc", ("--set privacy.epsilon", "finite number", "'abc'")),
    ("pe.iterations=2.5", ("--set pe.iterations", "an integer", "'2.5'")),
    ("seed=-1", ("seed must be an integer in [0, 2**63 - 1]", "-1")),
    ("metrics.names=foo", ("metrics.names must be comma-separated names from", "'foo'")),
    ("metrics.embedding=foo", ("metrics.embedding must be one of", "'foo'")),
    ("metrics.every=0", ("metrics.every must be >= 1", "0")),
    ("pe.keep_selected=1", ("--set pe.keep_selected must be true or false", "'1'")),
    ("pe.samples_per_class=0", ("pe.samples_per_class must be >= 1",)),
    ("pe.k=20", ("pe.k must be in [1, 10]",)),
    ("pe.degree_end=0", ("pe.degree_end must be a finite number > 0",)),
])
def test_bad_settings_name_their_key(capsys, tmp_path, override, words):
    _refused(capsys, tmp_path, ["--set", "pe.samples_per_class=10", "--set", override,
                                "--quiet"], *words)


def test_a_misspelt_glyph_prior_names_its_section(capsys, tmp_path):
    _refused(capsys, tmp_path, ["--config", str(GLYPHS), "--set",
                                "generator.glyph_priors.slant.std=1", "--quiet"],
             "'slant' is not a section of generator.glyph_priors", "rotation")


def test_bool_keys_take_true_and_false_in_any_case():
    config = load_config(GLYPHS, ["metrics.tensorboard=False", "pe.keep_selected=TRUE",
                                          "generator.glyph_priors.rotation.std=2"])
    assert config.metrics.tensorboard is False and config.pe.keep_selected is True
    assert config.generator.glyph_priors.rotation.std == 2.0
    assert isinstance(load_config(DEFAULT_CONFIG, ["pe.iterations=3"]).pe.iterations, int)


def test_tensorboard_false_runs(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out), *SMALL, "--set", "metrics.tensorboard=False"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["metrics"]["tensorboard"] is False


def test_an_absurd_population_is_refused_with_the_limit(capsys, tmp_path, monkeypatch):
    from pe_jax.configs import validate

    monkeypatch.setattr(validate, "available_memory", lambda: (16 * 2**30, "host memory"))
    line = _refused(capsys, tmp_path, ["--set", "pe.samples_per_class=100000", "--quiet"],
                    "pe.samples_per_class must be at most 69,905 here", "10 classes of 100,000",
                    "22.9 GiB", "24 KiB a sample", "16.0 GiB of host memory")
    assert line.endswith("got 100000")


def test_config_files_without_get_config_are_named(capsys, tmp_path):
    _refused(capsys, tmp_path, ["--config", "README.md"],
             "--config must be an existing .py file with get_config()", "'README.md'")
    plain = tmp_path / "plain.py"
    plain.write_text("x = 1\n")
    _refused(capsys, tmp_path, ["--config", str(plain)], "defines get_config()", str(plain))
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config(:\n")
    _refused(capsys, tmp_path, ["--config", str(broken)], "is not valid Python", "line 1")


def test_out_naming_a_file_says_so(capsys, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep")
    assert cli.main(["run", "--out", str(target), *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"pe-jax: error: --out must name a new or empty folder; {str(target)!r} is a file"
    assert target.read_text() == "keep"


def test_train_encoder_refuses_a_non_empty_out_before_training(capsys, tmp_path, monkeypatch):
    from pe_jax.training import encoder

    def never(*args, **kwargs):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(encoder, "train_encoder", never)
    (tmp_path / "keep.txt").write_text("earlier")
    assert cli.main(["train-encoder", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pe-jax: error: ") and "not empty" in err and str(tmp_path) in err
    assert (tmp_path / "keep.txt").read_text() == "earlier"


def _biggest_file(directory: pathlib.Path) -> pathlib.Path:
    return max((p for p in (directory / checkpoints.STATE_DIR).rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)


def _prior_copy(tmp_path, name) -> pathlib.Path:
    return pathlib.Path(shutil.copytree(DEFAULT_PRIOR, tmp_path / name))


def test_a_prior_with_a_truncated_data_file_names_the_checkpoint(capsys, tmp_path):
    prior = _prior_copy(tmp_path, "truncated")
    data = _biggest_file(prior)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    line = _refused(capsys, tmp_path, [*DIFFUSION, "--set", f"generator.prior={prior}", "--quiet"],
                    f"checkpoint {str(prior)!r}", "cannot be read")
    assert len(line) < 500


def test_a_prior_with_broken_metadata_names_the_file(capsys, tmp_path):
    prior = _prior_copy(tmp_path, "metadata")
    (prior / checkpoints.METADATA_FILE).write_text('{"unet": ')
    _refused(capsys, tmp_path, [*DIFFUSION, "--set", f"generator.prior={prior}", "--quiet"],
             f"checkpoint metadata {str(prior / checkpoints.METADATA_FILE)!r}",
             "must be a JSON object")


def _saved_prior(tmp_path, name, edit=None) -> pathlib.Path:
    """The shipped prior saved again by ``checkpoints.save`` (with its checksums), after
    ``edit(state)`` changed its arrays."""
    model, metadata = checkpoints.load(DEFAULT_PRIOR, _unet_from_metadata)
    if edit is not None:
        from flax import nnx

        state = nnx.state(model)
        nnx.update(model, edit(state))
    return checkpoints.save(tmp_path / name, model, metadata)


def test_a_prior_whose_arrays_decode_to_nan_is_refused_on_load(capsys, tmp_path):
    def poison(state):
        leaves, treedef = jax.tree.flatten(state)
        leaves[0] = jnp.full_like(leaves[0], jnp.nan)
        return jax.tree.unflatten(treedef, leaves)

    prior = _saved_prior(tmp_path, "nan", poison)
    _refused(capsys, tmp_path, [*DIFFUSION, "--set", f"generator.prior={prior}", "--quiet"],
             f"checkpoint {str(prior)!r}", "holds NaN or Inf")


def test_a_prior_with_flipped_bytes_is_refused_on_load(capsys, tmp_path):
    prior = _saved_prior(tmp_path, "flipped")
    data = _biggest_file(prior)
    raw = bytearray(data.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 4096] = b"\xff" * 4096
    data.write_bytes(bytes(raw))
    _refused(capsys, tmp_path, [*DIFFUSION, "--set", f"generator.prior={prior}", "--quiet"],
             f"checkpoint {str(prior)!r}")


def test_checkpoints_check_their_arrays_against_the_saved_checksums(tmp_path):
    from flax import nnx

    model = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    saved = checkpoints.save(tmp_path / "ckpt", model, {})
    sums = json.loads((saved / checkpoints.CHECKSUMS_FILE).read_text())
    assert set(sums) == {"['bias']", "['kernel']"}
    sums["['kernel']"] = "0" * 64
    (saved / checkpoints.CHECKSUMS_FILE).write_text(json.dumps(sums))
    with pytest.raises(ValueError, match=r"array \['kernel'\] .* does not match its sha256"):
        checkpoints.restore(saved, nnx.Linear(3, 4, rngs=nnx.Rngs(1)))


def test_numpy_integers_are_ints():
    config = evolve.PEConfig(iterations=2, noise_multiplier=1.0,
                             samples_per_class=(np.int64(10),) * 3, degrees=(0.5, 0.5))
    assert config.samples_per_class == (10, 10, 10)
    assert all(type(n) is int for n in config.samples_per_class)
    config = load_config(DEFAULT_CONFIG)
    config.pe = ml_collections.ConfigDict({**config.pe.to_dict(),
                                           "samples_per_class": np.int64(10), "k": np.int64(2)})
    validate_run_config(config)


@pytest.mark.parametrize("asset", ["prior_digits8", "encoder"])
def test_the_shipped_checkpoints_carry_checksums_that_catch_changed_values(tmp_path, asset):
    from pe_jax.models import encoder

    shipped = pathlib.Path(DEFAULT_PRIOR).parent / asset
    assert (shipped / checkpoints.CHECKSUMS_FILE).is_file()
    load = ((lambda path: checkpoints.load(path, _unet_from_metadata))
            if asset == "prior_digits8" else encoder.load)
    load(shipped)  # the shipped arrays match their checksums
    copy = pathlib.Path(shutil.copytree(shipped, tmp_path / asset))
    sums = json.loads((copy / checkpoints.CHECKSUMS_FILE).read_text())
    first = sorted(sums)[0]
    sums[first] = "0" * 64  # as if that array's bytes had changed into other finite values
    (copy / checkpoints.CHECKSUMS_FILE).write_text(json.dumps(sums))
    with pytest.raises(ValueError, match="does not match its sha256"):
        load(copy)
