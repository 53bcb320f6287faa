"""PE's random and variation APIs served by a Flax diffusion model (DDIM, SDEdit).

``random(key, n, labels)`` denoises pure noise over ``steps`` respaced DDIM steps.
``variation(key, samples, degree)`` is SDEdit: the images are noised to the timestep that lies
``degree`` of the way along the respaced schedule (``round(degree * steps)`` of its ``steps``
timesteps, counted from the clean end) and denoised from there. So ``degree`` is the fraction
of the sampling chain that is re-run:

* 0 returns the samples unchanged;
* small degrees add little noise and keep each image's shape, changing details;
* 1 noises to the last timestep, (almost) pure noise, so the result is about as far from the
  input as a fresh ``random`` sample.

PE lowers the degree over its iterations (explore, then refine): use
``pe_jax.evolve.degree_schedule(start, end, T, kind)``, e.g. ``degree_schedule(0.6, 0.15, T,
"geometric")``. With ``steps`` respaced steps the degrees that differ are multiples of
``1 / steps``.

Samples are :class:`DiffusionSamples`: the images in [0, 1] and the labels that condition
their variations (a class-conditional model keeps each sample's class; "no label" is
``num_classes``). Everything runs in one compiled function per batch shape: the model is
split once (``nnx.split``) and its state passed into a ``jax.jit`` with the UNet's
``compiler_options()`` (on CPU: XLA's multi-threaded convolutions); the degree is a traced
value, so PE's changing degrees never recompile, and both APIs can be called inside a larger
``jax.jit`` (which then compiles with its own options). With ``mesh``, batches are sharded
over all of the mesh's devices (``pe_jax.sharding``).
"""

import dataclasses
import functools
import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

import pe_jax
from pe_jax import checkpoints, sharding
from pe_jax._checks import check_int, require
from pe_jax.diffusion.sampling import ddim_sample
from pe_jax.diffusion.schedules import NoiseSchedule, make_schedule
from pe_jax.models.unet import UNet, UNetConfig, compiler_options

__all__ = ["DEFAULT_PRIOR", "DiffusionGenerator", "DiffusionSamples"]

DEFAULT_PRIOR = pathlib.Path(pe_jax.__file__).parent / "assets" / "prior_digits8"
"""The shipped prior: 8x8 grey glyphs (the format of scikit-learn's digits)."""


class DiffusionSamples(NamedTuple):
    """A batch of samples: ``images`` float32 ``(n, H, W, C)`` in [0, 1], ``labels`` int32
    ``(n,)`` (the model's ``num_classes`` for "no label")."""

    images: jax.Array
    labels: jax.Array


@dataclasses.dataclass(frozen=True)
class _Options:
    steps: int
    eta: float
    guidance: float
    sharding: jax.sharding.Sharding | None


class DiffusionGenerator:
    """A :class:`pe_jax.apis.Generator` backed by a diffusion UNet.

    Args:
      model: the noise predictor (its ``config`` gives the image shape and classes).
      schedule: the schedule it was trained with.
      steps: respaced DDIM steps of ``random``; ``variation`` runs ``round(degree * steps)``.
      eta: DDIM stochasticity, 0 (deterministic given the start noise) to 1 (DDPM).
      guidance: classifier-free guidance scale for labelled samples of a class-conditional
        model (1 = none).
      mesh: when given, batches are sharded over all its devices (n should divide
        evenly).
    """

    def __init__(self, model: UNet, schedule: NoiseSchedule, *, steps: int = 50,
                 eta: float = 0.0, guidance: float = 1.0,
                 mesh: jax.sharding.Mesh | None = None):
        check_int("steps", steps, 1, schedule.num_steps)
        require(0.0 <= eta <= 1.0, "eta", "in [0, 1]", eta)
        require(guidance >= 0.0, "guidance", ">= 0", guidance)
        self.config: UNetConfig = model.config
        self.schedule = schedule
        self._graphdef, self._state = nnx.split(model)
        # GSPMD propagation from the batch layout, whatever the mesh's axis types.
        batches = None if mesh is None else sharding.data_sharding(sharding.auto(mesh))
        self._options = _Options(steps, float(eta), float(guidance), batches)

    @classmethod
    def from_checkpoint(cls, directory: str | pathlib.Path, **sampling_options: Any
                        ) -> "DiffusionGenerator":
        """Loads a ``pe_jax.checkpoints`` folder whose metadata has ``unet`` (a
        ``UNetConfig.to_dict()``) and ``schedule`` (``{"kind": ..., "num_steps": ...}``).

        An optional metadata entry ``sampling`` (``steps``, ``eta``, ``guidance``) gives the
        checkpoint's default sampling settings; ``sampling_options`` override them.
        """
        model, metadata = checkpoints.load(directory, _unet_from_metadata)
        defaults = {k: v for k, v in metadata.get("sampling", {}).items()
                    if k in ("steps", "eta", "guidance")}
        return cls(model, make_schedule(**metadata["schedule"]), **(defaults | sampling_options))

    def random(self, key: jax.Array, n: int, labels: jax.Array | None = None
               ) -> DiffusionSamples:
        """``n`` samples from pure noise, conditioned on ``labels`` (ignored by an
        unconditional model; None = no label)."""
        check_int("n", n, 1)
        labels = self._labels(n, labels)
        images = _sampler()(self._graphdef, self._state, self.schedule, key, labels, None, 0,
                            options=self._options)
        return DiffusionSamples(images, labels)

    def variation(self, key: jax.Array, samples: DiffusionSamples | jax.Array,
                  degree: float | jax.Array) -> DiffusionSamples | jax.Array:
        """One SDEdit variation of each sample at ``degree`` in [0, 1] (see the module
        docstring); a plain image array in gives a plain image array out (no label)."""
        plain = not isinstance(samples, DiffusionSamples)
        images = jnp.asarray(samples if plain else samples.images, jnp.float32)
        shape = (self.config.resolution, self.config.resolution, self.config.channels)
        require(images.ndim == 4 and images.shape[1:] == shape, "samples",
                f"images of shape (n, {', '.join(map(str, shape))})",
                f"shape {images.shape}")
        labels = self._labels(images.shape[0], None if plain else samples.labels)
        if not isinstance(degree, jax.core.Tracer):
            require(0.0 <= float(degree) <= 1.0, "degree", "in [0, 1]", degree)
        steps = self._options.steps  # a traced degree outside [0, 1] is clipped to it
        start_step = jnp.clip(jnp.round(jnp.asarray(degree, jnp.float32) * steps), 0, steps)
        varied = _sampler()(self._graphdef, self._state, self.schedule, key, labels, images,
                            start_step.astype(jnp.int32), options=self._options)
        return varied if plain else DiffusionSamples(varied, labels)

    def images(self, samples: DiffusionSamples | jax.Array) -> jax.Array:
        """The samples' images, float32 ``(n, H, W, C)`` in [0, 1]."""
        return samples.images if isinstance(samples, DiffusionSamples) else samples

    def _labels(self, n: int, labels: jax.Array | None) -> jax.Array:
        """Labels as int32 ``(n,)``; "no label" (``num_classes``) when None or unconditional."""
        num_classes = self.config.num_classes
        if labels is None or num_classes == 0:
            return jnp.full((n,), num_classes, jnp.int32)
        labels = jnp.asarray(labels)
        require(labels.shape == (n,) and jnp.issubdtype(labels.dtype, jnp.integer), "labels",
                f"an int array of shape ({n},)", f"{labels.dtype}{labels.shape}")
        if not isinstance(labels, jax.core.Tracer):
            require(bool(jnp.all((labels >= 0) & (labels <= num_classes))), "labels",
                    f"ints in [0, {num_classes}] ({num_classes} = no label)",
                    "values outside that range")
        return labels.astype(jnp.int32)


def _unet_from_metadata(metadata: dict[str, Any]) -> UNet:
    """The UNet a checkpoint's metadata describes (``unet`` and ``schedule`` entries)."""
    for name in ("unet", "schedule"):
        require(name in metadata, "checkpoint metadata", f"a {name!r} entry", sorted(metadata))
    return UNet(UNetConfig.from_dict(metadata["unet"]), rngs=nnx.Rngs(0))


def _sample(graphdef: nnx.GraphDef, state: nnx.State, schedule: NoiseSchedule,
            key: jax.Array, labels: jax.Array, start: jax.Array | None,
            start_step: jax.Array | int, *, options: _Options) -> jax.Array:
    """Samples (``start`` None) or varies ``start`` images, all in [0, 1]."""
    model = nnx.merge(graphdef, state)
    start_images = None if start is None else 2.0 * start - 1.0
    x = ddim_sample(model, schedule, key, labels if model.config.num_classes else labels.size,
                    steps=options.steps, eta=options.eta,
                    guidance=options.guidance if model.config.num_classes else 1.0,
                    start_images=start_images, start_step=None if start is None else start_step,
                    sharding=options.sharding)
    images = jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
    return images if start is None else jnp.where(start_step == 0, start, images)


_STATIC_ARGS = ("graphdef", "options")
_sample_in_trace = jax.jit(_sample, static_argnames=_STATIC_ARGS)


def _sampler() -> Callable[..., jax.Array]:
    """``_sample`` jitted with the UNet's compiler options when called eagerly; inside an
    outer trace plainly (JAX takes compiler options on top-level jits only)."""
    traced = isinstance(jnp.zeros(()), jax.core.Tracer)  # constants are tracers under a trace
    return _sample_in_trace if traced else _sample_top_level()


@functools.cache
def _sample_top_level() -> Callable[..., jax.Array]:
    """Built on first use, when the backend the options depend on is known."""
    return jax.jit(_sample, static_argnames=_STATIC_ARGS, compiler_options=compiler_options())
