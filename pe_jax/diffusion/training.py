"""Training a diffusion model on public data: AdamW, an EMA of the weights, resumable checkpoints.

The model is split once with ``nnx.split`` into a graph definition and its parameters; the
train step is a plain ``jax.jit`` over a :class:`TrainState` (step, parameters, their EMA and
the optimizer state). Step ``t`` draws its batch, timesteps, noise and dropout from
``fold_in(key, t)``, so it is a pure function of ``(key, t, state)``: a run resumed from a
checkpoint takes exactly the steps an uninterrupted run takes and ends with the same weights.

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
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm.auto import tqdm

from pe_jax import sharding
from pe_jax._checks import check_int, require
from pe_jax.diffusion.loss import epsilon_loss
from pe_jax.diffusion.public_data import BatchFn
from pe_jax.diffusion.schedules import NoiseSchedule

__all__ = ["TrainResult", "TrainSettings", "TrainState", "make_optimizer", "train"]


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


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything that changes during training; ``step`` counts the steps taken."""

    step: jax.Array
    params: nnx.State
    ema: nnx.State
    opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """The final state, the EMA model built from it, the logged losses and the wall time.

    ``losses`` holds ``(step, mean loss over the log window ending at step)`` for the steps
    taken in this call; ``seconds`` is this call's wall time.
    """

    state: TrainState
    model: nnx.Module
    losses: list[tuple[int, float]]
    seconds: float


Callback = Callable[[int, TrainState], None]
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


def _state_dict(state: TrainState) -> dict:
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def _train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation,
                batch_fn: BatchFn, settings: TrainSettings,
                mesh: jax.sharding.Mesh | None) -> Callable:
    """The jitted ``(state, key, schedule) -> (state, loss)`` of one optimizer step."""

    def step(state: TrainState, key: jax.Array, schedule: NoiseSchedule):
        data_key, loss_key = jax.random.split(jax.random.fold_in(key, state.step))
        images, labels = batch_fn(data_key)
        images, labels = sharding.shard_rows((images, labels), mesh)

        def loss_fn(params):
            return epsilon_loss(nnx.merge(graphdef, params), schedule, loss_key, images, labels,
                                label_dropout=settings.label_dropout)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        t = state.step.astype(jnp.float32)
        decay = jnp.minimum(settings.ema_decay, (1.0 + t) / (10.0 + t))
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema, params)
        return TrainState(state.step + 1, params, ema, opt_state), loss

    return jax.jit(step, donate_argnums=0)


def train(model: nnx.Module, schedule: NoiseSchedule, batch_fn: BatchFn,
          settings: TrainSettings, *, key: jax.Array, checkpoint_dir: str | pathlib.Path,
          resume: bool = False, mesh: jax.sharding.Mesh | None = None,
          callbacks: Sequence[Callback] = (), progress: bool = True) -> TrainResult:
    """Trains ``model`` (its current weights are the start) on ``batch_fn``'s batches.

    Args:
      model: an NNX noise predictor ``model(x, t, labels, dropout_key=...)`` with a
        ``config.num_classes`` (the UNet of ``pe_jax.models.unet``); it is not modified.
      schedule: the training noise schedule.
      batch_fn: ``key -> (images in [-1, 1], labels)`` (``pe_jax.diffusion.public_data``).
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
    params = jax.tree.map(jnp.copy, params)  # the step donates its state; keep model's own
    optimizer = make_optimizer(settings)
    state = TrainState(jnp.zeros((), jnp.int32), params, jax.tree.map(jnp.copy, params),
                       optimizer.init(params))
    # Automatic (GSPMD) propagation over the mesh's devices: the model needs no explicit
    # sharding annotations, whatever axis types the caller's mesh has.
    mesh = sharding.auto(mesh)
    state = sharding.replicate(state, mesh)
    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
    start = time.perf_counter()
    with ocp.CheckpointManager(pathlib.Path(checkpoint_dir).absolute(), options=options) as manager:
        latest = manager.latest_step()
        require(resume or latest is None, "checkpoint_dir",
                "a folder without checkpoints unless resume=True",
                f"{str(checkpoint_dir)!r} with a checkpoint at step {latest}")
        if latest is not None:
            target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state_dict(state))
            state = TrainState(**manager.restore(latest, args=ocp.args.StandardRestore(target)))
        step_fn = _train_step(graphdef, optimizer, batch_fn, settings, mesh)
        first = int(state.step)
        losses, window = [], []
        bar = tqdm(initial=first, total=settings.steps, desc="train", unit="step",
                   disable=not progress)
        for done in range(first + 1, settings.steps + 1):
            state, loss = step_fn(state, key, schedule)
            window.append(loss)
            if done % settings.log_every == 0 or done == settings.steps:
                losses.append((done, float(np.mean(jax.device_get(window)))))
                window = []
                bar.set_postfix(loss=f"{losses[-1][1]:.4f}")
            if done % settings.checkpoint_every == 0 or done == settings.steps:
                manager.save(done, args=ocp.args.StandardSave(_state_dict(state)))
            bar.update()
            for callback in callbacks:
                callback(done, state)
        bar.close()
    return TrainResult(state, nnx.merge(graphdef, state.ema), losses,
                       time.perf_counter() - start)
