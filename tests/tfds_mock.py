"""``mock_tfds``: ``tfds.testing.mock_data`` with a batched read that works, for the tests.

In tensorflow-datasets 4.9.10 ``mock_data`` sets the mocked reader's ``__getitems__`` (the
batched read that ``tfds.data_source`` users call) to an unbound ``functools.partial``, so it
raises ``TypeError: _getitems() missing 1 required positional argument``; the reader mock here
binds it (only ``__getitem__`` works out of the box). Not a test file.
"""

import contextlib
import functools
from unittest import mock


class _BindingMock(mock.MagicMock):
    """A reader mock that binds the ``__getitems__`` partial that ``mock_data`` assigns."""

    def __setattr__(self, name, value):
        if name == "__getitems__" and isinstance(value, functools.partial):
            value = functools.partial(value.func, self, *value.args, **value.keywords)
        super().__setattr__(name, value)


def mock_tfds(num_examples: int) -> contextlib.AbstractContextManager:
    """Random examples of any TFDS builder's features, read through ``tfds.data_source``."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.testing.mocking import PickableDataSourceMock

    reader = PickableDataSourceMock()
    reader.return_value = _BindingMock()
    return tfds.testing.mock_data(num_examples=num_examples,
                                  policy=tfds.testing.MockPolicy.USE_CODE,
                                  mock_array_record_data_source=reader)
