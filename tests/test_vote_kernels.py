"""The shared test suite of every registered vote kernel (pe_jax.voting.KERNELS).

Each kernel in the registry, for each metric and k it supports, is checked for

* reference votes: equal to a NumPy float64 brute force on data whose k-th and (k+1)-th
  nearest are well separated (and class-conditionally); kernels declared ``exact`` also on
  exact ties (ties to the lowest index) and equal to ``"exact"`` on float near-ties;
* sensitivity (PRIVACY_TESTS A): adding one private row changes the histogram by exactly that
  row's own votes -- the difference has L1 = k, every entry 0 or 1, L2 within the declared
  ``count_sensitivity(k)`` -- and ``hist(P)`` is the sum of its rows' single votes, on near-tie
  data, for N_priv 1..9 across an explicit tile of 4 (whole, partial and several blocks), across
  the default tile (511 -> 512 -> 513), and class-conditionally with unequal class sizes;
* the same check REJECTS two broken control kernels (votes that depend on the other rows of
  the block; a row that votes twice), so it has power.

The sharding check (8 devices == 1 device) is tests/multidevice/test_vote_kernels_sharded.py.
A new kernel registered in pe_jax.voting is picked up by every test here.
"""

from __future__ import annotations

import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from near_tie_data import FAMILIES, N_CLASSES, N_SYN, make_problem
from pe_jax import voting
from pe_jax.voting import KERNELS, METRICS, VoteKernel, block_kernel, get_kernel, nn_histogram
from pe_jax.voting.approx import approx_kernel, block_scores
from pe_jax.voting.kernel import vote_counts

METRIC_NAMES = ("l2", "cosine", "inner_product")
TILE = 4  # explicit small private tile: sizes 1..9 cover 1, 2 and 3 blocks
DEFAULT_TILE = voting.DEFAULT_TILES[jax.default_backend()][0]
POOL = DEFAULT_TILE + 2
SMALL_POOL = 64


def _seed(*key) -> int:
    return zlib.crc32(repr(key).encode())


def supported(name: str) -> list[tuple[str, int]]:
    kernel = KERNELS[name]
    metrics = kernel.metrics or METRIC_NAMES
    ks = [k for k in (1, 3) if kernel.max_k is None or k <= kernel.max_k]
    return [(m, k) for m in metrics for k in ks]


ALL_CASES = [(n, m, k) for n in KERNELS for m, k in supported(n)]
# Sensitivity runs compile per (kernel, metric, k, number of blocks): l2 with every k, and
# one other metric at the largest k, per kernel.
SENSITIVITY_CASES = [
    (n, m, k) for n in KERNELS for m, k in supported(n)
    if m == "l2" or (m == "cosine" and k == max(kk for _, kk in supported(n)))
]


def _id(case) -> str:
    return "-".join(map(str, case)) if isinstance(case, tuple) else str(case)


_PROBLEMS: dict[str, object] = {}


def problem(family: str):
    if family not in _PROBLEMS:
        _PROBLEMS[family] = make_problem(family, seed=_seed("kernels", family), n_pool=POOL)
    return _PROBLEMS[family]


# ---------------------------------------------------------------------------------------------
# The add-one-row check, usable on any kernel (registered or not).


class AddOne:
    """Histograms of pool rows under one kernel/metric/k, and the add-one identities."""

    def __init__(self, kernel, family, metric, k, labelled=False):
        self.kernel, self.metric, self.k, self.labelled = kernel, metric, k, labelled
        self.p = problem(family)
        self.family = family
        self._singles: dict[int, np.ndarray] = {}
        self.failures: list[str] = []

    def hist(self, idx, tile=TILE) -> np.ndarray:
        idx = np.asarray(idx, int)
        if len(idx) == 0:
            return np.zeros(N_SYN, np.int64)
        kwargs = {}
        if self.labelled:
            kwargs = dict(private_labels=self.p.pool_labels[idx],
                          synthetic_labels=self.p.synthetic_labels)
        out = np.asarray(nn_histogram(self.p.pool[idx], self.p.synthetic, k=self.k,
                                      metric=self.metric, kernel=self.kernel,
                                      private_tile=tile, **kwargs))
        assert out.shape == (N_SYN,) and out.dtype == np.int32, (out.shape, out.dtype)
        return out.astype(np.int64)

    def single(self, i: int) -> np.ndarray:
        if i not in self._singles:
            self._singles[i] = self.hist([i])
        return self._singles[i]

    def fail(self, what: str):
        self.failures.append(f"{self.family} {what}")

    def check_row_votes(self, d: np.ndarray, what: str):
        """``d``: one row's votes (or a histogram difference that should be one)."""
        l2 = math.sqrt(float((d.astype(float) ** 2).sum()))
        if d.min() < 0 or d.max() > 1 or d.sum() != self.k:
            self.fail(f"{what}: not k distinct votes of 1 (L1 {d.sum()}, entries "
                      f"{d.min()}..{d.max()})")
        if l2 > get_kernel(self.kernel).count_sensitivity(self.k) + 1e-9:
            self.fail(f"{what}: L2 {l2:.3f} above the declared sensitivity")

    def add_one(self, p_idx, x: int, pos: int, tile=TILE):
        """Insert pool row ``x`` into ``p_idx`` at ``pos``: the difference is x's own votes."""
        p_idx = np.asarray(p_idx, int)
        with_x = np.insert(p_idx, pos, x)
        before, after = self.hist(p_idx, tile), self.hist(with_x, tile)
        n = len(p_idx)
        own = self.single(x)
        self.check_row_votes(own, f"row {x} alone")
        d = after - before
        self.check_row_votes(d, f"add-one N={n}->{n + 1} (tile {tile})")
        if not np.array_equal(d, own):
            self.fail(f"add-one N={n}->{n + 1} (tile {tile}): the difference is not the "
                      "row's own votes")
        if self.labelled and not (self.p.synthetic_labels[own > 0] == self.p.pool_labels[x]).all():
            self.fail(f"row {x} votes outside its class")
        if n + 1 <= 9 and not np.array_equal(after, sum(self.single(i) for i in with_x)):
            self.fail(f"hist(P) != sum of singles, N={n + 1} (tile {tile})")


def add_one_failures(kernel, metric, k, *, seed, families=tuple(FAMILIES), sizes=range(1, 10),
                     draws=3) -> list[str]:
    """Every failed identity for N_priv -> N_priv + 1 at the explicit tile (unlabelled)."""
    rng = np.random.default_rng(seed)
    failures = []
    for family in families:
        check = AddOne(kernel, family, metric, k)
        for n in sizes:
            for draw in range(draws):
                idx = rng.choice(SMALL_POOL, n, replace=False)
                if draw == 2 and n > 1:
                    idx[-1] = idx[0]  # the new row duplicates one already there
                check.add_one(idx[:-1], int(idx[-1]), int(rng.integers(n)))
        failures += check.failures
    return failures


def labelled_failures(kernel, metric, k, *, seed) -> list[str]:
    """Class-conditional: 9 rows in classes of 5, 3, 1 and 0 rows, plus one row of each class."""
    rng = np.random.default_rng(seed)
    failures = []
    for family in FAMILIES:
        check = AddOne(kernel, family, metric, k, labelled=True)
        labels = check.p.pool_labels
        for _ in range(2):
            counts = dict(zip(rng.permutation(N_CLASSES), (5, 3, 1, 0)))
            p_idx = rng.permutation(np.concatenate([
                rng.choice(np.flatnonzero(labels[:SMALL_POOL] == c), n, replace=False)
                for c, n in counts.items()]))
            for c in range(N_CLASSES):
                x = int(rng.choice(np.setdiff1d(np.flatnonzero(labels == c), p_idx)))
                check.add_one(p_idx, x, int(rng.integers(len(p_idx) + 1)))
        failures += check.failures
    return failures


# ---------------------------------------------------------------------------------------------
# Broken controls: kernels that break the contract in ways the checks must see.


def _company_nearest(x, y, valid, *, k, score_fn):
    """Scores rows shifted by their block's mean: a row's votes depend on its company."""
    s = block_scores(x - jnp.mean(x, axis=0), y, valid, score_fn)
    return jax.lax.top_k(-s, k)[1]


COMPANY = block_kernel(_company_nearest, name="broken-company", exact=False)


def _double_counts(blocks, synthetic, classes, **kwargs):
    return 2 * KERNELS["exact"].counts(blocks, synthetic, classes, **kwargs)


DOUBLE = VoteKernel(name="broken-double", counts=_double_counts, exact=False)


# ---------------------------------------------------------------------------------------------
# Reference votes.


def reference_counts(private, synthetic, metric, k, p_labels=None, s_labels=None):
    """float64 brute force (stable argsort: lowest index on ties), and each row's gap between
    its k-th and (k+1)-th nearest score relative to the score scale."""
    p, s = private.astype(np.float64), synthetic.astype(np.float64)
    if metric == "l2":
        d = ((p[:, None, :] - s[None, :, :]) ** 2).sum(-1)
    elif metric == "inner_product":
        d = -p @ s.T
    else:
        d = -p @ (s / np.linalg.norm(s, axis=1, keepdims=True)).T
    if p_labels is not None:
        d = np.where(p_labels[:, None] == s_labels[None, :], d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")
    counts = np.zeros(len(s), np.int64)
    np.add.at(counts, order[:, :k].ravel(), 1)
    ranked = np.take_along_axis(d, order[:, : k + 1], axis=1)
    scale = np.abs(d[np.isfinite(d)]).max()
    return counts, (ranked[:, k] - ranked[:, k - 1]) / scale


def separated_data(seed, n_priv=200, n_syn=96, dim=24, labelled=False):
    """Random data keeping only rows whose k-th/(k+1)-th gap is far above float32 rounding
    for every k in {1, 3} and metric."""
    rng = np.random.default_rng(seed)
    synthetic = rng.normal(size=(n_syn, dim)).astype(np.float32)
    private = (synthetic[rng.integers(n_syn, size=4 * n_priv)]
               + 0.5 * rng.normal(size=(4 * n_priv, dim))).astype(np.float32)
    s_labels = rng.integers(0, 3, n_syn) if labelled else None
    p_labels = rng.integers(0, 3, 4 * n_priv) if labelled else None
    keep = np.ones(len(private), bool)
    for metric in METRIC_NAMES:
        for k in (1, 3):
            keep &= reference_counts(private, synthetic, metric, k, p_labels, s_labels)[1] > 1e-4
    keep = np.flatnonzero(keep)[:n_priv]
    assert len(keep) == n_priv
    return (private[keep], synthetic, None if p_labels is None else p_labels[keep], s_labels)


@pytest.mark.parametrize("case", ALL_CASES, ids=_id)
def test_reference_votes_on_separated_data(case):
    name, metric, k = case
    private, synthetic, _, _ = separated_data(_seed("separated"))
    expected, _ = reference_counts(private, synthetic, metric, k)
    got = nn_histogram(private, synthetic, k=k, metric=metric, kernel=name, private_tile=64)
    np.testing.assert_array_equal(np.asarray(got), expected)


@pytest.mark.parametrize("name", list(KERNELS), ids=_id)
def test_reference_votes_class_conditional(name):
    metric, k = ("l2", max(kk for m, kk in supported(name) if m == "l2"))
    private, synthetic, p_labels, s_labels = separated_data(_seed("labelled"), labelled=True)
    expected, _ = reference_counts(private, synthetic, metric, k, p_labels, s_labels)
    got = nn_histogram(private, synthetic, k=k, metric=metric, kernel=name,
                       private_labels=p_labels, synthetic_labels=s_labels, private_tile=16)
    np.testing.assert_array_equal(np.asarray(got), expected)


EXACT_CASES = [c for c in ALL_CASES if KERNELS[c[0]].exact]


@pytest.mark.parametrize("case", [c for c in EXACT_CASES if c[1] != "cosine"], ids=_id)
def test_exact_kernels_on_exact_ties(case):
    """Small integers (exact in float32, and after l2's centring): every row on an exact tie
    or duplicate votes as the float64 brute force, ties to the lowest index."""
    name, metric, k = case
    p = problem("integer")
    private = p.pool[:SMALL_POOL]
    expected, _ = reference_counts(private, p.synthetic, metric, k)
    got = nn_histogram(private, p.synthetic, k=k, metric=metric, kernel=name, private_tile=TILE)
    np.testing.assert_array_equal(np.asarray(got), expected)


@pytest.mark.parametrize("case", [c for c in EXACT_CASES if c[0] != "exact"] or [None],
                         ids=_id)
def test_exact_kernels_equal_exact_on_near_ties(case):
    """A kernel declared exact votes as ``"exact"`` on float near-ties, row by row."""
    if case is None:
        pytest.skip("no registered exact kernel besides 'exact'")
    name, metric, k = case
    p = problem("float")
    for i in range(SMALL_POOL):
        args = (p.pool[i:i + 1], p.synthetic)
        np.testing.assert_array_equal(
            np.asarray(nn_histogram(*args, k=k, metric=metric, kernel=name)),
            np.asarray(nn_histogram(*args, k=k, metric=metric)), err_msg=f"row {i}")


def test_pallas_prototype_is_exact_where_scores_are_exact():
    """What "pallas_l2" guarantees beyond separated data: where every score is computed without
    rounding (small integers), it votes as the float64 brute force with ties to the lowest
    index -- the same tie rule as "exact" -- whatever order its matmul sums in."""
    p = problem("integer")
    for labelled in (False, True):
        kw = {}
        if labelled:
            kw = dict(private_labels=p.pool_labels[:SMALL_POOL],
                      synthetic_labels=p.synthetic_labels)
        expected, _ = reference_counts(p.pool[:SMALL_POOL], p.synthetic, "l2", 1,
                                       kw.get("private_labels"), kw.get("synthetic_labels"))
        got = nn_histogram(p.pool[:SMALL_POOL], p.synthetic, kernel="pallas_l2",
                           private_tile=TILE, **kw)
        np.testing.assert_array_equal(np.asarray(got), expected)


# ---------------------------------------------------------------------------------------------
# Sensitivity.


@pytest.mark.parametrize("case", SENSITIVITY_CASES, ids=_id)
def test_adding_a_row_adds_exactly_its_own_votes(case):
    name, metric, k = case
    failures = add_one_failures(name, metric, k, seed=_seed("add-one", case))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", list(KERNELS), ids=_id)
def test_add_one_class_conditional_unequal_classes(name):
    k = max(kk for m, kk in supported(name) if m == "l2")
    failures = labelled_failures(name, "l2", k, seed=_seed("labelled-add-one", name))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", list(KERNELS), ids=_id)
def test_add_one_across_the_default_private_tile(name):
    """511 -> 512 -> 513 rows at the platform's default tile (512 on CPU), compared with the
    rows' singles scored at tile 4: neither the block nor the tile may change a vote."""
    rng = np.random.default_rng(_seed("default-tile", name))
    check = AddOne(name, "float", "l2", 1)
    idx = rng.permutation(POOL)[: DEFAULT_TILE + 1]
    base = idx[: DEFAULT_TILE - 1]
    pos = int(rng.integers(DEFAULT_TILE))
    check.add_one(base, int(idx[DEFAULT_TILE - 1]), pos, tile=None)
    grown = np.insert(base, pos, idx[DEFAULT_TILE - 1])
    check.add_one(grown, int(idx[DEFAULT_TILE]), int(rng.integers(DEFAULT_TILE + 1)), tile=None)
    assert not check.failures, "\n".join(check.failures)


@pytest.mark.parametrize("control", [COMPANY, DOUBLE], ids=lambda c: c.name)
def test_the_sensitivity_check_rejects_broken_kernels(control):
    """Negative controls: the same check flags a kernel whose votes depend on the other rows
    of the block, and one that counts a row's vote twice."""
    failures = add_one_failures(control, "l2", 1, seed=_seed("control", control.name),
                                families=("float",), sizes=(1, 2, 5), draws=2)
    assert failures, f"the add-one check did not flag the broken kernel {control.name!r}"


# ---------------------------------------------------------------------------------------------
# The registry and its errors.


def test_registry_lists_the_shipped_kernels_and_their_declarations():
    assert {"exact", "approx", "pallas_l2"} <= set(KERNELS)
    assert KERNELS["exact"].exact and not KERNELS["approx"].exact
    assert not KERNELS["pallas_l2"].exact
    for kernel in KERNELS.values():
        assert isinstance(kernel, VoteKernel) and get_kernel(kernel.name) is kernel
        for k in (1, 2, 5):
            assert kernel.count_sensitivity(k) == pytest.approx(math.sqrt(k))
            assert kernel.sensitivity(k) == pytest.approx(1.0)
    with pytest.raises(TypeError):
        KERNELS["mine"] = KERNELS["exact"]  # read-only view


def test_exact_kernel_is_the_unchanged_default():
    """kernel="exact" (and the default) call the tiled kernel with the same arguments."""
    p = problem("float")
    blocks = voting.prepare_private(p.pool[:40])
    classes = voting.class_index(np.zeros(N_SYN, int), 1)
    for k, screen in ((1, False), (3, True)):
        direct = vote_counts(blocks, jnp.asarray(p.synthetic), jnp.asarray(classes),
                             score_fn=METRICS["l2"], k=k, synthetic_tile=4096, screen=screen,
                             mesh=None)
        for kw in ({}, {"kernel": "exact"}, {"kernel": KERNELS["exact"]}):
            got = voting.vote(blocks, p.synthetic, classes, k=k, screen=screen, **kw)
            np.testing.assert_array_equal(np.asarray(got), np.asarray(direct))


def test_unknown_and_unsupported_kernels_are_value_errors():
    p = problem("integer")
    args = (p.pool[:5], p.synthetic)
    with pytest.raises(ValueError, match=r"kernel must be .*'exact'.*; got 'nope'"):
        nn_histogram(*args, kernel="nope")
    blocks = voting.prepare_private(p.pool[:5])
    with pytest.raises(ValueError, match="kernel must be"):
        voting.vote(blocks, p.synthetic, voting.class_index(np.zeros(N_SYN, int), 1), kernel=3)
    with pytest.raises(ValueError, match="metric must be one of \\('l2',\\) for kernel"):
        nn_histogram(*args, kernel="pallas_l2", metric="cosine")
    with pytest.raises(ValueError, match="k must be at most 1 for kernel 'pallas_l2'"):
        nn_histogram(*args, kernel="pallas_l2", k=2)
    with pytest.raises(ValueError, match="screen must be None or False for kernel 'approx'"):
        nn_histogram(*args, kernel="approx", screen=True)
    with pytest.raises(ValueError, match="already registered|not yet registered"):
        voting.register_kernel(KERNELS["approx"])
    with pytest.raises(ValueError, match="recall_target"):
        approx_kernel(0.0)
    wrong = block_kernel(lambda x, y, valid, *, k, score_fn: jnp.zeros((1, k), jnp.int32),
                         name="wrong-shape", exact=False)
    with pytest.raises(ValueError, match="nearest"):
        nn_histogram(*args, kernel=wrong)


def test_driver_drops_repeats_padding_and_out_of_range_votes():
    """A block kernel that returns a repeated index, -1 and S still gives every row at most
    one vote per synthetic row (the driver enforces the per-row bound)."""
    def sloppy(x, y, valid, *, k, score_fn):
        bad = jnp.array([0, 0, -1, y.shape[0]], jnp.int32)
        return jnp.broadcast_to(bad, (x.shape[0], 4))

    kernel = block_kernel(sloppy, name="sloppy", exact=False)
    p = problem("integer")
    got = np.asarray(nn_histogram(p.pool[:7], p.synthetic, k=4, kernel=kernel))
    expected = np.zeros(N_SYN, np.int64)
    expected[0] = 7
    np.testing.assert_array_equal(got, expected)
