"""PE on Fashion-MNIST (60,000 28x28 grey training images, 10 classes) with a diffusion prior.

Data: the real Fashion-MNIST training split as Debian's ``dataset-fashion-mnist`` package
installs it (``apt-get install dataset-fashion-mnist``; ``data.path`` names another folder with
the same four IDX files). The same images from a prepared TFDS ``data_dir``::

    --set data.source=tfds --set data.name=fashion_mnist --set data.data_dir=DIR

10 % of the training rows (``data.heldout``, the fixed hash split) are held out as the real
reference rows of the downstream accuracy; the other 54,000 are private. The official 10,000
test images are not used here.

Generator: there is no default. ``generator.prior`` must name a diffusion checkpoint
(``pe_jax.checkpoints``, e.g. from ``pe-jax train-prior``) trained on PUBLIC data at 28x28x1:
class-conditional with Fashion-MNIST's class names in order, or unconditional (then it serves
any classes; ``experiments/fashion_disjoint.py`` trains two on class-disjoint public rows). A
prior trained on any of the private rows would make the guarantee void.

Embedding: the pixels (784 values), since no Inception weights ship with pe_jax; with converted
FID Inception weights ``--set embedding.name=inception --set embedding.checkpoint=DIR`` votes in
the feature space the PE paper used. Privacy: (10, 1e-5)-DP by default; the issue's tables
also use ``--set privacy.epsilon=1``. The population size, iteration count and degree
schedule are this project's defaults for small grey images, not settings taken from a paper;
they were not tuned on Fashion-MNIST.

Run it with::

    pe-jax run --config pe_jax/configs/fashion_mnist.py --set generator.prior=DIR
"""

import ml_collections

from pe_jax.configs.sections import run_config


def get_config() -> ml_collections.ConfigDict:
    return run_config(
        "fashion_mnist",
        data={"source": "fashion_mnist_debian", "split": "train", "heldout": 0.1},
        generator={"name": "diffusion", "prior": "", "steps": 25},
        embedding={"name": "pixels"},
        pe={"iterations": 10, "samples_per_class": 1000, "degree_start": 0.6,
            "degree_end": 0.2},
        privacy={"epsilon": 10.0, "delta": 1e-5},
        metrics={"names": "accuracy", "every": 5, "embedding": "inception"},
    )
