"""DP-SGD fine-tuning of a diffusion model on private images, with jax-privacy.

Each step follows DP-SGD (Abadi et al. 2016) with the pieces jax-privacy provides:

* Poisson batch selection: ``jax_privacy.batch_selection.CyclicPoissonSampling`` (cycle length
  1, independent partition: plain Poisson sampling, which add/remove accounting assumes)
  draws every private row into step ``t``'s batch with probability ``sampling_rate``, on the
  host from a numpy generator seeded once per run; the chosen indices are padded with -1 to a
  multiple of ``pad_multiple`` (``batch_selection.pad_to_multiple_of``) so that few shapes
  compile, and padding rows contribute nothing;
* per-example clipping: ``jax_privacy.clipped_grad`` computes the epsilon loss of each row
  (its own timestep, noise and label-dropout keys), clips its gradient to L2 norm
  ``clipping_norm`` and sums (padding rows are zeroed);
* noise: ``jax_privacy.noise_addition.gaussian_privatizer`` adds Gaussian noise of standard
  deviation ``noise_multiplier * clipping_norm`` to the sum, from the JAX PRNG keyed by the
  caller (the command takes the key from the OS); its key is part of the optimizer state, so
  a resumed run continues the noise stream instead of repeating it;
* then the public prior's optimizer (``pe_jax.training.diffusion.make_optimizer``: global-norm
  clipping and AdamW, post-processing) on the noisy sum divided by the expected batch size.

The labels are private and inside the guarantee: each row's loss is conditioned on its own
label. The step is ``pe_jax.training.loop``'s (jitted, donated, sharded over the mesh); the
private arrays and the step's indices are its host inputs. Over a mesh each device clips the
gradients of its own rows of the padded batch and the clipped sums are added (``dp_grad``), so
the noise is added once, to the same sum as on one device. The run is recorded in the privacy
ledger in segments of ``checkpoint_every`` steps (one ``DP-SGD`` event per segment, recorded
before its first step), and saved after each segment, so an interrupted run resumes from the
last segment with the same batches and noise and records nothing twice.
"""

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator

import jax
import jax.flatten_util
import jax.numpy as jnp
import jax_privacy
import numpy as np
import optax
from flax import nnx
from jax_privacy import batch_selection, noise_addition

from pe_jax import privacy, sharding
from pe_jax._checks import check_int, require
from pe_jax.diffusion.schedules import NoiseSchedule
from pe_jax.privacy import dpsgd_accounting
from pe_jax.resume import RunCheckpoint
from pe_jax.training import loop
from pe_jax.training.diffusion import (TrainResult, TrainSettings, diffusion_loss,
                                       make_optimizer, split_keys)

__all__ = ["DPSGDSettings", "PoissonBatches", "dp_grad", "dp_optimizer", "finetune",
           "privatizer"]


@dataclasses.dataclass(frozen=True)
class DPSGDSettings:
    """DP-SGD settings on top of the prior's optimisation settings ``train``.

    ``sampling_rate``: probability that a step samples a row; ``expected_batch_size``: the
    rows a step samples on average (``sampling_rate * rows``), which the noisy sum is divided
    by; ``clipping_norm``: per-example L2 bound; ``noise_multiplier``: noise standard deviation
    over ``clipping_norm``; ``pad_multiple``: batches are padded to a multiple of it.
    """

    train: TrainSettings
    sampling_rate: float
    expected_batch_size: float
    clipping_norm: float
    noise_multiplier: float
    pad_multiple: int = 32

    def __post_init__(self) -> None:
        dpsgd_accounting.check_sampling_rate(self.sampling_rate)
        require(self.expected_batch_size > 0, "expected_batch_size", "> 0",
                self.expected_batch_size)
        require(0 < self.clipping_norm < float("inf"), "clipping_norm", "finite and > 0",
                self.clipping_norm)
        require(0 <= self.noise_multiplier < float("inf"), "noise_multiplier",
                "finite and >= 0", self.noise_multiplier)
        check_int("pad_multiple", self.pad_multiple, 1)

    def event(self, steps: int, source: str, seeded: bool) -> privacy.ReleaseEvent:
        """The ledger event of ``steps`` steps with noise from ``source``."""
        return privacy.ReleaseEvent(
            dpsgd_accounting.MECHANISM, self.noise_multiplier, source=source, seeded=seeded,
            sampling_rate=self.sampling_rate, steps=steps, clipping_norm=self.clipping_norm)


class PoissonBatches:
    """Step ``t``'s padded row indices and padding mask, replayable from ``seed``.

    The indices come from jax-privacy's Poisson sampler, walked in order; asking for an
    earlier step (a resumed run) replays the sampler from the seed.
    """

    def __init__(self, rows: int, rate: float, steps: int, seed: int, pad_multiple: int):
        self._rows, self._seed, self._pad = rows, seed, pad_multiple
        self._strategy = batch_selection.CyclicPoissonSampling(
            sampling_prob=rate, iterations=steps,
            partition_type=batch_selection.PartitionType.INDEPENDENT)
        self._next, self._batches = 0, self._start()

    def _start(self) -> Iterator[np.ndarray]:
        return self._strategy.batch_iterator(self._rows, rng=np.random.default_rng(self._seed))

    def __call__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        if step < self._next:
            self._next, self._batches = 0, self._start()
        while self._next < step:
            next(self._batches)
            self._next += 1
        chosen = next(self._batches)
        self._next += 1
        padded = batch_selection.pad_to_multiple_of(chosen.astype(np.int32),
                                                    self._pad).astype(np.int32)
        if padded.size == 0:  # an empty batch: one block of padding rows
            padded = np.full(self._pad, -1, np.int32)
        return np.maximum(padded, 0), padded < 0


def dp_grad(clipping_norm: float, mesh: jax.sharding.Mesh | None = None) -> loop.GradFn:
    """``grad_fn`` for batches ``(images, labels, is_padding)``: the mean loss of the real
    rows, and the sum of their gradients each clipped to ``clipping_norm`` (jax-privacy).

    Row ``i`` uses the key ``split(key, rows)[i]``, wherever it runs. With ``mesh`` every
    device clips its own rows (``jax.shard_map``) and ``lax.psum`` adds the sums. The
    parameters are cast to per-device values first: differentiating a replicated input
    inside ``shard_map`` would all-reduce each row's gradient over the devices before its
    clipping, mixing rows of different devices. (Left to GSPMD, the per-example gradients of
    the UNet came out wrong on 8 CPU devices: off by up to 29 where they are 34 in size, a
    loop over the rows agreeing with one device.)
    """

    def local(loss, params, images, labels, padding, keys):
        clipped = jax_privacy.clipped_grad(
            lambda p, x, y, k: loss(p, (x, y), k[0]), l2_clip_norm=clipping_norm,
            batch_argnums=(1, 2, 3), return_values=True)  # each row: a batch of one
        grads, aux = clipped(params, images, labels, keys, is_padding_example=padding)
        real = jnp.logical_not(padding)
        return jnp.sum(jnp.where(real, aux.values, 0.0)), jnp.sum(real), grads

    def per_device(loss, params, *rows):
        params = jax.tree.map(lambda a: jax.lax.pcast(a, mesh.axis_names, to="varying"),
                              params)
        return jax.lax.psum(local(loss, params, *rows), mesh.axis_names)

    def grad_fn(loss, params, batch, key):
        images, labels, padding = batch
        rows = (images, labels, padding, jax.random.split(key, images.shape[0]))
        if mesh is None:
            total, count, grads = local(loss, params, *rows)
        else:
            spec = sharding.row_spec(mesh)
            total, count, grads = jax.shard_map(
                functools.partial(per_device, loss), mesh=mesh,
                in_specs=(jax.P(),) + (spec,) * len(rows), out_specs=jax.P())(params, *rows)
        return total / jnp.maximum(count, 1), grads

    return grad_fn


def _raveled(transform: optax.GradientTransformation) -> optax.GradientTransformation:
    """``transform`` applied to all leaves raveled into one vector.

    For the privatizer: one normal draw for the whole model instead of one per leaf (the same
    i.i.d. noise per coordinate); per-leaf draws made the step compile 2-3x longer on CPU
    (54 s against 23 s for a small UNet, measured side by side).
    """

    def init(params):
        return transform.init(jax.flatten_util.ravel_pytree(params)[0])

    def update(updates, state, params=None):
        flat, unravel = jax.flatten_util.ravel_pytree(updates)
        flat, state = transform.update(flat, state)
        return unravel(flat), state

    return optax.GradientTransformation(init, update)


def privatizer(settings: DPSGDSettings, noise_key: jax.Array) -> optax.GradientTransformation:
    """Gaussian noise of standard deviation ``noise_multiplier * clipping_norm`` on the
    clipped sum (jax-privacy), then the division by the expected batch size.
    ``noise_key``: a raw uint32 key (saved with the optimizer state)."""
    stddev = settings.noise_multiplier * settings.clipping_norm
    return optax.chain(
        _raveled(noise_addition.gaussian_privatizer(stddev=stddev, prng_key=noise_key)),
        optax.scale(1.0 / settings.expected_batch_size))


def dp_optimizer(settings: DPSGDSettings, noise_key: jax.Array) -> optax.GradientTransformation:
    """The ``privatizer``, then the prior's optimizer (post-processing)."""
    return optax.chain(privatizer(settings, noise_key), make_optimizer(settings.train))


def _gather(key, step, images, labels, index, padding):
    """The batch function: the chosen private rows (padding rows point at row 0)."""
    return images[index], labels[index], padding


def finetune(model: nnx.Module, schedule: NoiseSchedule, images: jax.Array, labels: jax.Array,
             settings: DPSGDSettings, *, key: jax.Array, noise_key: jax.Array,
             sampler_seed: int, ledger: privacy.PrivacyLedger, recorded_steps: int,
             source: str, seeded: bool, checkpoint: RunCheckpoint | None = None,
             mesh: jax.sharding.Mesh | None = None, progress: bool = False,
             callbacks: tuple[Callable[[int, loop.TrainState], None], ...] = ()
             ) -> TrainResult:
    """Fine-tunes ``model`` (not modified) on private ``images`` in [-1, 1] and ``labels``.

    ``key``: the run's base key (timesteps, diffusion noise, label dropout); ``noise_key``:
    the raw uint32 key of the DP noise; ``sampler_seed``: the Poisson sampler's seed.
    ``recorded_steps``: steps of this run the ledger already holds (a resumed run's); every
    later segment is recorded in ``ledger`` (with noise ``source``, ``seeded``) before its
    first step. ``checkpoint``: saved after every segment and restored first. With ``mesh``,
    ``pad_multiple`` must be a multiple of its device count.
    """
    train = settings.train
    rows = images.shape[0]
    require(labels.shape == (rows,), "labels", f"{rows} labels, one per image", labels.shape)
    if mesh is not None:
        require(settings.pad_multiple % sharding.device_count(mesh) == 0, "pad_multiple",
                f"a multiple of the mesh's {sharding.device_count(mesh)} devices",
                settings.pad_multiple)
    graphdef, params = nnx.split(model)
    optimizer = dp_optimizer(settings, noise_key)
    state = loop.init_state(params, optimizer, ema=True, mesh=mesh)
    if checkpoint is not None:
        state = checkpoint.restore(state)
    batch_fn, loss_fn = split_keys(_gather, diffusion_loss(schedule, train.label_dropout))
    step_fn = loop.make_step(graphdef, optimizer, batch_fn, loss_fn,
                             grad_fn=dp_grad(settings.clipping_norm, sharding.auto(mesh)),
                             ema_decay=train.ema_decay, mesh=mesh)
    batches = PoissonBatches(rows, settings.sampling_rate, train.steps, sampler_seed,
                             settings.pad_multiple)
    segment = train.checkpoint_every
    data = sharding.replicate((jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32)),
                              sharding.auto(mesh))

    def inputs(step: int) -> tuple:
        """Step ``step``'s host inputs; records its segment first when it starts one."""
        if step % segment == 0 and step >= recorded_steps:
            ledger.record(settings.event(min(segment, train.steps - step), source, seeded))
        index, padding = batches(step)
        return (*data, jnp.asarray(index), jnp.asarray(padding))

    def save(done: int, state: loop.TrainState) -> None:
        if checkpoint is not None:
            checkpoint.save(state, done, done, None)

    start = time.perf_counter()
    state, losses = loop.fit(step_fn, state, key=key, steps=train.steps,
                             log_every=train.log_every, inputs=inputs, save=save,
                             save_every=segment, callbacks=callbacks, progress=progress,
                             desc="dp-finetune", show_loss=False)  # the loss is not noised
    return TrainResult(state, nnx.merge(graphdef, state.ema), losses,
                       time.perf_counter() - start)
