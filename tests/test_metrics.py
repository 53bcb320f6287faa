"""FID, precision/recall and downstream accuracy."""

import time

import numpy as np
import pytest
import scipy.linalg

from pe_jax.data import load_sklearn_digits
from pe_jax.metrics import downstream, fid, precision_recall


def _features(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    return rng.standard_normal((n, dim)) @ mixing + rng.standard_normal(dim)


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The reference computation (pytorch-fid's calculate_frechet_distance) with scipy's sqrtm."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_adds_its_squared_norm():
    a = _features(500, 16, seed=0)
    assert fid.fid(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = np.zeros(16)
    values = []
    for size in (0.5, 1.0, 2.0):
        shift[0] = size
        values.append(fid.fid(a, a + shift))
        assert values[-1] == pytest.approx(size ** 2, rel=1e-6)  # same covariance
    assert values == sorted(values)


@pytest.mark.parametrize("seeds", [(1, 2), (3, 4)])
def test_fid_matches_scipy_sqrtm_reference(seeds):
    a, b = _features(800, 32, seeds[0]), 1.5 * _features(600, 32, seeds[1])
    reference = _scipy_fid(a, b)
    assert reference > 1.0
    assert fid.fid(a, b) == pytest.approx(reference, rel=1e-3)


def test_fid_handles_singular_covariances_and_refuses_bad_input():
    a, b = _features(20, 64, 5), _features(30, 64, 6)  # n < D: rank-deficient covariances
    value = fid.fid(a, b)
    assert np.isfinite(value) and value > 0
    with pytest.raises(ValueError, match="features must be"):
        fid.fid(a[:1], b)
    with pytest.raises(ValueError, match="finite"):
        fid.fid(np.full((3, 2), np.nan), b[:, :2])


def test_precision_recall_one_for_identical_sets_zero_for_disjoint_ones():
    real = _features(300, 8, seed=7)
    same = precision_recall.precision_recall(real, real.copy(), k=3)
    assert same.precision == 1.0 and same.recall == 1.0
    far = precision_recall.precision_recall(real, real + 100.0, k=3)
    assert far.precision == 0.0 and far.recall == 0.0


def test_precision_recall_separate_fidelity_from_coverage():
    real = _features(400, 4, seed=8)
    collapsed = np.repeat(real[:1], 50, axis=0)  # realistic but no variety
    result = precision_recall.precision_recall(real, collapsed, k=3)
    assert result.precision == 1.0 and result.recall < 0.1
    half = np.concatenate([real[:200], real[:200] + 100.0])  # half realistic, half not
    result = precision_recall.precision_recall(real, half, k=3)
    assert result.precision == pytest.approx(0.5)
    with pytest.raises(ValueError, match="k must be"):
        precision_recall.precision_recall(real, collapsed, k=50)


def test_classifier_reaches_90_percent_on_real_digits():
    digits = load_sklearn_digits()
    order = np.random.default_rng(0).permutation(len(digits.labels))
    train, test = order[:1200], order[1200:]
    start = time.perf_counter()
    accuracy = downstream.downstream_accuracy(digits.images[train], digits.labels[train],
                                              digits.images[test], digits.labels[test], 10)
    seconds = time.perf_counter() - start
    print(f"train-on-real/test-on-real accuracy {accuracy:.3f} in {seconds:.1f} s")
    assert accuracy > 0.9
    with pytest.raises(ValueError, match="test_labels"):
        downstream.downstream_accuracy(digits.images[train], digits.labels[train],
                                       digits.images[test], digits.labels[test] + 10, 10)
