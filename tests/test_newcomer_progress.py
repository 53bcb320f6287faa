"""The PE progress bar says what its long phases are doing instead of sitting silent."""

import jax
import numpy as np

from pe_jax import embeddings, evolve, privacy
from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.data import load_sklearn_digits


def test_progress_bar_names_embedding_compiling_and_callbacks(capsys):
    private, _ = load_sklearn_digits().split(0.25)
    keep = private.labels < 2
    config = evolve.PEConfig(iterations=2, noise_multiplier=2.0, samples_per_class=(4, 4),
                             degrees=(0.5, 0.3))
    starts = []
    evolve.run(jax.random.key(0), config, generator=GlyphGenerator(characters="01", resolution=8),
               embedder=embeddings.PixelEmbedder(), private_images=private.images[keep],
               private_labels=private.labels[keep],
               ledger=privacy.PrivacyLedger(1e-5), callbacks=[lambda result: None],
               on_start=lambda samples, labels: starts.append(np.asarray(labels)),
               progress=True)
    err = capsys.readouterr().err
    for phase in ["PE: embedding the private data", "PE: measuring the initial population",
                  "PE: compiling the step", "PE: callbacks of iteration 1", "PE: 100%"]:
        assert phase in err, phase
    assert len(starts) == 1 and starts[0].tolist() == [0] * 4 + [1] * 4
