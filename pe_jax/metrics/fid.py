"""Frechet Inception Distance between two feature sets (Heusel et al., 2017).

``FID = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))`` with the means and
covariances of the two sets, computed on the host in float64. The trace of the matrix square
root is taken stably from symmetric eigendecompositions: ``tr((S_a S_b)^(1/2))`` equals
``tr((R S_b R)^(1/2))`` with ``R = S_a^(1/2)``, and ``R S_b R`` is symmetric positive
semi-definite, so its square root is the sum of the square roots of its (clipped) eigenvalues;
no complex parts, no ``sqrtm`` iterations that fail on singular covariances. The features are
whatever embedder the caller chose (Inception pool3 for the standard FID).
"""

import dataclasses

import numpy as np

from pe_jax._checks import require


@dataclasses.dataclass(frozen=True)
class FeatureStatistics:
    """Mean ``(D,)`` and covariance ``(D, D)`` of a feature set, float64."""

    mean: np.ndarray
    covariance: np.ndarray


def statistics(features: np.ndarray) -> FeatureStatistics:
    """Mean and unbiased covariance of ``(n, D)`` features (n >= 2), in float64."""
    features = np.asarray(features, np.float64)
    require(features.ndim == 2 and features.shape[0] >= 2, "features",
            "an (n, D) array with n >= 2", f"shape {features.shape}")
    require(bool(np.all(np.isfinite(features))), "features", "finite values",
            "NaN or infinity")
    return FeatureStatistics(features.mean(axis=0), np.cov(features, rowvar=False, ddof=1))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: FeatureStatistics, b: FeatureStatistics) -> float:
    """The Frechet distance between Gaussians with the statistics ``a`` and ``b``."""
    require(a.mean.shape == b.mean.shape, "statistics", "of the same feature dimension",
            (a.mean.shape, b.mean.shape))
    root_a = _psd_sqrt(a.covariance)
    middle = root_a @ b.covariance @ root_a
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = a.mean - b.mean
    value = diff @ diff + np.trace(a.covariance) + np.trace(b.covariance) - 2 * trace_sqrt
    return float(max(value, 0.0))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two ``(n, D)`` feature sets."""
    return frechet_distance(statistics(features_a), statistics(features_b))
