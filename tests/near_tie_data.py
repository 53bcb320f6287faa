"""Vote data built the way the nearest-neighbour kernel breaks: near-ties everywhere.

A private row's vote is only fragile where two synthetic rows are (nearly) equally near, so
these problems put almost every private row on such a tie, for all three metrics at once:

* ``"float"``: every synthetic row has a mirror image under one reflection
  ``H = I - 2 n n^T`` through the origin (or is fixed by it), and the private rows lie in
  ``n``'s orthogonal complement.  A reflection through the origin whose normal is orthogonal
  to ``x`` keeps ``||x - z||``, ``x . z`` and ``||z||``, so for such an ``x`` each synthetic row
  ties exactly with its mirror image under l2, inner_product and cosine.  Three "anchor" private
  rows ``x`` also get the literal pairs ``x +- a`` and ``x +- d`` (``a``, ``d`` orthogonal to
  ``x`` and to each other, ``|a| < |d|``): a tie for the nearest (k = 1) and one between the
  3rd and 4th nearest (k = 3).  Rows are built in float64 and rounded to float32, so the
  ties are float NEAR-ties (real gaps ~1e-7 relative, the size of float32 rounding): which
  side wins depends on how the kernel rounds.  Synthetic rows are duplicated (exact ties),
  clusters have norms from 0.01 to 100, and ~10 % of the private rows are generic (no tie).
* ``"integer"``: small integers, exact in float32.  Synthetic rows come in pairs that differ
  only in the sign of feature 0 and most private rows have feature 0 equal to zero: EXACT ties
  under every metric, plus duplicated synthetic rows and the ties small integers make anyway.

Each problem also carries class labels (both members of a tie in the same class): four classes
of unequal sizes, each with at least 4 synthetic rows.  ``D`` and ``N_SYN`` are fixed, so the
kernel compiles once per ``N_priv`` and option set, whatever the data.
"""

from __future__ import annotations

import collections

from typing import NamedTuple

import numpy as np

D = 16
N_SYN = 32
N_CLASSES = 4


class Problem(NamedTuple):
    pool: np.ndarray  # (n_pool, D) float32 private rows to draw from
    synthetic: np.ndarray  # (N_SYN, D) float32
    pool_labels: np.ndarray  # (n_pool,) int32
    synthetic_labels: np.ndarray  # (N_SYN,) int32


def _orthonormal(rng, n_vectors: int, against: list[np.ndarray]) -> list[np.ndarray]:
    """``n_vectors`` random unit vectors orthogonal to ``against`` and to each other."""
    basis = [v / np.linalg.norm(v) for v in against]
    out = []
    for _ in range(n_vectors):
        v = rng.normal(size=D)
        for b in basis:
            v -= (v @ b) * b
        v /= np.linalg.norm(v)
        basis.append(v)
        out.append(v)
    return out


def _finish(rng, syn, syn_cls, pool, pool_cls) -> Problem:
    """Shuffle rows (tie partners land in random index order) and round to float32."""
    perm = rng.permutation(len(syn))
    order = rng.permutation(len(pool))
    return Problem(
        pool=np.asarray(pool, np.float64)[order].astype(np.float32),
        synthetic=np.asarray(syn, np.float64)[perm].astype(np.float32),
        pool_labels=np.asarray(pool_cls, np.int32)[order],
        synthetic_labels=np.asarray(syn_cls, np.int32)[perm],
    )


def float_problem(seed: int, n_pool: int) -> Problem:
    rng = np.random.default_rng(seed)
    n = rng.normal(size=D)
    n /= np.linalg.norm(n)
    mirror = np.eye(D) - 2.0 * np.outer(n, n)
    perp = lambda v: v - (v @ n) * n  # noqa: E731

    syn, syn_cls, makers = [], [], []  # makers: (class, function rng -> private row)
    # Anchors: private row x with x +- a (nearest pair) and x +- d (3rd/4th pair).
    for cls, scale in zip((0, 1, 2), (1.0, 10.0, 0.1)):
        x = scale * 4.0 * _orthonormal(rng, 1, [n])[0]
        a, d = _orthonormal(rng, 2, [n, x])
        a, d = 0.5 * scale * a, 1.0 * scale * d
        syn += [x + a, x - a, x + d, x - d]
        syn_cls += [cls] * 4

        def anchor_row(rng, x=x, a=a, d=d, scale=scale):
            v = 0.2 * scale * rng.normal(size=D)
            for b in (n, a, d):  # keep both pairs tied
                v -= (v @ b) / (b @ b) * b
            return x + v if rng.random() < 0.85 else x

        makers.append((cls, anchor_row))
    # Mirrored pairs (z, Hz) in clusters of very different norms.
    centres = rng.normal(size=(8, D))
    for i, (cls, scale) in enumerate(
        zip((0, 0, 0, 1, 1, 2, 3, 3), (1.0, 0.01, 1.0, 3.0, 1.0, 100.0, 1.0, 0.3))
    ):
        z = scale * (centres[i] + 0.3 * rng.normal(size=D))
        syn += [z, mirror @ z]
        syn_cls += [cls, cls]

        def pair_row(rng, z=z, scale=scale):
            row = z + 0.3 * scale * rng.normal(size=D)
            return perp(row) if rng.random() < 0.9 else row  # 10 %: generic, no tie

        makers.append((cls, pair_row))
    # Exact duplicates: a whole pair (keeps the mirror symmetry) and two anchor rows.
    for j in (12, 13, 0, 7):
        syn.append(syn[j].copy())
        syn_cls.append(syn_cls[j])
    assert len(syn) == N_SYN

    pool, pool_cls = [], []
    for _ in range(n_pool):
        cls, make = makers[rng.integers(len(makers))]
        pool.append(make(rng))
        pool_cls.append(cls)
    return _finish(rng, syn, syn_cls, pool, pool_cls)


def integer_problem(seed: int, n_pool: int) -> Problem:
    rng = np.random.default_rng(seed)
    syn, syn_cls = [], []
    pair_classes = (0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3)
    for cls in pair_classes:
        z = rng.integers(-3, 4, D).astype(np.float64)
        z[0] = rng.choice([-3, -2, -1, 1, 2, 3])
        twin = z.copy()
        twin[0] = -z[0]
        syn += [z, twin]
        syn_cls += [cls, cls]
    for j in (0, 5, 18):  # exact duplicates
        syn.append(syn[j].copy())
        syn_cls.append(syn_cls[j])
    for cls in (3, 3, 2, 1, 3):  # unpaired rows
        syn.append(rng.integers(-3, 4, D).astype(np.float64))
        syn_cls.append(cls)
    assert len(syn) == N_SYN
    syn_arr, syn_cls_arr = np.array(syn), np.array(syn_cls)

    pool, pool_cls = [], []
    for _ in range(n_pool):
        j = rng.integers(N_SYN)
        row = syn_arr[j].copy()
        row[rng.integers(1, D, 2)] += rng.integers(-1, 2, 2)
        if rng.random() < 0.85:
            row[0] = 0.0  # equidistant from both members of every pair
        pool.append(row)
        pool_cls.append(syn_cls_arr[j])
    return _finish(rng, syn, syn_cls, pool, pool_cls)


FAMILIES = {"float": float_problem, "integer": integer_problem}


def make_problem(family: str, seed: int = 0, n_pool: int = 64) -> Problem:
    return FAMILIES[family](seed, n_pool)


class Tally:
    """Counts failed draws per case, so one assertion reports every broken case."""

    def __init__(self, what_breaks: str):
        self.what_breaks = what_breaks
        self.runs = collections.Counter()
        self.fails = collections.Counter()

    def check(self, ok: bool, case: str):
        self.runs[case] += 1
        self.fails[case] += not ok

    def assert_clean(self):
        assert sum(self.runs.values()), "nothing was checked"
        broken = [
            f"{c}: {self.fails[c]} of {self.runs[c]} draws" for c in self.runs if self.fails[c]
        ]
        assert not broken, f"{self.what_breaks}:\n  " + "\n  ".join(broken)
