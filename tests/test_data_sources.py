"""The data-set interface and the file loaders: IDX, npz, image folders and sklearn digits.

TFDS is tested in ``test_data_tfds.py``. Every loader returns an ``ImageSource``; these tests
check what it reads (exact values, float32 in [0, 1], int32 labels), that it reads lazily, that
host shares and the held-out split are fixed by the data set alone, and that bad input is
refused with a ValueError that names the parameter or the file.
"""

import gzip
import json
import os

import numpy as np
import pytest

from pe_jax.data import (DEBIAN_FASHION_MNIST_DIR, FASHION_MNIST_CLASSES, HELDOUT_RULE,
                         HELDOUT_SALT, ArraySource, ImageSource, LabelledImages,
                         fashion_mnist_debian, heldout_mask, host_rows, idx_source,
                         image_folder_source, load_sklearn_digits, mnist_format_source,
                         npz_source, read_idx, read_idx_header, sklearn_digits_source, write_idx)

CLASSES = ("zero", "one", "two")


def _images(n=20, h=4, w=3, c=None, seed=0):
    shape = (n, h, w) if c is None else (n, h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _labels(n=20):
    return (np.arange(n) % len(CLASSES)).astype(np.uint8)


def _idx_pair(tmp_path, n=20, compress=False, **image_kwargs):
    suffix = ".gz" if compress else ""
    images, labels = _images(n, **image_kwargs), _labels(n)
    write_idx(tmp_path / f"images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"labels-idx1-ubyte{suffix}", labels)
    return tmp_path / f"images-idx3-ubyte{suffix}", tmp_path / f"labels-idx1-ubyte{suffix}"


# ---- the interface ----------------------------------------------------------------------


def test_read_returns_the_rows_in_the_order_given():
    images, labels = _images(10), _labels(10)
    source = ArraySource(images, labels, CLASSES)
    assert isinstance(source, ImageSource)
    assert (len(source), source.image_shape, source.num_classes) == (10, (4, 3, 1), 3)
    got = source.read(np.array([7, 2, 7, 0]))
    assert isinstance(got, LabelledImages) and got.class_names == CLASSES
    assert got.images.dtype == np.float32 and got.labels.dtype == np.int32
    np.testing.assert_array_equal(got.images[..., 0], images[[7, 2, 7, 0]] / np.float32(255))
    np.testing.assert_array_equal(got.labels, labels[[7, 2, 7, 0]])
    assert source.read(np.array([], np.int64)).images.shape == (0, 4, 3, 1)
    batches = list(source.batches(4))
    assert [len(b.labels) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b.images for b in batches]),
                                  source.load().images)


@pytest.mark.parametrize("rows,match", [
    (np.array([0, 10]), r"rows must be indices in \[0, 9\]"),
    (np.array([-1]), r"rows must be indices in \[0, 9\]"),
    (np.array([0.0, 1.0]), "rows must be a 1-D array of integer row indices"),
    (np.array([[0, 1]]), "rows must be a 1-D array of integer row indices"),
])
def test_bad_rows_are_refused(rows, match):
    with pytest.raises(ValueError, match=match):
        ArraySource(_images(10), _labels(10), CLASSES).read(rows)


def test_host_shares_are_disjoint_covering_and_fixed():
    for rows in (0, 1, 7, 100, 1797):
        for count in (1, 2, 3, 8):
            shares = [host_rows(rows, i, count) for i in range(count)]
            np.testing.assert_array_equal(np.concatenate(shares), np.arange(rows))  # covering
            sizes = [len(s) for s in shares]
            assert max(sizes) - min(sizes) <= 1
            for i in range(count):
                np.testing.assert_array_equal(host_rows(rows, i, count), shares[i])  # fixed
    source = ArraySource(_images(10), _labels(10), CLASSES)
    parts = [source.for_host(i, 3) for i in range(3)]
    np.testing.assert_array_equal(np.concatenate([p.load().images for p in parts]),
                                  source.load().images)
    assert parts[1].describe()["split"]["process_index"] == 1
    np.testing.assert_array_equal(source.rows_for_host(), np.arange(10))  # one JAX process
    for bad, match in (((3, 3), r"process_index must be in \[0, 2\]"),
                       ((0, 0), "process_count must be >= 1")):
        with pytest.raises(ValueError, match=match):
            source.for_host(*bad)


def test_held_out_split_reads_nothing_and_matches_the_loaded_split():
    images, labels = _images(400, seed=1), (np.arange(400) % 3).astype(np.int64)
    source = ArraySource(images, labels, CLASSES)
    rest, held = source.split(0.25)
    expected_rest, expected_held = source.load().split(0.25)
    np.testing.assert_array_equal(rest.load().images, expected_rest.images)
    np.testing.assert_array_equal(held.load().labels, expected_held.labels)
    np.testing.assert_array_equal(held.rows, np.flatnonzero(heldout_mask(400, 0.25)))
    assert held.describe()["split"] == {"name": "heldout", "part": "held_out",
                                        "rule": HELDOUT_RULE, "salt": HELDOUT_SALT,
                                        "fraction": 0.25}
    assert rest.describe()["subset_of"]["rows"] == 400
    json.dumps(rest.for_host(0, 2).describe())  # report-ready
    # A host's share of the private part, read through both layers.
    share = rest.for_host(1, 2)
    np.testing.assert_array_equal(share.load().images,
                                  expected_rest.images[len(rest) // 2:])
    with pytest.raises(ValueError, match="leaves a part empty"):
        ArraySource(_images(2), _labels(2), CLASSES).split(0.01)


def test_splits_do_not_depend_on_any_seed(tmp_path):
    images, labels = _idx_pair(tmp_path, n=300)
    held_rows = []
    for seed in (0, 1, 12345):
        np.random.seed(seed)  # global numpy state; no loader or split takes a seed at all
        source = idx_source(images, labels, class_names=CLASSES)
        held_rows.append(source.split(0.3)[1].rows)
        held_rows.append(source.split(0.3, salt=HELDOUT_SALT)[1].rows)
    for rows in held_rows[1:]:
        np.testing.assert_array_equal(rows, held_rows[0])
    assert not np.array_equal(source.split(0.3, salt="another data set")[1].rows, held_rows[0])


def test_array_checks_name_the_problem():
    with pytest.raises(ValueError, match="labels of the arrays must be an integer array"):
        ArraySource(_images(4), np.zeros(4, np.float32), CLASSES)
    with pytest.raises(ValueError, match="images of the arrays must be uint8"):
        ArraySource(_images(4).astype(np.int16), _labels(4), CLASSES)
    with pytest.raises(ValueError, match="at least one row"):
        ArraySource(_images(0), _labels(0), CLASSES)
    with pytest.raises(ValueError, match=r"one per image \(4\)"):
        ArraySource(_images(4), _labels(5), CLASSES)
    with pytest.raises(ValueError, match="class_names of the arrays must be distinct"):
        ArraySource(_images(4), _labels(4), ("a", "a", "b"))
    floats = ArraySource(np.full((3, 2, 2), 1.5), np.zeros(3, np.int64), CLASSES)
    with pytest.raises(ValueError, match=r"finite values in \[0, 1\].*1.5"):
        floats.read([1])
    nans = ArraySource(np.full((3, 2, 2), np.nan), np.zeros(3, np.int64), CLASSES)
    with pytest.raises(ValueError, match="finite values"):
        nans.load()
    bad_label = ArraySource(_images(4), np.array([0, 1, 2, 3]), CLASSES)
    bad_label.read([0, 1, 2])  # only the rows read are checked
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\]; got values in \[3, 3\]"):
        bad_label.read([3])


# ---- IDX ---------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("channels", [None, 3])
def test_idx_round_trip(tmp_path, compress, channels):
    images_path, labels_path = _idx_pair(tmp_path, compress=compress, c=channels)
    source = idx_source(images_path, labels_path, class_names=CLASSES)
    assert source.image_shape == (4, 3, channels or 1)
    data = source.load()
    expected = _images(c=channels).astype(np.float32) / 255
    np.testing.assert_array_equal(data.images.reshape(expected.shape), expected)
    np.testing.assert_array_equal(data.labels, _labels())
    header = read_idx_header(images_path)
    assert header.compressed == compress and header.shape[0] == 20
    assert isinstance(read_idx(images_path), np.memmap) != compress


def test_idx_files_are_memory_mapped_and_read_lazily(tmp_path):
    """A (sparse) 800 MB IDX file: opening it and reading three rows touches only those."""
    rows, side = 1_000_000, 28
    images_path, labels_path = tmp_path / "big-images", tmp_path / "big-labels"
    for path, shape in ((images_path, (rows, side, side)), (labels_path, (rows,))):
        with open(path, "wb") as f:
            f.write(bytes([0, 0, 0x08, len(shape)]) + np.asarray(shape, ">u4").tobytes())
            f.truncate(4 + 4 * len(shape) + int(np.prod(shape)))  # a hole: no data written
    with open(images_path, "r+b") as f:  # row 999,999 gets one bright pixel
        f.seek(4 + 12 + (rows - 1) * side * side)
        f.write(b"\xff")
    with open(labels_path, "r+b") as f:
        f.seek(8 + rows - 1)
        f.write(b"\x02")
    source = idx_source(images_path, labels_path, class_names=CLASSES)
    assert len(source) == rows
    got = source.read([0, rows - 1, 5])
    assert got.images[1, 0, 0, 0] == 1.0 and got.images.sum() == 1.0
    np.testing.assert_array_equal(got.labels, [0, 2, 0])
    assert got.images.nbytes < 10_000
    assert len(source.for_host(3, 4)) == rows // 4


def _write_raw(path, body, compress=False):
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as f:
        f.write(body)
    return path


def test_malformed_idx_files_are_refused_naming_the_file(tmp_path):
    _, labels_path = _idx_pair(tmp_path)
    good_header = bytes([0, 0, 8, 3]) + np.asarray([20, 4, 3], ">u4").tobytes()
    good_body = good_header + _images().tobytes()
    cases = {
        "wrong magic": (b"\x00\x01\x08\x03" + good_body[4:], "has magic number 00010803"),
        "unknown type": (bytes([0, 0, 7, 3]) + good_body[4:], "has magic number 00000703"),
        "short": (b"\x00\x00", "is truncated: 2 bytes"),
        "truncated header": (good_header[:10], "is truncated in its header"),
        "truncated data": (good_body[:-5], r"is truncated: shape \(20, 4, 3\) of uint8 needs "
                                           "240 bytes of values, found 235"),
        "trailing bytes": (good_body + b"\0", "is longer than its header says"),
    }
    for name, (body, match) in cases.items():
        path = _write_raw(tmp_path / name.replace(" ", "-"), body)
        with pytest.raises(ValueError, match=f"IDX file '{path}' {match}"):
            idx_source(path, labels_path, class_names=CLASSES)
    # gzip: the header is checked at once, the size on the first read.
    truncated = _write_raw(tmp_path / "truncated.gz", good_body[:-5], compress=True)
    source = idx_source(truncated, labels_path, class_names=CLASSES)
    with pytest.raises(ValueError, match=f"IDX file '{truncated}' is truncated"):
        source.read([0])
    cut = tmp_path / "cut-stream.gz"
    cut.write_bytes(gzip.compress(good_body)[:-30])
    with pytest.raises(ValueError, match=f"IDX file '{cut}' could not be decompressed"):
        idx_source(cut, labels_path, class_names=CLASSES).read([0])


def test_idx_pairs_must_match(tmp_path):
    images_path, labels_path = _idx_pair(tmp_path)
    write_idx(tmp_path / "short-labels", _labels(19))
    with pytest.raises(ValueError, match=f"'{images_path}' has 20 images but labels file "
                                         f"'{tmp_path / 'short-labels'}' has 19 labels"):
        idx_source(images_path, tmp_path / "short-labels", class_names=CLASSES)
    with pytest.raises(ValueError, match="labels must be \\(n,\\)"):
        idx_source(images_path, images_path, class_names=CLASSES)
    with pytest.raises(ValueError, match="images must be \\(n, H, W\\)"):
        idx_source(labels_path, labels_path, class_names=CLASSES)
    write_idx(tmp_path / "float-labels", _labels().astype(np.float32))
    with pytest.raises(ValueError, match="labels of IDX file .*float-labels' must be an integer"):
        idx_source(images_path, tmp_path / "float-labels", class_names=CLASSES)
    write_idx(tmp_path / "int16-images", _images().astype(np.int16))
    with pytest.raises(ValueError, match="images of IDX file .*int16-images' must be uint8"):
        idx_source(tmp_path / "int16-images", labels_path, class_names=CLASSES)
    write_idx(tmp_path / "empty-images", np.zeros((0, 4, 3), np.uint8))
    write_idx(tmp_path / "empty-labels", np.zeros((0,), np.uint8))
    with pytest.raises(ValueError, match="at least one row"):
        idx_source(tmp_path / "empty-images", tmp_path / "empty-labels", class_names=CLASSES)
    with pytest.raises(ValueError, match="images_path must be an existing file"):
        idx_source(tmp_path / "missing", labels_path, class_names=CLASSES)
    with pytest.raises(ValueError, match="labels of IDX files .* must be class indices"):
        idx_source(images_path, labels_path, class_names=("a", "b")).load()


def test_mnist_format_folders_and_the_debian_fashion_mnist(tmp_path):
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", _images(n, 28, 28))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", _labels(n))
    test = mnist_format_source(tmp_path, "test", class_names=CLASSES)
    assert len(test) == 10 and test.describe()["split"] == "test"
    with pytest.raises(ValueError, match="split must be one of \\('train', 'test'\\)"):
        mnist_format_source(tmp_path, "validation", class_names=CLASSES)
    with pytest.raises(ValueError, match="root must be a folder holding train-images"):
        mnist_format_source(tmp_path / "..", "train", class_names=CLASSES)
    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist_debian("train", root=tmp_path / "not-installed")
    with pytest.raises(ValueError, match="Fashion-MNIST's 60,000 rows; got 30"):
        fashion_mnist_debian("train", root=tmp_path)


@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION_MNIST_DIR),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_the_real_fashion_mnist():
    train, test = fashion_mnist_debian("train"), fashion_mnist_debian("test")
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.class_names == FASHION_MNIST_CLASSES and train.image_shape == (28, 28, 1)
    first = train.read([0, 1])
    np.testing.assert_array_equal(first.labels, [9, 0])  # an ankle boot, then a T-shirt
    assert np.bincount(test.load().labels).tolist() == [1000] * 10


# ---- npz ---------------------------------------------------------------------------------


def test_npz_uncompressed_is_memory_mapped_and_compressed_is_read(tmp_path):
    images, labels = _images(12, c=3), _labels(12).astype(np.int64)
    np.savez(tmp_path / "plain.npz", images=images, labels=labels)
    np.savez_compressed(tmp_path / "packed.npz", x=images[..., :1].astype(np.float64) / 255,
                        y=labels, class_names=np.array(CLASSES))
    plain = npz_source(tmp_path / "plain.npz", class_names=CLASSES)
    assert plain._images.memory_mapped and plain._labels.memory_mapped
    np.testing.assert_array_equal(plain.read([5, 1]).images, images[[5, 1]] / np.float32(255))
    packed = npz_source(tmp_path / "packed.npz", images_key="x", labels_key="y")
    assert not packed._images.memory_mapped and packed.class_names == CLASSES
    np.testing.assert_allclose(packed.load().images, images[..., :1] / 255, rtol=1e-6)
    described = packed.describe()
    assert (described["kind"], described["images_key"], described["rows"]) == ("npz", "x", 12)
    # Fortran-ordered arrays map correctly too.
    np.savez(tmp_path / "fortran.npz", images=np.asfortranarray(images), labels=labels)
    np.testing.assert_array_equal(npz_source(tmp_path / "fortran.npz",
                                             class_names=CLASSES).load().images,
                                  plain.load().images)


def test_npz_errors(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, images=_images(6), labels=_labels(6))
    with pytest.raises(ValueError, match=r"images_key must be one of the arrays in .*"
                                         r"\['images', 'labels'\]; got 'pixels'"):
        npz_source(path, images_key="pixels", class_names=CLASSES)
    with pytest.raises(ValueError, match="class_names must be given, or stored in"):
        npz_source(path)
    with pytest.raises(ValueError, match="path must be an existing .npz file"):
        npz_source(tmp_path / "missing.npz", class_names=CLASSES)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="path must be an .npz file"):
        npz_source(tmp_path / "text.npz", class_names=CLASSES)
    np.savez(tmp_path / "floats.npz", images=_images(6), labels=_labels(6) / 1.0)
    with pytest.raises(ValueError, match="labels of npz file .* must be an integer array"):
        npz_source(tmp_path / "floats.npz", class_names=CLASSES)
    np.savez(tmp_path / "range.npz", images=_images(6) / 100.0, labels=_labels(6))
    with pytest.raises(ValueError, match=r"images of npz file .*range.npz' must be finite "
                                         r"values in \[0, 1\]"):
        npz_source(tmp_path / "range.npz", class_names=CLASSES).load()
    np.savez(tmp_path / "objects.npz", images=np.array([None, 1], dtype=object),
             labels=_labels(2))
    with pytest.raises(ValueError, match="holds Python objects"):
        npz_source(tmp_path / "objects.npz", class_names=CLASSES)
    np.savez(tmp_path / "empty.npz", images=_images(0), labels=_labels(0))
    with pytest.raises(ValueError, match="at least one row"):
        npz_source(tmp_path / "empty.npz", class_names=CLASSES)


# ---- image folders ----------------------------------------------------------------------


def _folder(tmp_path, mode="L", size=(5, 4)):
    from PIL import Image

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    written = {}
    for name, count in (("cat", 3), ("ant", 2), ("bee", 0)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"{name}_{i}.png")
            written[f"{name}/{name}_{i}.png"] = pixels
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return root, written


def test_image_folders_sort_classes_and_files(tmp_path):
    root, written = _folder(tmp_path)
    source = image_folder_source(root)
    assert source.class_names == ("ant", "bee", "cat")  # sorted; empty "bee" still a class
    assert source.files == ("ant/ant_0.png", "ant/ant_1.png", "cat/cat_0.png",
                            "cat/cat_1.png", "cat/cat_2.png")
    assert source.image_shape == (4, 5, 1)
    data = source.load()
    np.testing.assert_array_equal(data.labels, [0, 0, 2, 2, 2])
    np.testing.assert_array_equal(data.images[3, ..., 0],
                                  written["cat/cat_1.png"] / np.float32(255))
    assert source.describe()["kind"] == "image_folder"
    rgb = image_folder_source(root, channels=3)
    assert rgb.image_shape == (4, 5, 3)
    np.testing.assert_array_equal(rgb.read([0]).images[0, ..., 1], data.images[0, ..., 0])


def test_image_folders_in_colour(tmp_path):
    root, written = _folder(tmp_path, mode="RGB")
    source = image_folder_source(root)
    assert source.image_shape == (4, 5, 3)
    np.testing.assert_array_equal(source.read([4]).images[0],
                                  written["cat/cat_2.png"] / np.float32(255))
    grey = image_folder_source(root, channels=1)
    assert grey.load().images.shape == (5, 4, 5, 1)


def test_image_folders_read_only_the_rows_asked_for(tmp_path):
    from PIL import Image

    root, _ = _folder(tmp_path)
    (root / "cat" / "cat_1.png").write_bytes(b"broken")
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(root / "cat" / "cat_2.png")
    source = image_folder_source(root)  # lists files, opens the first only
    source.read([0, 1, 2])  # the broken and the odd-sized images are not read
    with pytest.raises(ValueError, match="image '.*cat_1.png' could not be read"):
        source.read([3])
    with pytest.raises(ValueError, match="image '.*cat_2.png' is 9x9.*must be 5x4"):
        source.read([4])


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="root must be an existing folder"):
        image_folder_source(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="root must be a folder with one sub-folder per class"):
        image_folder_source(tmp_path / "flat")
    (tmp_path / "flat" / "a").mkdir()
    with pytest.raises(ValueError, match="an empty data set is refused"):
        image_folder_source(tmp_path / "flat")
    root, _ = _folder(tmp_path)
    with pytest.raises(ValueError, match="channels must be 1 \\(grey\\), 3 \\(RGB\\)"):
        image_folder_source(root, channels=4)
    with pytest.raises(ValueError, match="extensions must be a non-empty sequence"):
        image_folder_source(root, extensions="png")
    from PIL import Image

    rgba = tmp_path / "rgba"
    (rgba / "a").mkdir(parents=True)
    Image.new("RGBA", (3, 3)).save(rgba / "a" / "x.png")
    with pytest.raises(ValueError, match="channels must be given .*its mode is 'RGBA'"):
        image_folder_source(rgba)
    assert image_folder_source(rgba, channels=3).image_shape == (3, 3, 3)


# ---- sklearn digits ---------------------------------------------------------------------


def test_digits_source_matches_load_sklearn_digits():
    source = sklearn_digits_source()
    digits = load_sklearn_digits()
    assert (len(source), source.image_shape, source.class_names) == (1797, (8, 8, 1),
                                                                    digits.class_names)
    np.testing.assert_array_equal(source.load().images, digits.images)
    rest, held = source.split(0.25)
    expected_rest, expected_held = digits.split(0.25)
    np.testing.assert_array_equal(held.load().images, expected_held.images)
    assert (len(rest), len(held)) == (1335, 462)
    assert source.describe()["kind"] == "sklearn_digits"
