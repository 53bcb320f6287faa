"""Converts pytorch-fid's FID Inception weights into a pe_jax checkpoint (needs torch here only).

Bring the standard FID weights yourself (pe_jax downloads nothing): the file
``pt_inception-2015-12-05-6726825d.pth`` from pytorch-fid's release page
(https://github.com/mseitzer/pytorch-fid/releases/tag/fid_weights), then::

    pip install torch                      # CPU wheel is enough; only this script needs it
    .venv/bin/python experiments/convert_inception.py pt_inception-2015-12-05-6726825d.pth \
        checkpoints/fid_inception
    .venv/bin/pe-jax run --set embedding.name=inception \
        --set embedding.checkpoint=checkpoints/fid_inception ...   # or
    make_embedder("inception", weights="checkpoints/fid_inception")

The file is read with ``torch.load(weights_only=True)`` (no code runs), every tensor is mapped
by name and shape through ``pe_jax.models.inception.torch_state_map`` (the 1008-way ``fc``
logits and BatchNorm counters are dropped), and the result is written with
``pe_jax.checkpoints.save``: orbax arrays plus ``metadata.json`` naming the source file and
its SHA-256.

Two more modes, used to build and check the port:

* ``--check [WEIGHTS]``: runs a torchvision-free PyTorch copy of pytorch-fid's network
  (below) and the NNX port on the same random images, with the given weights or random ones,
  and prints the largest feature difference.
* ``--write-names PATH``: writes the PyTorch state dict's tensor names and shapes as JSON
  (``tests/fixtures/fid_inception_torch_state.json``, which the mapping test reads).
"""

import argparse
import hashlib
import json
import pathlib

import numpy as np


def torch_reference():
    """pytorch-fid's ``fid_inception_v3()`` network, without torchvision, in eval mode.

    torchvision's ``Inception3(num_classes=1008, aux_logits=False)`` layers with pytorch-fid's
    FIDInceptionA/C/E_1/E_2 forward patches; forward returns the 2048-d pool3 features of
    images ``(n, 3, H, W)`` in [0, 1] (resized to 299 and scaled to [-1, 1] as pytorch-fid does).
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BasicConv2d(nn.Module):
        def __init__(self, cin, cout, **kwargs):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def avg(x):
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    class A(nn.Module):
        def __init__(self, c, pool_features):
            super().__init__()
            self.branch1x1 = BasicConv2d(c, 64, kernel_size=1)
            self.branch5x5_1 = BasicConv2d(c, 48, kernel_size=1)
            self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
            self.branch3x3dbl_1 = BasicConv2d(c, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
            self.branch_pool = BasicConv2d(c, pool_features, kernel_size=1)

        def forward(self, x):
            return torch.cat([
                self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(avg(x))], 1)

    class B(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.branch3x3 = BasicConv2d(c, 384, kernel_size=3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(c, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

        def forward(self, x):
            return torch.cat([
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class C(nn.Module):
        def __init__(self, c, c7):
            super().__init__()
            self.branch1x1 = BasicConv2d(c, 192, kernel_size=1)
            self.branch7x7_1 = BasicConv2d(c, c7, kernel_size=1)
            self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_1 = BasicConv2d(c, c7, kernel_size=1)
            self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch_pool = BasicConv2d(c, 192, kernel_size=1)

        def forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d7 = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(
                self.branch7x7dbl_2(self.branch7x7dbl_1(x)))))
            return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(avg(x))], 1)

    class D(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.branch3x3_1 = BasicConv2d(c, 192, kernel_size=1)
            self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
            self.branch7x7x3_1 = BasicConv2d(c, 192, kernel_size=1)
            self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

        def forward(self, x):
            b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
            return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7,
                              F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class E(nn.Module):
        def __init__(self, c, max_pool):
            super().__init__()
            self.max_pool = max_pool
            self.branch1x1 = BasicConv2d(c, 320, kernel_size=1)
            self.branch3x3_1 = BasicConv2d(c, 384, kernel_size=1)
            self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = BasicConv2d(c, 448, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
            self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch_pool = BasicConv2d(c, 192, kernel_size=1)

        def forward(self, x):
            b3 = self.branch3x3_1(x)
            d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            pooled = (F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool
                      else avg(x))
            return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                              self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3),
                              self.branch_pool(pooled)], 1)

    class FIDInception(nn.Module):
        def __init__(self):
            super().__init__()
            self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
            self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
            self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
            self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
            self.Mixed_6a = B(288)
            self.Mixed_6b, self.Mixed_6c = C(768, 128), C(768, 160)
            self.Mixed_6d, self.Mixed_6e = C(768, 160), C(768, 192)
            self.Mixed_7a = D(768)
            self.Mixed_7b, self.Mixed_7c = E(1280, False), E(2048, True)
            self.fc = nn.Linear(2048, 1008)

        def forward(self, x):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            x = 2 * x - 1
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
            for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
                x = getattr(self, f"Mixed_{name}")(x)
            return x.mean(dim=(2, 3))

    return FIDInception().eval()


def load_weights(path: pathlib.Path) -> dict[str, np.ndarray]:
    """The weight file's tensors as NumPy arrays (``torch.load`` with ``weights_only``)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {name: tensor.numpy() for name, tensor in state.items()}


def convert(weights: pathlib.Path, out: pathlib.Path) -> None:
    from pe_jax import checkpoints
    from pe_jax.models import inception

    model = inception.abstract_model()
    inception.load_torch_state(model, load_weights(weights))
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    checkpoints.save(out, model, {"model": "fid_inception_v3", "source": weights.name,
                                  "sha256": digest,
                                  "converter": "experiments/convert_inception.py"})
    print(f"wrote {out} from {weights.name} (sha256 {digest[:16]}...)")


def check(weights: pathlib.Path | None) -> None:
    import jax
    import torch
    from flax import nnx

    from pe_jax.models import inception

    torch.manual_seed(0)
    reference = torch_reference()
    if weights is not None:
        reference.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    else:  # random, non-trivial batch-norm statistics so that every BN tensor matters
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                with torch.no_grad():
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.1, 0.1)
                    module.running_mean.uniform_(-0.1, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
    tensors = {n: t.detach().numpy() for n, t in reference.state_dict().items()}
    model = inception.abstract_model()
    inception.load_torch_state(model, tensors)
    images = np.random.default_rng(0).random((3, 8, 8, 3), dtype=np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    graphdef, state = nnx.split(model)
    got = np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, images))
    scale = np.abs(expected).max()
    print(f"NNX vs PyTorch pool3 features on {len(images)} images: max |diff| = "
          f"{np.abs(got - expected).max():.3g} (max |feature| = {scale:.3g})")


def write_names(path: pathlib.Path) -> None:
    state = torch_reference().state_dict()
    names = [[name, list(tensor.shape)] for name, tensor in state.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(names, indent=0) + "\n")
    print(f"wrote {len(names)} tensor names and shapes to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="?", type=pathlib.Path,
                        help="pt_inception-2015-12-05-6726825d.pth")
    parser.add_argument("out", nargs="?", type=pathlib.Path, help="a new checkpoint folder")
    parser.add_argument("--check", action="store_true",
                        help="compare the NNX port with PyTorch (given or random weights)")
    parser.add_argument("--write-names", type=pathlib.Path, default=None, metavar="PATH",
                        help="write the PyTorch state dict's names and shapes as JSON")
    args = parser.parse_args()
    if args.write_names:
        write_names(args.write_names)
    elif args.check:
        check(args.weights)
    elif args.weights and args.out:
        convert(args.weights, args.out)
    else:
        parser.error("give WEIGHTS and OUT, or --check, or --write-names PATH")


if __name__ == "__main__":
    main()
