"""One interface for every image data set, private or public: :class:`ImageSource`.

A source is one fixed, ordered list of labelled images: one named split of a data set (the
TFDS ``"train"`` split, the Fashion-MNIST ``t10k`` files, a folder of PNGs, ...). It knows its
length, image shape and class names without reading any image, and reads rows only when asked:

* ``read(rows)`` returns the given rows (an index array, in the order given) as
  :class:`~pe_jax.data.types.LabelledImages` -- float32 images in [0, 1], int32 labels --
  after checking every value it read (pixel range and dtype, label range);
* ``load()`` reads every row; ``batches(n)`` reads them ``n`` at a time;
* ``split(fraction, salt)`` sets aside the rows that the fixed held-out rule picks
  (:func:`~pe_jax.data.types.heldout_mask`) without reading anything, as two lazy
  :class:`Subset` sources, each of which describes its split for the report;
* ``for_host(process_index, process_count)`` is one host's contiguous share of the rows
  (:func:`host_rows`), so on a multi-host run each process reads only its own rows.

Splits are part of a data set's definition: named splits come from the data set itself and the
held-out split from the row index, a fixed salt and a fraction (``HELDOUT_RULE``). Nothing here
takes a seed, so no run setting moves a row from one split to another. ``describe()`` returns a
JSON-ready dict that says where the rows came from and how they were split, for the privacy
report.

Loaders: :func:`pe_jax.data.tfds_source`, :func:`pe_jax.data.idx_source` (and
:func:`pe_jax.data.fashion_mnist_debian`), :func:`pe_jax.data.npz_source`,
:func:`pe_jax.data.image_folder_source`, :func:`pe_jax.data.sklearn_digits_source`, and
:class:`ArraySource` for arrays already in memory.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from pe_jax._checks import check_int, require
from pe_jax.data.types import HELDOUT_RULE, HELDOUT_SALT, LabelledImages, heldout_mask

__all__ = ["ArraySource", "ImageSource", "Subset", "check_class_names", "check_image_dtype",
           "check_label_dtype", "heldout_split_description", "host_rows", "to_labels",
           "to_unit_images"]


def require_described(ok: bool, name: str, allowed: str, got: str) -> None:
    """Like ``_checks.require``, with ``got`` already in words (not quoted by ``repr``)."""
    if not ok:
        raise ValueError(f"{name} must be {allowed}; got {got}")


def check_class_names(class_names: Any, where: str) -> tuple[str, ...]:
    """``class_names`` as a tuple of distinct non-empty strs (at least one), or a ValueError."""
    ok = (isinstance(class_names, Sequence) and not isinstance(class_names, str)
          and len(class_names) > 0
          and all(isinstance(name, str) and name for name in class_names))
    require(ok, f"class_names of {where}", "a non-empty sequence of non-empty strs",
            class_names)
    names = tuple(class_names)
    require(len(set(names)) == len(names), f"class_names of {where}", "distinct names", names)
    return names


def check_image_dtype(dtype: np.dtype, where: str) -> None:
    """Images must be stored as uint8 (0..255) or floating point (in [0, 1])."""
    dtype = np.dtype(dtype)
    require(dtype == np.uint8 or np.issubdtype(dtype, np.floating), f"images of {where}",
            "uint8 (0..255) or floating point (0..1)", dtype.name)


def check_label_dtype(dtype: np.dtype, where: str) -> None:
    """Labels must be stored as integers (not bools, not floats)."""
    dtype = np.dtype(dtype)
    require(np.issubdtype(dtype, np.integer), f"labels of {where}",
            "an integer array (class indices)", dtype.name)


def to_unit_images(images: np.ndarray, where: str) -> np.ndarray:
    """``images`` as float32 in [0, 1] with a channel axis: uint8 / 255, or checked floats.

    ``(n, H, W)`` gains a channel axis of 1. Floats must be finite and in [0, 1]; any other
    dtype is refused, naming ``where``.
    """
    images = np.asarray(images)
    check_image_dtype(images.dtype, where)
    require(images.ndim in (3, 4), f"images of {where}", "(n, H, W) or (n, H, W, C)",
            images.shape)
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    if images.size:
        low, high = float(np.min(images)), float(np.max(images))
        require_described(np.isfinite(low) and np.isfinite(high) and 0 <= low and high <= 1,
                          f"images of {where}", "finite values in [0, 1] (or uint8)",
                          f"values in [{low}, {high}]")
    return images.astype(np.float32)


def to_labels(labels: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """``labels`` as int32 class indices, each in ``[0, num_classes)``, or a ValueError."""
    labels = np.asarray(labels)
    check_label_dtype(labels.dtype, where)
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        require_described(0 <= low and high < num_classes, f"labels of {where}",
                          f"class indices in [0, {num_classes - 1}]",
                          f"values in [{low}, {high}]")
    return labels.astype(np.int32)


def host_rows(num_rows: int, process_index: int, process_count: int) -> np.ndarray:
    """Rows ``[num_rows * i // p, num_rows * (i + 1) // p)`` of process ``i`` out of ``p``.

    The shares are contiguous, disjoint, cover every row, differ in size by at most one, and
    depend on the three numbers only.
    """
    num_rows = check_int("num_rows", num_rows, 0)
    process_count = check_int("process_count", process_count, 1)
    process_index = check_int("process_index", process_index, 0, process_count - 1)
    start = num_rows * process_index // process_count
    stop = num_rows * (process_index + 1) // process_count
    return np.arange(start, stop, dtype=np.int64)


def heldout_split_description(fraction: float, salt: str, part: str) -> dict:
    """How the held-out split picks rows, for the report: name, part, rule, salt, fraction."""
    return {"name": "heldout", "part": part, "rule": HELDOUT_RULE, "salt": salt,
            "fraction": float(fraction)}


class ImageSource(abc.ABC):
    """A fixed, ordered set of labelled images that reads rows only when asked.

    Subclasses give ``__len__``, ``describe`` and ``_read``, and set ``_image_shape`` and
    ``_class_names`` (or override those properties); everything else (row checks, value
    checks, subsets, splits, host shares) is shared.
    """

    _image_shape: tuple[int, int, int]
    _class_names: tuple[str, ...]

    @abc.abstractmethod
    def __len__(self) -> int:
        """How many rows the source has."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of every image, as ``read`` returns them."""
        return self._image_shape

    @property
    def class_names(self) -> tuple[str, ...]:
        """The names of the classes; labels index into them."""
        return self._class_names

    @abc.abstractmethod
    def describe(self) -> dict:
        """Where the rows come from and how they were picked, as a JSON-ready dict."""

    @abc.abstractmethod
    def _read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(images, labels)`` of ``rows`` (sorted, distinct, in range), unconverted."""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(rows={len(self)}, image_shape={self.image_shape}, "
                f"classes={self.num_classes})")

    def _where(self) -> str:
        described = self.describe()
        return str(described.get("path") or described.get("name") or type(self).__name__)

    def read(self, rows: Any) -> LabelledImages:
        """The images and labels of ``rows`` (a 1-D integer array), in the order given.

        Rows may repeat. Only these rows are read. Their pixel values and labels are checked
        here, so a bad row is refused before it is used (a ValueError naming the source).
        """
        rows = np.asarray(rows)
        require_described(
            rows.ndim == 1 and (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)),
            "rows", "a 1-D array of integer row indices",
            f"shape {rows.shape}, dtype {rows.dtype.name}")
        rows = rows.astype(np.int64)
        if rows.size:
            require_described(rows.min() >= 0 and rows.max() < len(self), "rows",
                              f"indices in [0, {len(self) - 1}]",
                              f"values in [{rows.min()}, {rows.max()}]")
        unique, inverse = np.unique(rows, return_inverse=True)
        where = self._where()
        if unique.size:
            raw_images, raw_labels = self._read(unique)
            images = to_unit_images(raw_images, where)
            labels = to_labels(raw_labels, self.num_classes, where)
        else:
            images = np.zeros((0, *self.image_shape), np.float32)
            labels = np.zeros((0,), np.int32)
        require(images.shape == (unique.size, *self.image_shape), f"images of {where}",
                f"{self.image_shape} each", images.shape[1:])
        require(labels.shape == (unique.size,), f"labels of {where}", "one per image",
                labels.shape)
        if not np.array_equal(unique, rows):
            images, labels = images[inverse], labels[inverse]
        return LabelledImages(images=images, labels=labels, class_names=self.class_names)

    def load(self) -> LabelledImages:
        """Every row, in order."""
        return self.read(np.arange(len(self)))

    def batches(self, batch_size: int) -> Iterator[LabelledImages]:
        """Every row in order, ``batch_size`` at a time (the last batch may be smaller)."""
        batch_size = check_int("batch_size", batch_size, 1)
        for start in range(0, len(self), batch_size):
            yield self.read(np.arange(start, min(start + batch_size, len(self))))

    def subset(self, rows: Any, split: dict | None = None) -> Subset:
        """The given rows as a lazy source; ``split`` describes how they were picked."""
        return Subset(self, rows, split)

    def split(self, fraction: float, salt: str = HELDOUT_SALT) -> tuple[Subset, Subset]:
        """``(rest, held_out)`` by the fixed held-out rule, reading nothing.

        The same rows as ``self.load().split(fraction, salt)``: a row is held out by its
        index, the salt and the fraction only (see ``HELDOUT_RULE``), never by a seed.
        """
        held = heldout_mask(len(self), fraction, salt)
        if held.all() or not held.any():
            raise ValueError(f"fraction {fraction!r} of {len(held)} rows leaves a part empty")
        return (self.subset(np.flatnonzero(~held), heldout_split_description(fraction, salt,
                                                                             "rest")),
                self.subset(np.flatnonzero(held), heldout_split_description(fraction, salt,
                                                                            "held_out")))

    def rows_for_host(self, process_index: int | None = None,
                      process_count: int | None = None) -> np.ndarray:
        """This host's contiguous share of the rows (:func:`host_rows`).

        ``None`` means ``jax.process_index()`` / ``jax.process_count()``.
        """
        return host_rows(len(self), *_host(process_index, process_count))

    def for_host(self, process_index: int | None = None,
                 process_count: int | None = None) -> Subset:
        """This host's share (:meth:`rows_for_host`) as a lazy source."""
        process_index, process_count = _host(process_index, process_count)
        share = {"name": "host_share", "rule": "contiguous rows [n * i // p, n * (i + 1) // p)",
                 "process_index": process_index, "process_count": process_count}
        return self.subset(host_rows(len(self), process_index, process_count), share)


def _host(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    """``(process_index, process_count)``, each ``None`` replaced by JAX's value."""
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    process_count = check_int("process_count", process_count, 1)
    return check_int("process_index", process_index, 0, process_count - 1), process_count


class Subset(ImageSource):
    """Some rows of another source, in the order given, read lazily through it.

    Unlike the loaders, a subset may be empty (a host's share when there are more hosts than
    rows); ``split`` refuses to leave either part empty.
    """

    def __init__(self, parent: ImageSource, rows: Any, split: dict | None = None):
        require(isinstance(parent, ImageSource), "parent", "an ImageSource",
                type(parent).__name__)
        rows = np.asarray(rows)
        require_described(
            rows.ndim == 1 and (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)),
            "rows", "a 1-D array of integer row indices", f"shape {rows.shape}")
        rows = rows.astype(np.int64)
        if rows.size:  # empty is allowed here: a host's share of fewer rows than hosts
            require_described(rows.min() >= 0 and rows.max() < len(parent), "rows",
                              f"indices in [0, {len(parent) - 1}]",
                              f"values in [{rows.min()}, {rows.max()}]")
        rows.setflags(write=False)
        self.parent, self.rows, self.split_description = parent, rows, split

    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.parent.image_shape

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.parent.class_names

    def describe(self) -> dict:
        described = {"subset_of": self.parent.describe(), "rows": len(self)}
        if self.split_description is not None:
            described["split"] = dict(self.split_description)
        return described

    def _where(self) -> str:
        return self.parent._where()

    def _read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parent_rows = self.rows[rows]
        unique, inverse = np.unique(parent_rows, return_inverse=True)
        images, labels = self.parent._read(unique)
        return np.asarray(images)[inverse], np.asarray(labels)[inverse]


class ArraySource(ImageSource):
    """Images and labels held as arrays (in memory or memory-mapped), checked on read.

    ``images``: ``(n, H, W)`` or ``(n, H, W, C)``, uint8 (0..255) or floating point (0..1);
    ``labels``: ``(n,)`` integers in ``[0, len(class_names))``. Anything with ``shape``,
    ``dtype`` and numpy indexing works (e.g. ``np.memmap``), so nothing is copied until read.
    ``description`` is what ``describe()`` reports; ``where`` names the data in errors.
    """

    def __init__(self, images: Any, labels: Any, class_names: Sequence[str],
                 description: dict | None = None, where: str | None = None):
        self._description = dict(description or {"kind": "arrays"})
        where = where or str(self._description.get("path") or self._description.get("name")
                             or "the arrays")
        self._where_text = where
        for name, value in (("images", images), ("labels", labels)):
            require(hasattr(value, "shape") and hasattr(value, "dtype"), name,
                    "an array (with shape and dtype)", type(value).__name__)
        check_image_dtype(images.dtype, where)
        check_label_dtype(labels.dtype, where)
        require(len(images.shape) in (3, 4) and all(d > 0 for d in images.shape[1:]),
                f"images of {where}", "(n, H, W) or (n, H, W, C) with H, W, C > 0",
                tuple(images.shape))
        require(len(labels.shape) == 1, f"labels of {where}", "a 1-D array",
                tuple(labels.shape))
        require(labels.shape[0] == images.shape[0], f"labels of {where}",
                f"one per image ({images.shape[0]})", labels.shape[0])
        require(images.shape[0] > 0, f"images of {where}",
                "at least one row (an empty data set is refused)", 0)
        self._images, self._labels = images, labels
        self._class_names = check_class_names(class_names, where)
        shape = tuple(int(d) for d in images.shape[1:])
        self._image_shape = shape if len(shape) == 3 else (*shape, 1)

    def __len__(self) -> int:
        return int(self._images.shape[0])

    def describe(self) -> dict:
        return {**self._description, "rows": len(self), "image_shape": list(self.image_shape),
                "class_names": list(self.class_names)}

    def _where(self) -> str:
        return self._where_text

    def _read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self._images[rows]), np.asarray(self._labels[rows])
