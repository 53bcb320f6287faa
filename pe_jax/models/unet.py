"""The diffusion UNet (Flax NNX): the noise predictor behind PE's random and variation APIs.

The architecture mirrors Hugging Face diffusers' ``UNet2DModel`` (itself the DDPM UNet of Ho et
al. 2020), so a configuration here and one there have the same layers and parameter count:

* a sinusoidal timestep embedding (cos first, like diffusers' ``flip_sin_to_cos=True``) of
  width ``base_width``, then Linear-SiLU-Linear to ``4 * base_width``; a class-conditional
  model adds a learned label embedding to it;
* ``conv_in`` (3x3), then one down level per entry of ``width_multipliers``: each has
  ``blocks_per_level`` residual blocks (GroupNorm-SiLU-conv, plus the projected embedding,
  GroupNorm-SiLU-dropout-conv, 1x1 skip when widths differ), single-head self-attention after
  each block when the level's feature-map size is in ``attention_resolutions``, and a stride-2
  3x3 conv down to the next level (all but the last level);
* a middle of residual block, attention, residual block;
* up levels in reverse with ``blocks_per_level + 1`` residual blocks each, every one fed the
  concatenated skip activation of the matching down layer, nearest-neighbour 2x upsampling
  followed by a 3x3 conv between levels;
* GroupNorm-SiLU-conv_out (3x3) back to ``channels``.

Class conditioning with classifier-free guidance: a model with ``num_classes = K`` has ``K + 1``
label embeddings; index ``K`` means "no label" (trained by dropping labels, used for the
unconditional half of guidance). ``dtype="bfloat16"`` computes convolutions, projections and
attention in bfloat16 while parameters, normalisation statistics, softmax and the output stay
float32.
"""

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from pe_jax._checks import check_int, require

__all__ = ["UNet", "UNetConfig", "compiler_options", "init_unet"]

DTYPES = ("float32", "bfloat16")
NORM_EPS = 1e-5  # diffusers' norm_eps default

# XLA's CPU backend (jaxlib 0.10.2) hands dots, convolutions and reductions to YNNPACK by
# default. Its convolutions of the default prior ran on one core of two (as fast pinned to one
# core as not), XLA's own (Eigen) ones on both: without them the prior's forward at batch 256
# took 0.64x the time, the CIFAR-sized model's at batch 8 about 0.9x. The default minus
# convolutions:
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Shape of a :class:`UNet`; stored as checkpoint metadata via ``to_dict``.

    Attributes:
      resolution: image side in pixels (8 to 64); divisible by 2 ** (levels - 1).
      channels: image channels (1 grey, 3 RGB).
      base_width: channels of the first level and of the timestep embedding.
      width_multipliers: one per level; level ``i`` has ``base_width * width_multipliers[i]``
        channels and works at ``resolution / 2 ** i`` pixels.
      blocks_per_level: residual blocks per down level (up levels get one more).
      attention_resolutions: feature-map sides whose levels get self-attention (the middle
        always has it).
      num_classes: 0 for an unconditional model; otherwise labels ``0..num_classes - 1`` plus
        the "no label" index ``num_classes`` (classifier-free guidance).
      dropout: dropout rate inside residual blocks (used only when the call gets a key).
      norm_groups: GroupNorm groups; must divide every level's width.
      dtype: compute dtype, ``"float32"`` or ``"bfloat16"``; parameters stay float32.
    """

    resolution: int = 8
    channels: int = 1
    base_width: int = 32
    width_multipliers: tuple[int, ...] = (1, 2)
    blocks_per_level: int = 1
    attention_resolutions: tuple[int, ...] = (4,)
    num_classes: int = 0
    dropout: float = 0.0
    norm_groups: int = 8
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "width_multipliers", tuple(self.width_multipliers))
        object.__setattr__(self, "attention_resolutions", tuple(self.attention_resolutions))
        check_int("resolution", self.resolution, 8, 64)
        check_int("channels", self.channels, 1)
        check_int("base_width", self.base_width, 1)
        require(len(self.width_multipliers) >= 1
                and all(isinstance(m, int) and m >= 1 for m in self.width_multipliers),
                "width_multipliers", "one or more ints >= 1", self.width_multipliers)
        require(self.resolution % 2 ** (len(self.width_multipliers) - 1) == 0,
                "resolution", f"divisible by 2 ** (levels - 1) = "
                f"{2 ** (len(self.width_multipliers) - 1)}", self.resolution)
        check_int("blocks_per_level", self.blocks_per_level, 1)
        require(all(r in self.level_resolutions for r in self.attention_resolutions),
                "attention_resolutions", f"sides among the levels' {self.level_resolutions}",
                self.attention_resolutions)
        check_int("num_classes", self.num_classes, 0)
        require(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)", self.dropout)
        check_int("norm_groups", self.norm_groups, 1)
        require(all(w % self.norm_groups == 0 for w in self.widths), "norm_groups",
                f"a divisor of every level width {self.widths}", self.norm_groups)
        require(self.dtype in DTYPES, "dtype", f"one of {DTYPES}", self.dtype)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.base_width * m for m in self.width_multipliers)

    @property
    def level_resolutions(self) -> tuple[int, ...]:
        return tuple(self.resolution // 2 ** i for i in range(len(self.width_multipliers)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UNetConfig":
        """Inverse of ``to_dict``; unknown keys are refused so a typo is not silently lost."""
        names = {f.name for f in dataclasses.fields(cls)}
        require(set(d) <= names, "UNetConfig fields", f"a subset of {sorted(names)}", sorted(d))
        return cls(**d)


class _GroupNorm(nnx.GroupNorm):
    """``nnx.GroupNorm`` over NHWC maps (same parameters and statistics), computed faster.

    The statistics are per-channel means of x and x**2 over the pixels (a reduction along
    the contiguous layout), pooled into groups on the tiny ``(B, C)`` arrays; the
    normalisation then is one fused per-(image, channel) affine map. XLA's CPU backend runs
    this about 12 % faster over the whole default-prior UNet than the library's grouped
    reductions (measured side by side, batch 256).
    """

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        if mask is not None or x.ndim != 4:
            return super().__call__(x, mask=mask)
        b, h, w, c = x.shape
        group = c // self.num_groups
        x32 = x.astype(jnp.float32).reshape(b, h * w, c)
        mean = jnp.mean(x32, axis=1).reshape(b, self.num_groups, group).mean(-1)
        mean_sq = jnp.mean(jnp.square(x32), axis=1).reshape(b, self.num_groups, group).mean(-1)
        inv = jax.lax.rsqrt(jnp.maximum(mean_sq - jnp.square(mean), 0.0) + self.epsilon)
        scale = jnp.repeat(inv, group, axis=1) * self.scale[...]
        shift = self.bias[...] - jnp.repeat(mean, group, axis=1) * scale
        y = x.astype(jnp.float32) * scale[:, None, None, :] + shift[:, None, None, :]
        return y.astype(self.dtype or x.dtype)


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Sinusoidal embedding ``[cos, sin]`` of integer timesteps (diffusers' ``Timesteps``)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    angles = t.astype(jnp.float32)[:, None] * freqs[None]
    embedding = jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)
    return jnp.pad(embedding, ((0, 0), (0, dim % 2)))


class _ResBlock(nnx.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, config: UNetConfig, rngs: nnx.Rngs):
        dtype = jnp.dtype(config.dtype)
        self.norm1 = _GroupNorm(cin, num_groups=config.norm_groups, epsilon=NORM_EPS,
                                   dtype=jnp.float32, rngs=rngs)
        self.conv1 = nnx.Conv(cin, cout, (3, 3), padding=1, dtype=dtype, rngs=rngs)
        self.emb_proj = nnx.Linear(emb_dim, cout, dtype=dtype, rngs=rngs)
        self.norm2 = _GroupNorm(cout, num_groups=config.norm_groups, epsilon=NORM_EPS,
                                   dtype=jnp.float32, rngs=rngs)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), padding=1, dtype=dtype, rngs=rngs)
        self.skip = nnx.Conv(cin, cout, (1, 1), dtype=dtype, rngs=rngs) if cin != cout else None
        self.dropout = config.dropout

    def __call__(self, x: jax.Array, emb: jax.Array, dropout_key: jax.Array | None) -> jax.Array:
        h = self.conv1(nnx.silu(self.norm1(x)))
        h = h + self.emb_proj(nnx.silu(emb))[:, None, None, :]
        h = nnx.silu(self.norm2(h))
        if dropout_key is not None and self.dropout > 0:
            keep = jax.random.bernoulli(dropout_key, 1.0 - self.dropout, h.shape)
            h = jnp.where(keep, h / (1.0 - self.dropout), 0).astype(h.dtype)
        h = self.conv2(h)
        return (x if self.skip is None else self.skip(x)) + h


class _Attention(nnx.Module):
    """Single-head self-attention over the feature map with a residual connection."""

    def __init__(self, width: int, config: UNetConfig, rngs: nnx.Rngs):
        dtype = jnp.dtype(config.dtype)
        self.norm = _GroupNorm(width, num_groups=config.norm_groups, epsilon=NORM_EPS,
                                  dtype=jnp.float32, rngs=rngs)
        self.query = nnx.Linear(width, width, dtype=dtype, rngs=rngs)
        self.key = nnx.Linear(width, width, dtype=dtype, rngs=rngs)
        self.value = nnx.Linear(width, width, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(width, width, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        tokens = self.norm(x).reshape(b, h * w, c)
        q, k, v = self.query(tokens), self.key(tokens), self.value(tokens)
        logits = jnp.einsum("bqc,bkc->bqk", q, k, preferred_element_type=jnp.float32)
        weights = jax.nn.softmax(logits / math.sqrt(c), axis=-1).astype(v.dtype)
        attended = jnp.einsum("bqk,bkc->bqc", weights, v)
        return x + self.out(attended).reshape(b, h, w, c)


class _Level(nnx.Module):
    """The residual blocks (and attentions) of one resolution level, down or up."""

    def __init__(self, cins: list[int], cout: int, attention: bool, emb_dim: int,
                 config: UNetConfig, rngs: nnx.Rngs):
        self.blocks = nnx.List([_ResBlock(c, cout, emb_dim, config, rngs) for c in cins])
        self.attentions = nnx.List(
            [_Attention(cout, config, rngs) for _ in cins] if attention else [])


class UNet(nnx.Module):
    """``model(x, t, labels=None) -> eps``: the noise in ``x`` at training timestep ``t``.

    ``x``: ``(B, H, W, C)`` float images noised from the data range [-1, 1]; ``t``: ``(B,)``
    int timesteps of the training schedule; ``labels``: ``(B,)`` ints in ``[0, num_classes]``
    (``num_classes`` = no label) or None (no label). ``dropout_key``: enables dropout (training
    only). Returns float32 ``(B, H, W, C)``.
    """

    def __init__(self, config: UNetConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        base, emb_dim = config.base_width, 4 * config.base_width
        self.time_in = nnx.Linear(base, emb_dim, dtype=dtype, rngs=rngs)
        self.time_out = nnx.Linear(emb_dim, emb_dim, dtype=dtype, rngs=rngs)
        self.label_embedding = (nnx.Embed(config.num_classes + 1, emb_dim, rngs=rngs)
                                if config.num_classes else None)
        self.conv_in = nnx.Conv(config.channels, base, (3, 3), padding=1, dtype=dtype, rngs=rngs)

        levels = list(zip(config.widths, config.level_resolutions))
        last = len(levels) - 1
        skips, width = [base], base
        down, downsamplers = [], []
        for i, (cout, side) in enumerate(levels):
            cins = [width] + [cout] * (config.blocks_per_level - 1)
            down.append(_Level(cins, cout, side in config.attention_resolutions, emb_dim,
                               config, rngs))
            width = cout
            skips += [cout] * config.blocks_per_level
            if i < last:
                downsamplers.append(nnx.Conv(width, width, (3, 3), strides=2, padding=1,
                                             dtype=dtype, rngs=rngs))
                skips.append(width)
        self.down = nnx.List(down)
        self.downsamplers = nnx.List(downsamplers)

        self.mid_block1 = _ResBlock(width, width, emb_dim, config, rngs)
        self.mid_attention = _Attention(width, config, rngs)
        self.mid_block2 = _ResBlock(width, width, emb_dim, config, rngs)

        up, upsamplers = [], []
        for i, (cout, side) in reversed(list(enumerate(levels))):
            cins = []
            for _ in range(config.blocks_per_level + 1):
                cins.append(width + skips.pop())
                width = cout
            up.append(_Level(cins, cout, side in config.attention_resolutions, emb_dim,
                             config, rngs))
            if i > 0:
                upsamplers.append(nnx.Conv(width, width, (3, 3), padding=1, dtype=dtype,
                                           rngs=rngs))
        self.up = nnx.List(up)
        self.upsamplers = nnx.List(upsamplers)

        self.norm_out = _GroupNorm(width, num_groups=config.norm_groups, epsilon=NORM_EPS,
                                      dtype=jnp.float32, rngs=rngs)
        self.conv_out = nnx.Conv(width, config.channels, (3, 3), padding=1, dtype=dtype,
                                 rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array, labels: jax.Array | None = None, *,
                 dropout_key: jax.Array | None = None) -> jax.Array:
        config = self.config
        dtype = jnp.dtype(config.dtype)
        t = jnp.broadcast_to(jnp.asarray(t, jnp.int32), x.shape[:1])
        emb = self.time_out(nnx.silu(self.time_in(
            timestep_embedding(t, config.base_width).astype(dtype))))
        if self.label_embedding is not None:
            if labels is None:
                labels = jnp.full(x.shape[:1], config.num_classes, jnp.int32)
            emb = emb + self.label_embedding(labels).astype(emb.dtype)
        num_blocks = len(self.down) * (2 * config.blocks_per_level + 1) + 2
        keys = iter(jax.random.split(dropout_key, num_blocks) if dropout_key is not None else [])

        def block(module, h):
            return module(h, emb, next(keys, None))

        h = self.conv_in(x.astype(dtype))
        skips = [h]
        for i, level in enumerate(self.down):
            for j, res in enumerate(level.blocks):
                h = block(res, h)
                if level.attentions:
                    h = level.attentions[j](h)
                skips.append(h)
            if i < len(self.downsamplers):
                h = self.downsamplers[i](h)
                skips.append(h)
        h = block(self.mid_block2, self.mid_attention(block(self.mid_block1, h)))
        for i, level in enumerate(self.up):
            for j, res in enumerate(level.blocks):
                h = block(res, jnp.concatenate([h, skips.pop()], axis=-1))
                if level.attentions:
                    h = level.attentions[j](h)
            if i < len(self.upsamplers):
                h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
                h = self.upsamplers[i](h)
        h = self.conv_out(nnx.silu(self.norm_out(h)))
        return h.astype(jnp.float32)


def compiler_options() -> dict[str, str]:
    """XLA compiler options for a ``jax.jit`` that runs the UNet (``compiler_options=``).

    On CPU: YNNPACK keeps dots and reductions but not convolutions (see ``_CPU_OPTIONS``);
    same results up to float32 rounding. Empty on other backends, and where this jaxlib does
    not know the option (it is experimental), so a jit never fails for it.
    """
    if jax.default_backend() != "cpu" or not _cpu_options_known():
        return {}
    return dict(_CPU_OPTIONS)


@functools.cache
def _cpu_options_known() -> bool:
    """Whether this jaxlib accepts ``_CPU_OPTIONS`` (checked by compiling a trivial program)."""
    try:
        jax.jit(jnp.negative, compiler_options=_CPU_OPTIONS).lower(1.0).compile()
    except jax.errors.JaxRuntimeError:
        return False
    return True


def init_unet(config: UNetConfig, seed: int = 0) -> UNet:
    """A freshly initialised :class:`UNet`, built as one compiled program.

    Same architecture as ``UNet(config, rngs=nnx.Rngs(...))``, but much faster to build:
    eager construction compiles one initialiser per parameter shape, this compiles once and
    draws with the ``rbg`` PRNG (cheap to compile; the draws are reproducible for a seed on
    a given JAX version and backend, not across them).
    """
    return nnx.jit(lambda: UNet(config, rngs=nnx.Rngs(jax.random.key(seed, impl="rbg"))))()


def with_labels(model: UNet, num_classes: int) -> UNet:
    """An unconditional ``model`` made class-conditional for ``num_classes`` classes.

    Every parameter is ``model``'s; the new label embeddings (the ``num_classes`` labels and
    the "no label" index) start at zero, so the result computes ``model``'s function for every
    label until it is trained. This is how an unconditional public prior is fine-tuned on
    labelled data (``pe-jax dp-finetune``).
    """
    require(model.config.num_classes == 0, "model", "an unconditional UNet (num_classes 0)",
            model.config.num_classes)
    check_int("num_classes", num_classes, 1)
    conditional = init_unet(dataclasses.replace(model.config, num_classes=num_classes))
    nnx.update(conditional, nnx.state(model))
    embedding = conditional.label_embedding.embedding
    embedding[...] = jnp.zeros_like(embedding[...])
    return conditional
