"""TensorFlow Datasets image sets through ``tfds.data_source``, without TensorFlow.

``tfds.data_source`` opens a data set that has been prepared in the ``array_record`` format
(random access by row; ``tfds build <name> --file_format=array_record`` on a machine with
network, then copy its ``data_dir``) and decodes examples with numpy and PIL, so TensorFlow is
never imported. Nothing is downloaded: a data set missing from ``data_dir`` is an error.

The split (``"train"``, ``"test"``, or a TFDS slice such as ``"train[:90%]"``) is part of the
data set's definition: TFDS fixes which records it holds and in which order, and the report
records it. Rows are read in batches (``__getitems__``), only the rows asked for.

Tests use ``tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE)``, which mocks
``tfds.data_source`` too; in tensorflow-datasets 4.9.10 its mocked batched read is broken (an
unbound ``__getitems__``), so ``tests/test_data_tfds.py`` passes it a reader mock that binds
it, and also prepares a real ``array_record`` data set without TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from pe_jax._checks import check_int, require
from pe_jax.data.source import ImageSource, check_class_names

__all__ = ["TfdsSource", "tfds_source"]

READ_CHUNK = 1024
"""Records fetched per ``__getitems__`` call, bounding the decoded examples held at once."""


class TfdsSource(ImageSource):
    """Images and labels from a TFDS random-access data source (``tfds.data_source``).

    ``data_source`` needs ``len``, ``__getitems__`` (a list of keys -> a list of example
    dicts) and ``dataset_info.features``. The image feature must have a fixed shape ``(H, W)``
    or ``(H, W, C)``; the label feature is a ``ClassLabel`` (whose names become the class
    names) unless ``class_names`` are given.
    """

    def __init__(self, data_source: Any, *, image_key: str = "image", label_key: str = "label",
                 class_names: Sequence[str] | None = None, description: dict | None = None,
                 read_chunk: int = READ_CHUNK):
        self._source = data_source
        self._description = dict(description or {"kind": "tfds"})
        self._image_key, self._label_key = image_key, label_key
        self._read_chunk = check_int("read_chunk", read_chunk, 1)
        where = self._where()
        features = data_source.dataset_info.features
        keys = sorted(features.keys())
        for parameter, key in (("image_key", image_key), ("label_key", label_key)):
            require(key in keys, parameter, f"a feature of {where}: {keys}", key)
        shape = tuple(features[image_key].shape)
        require(len(shape) in (2, 3) and all(isinstance(d, int) and d > 0 for d in shape),
                f"the {image_key!r} feature of {where}", "a fixed shape (H, W) or (H, W, C)",
                shape)
        self._image_shape = shape if len(shape) == 3 else (*shape, 1)
        if class_names is None:
            names = getattr(features[label_key], "names", None)
            require(names is not None, "class_names",
                    f"given when the {label_key!r} feature of {where} is not a ClassLabel",
                    None)
            class_names = names
        self._class_names = check_class_names(list(class_names), where)
        require(len(data_source) > 0, f"the split of {where}",
                "at least one row (an empty data set is refused)", 0)

    def __len__(self) -> int:
        return len(self._source)

    def describe(self) -> dict:
        return {**self._description, "image_key": self._image_key,
                "label_key": self._label_key, "rows": len(self),
                "image_shape": list(self.image_shape), "class_names": list(self.class_names)}

    def _where(self) -> str:
        described = self._description
        if "name" in described:
            return f"tfds data set {described['name']!r} (split {described.get('split')!r})"
        return "the tfds data source"

    def _read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for start in range(0, rows.size, self._read_chunk):
            keys = [int(r) for r in rows[start:start + self._read_chunk]]
            records = self._source.__getitems__(keys)
            if len(records) != len(keys):
                raise ValueError(f"{self._where()} returned {len(records)} records for "
                                 f"{len(keys)} keys")
            images += [np.asarray(r[self._image_key]) for r in records]
            labels += [np.asarray(r[self._label_key]) for r in records]
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise ValueError(f"images of {self._where()} must all have shape "
                             f"{self.image_shape}; found {sorted(shapes)}")
        return np.stack(images), np.stack(labels)


def tfds_source(name: str, split: str, data_dir: str | os.PathLike, *,
                image_key: str = "image", label_key: str = "label",
                class_names: Sequence[str] | None = None) -> TfdsSource:
    """One split of the TFDS data set ``name`` (e.g. ``"mnist"``, ``"fashion_mnist"``,
    ``"cifar10"``, or ``"name:version"``), prepared as ``array_record`` under ``data_dir``.

    Images are decoded from the ``image_key`` feature (uint8 -> float32 / 255), labels from
    ``label_key``; class names from the label feature's ``ClassLabel`` names.
    """
    require(isinstance(name, str) and bool(name), "name", "a TFDS data set name such as "
            "'mnist'", name)
    require(isinstance(split, str) and bool(split), "split",
            "one TFDS split such as 'train', 'test' or 'train[:90%]'", split)
    require(isinstance(data_dir, (str, os.PathLike)), "data_dir", "a path", data_dir)
    data_dir = os.fspath(data_dir)
    require(os.path.isdir(data_dir), "data_dir",
            "an existing folder holding TFDS data sets prepared as array_record", data_dir)
    import tensorflow_datasets as tfds

    try:
        data_source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except (ValueError, NotImplementedError, OSError, AssertionError) as error:
        raise ValueError(
            f"tfds data set {name!r} (split {split!r}) could not be opened from data_dir "
            f"{data_dir!r}; it must be prepared there in the array_record format (`tfds build "
            f"{name} --file_format=array_record --data_dir ...` where there is network). "
            f"TFDS said: {error}") from error
    info = data_source.dataset_info
    description = {"kind": "tfds", "name": name, "split": split, "data_dir": data_dir,
                   "version": str(info.version)}
    return TfdsSource(data_source, image_key=image_key, label_key=label_key,
                      class_names=class_names, description=description)
