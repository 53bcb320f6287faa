"""A private row's votes do not depend on the mesh (run with 8 forced CPU devices):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 .venv/bin/python -m pytest \
        tests/multidevice/test_vote_invariance_sharded.py -q --override-ini addopts=

Sharding gives each device ceil(N_priv / n_devices) rows, so a row's company, and the size of
the block it is scored in, changes with the device count (one row per device for 2 rows on 2
devices or 7 on 8).  On near-tie data (:mod:`near_tie_data`, almost every row on a float
near-tie or an exact tie) these tests check, for meshes of 1, 2 and 8 devices, k in {1, 3},
screening on and off and N_priv in {1, 2, 7, 8, 9, 512, 513}: the sharded histogram equals the
single-device one AND the sum of the rows' single-device votes cast alone, and adding one row
adds exactly that row's votes.  Also once class-conditionally.
"""

from __future__ import annotations

import pathlib
import sys
import zlib

import jax
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: near_tie_data

from near_tie_data import N_CLASSES, N_SYN, Tally, make_problem  # noqa: E402
from pe_jax.voting import nn_histogram  # noqa: E402

pytestmark = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8",
)

POOL = 600
SMALL_POOL = 64
PROBLEM = make_problem("float", seed=zlib.crc32(b"sharded"), n_pool=POOL)


def mesh_of(n: int) -> jax.sharding.Mesh:
    return jax.make_mesh((n,), ("data",), devices=jax.devices()[:n])


def hist(idx, k, screen, mesh=None, labelled=False) -> np.ndarray:
    idx = np.asarray(idx, int)
    kwargs = {}
    if labelled:
        kwargs = dict(
            private_labels=PROBLEM.pool_labels[idx], synthetic_labels=PROBLEM.synthetic_labels
        )
    out = np.asarray(
        nn_histogram(PROBLEM.pool[idx], PROBLEM.synthetic, k=k, screen=screen, mesh=mesh, **kwargs)
    )
    assert out.shape == (N_SYN,) and out.dtype == np.int32, (out.shape, out.dtype)
    return out.astype(np.int64)


_SINGLES: dict[tuple, dict[int, np.ndarray]] = {}


def singles(idx, k, screen, labelled=False) -> np.ndarray:
    """Each row's votes cast alone on one device (cached)."""
    cache = _SINGLES.setdefault((k, screen, labelled), {})
    for i in map(int, idx):
        if i not in cache:
            cache[i] = hist([i], k, screen, labelled=labelled)
            assert cache[i].sum() == k and cache[i].max() == 1
    return np.array([cache[int(i)] for i in idx])


def check_set(tally, idx, k, screen, mesh, n_dev, labelled=False):
    """The sharded histogram of rows ``idx``: == single device, == sum of singles."""
    sharded = hist(idx, k, screen, mesh, labelled)
    n = len(idx)
    tally.check(np.array_equal(sharded, hist(idx, k, screen, None, labelled)),
                f"{n_dev} devices == 1 device, N={n}")
    tally.check(np.array_equal(sharded, singles(idx, k, screen, labelled).sum(0)),
                f"{n_dev} devices == sum of singles, N={n}")
    return sharded


CONFIGS = [(1, False), (3, False), (1, True), (3, True)]


@pytest.mark.parametrize("n_dev", [1, 2, 8])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"k{c[0]}-{'screen' if c[1] else 'f32'}")
def test_votes_independent_of_mesh_and_company(config, n_dev):
    """N_priv 1, 2, 7, 9, 513 (and, in float32, 8 and 512 for the add-one steps 8 -> 9 and
    512 -> 513; 1 -> 2 always): every histogram on the mesh equals the single-device one and
    the sum of singles, and the added row adds exactly its own votes."""
    k, screen = config
    mesh = mesh_of(n_dev)
    rng = np.random.default_rng(zlib.crc32(repr((config, n_dev)).encode()))
    tally = Tally("votes depend on the mesh or the other rows")
    steps = ((0, 1), (1, 2), (7, 8), (8, 9), (512, 513)) if not screen else ((0, 1), (1, 2))
    sizes = {1, 2, 7, 9, 513} | {b for _, b in steps} | {a for a, _ in steps if a}
    for n in sorted(sizes):
        for _ in range(4 if n <= 9 else 1):
            pool = SMALL_POOL if n <= 9 else POOL
            check_set(tally, rng.choice(pool, n, replace=False), k, screen, mesh, n_dev)
    for before, after in steps:
        for _ in range(6 if after <= 9 else 1):
            idx = rng.choice(SMALL_POOL if after <= 9 else POOL, after, replace=False)
            pos = int(rng.integers(after))
            rest = np.delete(idx, pos)
            base = hist(rest, k, screen, mesh) if before else np.zeros(N_SYN, np.int64)
            grown = hist(idx, k, screen, mesh)
            tally.check(np.array_equal(grown - base, singles([idx[pos]], k, screen)[0]),
                        f"{n_dev} devices add-one N={before}->{after}")
    tally.assert_clean()


@pytest.mark.parametrize("config", [(1, False), (3, True)], ids=["k1-f32", "k3-screen"])
def test_class_conditional_votes_independent_of_mesh(config):
    """Labels on 2 and 8 devices: 9 rows in classes of 5, 3, 1 and 0 rows, plus one row of each
    class in turn (the empty and the singleton class included): == single device, == sum of
    singles, and the added row adds exactly its own votes (all within its class)."""
    k, screen = config
    rng = np.random.default_rng(zlib.crc32(repr(("labels", config)).encode()))
    labels = PROBLEM.pool_labels
    tally = Tally("votes depend on the mesh or the other rows")
    for n_dev in (2, 8):
        mesh = mesh_of(n_dev)
        for _ in range(2):
            counts = dict(zip(rng.permutation(N_CLASSES), (5, 3, 1, 0)))
            p_idx = rng.permutation(np.concatenate([
                rng.choice(np.flatnonzero(labels == c), n, replace=False)
                for c, n in counts.items()
            ]))
            base = check_set(tally, p_idx, k, screen, mesh, n_dev, labelled=True)
            for c in range(N_CLASSES):
                x = rng.choice(np.setdiff1d(np.flatnonzero(labels == c), p_idx))
                grown_idx = np.insert(p_idx, rng.integers(len(p_idx) + 1), x)
                grown = check_set(tally, grown_idx, k, screen, mesh, n_dev, labelled=True)
                own = singles([x], k, screen, labelled=True)[0]
                assert (PROBLEM.synthetic_labels[own > 0] == c).all()
                tally.check(np.array_equal(grown - base, own),
                            f"{n_dev} devices add-one, class {c}")
    tally.assert_clean()
