"""Image sets stored as ``.npz`` files (``numpy.savez``): an images array and a labels array.

Arrays stored uncompressed (``np.savez``) are memory-mapped straight out of the zip file, so
a source over a big file reads only the rows asked for; compressed ones
(``np.savez_compressed``) are decompressed on the first read. Nothing is ever unpickled:
object arrays are refused.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from pe_jax._checks import require
from pe_jax.data.source import ArraySource, require_described

__all__ = ["npz_source"]

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip member's local file header
_LOCAL_MAGIC = b"PK\x03\x04"


class _NpzMember:
    """One array of an ``.npz`` file: ``shape`` and ``dtype`` from its header, values on use."""

    def __init__(self, path: str, zf: zipfile.ZipFile, member: str):
        self.path, self.member = path, member
        info = zf.getinfo(member)
        with zf.open(member) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    shape = fortran = dtype = None  # a newer header: read it on use
                header_bytes = f.tell()
            except ValueError as error:
                raise ValueError(f"npz file {path!r}: member {member!r} is not a .npy array: "
                                 f"{error}") from error
        if dtype is not None and dtype.hasobject:
            raise ValueError(f"npz file {path!r}: array {member[:-4]!r} holds Python objects, "
                             "which would need unpickling; store numeric arrays")
        self._values = None
        if dtype is not None and info.compress_type == zipfile.ZIP_STORED:
            self._values = self._memmap(info, header_bytes, shape, fortran, dtype)
        if dtype is None:
            self._values = self._load()
            shape, dtype = self._values.shape, self._values.dtype
        self.shape, self.dtype = tuple(shape), dtype

    def _memmap(self, info: zipfile.ZipInfo, header_bytes: int, shape: tuple, fortran: bool,
                dtype: np.dtype) -> np.ndarray | None:
        with open(self.path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(_LOCAL_HEADER.size)
        if len(local) < _LOCAL_HEADER.size or local[:4] != _LOCAL_MAGIC:
            return None  # not a plain local header: fall back to reading the member
        fields = _LOCAL_HEADER.unpack(local)
        name_length, extra_length = fields[-2], fields[-1]
        offset = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        offset += header_bytes
        if np.prod(shape) == 0:
            return np.zeros(shape, dtype)
        return np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape,
                         order="F" if fortran else "C")

    def _load(self) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as npz:
            return npz[self.member[:-4]]

    @property
    def memory_mapped(self) -> bool:
        return isinstance(self._values, np.memmap)

    def __getitem__(self, index: Any) -> np.ndarray:
        if self._values is None:
            self._values = self._load()
        return self._values[index]


def npz_source(path: str | os.PathLike, *, images_key: str = "images",
               labels_key: str = "labels", class_names: Sequence[str] | None = None,
               class_names_key: str = "class_names") -> ArraySource:
    """A source over ``path``'s ``images_key`` and ``labels_key`` arrays.

    Images: ``(n, H, W)`` (grey) or ``(n, H, W, C)``, uint8 (0..255) or floating point in
    [0, 1]; labels: ``(n,)`` integers. Class names come from ``class_names``, else from the
    file's ``class_names_key`` array of strings; one of the two is required (the classes are
    part of the data set's definition, never inferred from the private labels).
    """
    require(isinstance(path, (str, os.PathLike)), "path", "a path (str or os.PathLike)", path)
    path = os.fspath(path)
    require(os.path.isfile(path), "path", "an existing .npz file", path)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise ValueError(f"path must be an .npz file (a zip of .npy arrays); {path!r} is not: "
                         f"{error}") from error
    with zf:
        keys = sorted(name[:-4] for name in zf.namelist() if name.endswith(".npy"))
        for parameter, key in (("images_key", images_key), ("labels_key", labels_key)):
            require(key in keys, parameter, f"one of the arrays in {path!r}: {keys}", key)
        images = _NpzMember(path, zf, images_key + ".npy")
        labels = _NpzMember(path, zf, labels_key + ".npy")
        if class_names is None:
            require(class_names_key in keys, "class_names",
                    f"given, or stored in {path!r} under class_names_key {class_names_key!r}",
                    None)
            stored = _NpzMember(path, zf, class_names_key + ".npy")
            require_described(stored.dtype.kind == "U" and len(stored.shape) == 1,
                              f"the {class_names_key!r} array of {path!r}",
                              "a 1-D array of strings",
                              f"{stored.dtype.name} of shape {stored.shape}")
            class_names = [str(name) for name in stored[:]]
    described = {"kind": "npz", "path": path, "images_key": images_key,
                 "labels_key": labels_key}
    return ArraySource(images, labels, class_names, described, where=f"npz file {path!r}")
