"""Noise tests (PRIVACY_TESTS.md section C), each with a broken control it must reject.

Seeded, with test level alpha = 1e-6, so a correct sampler fails about once in a million runs
and the controls show that the tests have power.
"""

import math

import numpy as np
import pytest
from scipy import special, stats

from pe_jax import privacy
from pe_jax.privacy import noise

ALPHA = 1e-6
N = 100_000


def _pmf(scale):
    """Exact discrete Gaussian pmf on [-m, m] (mass outside < 1e-40)."""
    m = math.ceil(14 * scale) + 5
    xs = np.arange(-m, m + 1)
    w = np.exp(-xs.astype(float) ** 2 / (2 * scale**2))
    return xs, w / w.sum()


def _ks_pvalue(samples, scale):
    """KS test against the discrete Gaussian CDF (conservative for a discrete law)."""
    xs, p = _pmf(scale)
    ecdf = np.searchsorted(np.sort(samples), xs, side="right") / samples.size
    d = np.max(np.abs(ecdf - np.cumsum(p)))
    return stats.kstwo.sf(d, samples.size)


def _g_test_pvalue(samples, scale):
    """G-test (2 n KL(empirical || pmf) ~ chi^2) with tail cells pooled to expectation >= 5."""
    xs, p = _pmf(scale)
    expected = p * samples.size
    keep = expected >= 5
    lo, hi = xs[keep][0], xs[keep][-1]
    clipped = np.clip(samples, lo, hi)
    observed = np.bincount(clipped - lo, minlength=hi - lo + 1)
    exp_cells = expected[keep].copy()
    exp_cells[0] += expected[xs < lo].sum()
    exp_cells[-1] += expected[xs > hi].sum()
    if exp_cells.size == 1:
        return 1.0
    return stats.power_divergence(observed, exp_cells, lambda_="log-likelihood").pvalue


@pytest.mark.parametrize("scale", [0.5, 3.0, 20.0])
def test_ks_accepts_claimed_scale_and_rejects_broken_scales(scale):
    rng = np.random.default_rng(1)
    good = privacy.sample_discrete_gaussian(scale, N, rng=rng)
    assert _ks_pvalue(good, scale) > ALPHA
    for wrong in (2 / 3, 3 / 2):  # broken controls: a sampler at the wrong scale
        broken = privacy.sample_discrete_gaussian(scale * wrong, N, rng=rng)
        assert _ks_pvalue(broken, scale) < ALPHA


@pytest.mark.parametrize("scale", [0.5, 1.7, 20.0])
def test_matches_pmf_mean_variance_and_kl(scale):
    samples = privacy.sample_discrete_gaussian(scale, N, rng=np.random.default_rng(2))
    assert samples.dtype == np.int64
    xs, p = _pmf(scale)
    var = float(np.sum(p * xs**2))
    fourth = float(np.sum(p * xs**4.0))
    assert abs(samples.mean()) < 5 * math.sqrt(var / N)
    assert abs(np.mean(samples.astype(float) ** 2) - var) < 5 * math.sqrt((fourth - var**2) / N)
    assert _g_test_pvalue(samples, scale) > ALPHA
    # control: 10 % more scale is caught by the same G-test
    broken = privacy.sample_discrete_gaussian(scale * 1.1, N, rng=np.random.default_rng(3))
    assert _g_test_pvalue(broken, scale) < ALPHA


def test_variance_is_below_scale_squared_for_small_scale():
    # Discrete Gaussian at scale 0.5 has variance ~0.2146, well below 0.25.
    xs, p = _pmf(0.5)
    var = float(np.sum(p * xs**2))
    samples = privacy.sample_discrete_gaussian(0.5, N, rng=np.random.default_rng(4))
    assert var == pytest.approx(0.2146, abs=1e-3)
    assert samples.var() == pytest.approx(var, rel=0.02)


def test_csprng_default_passes_and_never_repeats():
    a = privacy.sample_discrete_gaussian(5.0, N)
    b = privacy.sample_discrete_gaussian(5.0, N)
    assert _ks_pvalue(a, 5.0) > ALPHA
    assert not np.array_equal(a, b)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.03


def test_seeded_generator_is_reproducible():
    a = privacy.sample_discrete_gaussian(5.0, (30, 7), rng=np.random.default_rng(42))
    b = privacy.sample_discrete_gaussian(5.0, (30, 7), rng=np.random.default_rng(42))
    c = privacy.sample_discrete_gaussian(5.0, (30, 7), rng=np.random.default_rng(43))
    assert a.shape == (30, 7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_describe_source():
    assert noise.describe_source(None) == "os.urandom (CSPRNG)"
    assert noise.describe_source(np.random.default_rng(0)) == (
        "numpy PCG64 (seeded, not cryptographically secure)")


@pytest.mark.parametrize("kwargs", [dict(scale=0.0), dict(scale=-1.0), dict(scale=math.nan),
                                    dict(scale=math.inf), dict(scale=2e9), dict(shape=-1),
                                    dict(shape=(2, 1.5)),
                                    dict(rng=np.random.RandomState(0)), dict(rng=0)])
def test_sampler_rejects_bad_arguments(kwargs):
    args = dict(scale=1.0, shape=3) | kwargs
    scale, shape = args.pop("scale"), args.pop("shape")
    with pytest.raises(ValueError):
        privacy.sample_discrete_gaussian(scale, shape, **args)


def test_empty_shape():
    assert privacy.sample_discrete_gaussian(1.0, (0, 3)).shape == (0, 3)


# ------------------------------------------------------------------------- bounded support


@pytest.mark.parametrize("byte, expected", [(0x00, 2.0**-53), (0xFF, 1 - 2.0**-53)])
def test_uniforms_are_exact_and_strictly_inside_0_1(monkeypatch, byte, expected):
    """The smallest and largest words give 2^-53 and 1 - 2^-53 exactly (53-bit uniforms
    (j + 1/2) / 2^53 rounded the top half of their grid, up to exactly 1.0)."""
    monkeypatch.setattr(noise.os, "urandom", lambda n: bytes([byte]) * n)
    u = noise._uniforms(4, None)
    assert np.all(u == expected) and 0.0 < expected < 1.0
    assert noise.U_MIN == 2.0**-53


@pytest.mark.parametrize("scale", [0.05, 0.1151, 0.1152, 0.5, 1.0, 3.0, 20.0, 1000.0, 1e5])
def test_noise_bound_is_exactly_the_largest_output(monkeypatch, scale):
    """With the smallest acceptance uniform, a proposal of noise_bound(scale) is accepted and
    one of noise_bound(scale) + 1 is not; no geometric draw exceeds floor(53 ln 2 * t)."""
    bound, t = privacy.noise_bound(scale), math.floor(scale) + 1
    assert noise._geometric(np.float64(noise.U_MIN), t) == math.floor(53 * math.log(2) * t)
    assert bound == math.floor(scale**2 / t + scale * math.sqrt(106 * math.log(2)))
    top = 1 - 2.0**-53
    draws = [  # (G1 uniforms, G2 uniforms, acceptance uniforms) of each round
        ([math.exp(-(bound + 0.5) / t), math.exp(-(bound + 1.5) / t)], [top, top],
         [noise.U_MIN, noise.U_MIN]),
        ([top], [top], [noise.U_MIN]),  # the rejected entry is redrawn: proposal 0
    ]
    monkeypatch.setattr(noise, "_uniforms",
                        lambda n, rng: np.concatenate([np.array(u) for u in draws.pop(0)]))
    np.testing.assert_array_equal(privacy.sample_discrete_gaussian(scale, 2), [bound, 0])
    assert draws == []  # exactly two rounds: bound + 1 was rejected


@pytest.mark.parametrize("scale", [0.05, 0.11511729, 0.1152, 0.2272992, 0.5, 1.0, 1.3895, 3.0,
                                   20.0, 1000.0])
def test_discrete_gaussian_mass_beyond_the_bound_is_below_2_pow_minus_53(scale):
    """The truncation the bounded support makes moves less than 2^-53 of probability (largest
    just below scale 0.11511730, where the bound rises from 0 to 1)."""
    bound = privacy.noise_bound(scale)
    ys = np.arange(0, math.ceil(bound + 40 * scale + 50), dtype=np.float64)
    log_weights = -ys**2 / (2 * scale**2)
    log_total = np.logaddexp(special.logsumexp(log_weights), special.logsumexp(log_weights[1:]))
    log_tail = math.log(2) + special.logsumexp(log_weights[bound + 1:]) - log_total
    assert log_tail < -53 * math.log(2)


# ------------------------------------------------------------------------- float safety


def _impossible_share(outputs, possible_under_neighbour):
    return 1.0 - float(np.mean(possible_under_neighbour(outputs)))


@pytest.mark.parametrize("k", [1, 3])
def test_float_safety_discrete_release_vs_float32_control(k):
    """Released values from count c must (almost) all be possible from count c + 1."""
    c, n = 0, 1_000_000
    ledger = privacy.PrivacyLedger(1e-5)
    out = privacy.release(np.full(n, c), noise_multiplier=12.0, threshold=0.0,
                          ledger=ledger, k=k, rng=np.random.default_rng(5)).noisy

    def possible_discrete(v):  # support from c + 1: exactly the floats (c + 1 + z) / sqrt(k)
        z = np.rint(v * math.sqrt(k)) - (c + 1)
        return (c + 1 + z) / math.sqrt(k) == v

    assert _impossible_share(out, possible_discrete) <= 1e-6

    # Control: raw float32 `count + sigma * normal`, normals from 23-bit uniforms (as float32
    # samplers do). Its full support from c + 1 is enumerable, and it fails the same check.
    sigma = np.float32(12.0)
    u = ((np.arange(2**23) + 0.5) / 2**23).astype(np.float32)
    normal = (sigma * special.ndtri(u).astype(np.float32)).astype(np.float32)
    support = np.unique(np.float32(c + 1) + normal)
    draws = np.float32(c) + normal[np.random.default_rng(6).integers(0, 2**23, size=100_000)]

    def possible_float32(v):
        i = np.minimum(np.searchsorted(support, v), support.size - 1)
        return support[i] == v

    share = _impossible_share(draws, possible_float32)
    assert not share <= 1e-6
    assert share > 0.8  # ~0.87 at sigma 12 for counts 0 and 1
