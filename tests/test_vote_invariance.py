"""PRIVACY_TESTS A, tested the way it breaks: a private row's votes depend on nothing but that row.

The vote histogram has add/remove L2 sensitivity 1 only if adding a row ``x`` to any private set
``P`` changes it by ``x``'s own votes, ``hist(P + [x]) - hist(P) == hist([x])``, and so
``hist(P) == sum of hist([r]) over the rows r of P``.  Sensitivity tests on tie-free or exactly
representable data pass even when a row's float32 scores change with its company (the kernel
once scored a 1-row block bitwise differently from a 2-row one, so a near-tie flipped when a
second row joined: L2 change up to sqrt(5)).  These tests put almost every private row on a
float near-tie or an exact tie (:mod:`near_tie_data`) and check the two identities exactly, for
N_priv from 1 to 9, across the default private tile (511, 512, 513) and a small explicit one,
for every metric, k in {1, 3}, screening on and off, and class-conditional voting.  They say
nothing about HOW the kernel keeps a row's votes independent of its block.
"""

from __future__ import annotations

import zlib

import jax
import numpy as np
import pytest

from near_tie_data import FAMILIES, N_CLASSES, N_SYN, Tally, make_problem
from pe_jax import voting
from pe_jax.voting import nn_histogram

METRIC_NAMES = ("l2", "cosine", "inner_product")
BROKEN = "votes depend on more than the row itself"
# The platform's default private tile (512 on CPU): the kernel used to clip blocks to N_priv.
TILE = getattr(voting, "DEFAULT_TILES", {}).get(jax.default_backend(), (512,))[0]
POOL = max(600, TILE + 2)  # rows per problem; small cases draw from the first SMALL_POOL
SMALL_POOL = 64


def _seed(*key) -> int:
    return zlib.crc32(repr(key).encode())


_PROBLEMS: dict[str, object] = {}


def problem(family: str):
    if family not in _PROBLEMS:
        _PROBLEMS[family] = make_problem(family, seed=_seed("invariance", family), n_pool=POOL)
    return _PROBLEMS[family]


def hist(family, idx, metric, k, screen, labelled=False, **kwargs) -> np.ndarray:
    """nn_histogram of the pool rows ``idx`` (in that order)."""
    p = problem(family)
    idx = np.asarray(idx, int)
    if labelled:
        kwargs.update(private_labels=p.pool_labels[idx], synthetic_labels=p.synthetic_labels)
    out = np.asarray(
        nn_histogram(p.pool[idx], p.synthetic, k=k, metric=metric, screen=screen, **kwargs)
    )
    assert out.shape == (N_SYN,) and out.dtype == np.int32, (out.shape, out.dtype)
    return out.astype(np.int64)


_SINGLES: dict[tuple, dict[int, np.ndarray]] = {}


def singles(family, idx, metric, k, screen, labelled=False) -> np.ndarray:
    """(len(idx), N_SYN) votes of each row voting alone, ``hist([r])`` (cached per row)."""
    cache = _SINGLES.setdefault((family, metric, k, screen, labelled), {})
    p = problem(family)
    for i in map(int, idx):
        if i not in cache:
            votes = hist(family, [i], metric, k, screen, labelled)
            # one row: k votes for k distinct synthetic rows (of its own class)
            assert votes.sum() == k and votes.max() == 1, votes
            if labelled:
                assert (p.synthetic_labels[votes > 0] == p.pool_labels[i]).all()
            cache[i] = votes
    return np.array([cache[int(i)] for i in idx])


def check_add_one(tally, family, p_idx, x, pos, opts, **kwargs):
    """Insert pool row ``x`` into ``p_idx`` at ``pos``; check both identities."""
    with_x = np.insert(np.asarray(p_idx, int), pos, x)
    before = hist(family, p_idx, **opts, **kwargs) if len(p_idx) else np.zeros(N_SYN, np.int64)
    after = hist(family, with_x, **opts, **kwargs)
    own = singles(family, [x], **opts)[0]
    n = len(p_idx)
    tally.check(np.array_equal(after - before, own), f"{family} add-one N={n}->{n + 1}")
    for rows, h in ((p_idx, before), (with_x, after)):
        if len(rows) > 1:
            tally.check(
                np.array_equal(h, singles(family, rows, **opts).sum(0)),
                f"{family} hist(P) == sum of singles, N={len(rows)}",
            )


ALL_CONFIGS = [(m, k, s) for m in METRIC_NAMES for k in (1, 3) for s in (False, True)]


def _config_id(c):
    return f"{c[0]}-k{c[1]}-{'screen' if c[2] else 'f32'}"


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=_config_id)
def test_adding_a_row_adds_exactly_its_own_votes(config):
    """N_priv 0..8 -> 1..9 at the default tile: a row's votes do not depend on how many
    other rows there are, which they are, or where in the block the new row lands (front,
    middle, end; sometimes a duplicate of a row already there)."""
    metric, k, screen = config
    opts = dict(metric=metric, k=k, screen=screen)
    # N_priv after adding the row: every size for l2 in float32, a spread otherwise (each
    # size is a compilation; the screened kernel compiles slowest)
    sizes = {
        ("l2", False): range(1, 10),
        ("l2", True): (1, 2, 5, 9),
    }.get((metric, screen), (1, 2, 9) if screen else (1, 2, 3, 6, 9))
    rng = np.random.default_rng(_seed("add-one", config))
    tally = Tally(BROKEN)
    for family in FAMILIES:
        for n in sizes:
            for draw in range(12 if n <= 3 else 6):
                idx = rng.choice(SMALL_POOL, n, replace=False)
                if draw % 3 == 2 and n > 1:
                    idx[-1] = idx[0]  # the new row duplicates one already there
                pos = int(rng.integers(n))
                check_add_one(tally, family, idx[:-1], idx[-1], pos, opts)
    tally.assert_clean()


TILE_CASES = [
    ("l2", 1, False),
    ("l2", 1, True),
    ("l2", 3, False),
    ("cosine", 3, True),
    ("inner_product", 1, False),
]


@pytest.mark.parametrize("config", TILE_CASES, ids=_config_id)
def test_rows_across_the_default_private_tile(config):
    """N_priv = tile - 1 -> tile -> tile + 1 (511, 512, 513 at the CPU default tile): the last
    block may be partly empty or overlap the previous one; no row's votes may notice."""
    metric, k, screen = config
    opts = dict(metric=metric, k=k, screen=screen)
    rng = np.random.default_rng(_seed("tile", config))
    tally = Tally(BROKEN)
    family = "float"  # the exact-tie family cannot flip; keep the 513 singles to one family
    idx = rng.permutation(POOL)[: TILE + 1]
    base = idx[: TILE - 1]
    pos = int(rng.integers(TILE))
    check_add_one(tally, family, base, idx[TILE - 1], pos, opts)
    grown = np.insert(base, pos, idx[TILE - 1])
    check_add_one(tally, family, grown, idx[TILE], int(rng.integers(TILE + 1)), opts)
    # and the row order must not matter: the same 513 rows reversed
    tally.check(
        np.array_equal(
            hist(family, idx[::-1], **opts), singles(family, idx, **opts).sum(0)
        ),
        f"{family} reversed order, N={TILE + 1}",
    )
    tally.assert_clean()


SMALL_TILE_CASES = [
    ("l2", 1, False),
    ("l2", 3, True),
    ("cosine", 1, True),
    ("inner_product", 3, False),
]


@pytest.mark.parametrize("config", SMALL_TILE_CASES, ids=_config_id)
def test_rows_across_a_small_explicit_private_tile(config):
    """private_tile=4 with N_priv 4 -> 5 and 8 -> 9: whole, partial and overlapping
    blocks give every row the votes it casts alone (singles at the default tile)."""
    metric, k, screen = config
    opts = dict(metric=metric, k=k, screen=screen)
    rng = np.random.default_rng(_seed("tile4", config))
    tally = Tally(BROKEN)
    for family in FAMILIES:
        for n in (4, 8):
            for _ in range(8):
                idx = rng.choice(SMALL_POOL, n + 1, replace=False)
                pos = int(rng.integers(n + 1))
                check_add_one(tally, family, idx[:-1], idx[-1], pos, opts, private_tile=4)
    tally.assert_clean()


LABEL_CASES = [
    ("l2", 1, False),
    ("l2", 1, True),
    ("l2", 3, False),
    ("l2", 3, True),
    ("cosine", 3, True),
    ("inner_product", 1, False),
]


@pytest.mark.parametrize("config", LABEL_CASES, ids=_config_id)
def test_class_conditional_votes_are_per_row(config):
    """Class-conditional voting in one call: 9 private rows in classes of 5, 3, 1 and 0 rows
    (the classes permuted per draw).  Each row votes only in its own class (checked on every
    single), hist(P) is the sum of singles, and adding a row of each class, the empty one
    and the singleton included, adds exactly that row's votes."""
    metric, k, screen = config
    opts = dict(metric=metric, k=k, screen=screen, labelled=True)
    rng = np.random.default_rng(_seed("labels", config))
    tally = Tally(BROKEN)
    for family in FAMILIES:
        labels = problem(family).pool_labels
        for _ in range(3):
            counts = dict(zip(rng.permutation(N_CLASSES), (5, 3, 1, 0)))
            p_idx = rng.permutation(np.concatenate([
                rng.choice(np.flatnonzero(labels == c), n, replace=False)
                for c, n in counts.items()
            ]))
            for c in range(N_CLASSES):
                x = rng.choice(np.setdiff1d(np.flatnonzero(labels == c), p_idx))
                pos = int(rng.integers(len(p_idx) + 1))
                check_add_one(tally, family, p_idx, x, pos, opts)
    tally.assert_clean()


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_screen_changes_no_vote(metric, k):
    """The bfloat16 screen (screen=True, forced even on this small problem) only decides
    which rows to rescore: every row's votes, alone and in a 9-row set, equal those
    without it, near-ties included."""
    rng = np.random.default_rng(_seed("screen", metric, k))
    labelled = (False, True) if metric == "l2" else (False,)
    for family in FAMILIES:
        for lab in labelled:
            rows = np.arange(SMALL_POOL)
            on = singles(family, rows, metric, k, True, lab)
            off = singles(family, rows, metric, k, False, lab)
            differ = np.flatnonzero((on != off).any(axis=1))
            assert differ.size == 0, f"{family} labelled={lab}: rows {differ} vote differently"
            for _ in range(4):
                idx = rng.choice(SMALL_POOL, 9, replace=False)
                np.testing.assert_array_equal(
                    hist(family, idx, metric, k, True, lab),
                    hist(family, idx, metric, k, False, lab),
                )
