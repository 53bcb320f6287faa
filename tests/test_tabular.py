"""Tabular PE: the table loader, the mutation generator, the one-hot embedder, marginal TVD,
and a short end-to-end run through the unchanged PE driver, vote, release and ledger."""

import gzip
import json

import jax
import numpy as np
import pytest

from pe_jax import evolve, privacy, tabular
from pe_jax.data.types import heldout_mask

DOMAIN = {"a": 3, "b": 2, "c": 5}


def _write(tmp_path, header, rows, domain=DOMAIN, name="t.csv"):
    text = header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    csv = tmp_path / name
    if name.endswith(".gz"):
        csv.write_bytes(gzip.compress(text.encode()))
    else:
        csv.write_text(text)
    domain_path = tmp_path / "domain.json"
    domain_path.write_text(json.dumps(domain))
    return csv, domain_path


@pytest.fixture(scope="module")
def adult():
    return tabular.load_adult()


def test_load_csv_orders_columns_by_domain_and_reads_gzip(tmp_path):
    csv, dom = _write(tmp_path, "c,a,b", [[4, 2, 1], [0, 0, 0]], name="t.csv.gz")
    table = tabular.load_csv(csv, dom)
    assert table.attributes == ("a", "b", "c") and table.sizes == (3, 2, 5)
    np.testing.assert_array_equal(table.codes, [[2, 1, 4], [0, 0, 0]])
    assert table.codes.dtype == np.int32


@pytest.mark.parametrize("header, rows, domain, match", [
    ("a,b", [[0, 0]], DOMAIN, "missing \\['c'\\]"),
    ("a,b,c,d", [[0, 0, 0, 0]], DOMAIN, "not in the domain \\['d'\\]"),
    ("a,b,a", [[0, 0, 0]], DOMAIN, "twice"),
    ("a,b,c", [[0, 0, 5]], DOMAIN, "outside it, in \\['c'\\]"),
    ("a,b,c", [[0, -1, 0]], DOMAIN, "outside it, in \\['b'\\]"),
    ("a,b,c", [[0, 0, "x"]], DOMAIN, "integer codes"),
    ("a,b,c", [[0, 0, 1.5]], DOMAIN, "integer codes"),
    ("a,b,c", [[0, 0, 0]], {"a": 3, "b": 0, "c": 5}, "size of 'b'"),
    ("a,b,c", [[0, 0, 0]], {}, "non-empty dict"),
])
def test_load_csv_refuses_bad_tables(tmp_path, header, rows, domain, match):
    csv, dom = _write(tmp_path, header, rows, domain)
    with pytest.raises(ValueError, match=match):
        tabular.load_csv(csv, dom)


def test_table_checks_shape():
    with pytest.raises(ValueError, match="shape"):
        tabular.Table(np.zeros((4, 2), np.int32), DOMAIN)


def test_adult_is_embedded_with_its_domain(adult):
    assert len(adult) == 48842 and len(adult.domain) == 14
    assert adult.domain["age"] == 85 and adult.domain["income>50K"] == 2
    assert np.all(adult.codes.max(axis=0) < np.asarray(adult.sizes))


def test_adult_split_is_the_fixed_hash_rule(adult):
    train, test = tabular.load_adult_split()
    held = heldout_mask(len(adult), tabular.ADULT_TEST_FRACTION)
    np.testing.assert_array_equal(test.codes, adult.codes[held])
    np.testing.assert_array_equal(train.codes, adult.codes[~held])
    assert 0.19 < len(test) / len(adult) < 0.21


def test_random_draws_inside_the_domain_from_the_prior():
    gen = tabular.TabularGenerator(DOMAIN, prior=[[1, 0, 0], [1, 1], [0, 0, 0, 1, 3]])
    rows = np.asarray(gen.random(jax.random.key(0), 4000, None))
    assert rows.shape == (4000, 3) and rows.dtype == np.int32
    assert np.all(rows[:, 0] == 0) and set(np.unique(rows[:, 2])) == {3, 4}
    assert abs((rows[:, 2] == 4).mean() - 0.75) < 0.03
    uniform = np.asarray(tabular.TabularGenerator(DOMAIN).random(jax.random.key(1), 6000, None))
    for column, size in enumerate(DOMAIN.values()):
        np.testing.assert_allclose(np.bincount(uniform[:, column], minlength=size) / 6000,
                                   1 / size, atol=0.03)
    with pytest.raises(ValueError, match="prior\\[1\\]"):
        tabular.TabularGenerator(DOMAIN, prior=[[1, 1, 1], [1, 1, 1], [1] * 5])


def test_variation_redraws_about_degree_of_the_cells():
    domain = {f"x{i}": 50 for i in range(10)}
    gen = tabular.TabularGenerator(domain)
    rows = gen.random(jax.random.key(0), 2000, None)
    variation = jax.jit(gen.variation)
    np.testing.assert_array_equal(variation(jax.random.key(1), rows, 0.0), rows)
    for degree in (0.3, 1.0):
        moved = np.asarray(variation(jax.random.key(2), rows, degree)) != np.asarray(rows)
        # A re-drawn cell keeps its value with probability 1/50.
        assert abs(moved.mean() - degree * 49 / 50) < 0.02
    out = np.asarray(variation(jax.random.key(3), rows, 0.37))
    assert out.shape == rows.shape and out.dtype == np.int32
    assert out.min() >= 0 and out.max() < 50


def test_class_conditional_generator_keeps_the_label_column():
    gen = tabular.TabularGenerator(DOMAIN, label_attribute="b")
    labels = np.arange(100) % 2
    rows = gen.random(jax.random.key(0), 100, labels)
    np.testing.assert_array_equal(rows[:, 1], labels)
    np.testing.assert_array_equal(gen.variation(jax.random.key(1), rows, 1.0)[:, 1], labels)
    with pytest.raises(ValueError, match="label_attribute"):
        tabular.TabularGenerator(DOMAIN).random(jax.random.key(0), 4, labels[:4])


def test_one_hot_embedder_gives_weighted_hamming_distances():
    rows = np.array([[0, 0, 0], [2, 0, 4], [2, 1, 4]])
    features = np.asarray(tabular.OneHotEmbedder(DOMAIN)(tabular.as_images(rows)))
    assert features.shape == (3, 10)
    squared = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.testing.assert_allclose(squared, [[0, 2, 3], [2, 0, 1], [3, 1, 0]], atol=1e-6)
    weighted = tabular.OneHotEmbedder(DOMAIN, {"a": 2.0, "c": 0.0})(tabular.as_images(rows))
    weighted = np.asarray(weighted)
    np.testing.assert_allclose(((weighted[0] - weighted[1]) ** 2).sum(), 4.0, atol=1e-6)
    with pytest.raises(ValueError, match="outside the domain"):
        tabular.OneHotEmbedder(DOMAIN, {"z": 1.0})
    with pytest.raises(ValueError, match="shape"):
        tabular.OneHotEmbedder(DOMAIN)(np.zeros((2, 4, 1, 1), np.float32))


def test_marginal_tvd(adult):
    rows = adult.codes[:3000]
    assert tabular.mean_marginal_tvd(rows, rows, adult.domain) == 0.0
    assert tabular.marginal_tvds(rows, rows, adult.domain).shape == (91,)
    uniform = tabular.TabularGenerator(adult.domain).random(jax.random.key(0), 3000, None)
    assert tabular.mean_marginal_tvd(rows, np.asarray(uniform), adult.domain) > 0.5
    # Against hand counts on a tiny table (one row shared, one not).
    real, synth = np.array([[0, 0, 0], [1, 1, 0]]), np.array([[0, 0, 0], [0, 0, 1]])
    tvds = tabular.marginal_tvds(real, synth, DOMAIN)
    np.testing.assert_allclose(tvds, [0.5, 0.5, 0.5])  # (a,b), (a,c), (b,c)
    assert tabular.mean_marginal_tvd(real, synth, DOMAIN, way=3) == 0.5
    np.testing.assert_allclose(tabular.marginal_tvds(real, synth + [2, 0, 3], DOMAIN, way=1),
                               [1.0, 0.5, 1.0])  # disjoint supports in a and c
    with pytest.raises(ValueError, match="outside the domain"):
        tabular.mean_marginal_tvd(real, synth + 4, DOMAIN)


def test_pe_on_adult_lowers_two_way_tvd(adult):
    """T = 3 on a 2,000-row subsample, seeded noise: the existing driver, vote and ledger."""
    private = adult.take(np.random.default_rng(0).choice(len(adult), 2000, replace=False))
    domain = adult.domain
    generator = tabular.TabularGenerator(domain)
    config = evolve.PEConfig(iterations=3, noise_multiplier=2.0, samples_per_class=(500,),
                             degrees=evolve.degree_schedule(0.4, 0.2, 3),
                             image_range=tabular.image_range(domain))
    initial = []
    result = evolve.run(jax.random.key(0), config, generator=generator,
                        embedder=tabular.OneHotEmbedder(domain),
                        private_images=tabular.as_images(private.codes), private_labels=None,
                        ledger=privacy.PrivacyLedger(1e-5),
                        noise_rng=np.random.default_rng(0), progress=False,
                        on_start=lambda samples, labels: initial.append(np.asarray(samples)))
    final = np.asarray(result.samples)
    assert final.shape == (500, 14) and final.dtype == np.int32
    assert len(tabular.Table(final, domain)) == 500  # every code inside the domain
    before = tabular.mean_marginal_tvd(private, initial[0], domain)
    after = tabular.mean_marginal_tvd(private, final, domain)
    assert after < before - 0.05, (before, after)
    assert len(result.ledger.events) == 3
