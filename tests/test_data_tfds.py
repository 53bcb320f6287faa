"""``tfds_source``: TFDS data sets through ``tfds.data_source``, with no TensorFlow anywhere.

Two kinds of data, since nothing can be downloaded here:

* ``tfds.testing.mock_data(policy=MockPolicy.USE_CODE)`` for the named data sets (mnist,
  fashion_mnist, cifar10): their real features and class names from the builders' code, random
  examples. In tensorflow-datasets 4.9.10 ``mock_data`` sets the mocked reader's
  ``__getitems__`` (the batched read) to an unbound ``functools.partial``, so it raises
  ``TypeError: _getitems() missing 1 required positional argument``; ``tfds_mock.mock_tfds``
  passes a reader mock that binds it (only ``__getitem__`` works out of the box).
* A real ``array_record`` data set that a small builder prepares in a temporary ``data_dir``
  (PNG-encoded with PIL, so preparing needs no TensorFlow either): the exact pixels, the
  decoding path of a real prepared data set, TFDS's split slicing and the read counts.
"""

import importlib.util
import io
import json

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from pe_jax.data import ImageSource, TfdsSource, tfds_source  # noqa: E402
from tfds_mock import mock_tfds  # noqa: E402

ROWS, TEST_ROWS, SHAPE = 24, 6, (6, 5, 1)
CLASSES = ("circle", "square", "triangle")




def _pixels(split: str, i: int) -> np.ndarray:
    """Row ``i``'s image: a distinct value per example, so a read can be checked exactly."""
    base = 0 if split == "train" else 100
    image = np.full(SHAPE, base + 3 * i, np.uint8)
    image[0, 0, 0] = 255 - i
    return image


class PeJaxTinyShapes(tfds.core.GeneratorBasedBuilder):
    """A tiny image set with a real ClassLabel, prepared as array_record without TF."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=SHAPE),
            "label": tfds.features.ClassLabel(names=CLASSES),
            "index": np.int64}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples("train", ROWS),
                "test": self._generate_examples("test", TEST_ROWS)}

    def _generate_examples(self, split, rows):
        from PIL import Image

        for i in range(rows):
            png = io.BytesIO()
            Image.fromarray(_pixels(split, i)[..., 0]).save(png, format="png")
            yield i, {"image": png.getvalue(), "label": i % len(CLASSES), "index": i}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    tfds.disable_progress_bar()
    PeJaxTinyShapes(data_dir=str(root), file_format="array_record").download_and_prepare()
    return root


class _Counting:
    """Wraps a data source and records every key it is asked for."""

    def __init__(self, source):
        self.source, self.keys = source, []
        self.dataset_info = source.dataset_info

    def __len__(self):
        return len(self.source)

    def __getitems__(self, keys):
        self.keys += list(keys)
        return self.source.__getitems__(keys)


def test_tensorflow_is_not_needed():
    assert importlib.util.find_spec("tensorflow") is None  # not installed, and not needed


@pytest.mark.parametrize("name,shape,classes", [
    ("mnist", (28, 28, 1), tuple(str(d) for d in range(10))),
    ("fashion_mnist", (28, 28, 1), ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    ("cifar10", (32, 32, 3), None),
])
def test_named_data_sets_under_mock_data(name, shape, classes, tmp_path):
    with mock_tfds(num_examples=12):
        source = tfds_source(name, "train", tmp_path)
        assert isinstance(source, ImageSource)
        assert (len(source), source.image_shape, source.num_classes) == (12, shape, 10)
        if classes is not None:
            assert source.class_names == classes
        data = source.load()
        again = source.read([3, 0, 3])
    assert data.images.shape == (12, *shape) and data.images.dtype == np.float32
    assert 0 <= data.images.min() and data.images.max() <= 1 and data.images.max() > 0
    assert data.labels.dtype == np.int32 and set(data.labels) <= set(range(10))
    np.testing.assert_array_equal(again.images, data.images[[3, 0, 3]])
    described = source.describe()
    assert (described["kind"], described["name"], described["split"]) == ("tfds", name, "train")
    assert described["data_dir"] == str(tmp_path) and described["rows"] == 12


def test_a_prepared_array_record_data_set_reads_exactly(data_dir):
    train = tfds_source("pe_jax_tiny_shapes", "train", data_dir)
    assert (len(train), train.image_shape, train.class_names) == (ROWS, SHAPE, CLASSES)
    data = train.load()
    # TFDS stores examples in its own (shuffled, fixed) order; the "index" feature says which.
    order = [int(e["index"]) for e in tfds.data_source(
        "pe_jax_tiny_shapes", split="train", data_dir=str(data_dir), download=False)]
    assert sorted(order) == list(range(ROWS))
    expected = np.stack([_pixels("train", i) for i in order]).astype(np.float32) / 255
    np.testing.assert_array_equal(data.images, expected)
    np.testing.assert_array_equal(data.labels, [i % 3 for i in order])
    test = tfds_source("pe_jax_tiny_shapes", "test", data_dir).load()
    assert len(test.labels) == TEST_ROWS and test.images.min() >= 100 / 255  # its own split
    described = tfds_source("pe_jax_tiny_shapes", "train", data_dir).describe()
    assert described["version"] == "1.0.0" and described["class_names"] == list(CLASSES)
    json.dumps(described)  # report-ready


def test_split_slices_are_part_of_the_definition(data_dir):
    half = tfds_source("pe_jax_tiny_shapes", "train[:50%]", data_dir)
    whole = tfds_source("pe_jax_tiny_shapes", "train", data_dir)
    assert len(half) == ROWS // 2 and half.describe()["split"] == "train[:50%]"
    np.testing.assert_array_equal(half.load().images, whole.read(np.arange(ROWS // 2)).images)


def test_reads_only_the_rows_asked_for(data_dir):
    raw = tfds.data_source("pe_jax_tiny_shapes", split="train", data_dir=str(data_dir),
                           download=False)
    counting = _Counting(raw)
    source = TfdsSource(counting, description={"kind": "tfds", "name": "pe_jax_tiny_shapes",
                                               "split": "train"}, read_chunk=2)
    assert counting.keys == []  # opening reads nothing
    source.read([7, 2, 7])
    assert sorted(counting.keys) == [2, 7]  # each distinct row once
    counting.keys.clear()
    rest, held = source.split(0.25)
    assert counting.keys == []  # splitting reads nothing
    held.load()
    assert sorted(counting.keys) == list(held.rows)
    counting.keys.clear()
    share = source.for_host(1, 4)
    share.load()
    assert counting.keys == list(range(ROWS // 4, ROWS // 2))


def test_errors_name_the_parameter(data_dir, tmp_path):
    with pytest.raises(ValueError, match="data_dir must be an existing folder"):
        tfds_source("mnist", "train", tmp_path / "missing")
    with pytest.raises(ValueError, match="could not be opened from data_dir.*array_record"):
        tfds_source("mnist", "train", tmp_path)  # not prepared there
    with pytest.raises(ValueError, match="Unknown split"):
        tfds_source("pe_jax_tiny_shapes", "validation", data_dir)
    with pytest.raises(ValueError, match=r"image_key must be a feature .*\['image', 'index', "
                                         r"'label'\]"):
        tfds_source("pe_jax_tiny_shapes", "train", data_dir, image_key="pixels")
    with pytest.raises(ValueError, match="class_names must be given when the 'index' feature"):
        tfds_source("pe_jax_tiny_shapes", "train", data_dir, label_key="index")
    with pytest.raises(ValueError, match="split must be one TFDS split"):
        tfds_source("mnist", None, data_dir)
    # The "index" feature as labels, with explicit class names: out of range is refused on read.
    indexed = tfds_source("pe_jax_tiny_shapes", "train", data_dir, label_key="index",
                          class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"labels of tfds data set .* must be class indices "
                                         r"in \[0, 1\]"):
        indexed.load()
