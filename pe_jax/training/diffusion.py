"""Training a diffusion model on public data: AdamW, an EMA of the weights, resumable checkpoints.

The step is ``pe_jax.training.loop``'s (a jitted, donated step over a ``TrainState`` of the
step count, parameters, their EMA and the optimizer state). Step ``t`` draws its batch from
one half of ``fold_in(key, t)`` and its timesteps, noise and dropout from the other, so it is a
pure function of ``(key, t, state)``: a run resumed from a checkpoint takes exactly the steps an
uninterrupted run takes and ends with the same weights. DP-SGD fine-tuning
(``pe_jax.training.dpsgd``) reuses the optimizer, the loss and the key split.

Checkpoints are orbax ``CheckpointManager`` steps (no pickle) of the whole train state, every
``checkpoint_every`` steps and at the end; ``train(..., resume=True)`` continues from the
latest. With a ``mesh`` the batch is sharded over all of its devices and the state is
replicated (data parallelism; XLA inserts the gradient all-reduce).

What is shipped or handed to PE is the EMA model (``TrainResult.model``), stored with
``pe_jax.checkpoints.save``.
"""

import dataclasses
import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import optax
import orbax.checkpoint as ocp
from flax import nnx

from pe_jax import sharding
from pe_jax._checks import check_int, require
from pe_jax.diffusion.loss import epsilon_loss
from pe_jax.diffusion.schedules import NoiseSchedule
from pe_jax.training import loop

__all__ = ["TrainResult", "TrainSettings", "diffusion_loss", "make_optimizer", "split_keys",
           "train"]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of :func:`train`.

    Attributes:
      steps: total optimizer steps of the run (a resumed run stops at the same total).
      learning_rate: peak AdamW learning rate, reached after ``warmup_steps`` of linear
        warm-up and followed by a cosine decay to a tenth of it at ``steps``.
      weight_decay: AdamW's decoupled weight decay.
      grad_clip: gradients are clipped to this global L2 norm.
      ema_decay: decay of the weights' exponential moving average (the model that is kept);
        early steps use ``min(ema_decay, (1 + t) / (10 + t))`` so short runs average too.
      label_dropout: probability of training a label as "no label" (classifier-free guidance).
      checkpoint_every: steps between orbax checkpoints (the last step is always saved).
      log_every: steps between progress-bar updates; the logged loss is the window's mean.
    """

    steps: int
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    label_dropout: float = 0.1
    checkpoint_every: int = 500
    log_every: int = 50

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1)
        check_int("warmup_steps", self.warmup_steps, 0)
        check_int("checkpoint_every", self.checkpoint_every, 1)
        check_int("log_every", self.log_every, 1)
        require(self.learning_rate > 0, "learning_rate", "> 0", self.learning_rate)
        require(self.weight_decay >= 0, "weight_decay", ">= 0", self.weight_decay)
        require(self.grad_clip > 0, "grad_clip", "> 0", self.grad_clip)
        require(0.0 <= self.ema_decay < 1.0, "ema_decay", "in [0, 1)", self.ema_decay)
        require(0.0 <= self.label_dropout < 1.0, "label_dropout", "in [0, 1)",
                self.label_dropout)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """The final state, the EMA model built from it, the logged losses and the wall time.

    ``losses`` holds ``(step, mean loss over the log window ending at step)`` for the steps
    taken in this call; ``seconds`` is this call's wall time.
    """

    state: loop.TrainState
    model: nnx.Module
    losses: list[tuple[int, float]]
    seconds: float


Callback = Callable[[int, loop.TrainState], None]
"""Called after every step with the number of steps taken and the state.

The next step donates the state's buffers, so use it during the call (e.g. sample from
``state.ema``) and keep copies, not references.
"""


def make_optimizer(settings: TrainSettings) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW on a warm-up + cosine learning-rate schedule."""
    learning_rate = optax.warmup_cosine_decay_schedule(
        0.0, settings.learning_rate, settings.warmup_steps,
        max(settings.steps, settings.warmup_steps + 1), end_value=0.1 * settings.learning_rate)
    return optax.chain(optax.clip_by_global_norm(settings.grad_clip),
                       optax.adamw(learning_rate, weight_decay=settings.weight_decay))


def diffusion_loss(schedule: NoiseSchedule, label_dropout: float) -> loop.LossFn:
    """``(model, (images, labels), key) -> epsilon loss`` (``pe_jax.diffusion.epsilon_loss``)."""

    def loss_fn(model: nnx.Module, batch: tuple[jax.Array, jax.Array],
                key: jax.Array) -> jax.Array:
        images, labels = batch
        return epsilon_loss(model, schedule, key, images, labels, label_dropout=label_dropout)

    return loss_fn


def split_keys(batch_fn: loop.BatchFn, loss_fn: loop.LossFn) -> tuple[loop.BatchFn, loop.LossFn]:
    """The batch and the loss on independent halves of the step's key (``split``)."""

    def batch(key, step, *inputs):
        return batch_fn(jax.random.split(key)[0], step, *inputs)

    def loss(model, batch, key):
        return loss_fn(model, batch, jax.random.split(key)[1])

    return batch, loss


def train(model: nnx.Module, schedule: NoiseSchedule, batch_fn: loop.BatchFn,
          settings: TrainSettings, *, key: jax.Array, checkpoint_dir: str | pathlib.Path,
          resume: bool = False, mesh: jax.sharding.Mesh | None = None,
          callbacks: Sequence[Callback] = (), progress: bool = True) -> TrainResult:
    """Trains ``model`` (its current weights are the start) on ``batch_fn``'s batches.

    Args:
      model: an NNX noise predictor ``model(x, t, labels, dropout_key=...)`` with a
        ``config.num_classes`` (the UNet of ``pe_jax.models.unet``); it is not modified.
      schedule: the training noise schedule.
      batch_fn: ``(key, step) -> (images in [-1, 1], labels)``
        (``pe_jax.training.public_data``).
      settings: optimisation settings.
      key: the run's base key; step ``t`` uses ``fold_in(key, t)``.
      checkpoint_dir: the orbax ``CheckpointManager`` folder of the train state.
      resume: continue from the latest checkpoint in ``checkpoint_dir`` (from the start if it
        has none); without it, a folder that already holds checkpoints is refused.
      mesh: shard each batch over all devices of this mesh (data parallelism); the batch
        size must be a multiple of its device count.
      callbacks: called after every step (e.g. to write sample grids).
      progress: show a progress bar with the loss.
    """
    graphdef, params = nnx.split(model)
    optimizer = make_optimizer(settings)
    mesh = sharding.auto(mesh)
    state = loop.init_state(params, optimizer, ema=True, mesh=mesh)
    batch, loss = split_keys(batch_fn, diffusion_loss(schedule, settings.label_dropout))
    step_fn = loop.make_step(graphdef, optimizer, batch, loss, ema_decay=settings.ema_decay,
                             mesh=mesh)
    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
    start = time.perf_counter()
    with ocp.CheckpointManager(pathlib.Path(checkpoint_dir).absolute(), options=options) as manager:
        latest = manager.latest_step()
        require(resume or latest is None, "checkpoint_dir",
                "a folder without checkpoints unless resume=True",
                f"{str(checkpoint_dir)!r} with a checkpoint at step {latest}")
        if latest is not None:
            target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state.to_dict())
            state = loop.TrainState(
                **manager.restore(latest, args=ocp.args.StandardRestore(target)))
        state, losses = loop.fit(
            step_fn, state, key=key, steps=settings.steps, log_every=settings.log_every,
            save=lambda done, s: manager.save(done, args=ocp.args.StandardSave(s.to_dict())),
            save_every=settings.checkpoint_every, callbacks=callbacks, progress=progress)
    return TrainResult(state, nnx.merge(graphdef, state.ema), losses,
                       time.perf_counter() - start)
