"""The PE paper's Camelyon17 setting (Lin et al., ICLR 2024), for the data and models you bring.

Private data: Camelyon17 (WILDS) histology patches, 2 classes (normal tissue / tumour), read
with ``tfds.data_source`` from a ``data_dir`` where the user prepared it as an array_record
data set named ``camelyon17`` (TFDS 4.9 has no Camelyon17 builder, only ``patch_camelyon``,
which comes from Camelyon16; TFDS opens a prepared data set from its files without the
builder's code). Its features must be ``image`` and a ``label`` ClassLabel; the class names
come from it. 10 % of the rows (``data.heldout``, the fixed hash split) are held out as the
metrics' reference rows. The full training split is about 300,000 RGB patches of 96x96 pixels
(33 GB as float32): read a slice such as ``--set data.split=train[:20%]`` where memory is short.

Public generator: the paper used a diffusion model pretrained on ImageNet; here
``generator.prior`` must be a class-conditional ``pe_jax.checkpoints`` diffusion prior at the
data's resolution and channels with the data's class names, trained on public data only.
Embedding: the FID Inception-v3 network, as in the paper.

Settings of the reference implementation's Camelyon17 example (microsoft/DPSDA,
``example/image/camelyon17.py``): Inception embeddings (at 64x64 there); L2 nearest neighbour
(k = 1); 302,436 synthetic images in every iteration (151,218 per class here); T = 30
iterations; histogram threshold H = 4; lookahead L = 8; noise multiplier 2 * sqrt(2) at
delta = 3e-6. This project calibrates the noise from epsilon: epsilon = 10.12 gives that noise
multiplier over 30 releases under this project's accountant
(``pe_jax.privacy.accounting.epsilon(2 * sqrt(2), 3e-6, 30)`` = 10.123). Not carried over: the
reference's variation degrees and its mix of DDIM-10 and 40-step samplers per iteration; here
a geometric 0.6 -> 0.2 with 50 steps. At this size the run needs accelerators' memory;
``pe-jax run`` refuses it, with the limit, where it does not fit.

Run it with::

    pe-jax run --config pe_jax/configs/camelyon17.py --set data.data_dir=DIR \
        --set generator.prior=PRIOR --set embedding.checkpoint=INCEPTION \
        --set metrics.checkpoint=INCEPTION
"""

import ml_collections

from pe_jax.configs.sections import run_config


def get_config() -> ml_collections.ConfigDict:
    return run_config(
        "camelyon17",
        data={"source": "tfds", "name": "camelyon17", "split": "train", "data_dir": "",
              "heldout": 0.1},
        generator={"name": "diffusion", "prior": "", "steps": 50},
        embedding={"name": "inception", "checkpoint": ""},
        pe={"iterations": 30, "samples_per_class": 151218, "k": 1, "threshold": 4.0,
            "lookahead": 8, "degree_start": 0.6, "degree_end": 0.2},
        privacy={"epsilon": 10.12, "delta": 3e-6},
        metrics={"names": "fid,precision_recall,accuracy", "every": 5,
                 "embedding": "inception", "checkpoint": ""},
    )
