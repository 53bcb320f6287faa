"""The DP-SGD baseline on scikit-learn's 8x8 digits: fine-tune the shipped prior, then sample.

``pe-jax dp-finetune`` (this is its default config) fine-tunes the class-conditional diffusion
prior ``pe_jax/assets/prior_digits8`` (trained on rendered glyphs only) on the same private
rows as ``pe-jax run`` (``pe_jax/configs/digits.py``: the 1,335 digits the fixed held-out split
leaves) with DP-SGD, then draws ``samples_per_class`` DDIM samples per class from the
fine-tuned EMA model and measures them on the same 462 held-out digits, so the two commands'
output folders compare file for file. The noise multiplier is calibrated so that the
``dpsgd.steps`` steps at sampling rate ``dpsgd.batch_size / 1,335`` spend at most
``epsilon``.

Run it with ``pe-jax dp-finetune`` or
``pe-jax dp-finetune --config pe_jax/configs/dp_finetune_digits.py --set epsilon=1.0``;
``--set prior=DIR`` fine-tunes another ``pe_jax.checkpoints`` folder: a class-conditional
prior with the data's classes, or an unconditional one, which gets label embeddings that
start at zero (``pe_jax.models.unet.with_labels``). ``--set data.source=...`` fine-tunes on
another data set (the keys of ``pe-jax run``'s ``data`` section), e.g. an npz file::

    pe-jax dp-finetune --set data.source=npz --set data.path=FILE --set data.heldout=0.02 \\
        --set prior=DIR --set metrics=
"""

import ml_collections

from pe_jax.configs.sections import section
from pe_jax.data.digits import TUNING_HELDOUT


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "dp_finetune_digits"
    # The private images: any data set ``pe-jax run`` reads (``pe_jax.configs.sections``'s
    # ``data`` section), split by the same fixed held-out rule; the held-out rows are the
    # metrics' reference set and are never trained on.
    config.data = section("data", source="sklearn_digits", heldout=TUNING_HELDOUT)
    config.prior = ""  # a checkpoint folder; empty: the shipped default prior
    # Privacy: the noise multiplier is calibrated so that all steps spend at most epsilon.
    config.epsilon = 4.0
    config.delta = 1e-5
    config.noise_seed = -1  # -1: keys from os.urandom; a seed gives reproducible, NOT private noise
    # Synthetic data: drawn from the fine-tuned model after training (post-processing).
    config.samples_per_class = 100
    config.sample_steps = 25  # respaced DDIM steps, as digits.py's random API
    config.guidance = 1.0  # classifier-free guidance scale (1: plain conditional sampling)
    # DP-SGD (pe_jax.training.dpsgd) and the optimiser after the noise (AdamW, EMA).
    config.dpsgd = ml_collections.ConfigDict()
    config.dpsgd.steps = 100
    config.dpsgd.batch_size = 64  # expected rows per step: sampling rate = batch_size / rows
    config.dpsgd.clipping_norm = 1.0
    config.dpsgd.learning_rate = 5e-4
    config.dpsgd.warmup_steps = 10
    config.dpsgd.weight_decay = 0.0
    config.dpsgd.ema_decay = 0.99
    config.dpsgd.label_dropout = 0.1  # keeps classifier-free guidance working
    config.dpsgd.checkpoint_every = 25  # steps per ledger event and orbax save
    config.dpsgd.pad_multiple = 32  # batches are padded to a multiple of it (few compiles)
    # Quality metrics (not covered by DP: measured on real data held out from training).
    config.metrics = "fid,precision_recall,accuracy"  # "" for none
    config.metrics_embedding = "encoder"  # feature space of FID and precision/recall
    config.encoder_checkpoint = ""  # "" is the shipped glyph encoder
    config.inception_weights = ""  # a converted FID Inception checkpoint (embedding=inception)
    config.tensorboard = False
    return config
