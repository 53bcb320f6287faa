"""Image folders: ``root/<class name>/<image file>``, one sub-folder per class.

Classes are the sub-folders' names, sorted (hidden ones, starting with ``.``, are skipped), so
the label of a class is its place in that order. Rows are class by class, and within a class
the files sorted by name: a fixed order that the held-out split and host shares index into.
Listing reads no image; the first image's header gives the shape, and every other image is
opened only when its row is read (and must have the same size and mode).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from pe_jax._checks import require
from pe_jax.data.source import ImageSource, check_class_names

__all__ = ["image_folder_source", "ImageFolderSource"]

CHANNEL_MODES = {1: "L", 3: "RGB"}
"""Channels -> the PIL mode images are converted to."""


class ImageFolderSource(ImageSource):
    """The images under ``root/<class>/``; see :func:`image_folder_source`."""

    def __init__(self, root: str, files: Sequence[str], labels: np.ndarray,
                 class_names: tuple[str, ...], image_shape: tuple[int, int, int],
                 extensions: tuple[str, ...]):
        self.root, self._files, self._labels = root, tuple(files), labels
        self._class_names, self._image_shape = class_names, image_shape
        self._extensions = extensions

    def __len__(self) -> int:
        return len(self._files)

    @property
    def files(self) -> tuple[str, ...]:
        """Every row's file, relative to ``root``, in row order."""
        return self._files

    def describe(self) -> dict:
        return {"kind": "image_folder", "path": self.root, "extensions": list(self._extensions),
                "order": "classes sorted by name, then files sorted by name",
                "rows": len(self), "image_shape": list(self.image_shape),
                "class_names": list(self.class_names)}

    def _where(self) -> str:
        return f"image folder {self.root!r}"

    def _read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width, channels = self.image_shape
        images = np.empty((rows.size, height, width, channels), np.uint8)
        for out, row in enumerate(rows):
            path = os.path.join(self.root, self._files[row])
            pixels = _read_image(path, CHANNEL_MODES[channels])
            if pixels.shape[:2] != (height, width):
                raise ValueError(
                    f"image {path!r} is {pixels.shape[1]}x{pixels.shape[0]} (width x height); "
                    f"every image in {self.root!r} must be {width}x{height}, like the first")
            images[out] = pixels.reshape(height, width, channels)
        return images, self._labels[rows]


def _read_image(path: str, mode: str) -> np.ndarray:
    """The pixels of ``path`` as uint8, converted to PIL ``mode`` (``L`` or ``RGB``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode != mode:
                if image.mode not in ("L", "RGB", "RGBA", "P", "LA", "1"):
                    raise ValueError(f"image {path!r} has PIL mode {image.mode!r}; 8-bit grey "
                                     "or colour images (L, RGB, RGBA, P, LA, 1) are supported")
                image = image.convert(mode)
            return np.asarray(image, np.uint8)
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"image {path!r} could not be read: {error}") from error


def image_folder_source(root: str | os.PathLike, *, extensions: Sequence[str] = (".png",),
                        channels: int | None = None) -> ImageFolderSource:
    """A source over ``root/<class name>/*<extension>``.

    ``extensions``: the file endings that count as images (case-insensitive); other files are
    ignored. ``channels``: 1 (grey) or 3 (RGB) to convert every image to; None takes it from
    the first image, which must then be grey (mode ``L``) or RGB.
    """
    require(isinstance(root, (str, os.PathLike)), "root", "a path (str or os.PathLike)", root)
    root = os.fspath(root)
    require(os.path.isdir(root), "root", "an existing folder with one sub-folder per class",
            root)
    require(isinstance(extensions, Sequence) and not isinstance(extensions, str)
            and len(extensions) > 0
            and all(isinstance(e, str) and e.startswith(".") for e in extensions),
            "extensions", "a non-empty sequence of file endings such as '.png'", extensions)
    require(channels is None or channels in CHANNEL_MODES, "channels",
            "1 (grey), 3 (RGB) or None (from the first image)", channels)
    endings = tuple(e.lower() for e in extensions)
    class_names = sorted(name for name in os.listdir(root)
                         if not name.startswith(".") and os.path.isdir(os.path.join(root, name)))
    require(len(class_names) > 0, "root", "a folder with one sub-folder per class", root)
    check_class_names(class_names, f"image folder {root!r}")
    files, labels = [], []
    for label, name in enumerate(class_names):
        found = sorted(f for f in os.listdir(os.path.join(root, name))
                       if f.lower().endswith(endings) and not f.startswith(".")
                       and os.path.isfile(os.path.join(root, name, f)))
        files += [os.path.join(name, f) for f in found]
        labels += [label] * len(found)
    require(len(files) > 0, "root", f"a folder with images ({', '.join(endings)}) in its "
            "class sub-folders (an empty data set is refused)", root)
    first = os.path.join(root, files[0])
    if channels is None:
        mode = _image_mode(first)
        require(mode in ("L", "RGB"), "channels",
                f"given (1 or 3) when the first image {first!r} is neither grey (L) nor RGB "
                f"(its mode is {mode!r})", None)
        channels = 1 if mode == "L" else 3
    height, width = _read_image(first, CHANNEL_MODES[channels]).shape[:2]
    return ImageFolderSource(root, files, np.asarray(labels, np.int32), tuple(class_names),
                             (int(height), int(width), channels), endings)


def _image_mode(path: str) -> str:
    """The PIL mode of ``path`` (reads its header only)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.mode
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"image {path!r} could not be read: {error}") from error
