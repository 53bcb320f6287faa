"""The PE paper's CIFAR-10 setting (Lin et al., ICLR 2024), for the data and models you bring.

Private data: CIFAR-10's training split (50,000 32x32 RGB images, 10 classes) from a TFDS
``data_dir`` where it was prepared as array_record (``tfds build cifar10
--file_format=array_record --data_dir DIR`` on a machine with network). 10 % of it
(``data.heldout``, the fixed hash split) is held out as the metrics' real reference rows: the
paper used all 50,000 as private data and measured FID against them, which this framework does
not do, since metrics are not noised.

Public generator: the paper used a diffusion model pretrained on ImageNet (Nichol and
Dhariwal's improved DDPM), whose classes are not CIFAR-10's. Here ``generator.prior`` must be a
class-conditional ``pe_jax.checkpoints`` diffusion prior at 32x32x3 whose class names are
CIFAR-10's, in order, trained on public data only (none ships: no pretrained weights can be
downloaded here). Embedding: the FID Inception-v3 network, as in the paper
(``embedding.checkpoint``: weights converted by ``experiments/convert_inception.py``).

Settings of the reference implementation's CIFAR-10 example (microsoft/DPSDA,
``example/image/cifar10.py``): class-conditional generation; Inception embeddings; L2 nearest
neighbour (k = 1); 50,000 synthetic images (5,000 per class) in every iteration; T = 20
iterations; histogram threshold H = 10; lookahead L = 8; 100 respaced sampler steps; noise
multiplier 5 * sqrt(2) at delta = 1e-5. This project calibrates the noise from epsilon:
epsilon = 2.59 gives that noise multiplier over 20 releases under this project's accountant
(``pe_jax.privacy.accounting.epsilon(5 * sqrt(2), 1e-5, 20)`` = 2.594). Not carried over: the
reference's variation degrees (sampler timesteps 2, 4, ..., 40 of 100, one per iteration, in
an API whose degrees are not this project's fraction of the steps); here a geometric
0.6 -> 0.2. At 5,000 samples a class the run needs an accelerator's memory; ``pe-jax run``
refuses it, with the limit, where it does not fit.

Run it with::

    pe-jax run --config pe_jax/configs/cifar10.py --set data.data_dir=DIR \
        --set generator.prior=PRIOR --set embedding.checkpoint=INCEPTION \
        --set metrics.checkpoint=INCEPTION
"""

import ml_collections

from pe_jax.configs.sections import run_config


def get_config() -> ml_collections.ConfigDict:
    return run_config(
        "cifar10",
        data={"source": "tfds", "name": "cifar10", "split": "train", "data_dir": "",
              "heldout": 0.1},
        generator={"name": "diffusion", "prior": "", "steps": 100},
        embedding={"name": "inception", "checkpoint": ""},
        pe={"iterations": 20, "samples_per_class": 5000, "k": 1, "threshold": 10.0,
            "lookahead": 8, "degree_start": 0.6, "degree_end": 0.2},
        privacy={"epsilon": 2.59, "delta": 1e-5},
        metrics={"names": "fid,precision_recall,accuracy", "every": 5,
                 "embedding": "inception", "checkpoint": ""},
    )
