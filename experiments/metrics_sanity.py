"""Sanity table of the quality metrics on the digits default: real vs real, prior, PE output.

    .venv/bin/python experiments/metrics_sanity.py [--skip-pe] [--inception-weights DIR]

scikit-learn's 1,797 digits are split once (``split(0.5)``, the fixed hash rule of
``pe_jax.data.heldout_mask``) into two halves: A plays the private / training set and B the
real held-out test set. Every row is measured against B:

* ``real (A)``: the other half of the real digits, the best a synthetic set could look;
* ``prior``: fresh glyphs from the public generator (``GlyphGenerator.random``), as many per
  class as A has, i.e. PE's starting point;
* ``PE (eps=4, pixels)``: the final population of the embedded default config run with A as
  its private data, voting in pixel space (the default);
* ``PE (eps=4, encoder)``: the same run voting in the glyph encoder's space (both PE rows are
  omitted with ``--skip-pe``).

Columns: FID in the glyph encoder's feature space and in pixel space, improved precision and
recall (k = 3, encoder features), and the accuracy on B of the downstream CNN trained on the
row's set (``pe_jax.metrics.downstream.DEFAULT_RECIPE``). FID with the FID Inception network
is added when converted weights are given (see ``experiments/convert_inception.py``).
"""

import argparse
import json
import time

import jax
import numpy as np

from pe_jax import embeddings
from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.data import load_sklearn_digits
from pe_jax.metrics import downstream, fid, precision_recall


def prior_samples(generator: GlyphGenerator, labels: np.ndarray, seed: int) -> np.ndarray:
    samples = generator.random(jax.random.key(seed), len(labels), jax.numpy.asarray(labels))
    return np.asarray(generator.images(samples))


def pe_samples(private_images: np.ndarray, private_labels: np.ndarray, embedding: str):
    """The default config's PE run on the given private set, voting in ``embedding`` space;
    its final images and labels."""
    from pe_jax import evolve, privacy
    from pe_jax.configs import DEFAULT_CONFIG, build, load_config

    config = load_config(DEFAULT_CONFIG)
    generator = GlyphGenerator(resolution=private_images.shape[1])
    sigma, _ = build.noise_plan(config.privacy, config.pe)
    pe_config = build.pe_config(config.pe, noise_multiplier=sigma, non_private=False,
                                num_classes=10)
    result = evolve.run(jax.random.key(config.seed), pe_config, generator=generator,
                        embedder=embeddings.make_embedder(embedding),
                        private_images=private_images, private_labels=private_labels,
                        ledger=privacy.PrivacyLedger(config.privacy.delta,
                                                     epsilon_budget=config.privacy.epsilon),
                        noise_rng=np.random.default_rng(0), progress=False)
    return np.asarray(generator.images(result.samples)), np.asarray(result.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-pe", action="store_true", help="leave out the PE row")
    parser.add_argument("--inception-weights", default=None,
                        help="a checkpoint from experiments/convert_inception.py")
    parser.add_argument("--json", default=None, help="also write the table as JSON here")
    args = parser.parse_args()

    a, b = load_sklearn_digits().split(0.5)
    test_images, test_labels = b.images, b.labels
    generator = GlyphGenerator(resolution=8)
    sets = {"real (A)": (a.images, a.labels),
            "prior": (prior_samples(generator, a.labels, seed=1), a.labels)}
    for embedding in () if args.skip_pe else ("pixels", "encoder"):
        start = time.perf_counter()
        sets[f"PE (eps=4, {embedding})"] = pe_samples(a.images, a.labels, embedding)
        print(f"PE run voting in {embedding} space: {time.perf_counter() - start:.0f} s")

    spaces = {"encoder": embeddings.make_embedder("encoder"),
              "pixels": embeddings.make_embedder("pixels")}
    if args.inception_weights:
        spaces["inception"] = embeddings.make_embedder("inception",
                                                       weights=args.inception_weights)
    reference = {name: np.asarray(embed(test_images)) for name, embed in spaces.items()}
    table = {}
    for row, (images, labels) in sets.items():
        start = time.perf_counter()
        features = {name: np.asarray(embed(images)) for name, embed in spaces.items()}
        values = {f"FID ({name})": fid.fid(features[name], reference[name]) for name in spaces}
        pr = precision_recall.precision_recall(reference["encoder"], features["encoder"], k=3)
        values.update(precision=pr.precision, recall=pr.recall, n=len(images))
        values["accuracy"] = downstream.downstream_accuracy(images, labels, test_images,
                                                            test_labels, 10)
        values["seconds"] = round(time.perf_counter() - start, 1)
        table[row] = values

    columns = list(next(iter(table.values())))
    print(f"reference: real half B, {len(b.labels)} digits\n")
    print("| set | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for row, values in table.items():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in values.values()]
        print(f"| {row} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(table, handle, indent=2)


if __name__ == "__main__":
    main()
