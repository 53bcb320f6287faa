"""Run configs in sections: dotted overrides, their refusals, and every shipped config run end
to end through ``pe-jax run`` on small data (written IDX files, ``tfds.testing.mock_data``)
with a tiny untrained diffusion prior standing in for the checkpoint a user brings."""

import json

import numpy as np
import pytest

from pe_jax import cli
from pe_jax.configs import CONFIG_DIR, DEFAULT_CONFIG, load_config, sections
from pe_jax.configs.validate import check_sections, validate_run_config

tfds = pytest.importorskip("tensorflow_datasets")

from tfds_mock import mock_tfds  # noqa: E402

SHIPPED = ("digits", "digits_glyphs", "fashion_mnist", "cifar10", "camelyon17")
TINY_RUN = ["--set", "pe.iterations=1", "--set", "pe.samples_per_class=1",
            "--set", "generator.steps=1", "--set", "metrics.names=", "--quiet"]


def test_dotted_overrides_are_typed_and_nested():
    config = load_config(CONFIG_DIR / "digits_glyphs.py", [
        "pe.k=3", "privacy.epsilon=1", "pe.keep_selected=true", "data.class_names=[\"a\"]",
        "generator.glyph_priors.rotation.std=0.5", "metrics.names=accuracy"])
    assert config.pe.k == 3 and isinstance(config.pe.k, int)
    assert config.privacy.epsilon == 1.0 and isinstance(config.privacy.epsilon, float)
    assert config.pe.keep_selected is True and list(config.data.class_names) == ["a"]
    assert config.generator.glyph_priors.rotation.std == 0.5
    assert config.metrics.names == "accuracy"
    validate_run_config(load_config(DEFAULT_CONFIG, ["pe.k=3"]))


@pytest.mark.parametrize("override, words", [
    ("epsilon=1", ("--set epsilon", "use privacy.epsilon", "--set privacy.epsilon=1")),
    ("iterations=3", ("use pe.iterations",)),
    ("data=tfds", ("use data.source",)),
    ("diffusion_steps=4", ("use generator.steps",)),
    ("pe.epsilon=1", ("did you mean privacy.epsilon?",)),
    ("pe.iteration=3", ("did you mean pe.iterations?", "samples_per_class")),
    ("colour=1", ("a key of the config (data, embedding, generator, metrics, name, pe",)),
    ("optimizer.lr=1", ("'optimizer' is not a section of the config",)),
    ("pe=3", ("pe is a section of the run config", "pe.k")),
    ("pe.k=2.5", ("--set pe.k must be an integer", "'2.5'")),
    ("privacy.epsilon=abc", ("--set privacy.epsilon must be a finite number", "'abc'")),
    ("pe.keep_selected=1", ("--set pe.keep_selected must be true or false",)),
])
def test_bad_overrides_name_the_key_and_what_is_allowed(override, words):
    with pytest.raises(ValueError) as error:
        load_config(DEFAULT_CONFIG, [override])
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_config_files_are_checked_for_unknown_missing_and_flat_keys():
    config = load_config(DEFAULT_CONFIG)
    config.pe.treshold = 1.0
    with pytest.raises(ValueError, match="treshold is not a key of section pe.*did you mean "
                                         "threshold"):
        validate_run_config(config)
    flat = sections.run_config("flat")
    flat.epsilon = 1.0  # an old flat key in a config file or a saved config.json
    with pytest.raises(ValueError, match="the flat key epsilon is now privacy.epsilon"):
        check_sections(flat)
    lacking = sections.run_config("lacking")
    del lacking.privacy["delta"]
    with pytest.raises(ValueError, match="it lacks privacy.delta"):
        check_sections(lacking)
    with pytest.raises(ValueError, match="section pe has the keys"):
        sections.run_config("x", pe={"kk": 1})
    ignored = load_config(DEFAULT_CONFIG, ["data.data_dir=/tmp"])  # not read by the digits
    with pytest.raises(ValueError, match="data.data_dir must be left at ''"):
        validate_run_config(ignored)


def test_every_pe_key_reaches_pe_config():
    import dataclasses

    from pe_jax import evolve
    from pe_jax.configs import build

    fields = {field.name for field in dataclasses.fields(evolve.PEConfig)}
    assert set(sections.DEFAULTS["pe"]) - set(build.PE_DERIVED) <= fields
    pe = load_config(DEFAULT_CONFIG, ["pe.k=2", "pe.lookahead=1", "pe.iterations=3"]).pe
    config = build.pe_config(pe, noise_multiplier=2.0, non_private=False, num_classes=4)
    assert (config.k, config.lookahead, config.samples_per_class) == (2, 1, (100,) * 4)
    assert config.degrees == evolve.degree_schedule(0.6, 0.2, 3, "geometric")
    assert config.threshold_value == 2.0  # threshold 0 + threshold_sigmas 1 * sigma 2


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_config_has_every_section(name):
    config = load_config(CONFIG_DIR / f"{name}.py")
    check_sections(config)
    assert config.name == name
    json.loads(config.to_json())  # what config.json and the resume fingerprint hold


def test_paper_configs_name_what_the_user_must_bring(capsys, tmp_path):
    for name, words in [("cifar10", "data.data_dir must be set for data.source='tfds'"),
                        ("fashion_mnist", "generator.prior must be a checkpoint folder")]:
        argv = ["run", "--config", str(CONFIG_DIR / f"{name}.py"), "--out", str(tmp_path / name),
                "--quiet"]
        if name == "fashion_mnist":
            argv += ["--set", f"data.path={tmp_path}"]
        assert cli.main(argv) == 2
        assert words in capsys.readouterr().err
        assert not (tmp_path / name).exists()


def test_the_data_section_opens_npz_files_and_image_folders(tmp_path):
    from PIL import Image

    from pe_jax.configs import build

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "set.npz", images=rng.integers(0, 256, (20, 6, 6), np.uint8),
             labels=np.arange(20) % 2)
    for name in ("cat", "dog"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (6, 6, 3), np.uint8)).save(
                tmp_path / "folder" / name / f"{i}.png")
    for sets, kind, rows, classes in [
            (["data.source=npz", f"data.path={tmp_path / 'set.npz'}",
              'data.class_names=["even", "odd"]'], "npz", 20, ("even", "odd")),
            (["data.source=folder", f"data.path={tmp_path / 'folder'}"], "image_folder", 10,
             ("cat", "dog"))]:
        data = load_config(DEFAULT_CONFIG, [*sets, "data.heldout=0.3"]).data
        source = build.data_source(data)
        assert (source.describe()["kind"], len(source), source.class_names) == (
            kind, rows, classes)
        private, reference = build.private_and_reference(source, data)
        assert len(private.labels) + len(reference.labels) == rows and len(reference.labels)
    with pytest.raises(ValueError, match="data.path must be an existing .npz file"):
        build.data_source(load_config(DEFAULT_CONFIG, ["data.source=npz",
                                                       f"data.path={tmp_path}"]).data)


def _tiny_prior(path, shape, class_names):
    """An untrained class-conditional UNet saved as a diffusion prior checkpoint: the smallest
    model that serves ``random`` and ``variation`` for images of ``shape``."""
    from flax import nnx

    from pe_jax import checkpoints
    from pe_jax.models.unet import UNet, UNetConfig

    config = UNetConfig(resolution=shape[0], channels=shape[2], base_width=4,
                        width_multipliers=(1,), attention_resolutions=(), norm_groups=1,
                        num_classes=len(class_names))
    metadata = {"unet": config.to_dict(), "schedule": {"kind": "cosine", "num_steps": 100},
                "class_names": list(class_names), "command": "tests/test_configs.py (untrained)",
                "data": {"description": "none: untrained weights"}}
    return checkpoints.save(path, UNet(config, rngs=nnx.Rngs(0)), metadata)




class Camelyon17(tfds.core.GeneratorBasedBuilder):
    """Stands in for the user's own ``camelyon17`` builder: its features, at 16x16 pixels, so
    that ``mock_data`` can draw examples (TFDS ships no Camelyon17 builder)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(16, 16, 3)),
            "label": tfds.features.ClassLabel(names=("normal", "tumor"))}))

    def _split_generators(self, dl_manager):
        raise NotImplementedError("mock data only")

    def _generate_examples(self):
        raise NotImplementedError("mock data only")


def _run(config, out, *sets):
    argv = ["run", "--config", str(CONFIG_DIR / f"{config}.py"), "--out", str(out), *TINY_RUN]
    for item in sets:
        argv += ["--set", item]
    assert cli.main(argv) == 0
    return json.loads((out / "privacy.json").read_text())


def test_fashion_mnist_config_runs_on_idx_files(tmp_path):
    from pe_jax.data import FASHION_MNIST_CLASSES, write_idx

    rng = np.random.default_rng(0)
    folder = tmp_path / "fashion"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 256, (60, 28, 28), np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", np.arange(60, dtype=np.uint8) % 10)
    prior = _tiny_prior(tmp_path / "prior", (28, 28, 1), FASHION_MNIST_CLASSES)
    report = _run("fashion_mnist", tmp_path / "run", "data.source=idx", f"data.path={folder}",
                  f"data.class_names={json.dumps(list(FASHION_MNIST_CLASSES))}",
                  f"generator.prior={prior}")
    assert report["private_data"]["source"]["kind"] == "idx"
    assert report["private_data"]["rows"] + report["public"]["heldout_reference"]["rows"] == 60
    assert np.load(tmp_path / "run" / "samples.npz")["images"].shape == (10, 28, 28, 1)


@pytest.mark.parametrize("config, shape, classes", [("cifar10", (32, 32, 3), 10),
                                                    ("camelyon17", (16, 16, 3), 2)])
def test_paper_configs_run_on_mock_tfds_data(tmp_path, config, shape, classes):
    with mock_tfds(num_examples=40):
        from pe_jax.data import tfds_source

        names = tfds_source(config, "train", tmp_path).class_names
        prior = _tiny_prior(tmp_path / "prior", shape, names)
        report = _run(config, tmp_path / "run", f"data.data_dir={tmp_path}",
                      f"generator.prior={prior}",
                      "embedding.name=pixels")  # no Inception weights here
    source = report["private_data"]["source"]
    assert (source["kind"], source["name"], source["split"]) == ("tfds", config, "train")
    assert report["public"]["generator"]["checkpoint"] == str(prior)
    samples = np.load(tmp_path / "run" / "samples.npz")
    assert samples["images"].shape == (classes, *shape)
    assert list(samples["class_names"]) == list(names)
