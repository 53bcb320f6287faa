"""The held-out split is part of the data set: fixed by row index and salt, not by the run."""

import hashlib
import math

import numpy as np
import pytest

from pe_jax.configs import DEFAULT_CONFIG, build, load_config
from pe_jax.data import (HELDOUT_SALT, TUNING_HELDOUT, LabelledImages, heldout_mask,
                         load_sklearn_digits)


@pytest.fixture(scope="module")
def digits() -> LabelledImages:
    return load_sklearn_digits()


def _rows(part: LabelledImages) -> list[bytes]:
    return sorted(image.tobytes() + bytes([label])
                  for image, label in zip(part.images, part.labels))


def _private_and_reference(heldout: float = TUNING_HELDOUT, seed: int = 0
                           ) -> tuple[LabelledImages, LabelledImages]:
    """The private and held-out digits of the default run config with these settings."""
    data = load_config(DEFAULT_CONFIG, [f"seed={seed}", f"data.heldout={heldout}"]).data
    return build.private_and_reference(build.data_source(data), data)


def test_held_out_digits_are_the_same_for_every_seed(digits):
    references = [_private_and_reference(seed=seed)[1] for seed in range(10)]
    for reference in references[1:]:
        np.testing.assert_array_equal(reference.images, references[0].images)
    private, reference = _private_and_reference()
    assert (len(private.labels), len(reference.labels)) == (1335, 462)
    assert sorted(_rows(private) + _rows(reference)) == _rows(digits)  # a partition


def test_the_rule_is_the_documented_hash():
    cut = 0.25 * 2**64
    expected = [int.from_bytes(hashlib.sha256(f"{HELDOUT_SALT}:{i}".encode()).digest()[:8], "big")
                < cut for i in range(500)]
    np.testing.assert_array_equal(heldout_mask(500, 0.25), expected)
    assert not np.array_equal(heldout_mask(500, 0.25, salt="another"), expected)


def test_appending_rows_moves_no_existing_row(digits):
    for extra in (1, 7, 500):
        np.testing.assert_array_equal(heldout_mask(len(digits.labels) + extra, 0.25)[:-extra],
                                      heldout_mask(len(digits.labels), 0.25))
    grown = LabelledImages(np.concatenate([digits.images, np.ones((3, 8, 8, 1), np.float32)]),
                           np.concatenate([digits.labels, np.array([1, 2, 3], np.int32)]),
                           digits.class_names)
    private, reference = digits.split(0.25)
    grown_private, grown_reference = grown.split(0.25)
    n_private, n_reference = len(private.labels), len(reference.labels)
    np.testing.assert_array_equal(grown_private.images[:n_private], private.images)
    np.testing.assert_array_equal(grown_reference.images[:n_reference], reference.images)
    assert len(grown_private.labels) + len(grown_reference.labels) == len(grown.labels)


@pytest.mark.parametrize("fraction", [0.05, 0.25, 0.5, 0.9])
def test_the_held_out_fraction_is_close_to_the_target(fraction):
    rows = 20_000
    held = heldout_mask(rows, fraction).sum()
    assert abs(held - fraction * rows) < 4 * math.sqrt(rows * fraction * (1 - fraction))


def test_a_larger_fraction_holds_out_a_superset():
    small, large = heldout_mask(5000, 0.1), heldout_mask(5000, TUNING_HELDOUT)
    assert small.sum() < large.sum() and not (small & ~large).any()


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), True, "0.25", None])
def test_bad_fractions_are_refused(fraction):
    with pytest.raises(ValueError, match="fraction must be a number in"):
        heldout_mask(10, fraction)


def test_a_split_that_leaves_a_part_empty_is_refused(digits):
    two = LabelledImages(digits.images[:2], digits.labels[:2], digits.class_names)
    with pytest.raises(ValueError, match="leaves a part empty"):
        two.split(0.01)


@pytest.mark.parametrize("heldout", [0.0, 0.1, TUNING_HELDOUT - 1e-9, 1.0])
def test_runs_keep_the_tuning_rows_held_out(digits, heldout):
    with pytest.raises(ValueError, match=r"data.heldout must be a fraction in \[0.25, 1\)"):
        _private_and_reference(heldout=heldout)
    _, reference = _private_and_reference(heldout=0.5)
    _, tuning = digits.split(TUNING_HELDOUT)
    assert set(_rows(tuning)) <= set(_rows(reference))
