"""The FID Inception-v3 network in Flax NNX: 2048-d pool3 features, as pytorch-fid computes them.

FID is only comparable across papers when it uses the same network: the TensorFlow Inception
graph of 2015-12-05, which pytorch-fid ports as ``pt_inception-2015-12-05-6726825d.pth``. This
module rebuilds that network layer for layer (torchvision's ``Inception3`` with pytorch-fid's
``FIDInceptionA/C/E_1/E_2`` patches: average pools that ignore padding, a max pool in the last
block), with the standard input pipeline in the graph: bilinear resize to 299x299
(``align_corners=False``, no antialiasing), grey images repeated to RGB, [0, 1] scaled to
[-1, 1]. Layer names follow the PyTorch state dict, so ``torch_state_map`` maps every tensor
of that file onto this model by name; ``experiments/convert_inception.py`` uses it to write a
pe_jax checkpoint, which ``pe_jax.embeddings.InceptionEmbedder`` loads with NumPy and orbax
only. No weights ship with pe_jax and none are downloaded.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

INPUT_SIZE = 299
FEATURES = 2048
BN_EPSILON = 1e-3  # torchvision's BasicConv2d
IGNORED_TORCH_TENSORS = ("fc.weight", "fc.bias")
"""Tensors of the FID weight file that pool3 features do not use (the 1008-way logits)."""


def _pairs(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else value


class BasicConv2d(nnx.Module):
    """Convolution without bias, batch norm (running statistics), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0, *, rngs: nnx.Rngs):
        ph, pw = _pairs(padding)
        self.conv = nnx.Conv(in_channels, out_channels, _pairs(kernel), strides=stride,
                             padding=((ph, ph), (pw, pw)), use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(out_channels, use_running_average=True, epsilon=BN_EPSILON,
                                rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """TensorFlow's 3x3 average pool: padded cells are left out of the mean."""
    return nnx.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                        count_include_pad=False)


def _max_pool(x: jax.Array, stride: int, padding: int) -> jax.Array:
    return nnx.max_pool(x, (3, 3), strides=(stride, stride),
                        padding=((padding, padding), (padding, padding)))


class InceptionA(nnx.Module):
    def __init__(self, c: int, pool_features: int, *, rngs: nnx.Rngs):
        self.branch1x1 = BasicConv2d(c, 64, 1, rngs=rngs)
        self.branch5x5_1 = BasicConv2d(c, 48, 1, rngs=rngs)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(c, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1, rngs=rngs)
        self.branch_pool = BasicConv2d(c, pool_features, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_3x3(x)),
        ], axis=-1)


class InceptionB(nnx.Module):
    def __init__(self, c: int, *, rngs: nnx.Rngs):
        self.branch3x3 = BasicConv2d(c, 384, 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(c, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            _max_pool(x, stride=2, padding=0),
        ], axis=-1)


class InceptionC(nnx.Module):
    def __init__(self, c: int, channels_7x7: int, *, rngs: nnx.Rngs):
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(c, 192, 1, rngs=rngs)
        self.branch7x7_1 = BasicConv2d(c, c7, 1, rngs=rngs)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_1 = BasicConv2d(c, c7, 1, rngs=rngs)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch_pool = BasicConv2d(c, 192, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d7 = layer(d7)
        return jnp.concatenate([self.branch1x1(x), b7, d7, self.branch_pool(_avg_pool_3x3(x))],
                               axis=-1)


class InceptionD(nnx.Module):
    def __init__(self, c: int, *, rngs: nnx.Rngs):
        self.branch3x3_1 = BasicConv2d(c, 192, 1, rngs=rngs)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = BasicConv2d(c, 192, 1, rngs=rngs)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return jnp.concatenate([self.branch3x3_2(self.branch3x3_1(x)), b7,
                                _max_pool(x, stride=2, padding=0)], axis=-1)


class InceptionE(nnx.Module):
    """``max_pool=False``: pytorch-fid's FIDInceptionE_1; ``True``: FIDInceptionE_2."""

    def __init__(self, c: int, max_pool: bool, *, rngs: nnx.Rngs):
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(c, 320, 1, rngs=rngs)
        self.branch3x3_1 = BasicConv2d(c, 384, 1, rngs=rngs)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(c, 448, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch_pool = BasicConv2d(c, 192, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _max_pool(x, stride=1, padding=1) if self.max_pool else _avg_pool_3x3(x)
        return jnp.concatenate([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3),
            self.branch_pool(pooled),
        ], axis=-1)


class FIDInceptionV3(nnx.Module):
    """Images ``(n, H, W, 1 or 3)`` in [0, 1] -> pool3 features ``(n, 2048)`` float32."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3, rngs=rngs)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3, rngs=rngs)
        self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
        self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
        self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
        self.Mixed_6a = InceptionB(288, rngs=rngs)
        self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
        self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
        self.Mixed_7a = InceptionD(768, rngs=rngs)
        self.Mixed_7b = InceptionE(1280, max_pool=False, rngs=rngs)
        self.Mixed_7c = InceptionE(2048, max_pool=True, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        x = preprocess(images)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = _max_pool(x, stride=2, padding=0)
        x = _max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), stride=2, padding=0)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                      self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(axis=(1, 2))


def preprocess(images: jax.Array) -> jax.Array:
    """pytorch-fid's input pipeline: RGB, bilinear resize to 299 (align_corners=False), [-1, 1]."""
    images = jnp.asarray(images, jnp.float32)
    if images.shape[-1] == 1:
        images = jnp.repeat(images, 3, axis=-1)
    if images.shape[-1] != 3:
        raise ValueError(f"images must have 1 or 3 channels; got shape {images.shape}")
    n = images.shape[0]
    images = jax.image.resize(images, (n, INPUT_SIZE, INPUT_SIZE, 3), method="bilinear",
                              antialias=False)
    return 2.0 * images - 1.0


_TORCH_NAMES = {  # NNX variable name -> (PyTorch name, how an OIHW / vector tensor maps)
    ("conv", "kernel"): ("conv.weight", (2, 3, 1, 0)),  # OIHW -> HWIO
    ("bn", "scale"): ("bn.weight", None),
    ("bn", "bias"): ("bn.bias", None),
    ("bn", "mean"): ("bn.running_mean", None),
    ("bn", "var"): ("bn.running_var", None),
}


def torch_state_map(model: FIDInceptionV3) -> dict[str, tuple[tuple[str, ...], tuple | None]]:
    """PyTorch state-dict name -> (NNX state path, axis permutation or None) for every array.

    Every array of ``model`` appears exactly once. Tensors of the weight file left out of the
    map are ``IGNORED_TORCH_TENSORS`` and the BatchNorm ``num_batches_tracked`` counters.
    """
    mapping = {}
    for path, _ in nnx.to_flat_state(nnx.state(model)):
        path = tuple(str(p) for p in path)
        torch_suffix, permutation = _TORCH_NAMES[path[-2:]]
        mapping[".".join(path[:-2] + (torch_suffix,))] = (path, permutation)
    return mapping


def is_ignored_torch_tensor(name: str) -> bool:
    """Whether a tensor of the FID weight file has no place in the pool3 network."""
    return name in IGNORED_TORCH_TENSORS or name.endswith(".num_batches_tracked")


def abstract_model() -> FIDInceptionV3:
    """The network's structure with shapes only (no arrays): fill it with ``load_torch_state``
    or ``pe_jax.checkpoints.restore``; drawing 23M random weights would take seconds."""
    return nnx.eval_shape(lambda: FIDInceptionV3(rngs=nnx.Rngs(0)))


def load_torch_state(model: FIDInceptionV3, tensors: Mapping[str, np.ndarray]) -> None:
    """Copies a pytorch-fid state dict (as NumPy arrays) into ``model`` in place.

    Raises ValueError naming every tensor that is missing, unexpected or of the wrong shape,
    so a converted checkpoint is complete or not written at all.
    """
    mapping = torch_state_map(model)
    flat = dict(nnx.to_flat_state(nnx.state(model)))
    flat = {tuple(str(p) for p in k): v for k, v in flat.items()}
    unexpected = sorted(n for n in tensors if n not in mapping and not is_ignored_torch_tensor(n))
    missing = sorted(n for n in mapping if n not in tensors)
    problems = [f"missing: {missing}"] if missing else []
    problems += [f"unexpected: {unexpected}"] if unexpected else []
    updates = {}
    for name, (path, permutation) in mapping.items():
        if name not in tensors:
            continue
        array = np.asarray(tensors[name], np.float32)
        if permutation is not None and array.ndim == len(permutation):
            array = array.transpose(permutation)
        expected = tuple(flat[path].get_value().shape)
        if array.shape != expected:
            problems.append(f"{name}: shape {np.shape(tensors[name])} does not fit "
                            f"{'/'.join(path)} of shape {expected}")
        updates[path] = array
    if problems:
        raise ValueError("tensors must match the FID Inception-v3 state dict; " +
                         "; ".join(problems))
    for path, array in updates.items():
        flat[path].set_value(jnp.asarray(array))
