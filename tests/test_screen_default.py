"""screen=None decides from what the hardware does (voting.bf16_probe), never from size alone."""

from __future__ import annotations

import math
import threading
import time

import jax
import numpy as np
import pytest

from pe_jax.voting import bf16_probe, kernels, nn_histogram
from pe_jax.voting.bf16_probe import ENV_VAR, MIN_SPEEDUP, Probe, screen_pays
from pe_jax.voting.histogram import _SCREEN_MIN_SIZE, DEFAULT_TILES, _default_screen

CPU_KEY = ("cpu", jax.devices("cpu")[0].device_kind)


@pytest.fixture
def probes(monkeypatch):
    """An empty probe cache (restored afterwards), no pinning variable, and the list of
    the (device, rows, cols) each real measurement ran on."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    saved = dict(bf16_probe._PROBES)
    bf16_probe._PROBES.clear()
    calls, real = [], bf16_probe.measure

    def counted(device, rows, cols, *args, **kwargs):
        calls.append((device, rows, cols))
        return real(device, rows, cols, *args, **kwargs)

    monkeypatch.setattr(bf16_probe, "measure", counted)
    yield calls
    bf16_probe._PROBES.clear()
    bf16_probe._PROBES.update(saved)


@pytest.fixture
def kernel_screens(monkeypatch):
    """The ``screen`` argument of every vote_counts call (the real kernel still runs)."""
    seen, real = [], kernels.vote_counts

    def recorded(*args, screen, **kwargs):
        seen.append(screen)
        return real(*args, screen=screen, **kwargs)

    monkeypatch.setattr(kernels, "vote_counts", recorded)
    return seen


def data(n_priv: int, n_syn: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_priv, dim), dtype=np.float32),
            rng.standard_normal((n_syn, dim), dtype=np.float32))


# A problem just above the size threshold, cheap to vote on.
LARGE = (64, _SCREEN_MIN_SIZE // 64, 64)


def test_rule_on_given_timings():
    # the AMD EPYC, nn_histogram at (40k, 5k, 512): 3.7 s float32, 15.7 s screened
    assert not screen_pays(3.7, 15.7)
    # this EPYC's probe block: 0.64 of the screened speed
    assert not screen_pays(0.0109, 0.0173)
    # the AMX-BF16 CPU the screen was tuned on: screened 0.65 of the float32 time
    assert screen_pays(1.0, 0.65)
    # the margin: at least MIN_SPEEDUP times faster, not merely faster
    assert screen_pays(MIN_SPEEDUP, 1.0) and not screen_pays(MIN_SPEEDUP * 0.99, 1.0)
    assert not screen_pays(1.1, 1.0) and not screen_pays(1.0, 1.0)
    for bad in [(math.nan, 1.0), (1.0, math.nan), (math.inf, 1.0), (1.0, 0.0), (0.0, 0.0),
                (-1.0, -2.0)]:
        assert not screen_pays(*bad)


def test_probe_runs_once_per_device_kind_and_is_cached(probes):
    device = jax.devices()[0]
    block = DEFAULT_TILES[device.platform]
    threads = [threading.Thread(target=bf16_probe.probe, args=(device, block)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = bf16_probe.probe(device, block)
    assert len(probes) == 1 and probes[0] == (device, *block)
    assert first.pays == screen_pays(first.float32_s, first.bfloat16_s)
    assert first.cost_s < 5  # well under a second unloaded; generous on a shared machine
    private, synthetic = data(*LARGE)
    for _ in range(2):
        nn_histogram(private, synthetic)
    assert len(probes) == 1 and bf16_probe.probe(device, block) is first


def test_small_problems_never_probe_or_screen(probes, kernel_screens):
    private, synthetic = data(200, LARGE[1] - 1, LARGE[2])
    nn_histogram(private, synthetic)
    assert probes == [] and kernel_screens == [False]
    assert not _default_screen(2_000, 64)


@pytest.mark.parametrize("pays", [False, True])
def test_screen_argument_overrides_the_probe(probes, kernel_screens, pays):
    bf16_probe._PROBES[CPU_KEY] = Probe(1.0, 1.0 / (2 if pays else 0.5), pays, 0.0)
    private, synthetic = data(*LARGE)
    expected = nn_histogram(private, synthetic, screen=False)
    for screen in [None, True, False]:
        np.testing.assert_array_equal(nn_histogram(private, synthetic, screen=screen), expected)
    assert kernel_screens == [False, pays, True, False]
    assert probes == []  # the cached answer was used


def test_environment_variable_pins_the_decision(probes, kernel_screens, monkeypatch):
    private, synthetic = data(*LARGE)
    for value, screened in [("1", True), ("0", False), (" ON ", True), ("off", False)]:
        monkeypatch.setenv(ENV_VAR, value)
        nn_histogram(private, synthetic)
        assert kernel_screens.pop() is screened
        nn_histogram(private, synthetic, screen=not screened)  # the argument still wins
        assert kernel_screens.pop() is (not screened)
    assert probes == []
    monkeypatch.setenv(ENV_VAR, "sometimes")
    with pytest.raises(ValueError, match=f"{ENV_VAR} must be 1, 0 or auto"):
        nn_histogram(private, synthetic)
    monkeypatch.setenv(ENV_VAR, "auto")
    nn_histogram(private, synthetic)
    assert len(probes) == 1 and kernel_screens == [bf16_probe._PROBES[CPU_KEY].pays]


def test_probe_runs_eagerly_inside_an_outer_jit(probes):
    private, synthetic = data(*LARGE, seed=1)
    traced = jax.jit(lambda p, s: nn_histogram(p, s))(private, synthetic)
    assert len(probes) == 1
    np.testing.assert_array_equal(traced, nn_histogram(private, synthetic, screen=False))


def test_probe_uses_the_mesh_device(probes):
    mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
    assert _default_screen(*LARGE[1:], mesh=mesh) == bf16_probe._PROBES[CPU_KEY].pays
    assert probes == [(mesh.devices.flat[0], *DEFAULT_TILES["cpu"])]


def _interleaved_min(fns: dict, repeats: int) -> dict:
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}


def test_probe_agrees_with_a_direct_measurement(probes):
    """On this machine: the probe's block-level speed-up predicts the kernel's, and the
    default it picks is never clearly slower than the other setting."""
    device = jax.devices()[0]
    result = bf16_probe.probe(device, DEFAULT_TILES[device.platform])
    private, synthetic = data(8192, 4096, 256)  # class size x D = 2**20
    runs = {screen: (lambda s=screen: nn_histogram(private, synthetic, screen=s)
                     .block_until_ready()) for screen in (True, False)}
    for fn in runs.values():
        fn()  # compile
    times = _interleaved_min(runs, 3)
    direct = times[False] / times[True]  # float32 / screened, > 1: the screen is faster
    predicted = result.float32_s / result.bfloat16_s
    print(f"{result}: float32 / screened, probe block {predicted:.2f}, kernel {direct:.2f}")
    assert abs(math.log(predicted / direct)) < math.log(1.6), (predicted, direct)
    if result.pays:
        assert direct > 1 / 1.1  # screening by default is not slower
    else:
        assert direct < MIN_SPEEDUP * 1.1  # not screening does not miss a clear gain
