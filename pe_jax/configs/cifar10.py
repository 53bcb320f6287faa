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

What is taken from the paper, as recalled without the paper at hand (check before quoting):
class-conditional generation; Inception embeddings; k = 1 nearest neighbour; 50,000 synthetic
images (5,000 per class); privacy (0.67, 1e-5), the smallest epsilon of the paper's CIFAR-10
results. NOT recalled, and left at this project's defaults: the number of iterations (set to
20 here), the threshold H (0 here), the lookahead L (0 here; the paper used lookahead), the
variation degrees (a geometric 0.6 -> 0.2 here; the paper's were DDIM timesteps of its own
schedule) and the sampler's step count (50 here). At 5,000 samples a class the run needs an
accelerator's memory; ``pe-jax run`` refuses it, with the limit, where it does not fit.

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
        generator={"name": "diffusion", "prior": "", "steps": 50},
        embedding={"name": "inception", "checkpoint": ""},
        pe={"iterations": 20, "samples_per_class": 5000, "k": 1, "degree_start": 0.6,
            "degree_end": 0.2},
        privacy={"epsilon": 0.67, "delta": 1e-5},
        metrics={"names": "fid,precision_recall,accuracy", "every": 5,
                 "embedding": "inception", "checkpoint": ""},
    )
