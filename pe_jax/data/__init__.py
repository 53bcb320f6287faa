"""Image data sets, private or public, behind one interface (:class:`ImageSource`).

Every loader returns an :class:`ImageSource`: a fixed, ordered set of labelled images that
reads rows only when asked (``read(rows)``, ``load()``, ``batches(n)``), splits by the fixed
held-out rule without reading (``split``), gives each host its share (``for_host``) and says
where its rows came from (``describe()``, for the report). Images come out as float32 in
[0, 1] ``(n, H, W, C)``, labels as int32 (:class:`LabelledImages`).

Loaders: :func:`tfds_source` (``tfds.data_source``, no TensorFlow), :func:`idx_source` /
:func:`mnist_format_source` / :func:`fashion_mnist_debian` (MNIST-format IDX files),
:func:`npz_source`, :func:`image_folder_source`, :func:`sklearn_digits_source`
(:func:`load_sklearn_digits` for the arrays at once), and :class:`ArraySource` for arrays.
Heavy libraries (tensorflow_datasets, PIL, scikit-learn) are imported only when used.
"""

from pe_jax.data.digits import TUNING_HELDOUT, load_sklearn_digits, sklearn_digits_source
from pe_jax.data.folder import ImageFolderSource, image_folder_source
from pe_jax.data.idx import (DEBIAN_FASHION_MNIST_DIR, DIGIT_CLASSES, FASHION_MNIST_CLASSES,
                             fashion_mnist_debian, idx_source, mnist_format_source, read_idx,
                             read_idx_header, write_idx)
from pe_jax.data.npz import npz_source
from pe_jax.data.source import (ArraySource, ImageSource, Subset, heldout_split_description,
                                host_rows)
from pe_jax.data.tfds_source import TfdsSource, tfds_source
from pe_jax.data.types import HELDOUT_RULE, HELDOUT_SALT, LabelledImages, heldout_mask

__all__ = ["DEBIAN_FASHION_MNIST_DIR", "DIGIT_CLASSES", "FASHION_MNIST_CLASSES", "HELDOUT_RULE",
           "HELDOUT_SALT", "TUNING_HELDOUT", "ArraySource", "ImageFolderSource", "ImageSource",
           "LabelledImages", "Subset", "TfdsSource", "fashion_mnist_debian", "heldout_mask",
           "heldout_split_description", "host_rows", "idx_source", "image_folder_source",
           "load_sklearn_digits", "mnist_format_source", "npz_source", "read_idx",
           "read_idx_header", "sklearn_digits_source", "tfds_source", "write_idx"]
