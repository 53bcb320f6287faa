"""MNIST-format IDX files: the format of MNIST, Fashion-MNIST, KMNIST and EMNIST.

An IDX file is a 4-byte magic number -- two zero bytes, a type code and the number of
dimensions -- then each dimension as a big-endian uint32, then the values, big-endian, in C
order. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
Files may be gzip-compressed (as distributed); a name ending in ``.gz`` is not needed, the
gzip magic is detected.

Uncompressed files are memory-mapped, so a source over a big file reads only the rows asked
for. A gzip file cannot be read at an offset: it is decompressed into memory on the first read
(its header is read at once); decompress it beforehand (``gunzip -k``) to read it lazily.

Debian's ``dataset-fashion-mnist`` package installs the real Fashion-MNIST (60,000 training and
10,000 test images, 28x28 grey) as gzip IDX files in :data:`DEBIAN_FASHION_MNIST_DIR`;
:func:`fashion_mnist_debian` opens them (``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from pe_jax._checks import require
from pe_jax.data.source import ArraySource, check_image_dtype, check_label_dtype

__all__ = ["DEBIAN_FASHION_MNIST_DIR", "DIGIT_CLASSES", "FASHION_MNIST_CLASSES", "IdxHeader",
           "fashion_mnist_debian", "idx_source", "mnist_format_source", "read_idx",
           "read_idx_header", "write_idx"]

IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
"""IDX type code -> the (big-endian) dtype of the values."""

GZIP_MAGIC = b"\x1f\x8b"

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` package puts the four gzip IDX files."""

DIGIT_CLASSES = tuple(str(d) for d in range(10))
"""MNIST's class names."""

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
"""Fashion-MNIST's class names, labels 0..9 (from the data set's README)."""

MNIST_FILE_PREFIXES = {"train": "train", "test": "t10k"}
"""The named splits of an MNIST-format folder and the prefix of their file names."""

FASHION_MNIST_ROWS = {"train": 60_000, "test": 10_000}


@dataclasses.dataclass(frozen=True)
class IdxHeader:
    """An IDX file's header: its values' dtype, its shape and where the values start."""

    path: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int
    compressed: bool

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _check_path(path: Any, name: str) -> str:
    require(isinstance(path, (str, os.PathLike)), name, "a path (str or os.PathLike)", path)
    path = os.fspath(path)
    require(os.path.isfile(path), name, "an existing file", path)
    return path


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _open(path: str, compressed: bool):
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def read_idx_header(path: str | os.PathLike, name: str = "path") -> IdxHeader:
    """Parses an IDX file's header (reading a few bytes only); a ValueError names the file.

    For an uncompressed file the size is checked too: exactly header plus values, so a
    truncated file (or one with trailing bytes) is refused here.
    """
    path = _check_path(path, name)
    compressed = _is_gzip(path)
    try:
        with _open(path, compressed) as f:
            magic = f.read(4)
            if len(magic) < 4:
                raise ValueError(f"IDX file {path!r} is truncated: {len(magic)} bytes, shorter "
                                 "than the 4-byte magic number")
            if magic[:2] != b"\0\0" or magic[2] not in IDX_DTYPES or magic[3] == 0:
                raise ValueError(
                    f"IDX file {path!r} has magic number {magic.hex()}; an IDX file starts "
                    "with two zero bytes, a type code (08, 09, 0b, 0c, 0d or 0e) and the "
                    "number of dimensions (at least 1)")
            ndim = magic[3]
            dims = f.read(4 * ndim)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"IDX file {path!r} could not be read: {error}") from error
    if len(dims) < 4 * ndim:
        raise ValueError(f"IDX file {path!r} is truncated in its header: {ndim} dimensions "
                         f"need {4 * ndim} bytes, found {len(dims)}")
    header = IdxHeader(path=path, dtype=IDX_DTYPES[magic[2]],
                       shape=tuple(int(d) for d in np.frombuffer(dims, ">u4")),
                       offset=4 + 4 * ndim, compressed=compressed)
    if not compressed:
        _check_size(header, os.path.getsize(path) - header.offset)
    return header


def _check_size(header: IdxHeader, data_bytes: int) -> None:
    if data_bytes != header.data_bytes:
        problem = "truncated" if data_bytes < header.data_bytes else "longer than its header says"
        raise ValueError(
            f"IDX file {header.path!r} is {problem}: shape {header.shape} of "
            f"{header.dtype.name} needs {header.data_bytes} bytes of values, found {data_bytes}")


def read_idx(header: IdxHeader | str | os.PathLike) -> np.ndarray:
    """An IDX file's values: memory-mapped (read-only) if uncompressed, else decompressed.

    Values keep the file's byte order (big-endian for multi-byte types); numpy converts them
    on arithmetic.
    """
    if not isinstance(header, IdxHeader):
        header = read_idx_header(header)
    if not header.compressed:
        if header.data_bytes == 0:
            return np.zeros(header.shape, header.dtype)
        return np.memmap(header.path, dtype=header.dtype, mode="r", offset=header.offset,
                         shape=header.shape)
    try:
        with gzip.open(header.path, "rb") as f:
            f.seek(header.offset)
            data = f.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"IDX file {header.path!r} could not be decompressed (truncated or "
                         f"corrupt gzip?): {error}") from error
    _check_size(header, len(data))
    return np.frombuffer(data, header.dtype).reshape(header.shape)


def write_idx(path: str | os.PathLike, array: Any, compress: bool | None = None) -> None:
    """Writes ``array`` as an IDX file (gzip-compressed if ``compress``, or if the path ends
    in ``.gz`` when ``compress`` is None)."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    dtype = array.dtype.newbyteorder("=")
    require(dtype in codes, "array", "of dtype uint8, int8, int16, int32, float32 or float64",
            array.dtype.name)
    require(1 <= array.ndim <= 255, "array", "1 to 255 dimensions", array.ndim)
    path = os.fspath(path)
    if compress is None:
        compress = path.endswith(".gz")
    body = (bytes([0, 0, codes[dtype], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
            + np.ascontiguousarray(array, IDX_DTYPES[codes[dtype]]).tobytes())
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as f:
        f.write(body)


class _LazyIdx:
    """An IDX file's values with ``shape`` and ``dtype`` known and the values read on use."""

    def __init__(self, header: IdxHeader):
        self.header, self._values = header, None
        self.shape, self.dtype = header.shape, header.dtype

    def __getitem__(self, index: Any) -> np.ndarray:
        if self._values is None:
            self._values = read_idx(self.header)
        return self._values[index]


def idx_source(images_path: str | os.PathLike, labels_path: str | os.PathLike, *,
               class_names: Sequence[str], description: dict | None = None) -> ArraySource:
    """A source over an IDX images file and its IDX labels file.

    ``images_path``: ``(n, H, W)`` (grey) or ``(n, H, W, C)``, uint8 or floating point in
    [0, 1]; ``labels_path``: ``(n,)`` integers in ``[0, len(class_names))``. Only the headers
    are read here; the counts, dtypes and shapes are checked against each other.
    """
    images = read_idx_header(images_path, "images_path")
    labels = read_idx_header(labels_path, "labels_path")
    if len(images.shape) not in (3, 4):
        raise ValueError(f"IDX images file {images.path!r} has shape {images.shape}; images "
                         "must be (n, H, W) or (n, H, W, C)")
    if len(labels.shape) != 1:
        raise ValueError(f"IDX labels file {labels.path!r} has shape {labels.shape}; labels "
                         "must be (n,)")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"IDX images file {images.path!r} has {images.shape[0]} images but "
                         f"labels file {labels.path!r} has {labels.shape[0]} labels")
    check_image_dtype(images.dtype, f"IDX file {images.path!r}")
    check_label_dtype(labels.dtype, f"IDX file {labels.path!r}")
    described = {"kind": "idx", "images": images.path, "labels": labels.path,
                 **(description or {})}
    return ArraySource(_LazyIdx(images), _LazyIdx(labels), class_names, described,
                       where=f"IDX files {images.path!r} and {labels.path!r}")


def _find(root: str, stem: str) -> str | None:
    for name in (stem, stem + ".gz"):
        if os.path.isfile(os.path.join(root, name)):
            return os.path.join(root, name)
    return None


def mnist_format_source(root: str | os.PathLike, split: str, *, class_names: Sequence[str],
                        description: dict | None = None) -> ArraySource:
    """One named split of a folder laid out like MNIST's download.

    ``split`` ``"train"`` reads ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``,
    ``"test"`` the ``t10k-`` pair; each may be gzip-compressed (``.gz``); an uncompressed copy
    is preferred (it is read lazily).
    """
    require(split in MNIST_FILE_PREFIXES, "split", f"one of {tuple(MNIST_FILE_PREFIXES)}",
            split)
    require(isinstance(root, (str, os.PathLike)), "root", "a path", root)
    root = os.fspath(root)
    require(os.path.isdir(root), "root", "an existing folder of MNIST-format IDX files", root)
    prefix = MNIST_FILE_PREFIXES[split]
    found = {}
    for part, stem in (("images", f"{prefix}-images-idx3-ubyte"),
                       ("labels", f"{prefix}-labels-idx1-ubyte")):
        found[part] = _find(root, stem)
        require(found[part] is not None, "root", f"a folder holding {stem} or {stem}.gz",
                root)
    described = {"split": split, **(description or {})}
    return idx_source(found["images"], found["labels"], class_names=class_names,
                      description=described)


def fashion_mnist_debian(split: str = "train", root: str | os.PathLike = DEBIAN_FASHION_MNIST_DIR
                         ) -> ArraySource:
    """The real Fashion-MNIST as Debian's ``dataset-fashion-mnist`` package installs it.

    ``split``: ``"train"`` (60,000 images) or ``"test"`` (10,000), the data set's own fixed
    splits; 28x28 grey, 10 classes (:data:`FASHION_MNIST_CLASSES`). ``root`` defaults to
    :data:`DEBIAN_FASHION_MNIST_DIR`; any folder with the same four files works.
    """
    require(split in MNIST_FILE_PREFIXES, "split", f"one of {tuple(MNIST_FILE_PREFIXES)}",
            split)
    require(isinstance(root, (str, os.PathLike)), "root", "a path", root)
    if not os.path.isdir(root):
        raise ValueError(
            f"root must be a folder holding the Fashion-MNIST IDX files; got {os.fspath(root)!r}, "
            "which does not exist. Install Debian's package (apt-get install "
            f"dataset-fashion-mnist puts them in {DEBIAN_FASHION_MNIST_DIR}) or pass root=")
    source = mnist_format_source(
        root, split, class_names=FASHION_MNIST_CLASSES,
        description={"name": "fashion_mnist",
                     "origin": "Zalando Research's Fashion-MNIST (Debian package "
                               "dataset-fashion-mnist)"})
    expected = FASHION_MNIST_ROWS[split]
    require(len(source) == expected, f"the {split} images under root",
            f"Fashion-MNIST's {expected:,} rows", len(source))
    require(source.image_shape == (28, 28, 1), f"the {split} images under root",
            "28x28 grey", source.image_shape)
    return source
