"""Training, in one place: the train-step convention and every trainer built on it.

* :mod:`~pe_jax.training.loop`: ``batch_fn(key, step, *inputs)``, ``loss_fn(model, batch,
  key)`` and a ``grad_fn``; ``make_step`` (jitted, state donated, batch split over the mesh,
  optional EMA) and ``fit`` (the loop, checkpoint hooks, callbacks, progress bar);
* :mod:`~pe_jax.training.diffusion`: the diffusion prior on public data (AdamW, EMA, orbax
  resume), with its batches from :mod:`~pe_jax.training.public_data` (rendered glyphs);
* :mod:`~pe_jax.training.encoder`: the glyph encoder; :mod:`~pe_jax.training.classifier`: the
  ``ConvNet`` recipe of the downstream accuracy;
* :mod:`~pe_jax.training.dpsgd`: DP-SGD fine-tuning on private images (jax-privacy).

``pe_jax.models`` holds the architectures only. Submodules are imported by name (nothing
here), so ``import pe_jax.training.loop`` needs no glyph simulator or jax-privacy.
"""
