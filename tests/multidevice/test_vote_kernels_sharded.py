"""Every registered vote kernel gives the same votes on 8 devices as on 1 (8 forced CPU devices):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu .venv/bin/python -m \
        pytest -q -p no:cacheprovider --override-ini addopts= \
        tests/multidevice/test_vote_kernels_sharded.py

On near-tie data (:mod:`near_tie_data`), for each kernel in ``pe_jax.voting.KERNELS`` with
l2 and every k it supports (1, 3): N_priv in {1, 9, 17} at a private tile of 4 (several
blocks on some devices, none on others) and at the default tile, and class-conditionally,
the 8-device histogram equals the 1-device one and the sum of the rows' single votes, and
adding one row on the mesh adds exactly that row's votes.
"""

from __future__ import annotations

import pathlib
import sys
import zlib

import jax
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: near_tie_data

from near_tie_data import N_SYN, Tally, make_problem  # noqa: E402
from pe_jax.voting import KERNELS, nn_histogram  # noqa: E402

pytestmark = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8",
)

POOL = 64
PROBLEM = make_problem("float", seed=zlib.crc32(b"kernels-sharded"), n_pool=POOL)


def cases():
    out = []
    for name, kernel in KERNELS.items():
        if kernel.metrics is not None and "l2" not in kernel.metrics:
            continue
        out += [(name, k) for k in (1, 3) if kernel.max_k is None or k <= kernel.max_k]
    return out


def hist(idx, name, k, mesh=None, tile=None, labelled=False) -> np.ndarray:
    idx = np.asarray(idx, int)
    kwargs = {}
    if labelled:
        kwargs = dict(private_labels=PROBLEM.pool_labels[idx],
                      synthetic_labels=PROBLEM.synthetic_labels)
    out = np.asarray(nn_histogram(PROBLEM.pool[idx], PROBLEM.synthetic, k=k, kernel=name,
                                  mesh=mesh, private_tile=tile, **kwargs))
    assert out.shape == (N_SYN,) and out.dtype == np.int32, (out.shape, out.dtype)
    return out.astype(np.int64)


@pytest.mark.parametrize("case", cases(), ids=lambda c: f"{c[0]}-k{c[1]}")
def test_eight_devices_equal_one(case):
    name, k = case
    mesh = jax.make_mesh((8,), ("data",))
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    singles: dict[tuple, np.ndarray] = {}

    def single(i, labelled):
        if (i, labelled) not in singles:
            singles[i, labelled] = hist([i], name, k, labelled=labelled)
        return singles[i, labelled]

    tally = Tally("votes depend on the mesh or the other rows")
    for labelled, tile in ((False, 4), (False, None), (True, 4)):
        for n in (1, 9, 17):
            idx = rng.choice(POOL, n, replace=False)
            sharded = hist(idx, name, k, mesh, tile, labelled)
            what = f"N={n} tile={tile} labelled={labelled}"
            tally.check(np.array_equal(sharded, hist(idx, name, k, None, tile, labelled)),
                        f"8 devices == 1 device, {what}")
            tally.check(np.array_equal(sharded, sum(single(int(i), labelled) for i in idx)),
                        f"8 devices == sum of singles, {what}")
            if n > 1:
                pos = int(rng.integers(n))
                before = hist(np.delete(idx, pos), name, k, mesh, tile, labelled)
                tally.check(np.array_equal(sharded - before, single(int(idx[pos]), labelled)),
                            f"8 devices add-one, {what}")
    tally.assert_clean()
