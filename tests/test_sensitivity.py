"""PRIVACY_TESTS A, replace-one: swapping one private row moves the vote histogram by L2 norm
at most sqrt(2), and a replace-one ledger accounts for that larger sensitivity."""

import numpy as np
import pytest

from pe_jax import privacy
from pe_jax.voting import nn_histogram


@pytest.mark.parametrize("k", [1, 2, 4])
def test_replacing_one_row_moves_the_histogram_by_at_most_sqrt2(k):
    rng = np.random.default_rng(7 + k)
    # Small integers: exact float32 scores, duplicated rows and exact distance ties.
    private = rng.integers(-2, 3, (60, 3)).astype(np.float32)
    synthetic = rng.integers(-2, 3, (15, 3)).astype(np.float32)
    synthetic[-1] = synthetic[0]
    weighted = lambda p: np.asarray(nn_histogram(p, synthetic, k=k), np.float64) / np.sqrt(k)
    base = weighted(private)
    largest = 0.0
    for i in range(0, 60, 6):
        for replacement in (private[(i + 1) % 60], rng.integers(-2, 3, 3).astype(np.float32)):
            neighbour = private.copy()
            neighbour[i] = replacement
            diff = weighted(neighbour) - base
            norm = np.linalg.norm(diff)
            assert norm <= np.sqrt(2) * (1 + 1e-6)
            largest = max(largest, norm)
    assert largest == pytest.approx(np.sqrt(2), rel=1e-6)  # the bound is reached


def test_replace_one_ledger_spends_more_than_add_remove():
    event = privacy.ReleaseEvent("discrete_gaussian", 4.0)
    spent = {}
    for adjacency in ("add_remove", "replace_one"):
        ledger = privacy.PrivacyLedger(1e-5, adjacency=adjacency)
        for _ in range(5):
            ledger.record(event)
        spent[adjacency] = ledger.epsilon_spent()
    assert spent["replace_one"] == pytest.approx(
        privacy.epsilon(4.0, 1e-5, 5, adjacency="replace_one"))
    assert spent["replace_one"] > 1.3 * spent["add_remove"]
