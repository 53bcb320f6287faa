"""One prepared check for a one-GPU machine: vote throughput, diffusion images/s, one iteration.

Run by ``experiments/device_check.sh`` (which caps the whole run at under 8 minutes); needs only
what the package installs and no network: its inputs are random embeddings, random images and
the prior shipped in ``pe_jax/assets/prior_digits8``.  Each part runs in its own subprocess
with its own timeout, so one that hangs or runs out of memory costs only its own row:

* ``vote``: ``voting.vote`` at (N_priv, N_syn, D) = (1M, 100k, 2048), one class, k = 1, the
  private rows laid out once: the float32 path (``screen=False``, full-precision matmuls) and
  the bf16 path (``screen=True``: bfloat16 ranking, float32 rescoring of the rows it cannot
  decide).  TFLOP/s counts 2 N_priv N_syn D; the share is of the chip's float32 (non-tensor)
  peak for the float32 path and of its dense bf16 tensor peak for the bf16 path.  The two
  histograms must be equal (the screen never changes a vote).  Random Gaussian embeddings in
  2048 dimensions have nearly equal distances, a hard case for the screen (many rescored rows).
* ``diffusion``: images/s of ``DiffusionGenerator.random`` and ``.variation(0.5)`` in bfloat16
  for the shipped prior (its weights and sampling settings) and a CIFAR-sized 35.7M UNet
  (random weights), with model-FLOPs utilisation: images/s x UNet evaluations per image x
  FLOPs per evaluation (XLA's cost analysis of one forward) / the bf16 peak.
* ``step``: one whole PE iteration (``pe_jax.step``) of the CIFAR-sized UNet in bfloat16 with
  ``--step-samples`` samples over 10 classes and as many random private images (256-d random
  projections), broken into variation, embedding, vote, selection, the host noise draw and the
  rest, steady state.

    experiments/device_check.sh                 # on the GPU machine
    experiments/device_check.sh --cpu-smoke     # tiny sizes, to check it runs end to end

The peaks come from the device kind (table below); an unknown chip prints ``unknown`` shares
(``--peak-f32`` / ``--peak-bf16`` in TFLOP/s override).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from measure import median_seconds

# Dense peak TFLOP/s (no structured sparsity) from NVIDIA's published spec sheets:
#   H100: "NVIDIA H100 Tensor Core GPU" datasheet -- SXM5: FP32 67, BF16 Tensor Core 989
#         (1,979 with sparsity); PCIe: FP32 51, BF16 756; NVL: FP32 60, BF16 835.
#   H200: "NVIDIA H200 Tensor Core GPU" datasheet -- SXM: FP32 67, BF16 989 (1,979 sparse);
#         NVL: FP32 60, BF16 835.
#   A100: "NVIDIA A100 Tensor Core GPU" datasheet (40GB and 80GB, SXM and PCIe): FP32 19.5,
#         BF16 Tensor Core 312 (624 with sparsity).
# (substring of jax's device_kind, FP32, BF16); the first match wins, so variants come first.
KNOWN_PEAKS = [
    ("H100 PCIe", 51.0, 756.0),
    ("H100 NVL", 60.0, 835.0),
    ("H100", 67.0, 989.0),  # SXM5, e.g. "NVIDIA H100 80GB HBM3"
    ("H200 NVL", 60.0, 835.0),
    ("H200", 67.0, 989.0),  # SXM
    ("A100", 19.5, 312.0),
]

FULL = {"vote": (1_000_000, 100_000, 2048), "vote_repeats": 1,
        "prior_batch": 4096, "cifar_batch": 256, "cifar_steps": 10, "diff_repeats": 2,
        "step_samples": 10_000, "step_ddim": 20, "step_repeats": 2}
SMOKE = {"vote": (8_192, 1_024, 64), "vote_repeats": 1,
         "prior_batch": 16, "cifar_batch": 2, "cifar_steps": 1, "diff_repeats": 1,
         "step_samples": 40, "step_ddim": 2, "step_repeats": 1}
TIMEOUTS = {"vote": 125, "diffusion": 145, "step": 170}  # seconds per part


def peaks(kind: str) -> tuple[float | None, float | None]:
    for name, f32, bf16 in KNOWN_PEAKS:
        if name.lower() in kind.lower():
            return f32, bf16
    return None, None


def _peak_gb() -> float | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 1e9


# --------------------------------------------------------------------------- parts

def part_vote(sizes: dict) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from pe_jax import voting

    n_priv, n_syn, dim = sizes["vote"]
    k1, k2 = jax.random.split(jax.random.key(0))
    private = jax.random.normal(k1, (n_priv, dim), jnp.float32)
    synthetic = jax.random.normal(k2, (n_syn, dim), jnp.float32)
    blocks = voting.prepare_private(private)
    del private
    classes = np.arange(n_syn, dtype=np.int32)[None]
    flops = 2.0 * n_priv * n_syn * dim
    rows, hashes = [], {}
    for path, screen in (("float32", False), ("bf16 screen", True)):
        def run(screen=screen):
            return voting.vote(blocks, synthetic, classes, screen=screen).block_until_ready()

        t0 = time.perf_counter()
        hist = run()
        first = time.perf_counter() - t0
        times = []
        for _ in range(sizes["vote_repeats"]):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        seconds = statistics.median(times)
        hashes[path] = hashlib.sha256(np.asarray(hist).tobytes()).hexdigest()[:12]
        rows.append({"part": "vote", "what": f"{path} {n_priv}x{n_syn}x{dim}",
                     "seconds": seconds, "first_s": first, "tflops": flops / seconds / 1e12,
                     "peak": "f32" if screen is False else "bf16", "peak_gb": _peak_gb(),
                     "note": f"votes {int(np.asarray(hist).sum())}, first call {first:.1f} s"})
    same = hashes["float32"] == hashes["bf16 screen"]
    rows[-1]["note"] += f"; same histogram as float32: {same}"
    return rows


def _cifar_config(smoke: bool, num_classes: int = 0):
    from pe_jax.models.unet import UNetConfig

    if smoke:  # a tiny stand-in: the smoke run checks the plumbing, not the speed
        return UNetConfig(resolution=8, channels=3, base_width=16, width_multipliers=(1, 2),
                          blocks_per_level=1, attention_resolutions=(4,), norm_groups=8,
                          num_classes=num_classes, dtype="bfloat16")
    return UNetConfig(resolution=32, channels=3, base_width=128, width_multipliers=(1, 2, 2, 2),
                      blocks_per_level=2, attention_resolutions=(16,), norm_groups=32,
                      num_classes=num_classes, dtype="bfloat16")


def _forward_flops(generator, batch: int) -> float:
    """XLA's FLOP count of one UNet forward over ``batch`` images, per image."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, state = generator._graphdef, generator._state
    config = generator.config
    forward = jax.jit(lambda s, x, t, y: nnx.merge(graphdef, s)(x, t, y))
    x = jnp.zeros((batch, config.resolution, config.resolution, config.channels))
    labels = jnp.full((batch,), config.num_classes, jnp.int32)
    cost = forward.lower(state, x, jnp.zeros(batch, jnp.int32), labels).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan"))) / batch


def part_diffusion(sizes: dict, smoke: bool) -> list[dict]:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from pe_jax import checkpoints
    from pe_jax.apis.diffusion import (
        DEFAULT_PRIOR,
        DiffusionGenerator,
        _unet_from_metadata,
    )
    from pe_jax.diffusion import make_schedule
    from pe_jax.models.unet import UNet

    def bf16_prior(metadata):
        return _unet_from_metadata({**metadata, "unet": {**metadata["unet"], "dtype": "bfloat16"}})

    model, metadata = checkpoints.load(DEFAULT_PRIOR, bf16_prior)
    sampling = {k: v for k, v in metadata.get("sampling", {}).items()
                if k in ("steps", "eta", "guidance")}
    if smoke:
        sampling["steps"] = 2
    prior = DiffusionGenerator(model, make_schedule(**metadata["schedule"]), **sampling)
    cifar = DiffusionGenerator(UNet(_cifar_config(smoke), rngs=nnx.Rngs(0)),
                               make_schedule("cosine", 1000), steps=sizes["cifar_steps"])
    plan = [("prior_digits8", prior, sizes["prior_batch"], sampling.get("guidance", 1.0),
             sampling.get("steps", 50)),
            ("cifar32 35.7M" if not smoke else "tiny 8x8x3", cifar, sizes["cifar_batch"], 1.0,
             sizes["cifar_steps"])]
    rows = []
    for name, gen, batch, guidance, steps in plan:
        nc = gen.config.num_classes
        labels = jnp.arange(batch, dtype=jnp.int32) % nc if nc else None
        start = gen.random(jax.random.key(1), batch, labels)
        flops = _forward_flops(gen, batch)
        doubled = 2 if (guidance != 1.0 and nc) else 1
        for api, fn, api_steps in (
                ("random", lambda gen=gen, batch=batch, labels=labels: gen.random(
                    jax.random.key(2), batch, labels).images.block_until_ready(), steps),
                ("variation(0.5)", lambda gen=gen, start=start: gen.variation(
                    jax.random.key(3), start, 0.5).images.block_until_ready(),
                 round(0.5 * steps))):
            seconds = median_seconds(fn, sizes["diff_repeats"])
            model_flops = batch * api_steps * doubled * flops
            rows.append({"part": "diffusion", "what": f"{name} {api} b{batch} s{api_steps}",
                         "seconds": seconds, "tflops": model_flops / seconds / 1e12,
                         "peak": "bf16", "peak_gb": _peak_gb(),
                         "note": f"{batch / seconds:.1f} img/s, {flops / 1e9:.2f} GFLOP/eval"
                                 + (", cfg x2" if doubled == 2 else "")})
    return rows


def part_step(sizes: dict, smoke: bool) -> list[dict]:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from pe_jax import embeddings, evolve, population, privacy, step, voting
    from pe_jax.apis.diffusion import DiffusionGenerator
    from pe_jax.diffusion import make_schedule
    from pe_jax.models.unet import UNet

    samples = sizes["step_samples"]
    config = _cifar_config(smoke, num_classes=10)
    generator = DiffusionGenerator(UNet(config, rngs=nnx.Rngs(0)), make_schedule("cosine", 1000),
                                   steps=sizes["step_ddim"])
    embedder = embeddings.RandomProjectionEmbedder(256)
    rng = np.random.default_rng(0)
    res = config.resolution
    images = rng.uniform(0, 1, (samples, res, res, 3)).astype(np.float32)
    labels = rng.integers(0, 10, samples).astype(np.int32)
    per_class = (samples // 10,) * 10
    degree = jnp.float32(0.3)
    pe = evolve.PEConfig(iterations=1, noise_multiplier=3.0, samples_per_class=per_class,
                         degrees=(0.3,), threshold=0.0)
    layout = pe.layout
    private = voting.prepare_private(embedder(jnp.asarray(images)), labels,
                                     num_classes=layout.num_classes)
    state = step.initial_state(jax.random.key(0), generator, layout, conditional=True)
    key = jax.random.key(1)
    weights = jnp.ones(len(layout.labels), jnp.float32)
    embed = jax.jit(lambda s: embedder(generator.images(s)))
    vary = jax.jit(lambda s: generator.variation(key, s, degree))
    choose = jax.jit(lambda w: population.select_parents(key, w, layout))
    synthetic = embed(state.samples)
    repeats = sizes["step_repeats"]
    block = lambda fn: (lambda: jax.block_until_ready(fn()))
    parts = {
        "variation": median_seconds(block(lambda: vary(state.samples)), repeats),
        "embedding": median_seconds(block(lambda: embed(state.samples)), repeats),
        "vote": median_seconds(block(lambda: voting.vote(private, synthetic, layout.members)),
                               repeats),
        "selection": median_seconds(block(lambda: choose(weights)), repeats),
    }
    event = privacy.release_event(noise_multiplier=3.0)
    ledger = privacy.PrivacyLedger(1e-5)
    parts["noise draw (host)"] = median_seconds(
        lambda: privacy.draw_noise(event, ledger, len(layout.labels)), repeats)
    one_step = step.make_step(generator, embedder, layout, pe.step_settings)
    noise = jax.device_put(jnp.zeros(len(layout.labels), jnp.int32))
    compiled = one_step.lower(state, private, noise, degree).compile()
    current = [jax.tree.map(jnp.copy, state)]

    def run_step():
        current[0], output = compiled(current[0], private, noise, degree)
        return jax.block_until_ready(output)

    whole = median_seconds(run_step, repeats)
    parts["rest (whole - parts)"] = whole - sum(parts.values())
    what = f"{'cifar32' if not smoke else 'tiny'} bf16, {samples} samples"
    rows = [{"part": "step", "what": name, "seconds": s, "note": f"{s / whole:.0%} of the step"}
            for name, s in parts.items()]
    rows.append({"part": "step", "what": f"whole iteration ({what})", "seconds": whole,
                 "peak_gb": _peak_gb(),
                 "note": f"{sizes['step_ddim']} DDIM steps, degree 0.3"})
    return rows


# --------------------------------------------------------------------------- driver

def run_part(name: str, smoke: bool) -> None:
    sizes = SMOKE if smoke else FULL
    if name == "vote":
        rows = part_vote(sizes)
    elif name == "diffusion":
        rows = part_diffusion(sizes, smoke)
    else:
        rows = part_step(sizes, smoke)
    for row in rows:
        print("RESULT " + json.dumps(row), flush=True)


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes, any backend")
    parser.add_argument("--parts", nargs="+", default=["vote", "diffusion", "step"],
                        choices=["vote", "diffusion", "step"])
    parser.add_argument("--peak-f32", type=float, default=None, help="override, TFLOP/s")
    parser.add_argument("--peak-bf16", type=float, default=None, help="override, TFLOP/s")
    parser.add_argument("--timeout-scale", type=float, default=1.0)
    parser.add_argument("--_part", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._part:
        run_part(args._part, args.cpu_smoke)
        return

    import jax

    device = jax.devices()[0]
    kind = device.device_kind
    f32, bf16 = peaks(kind)
    f32 = args.peak_f32 or f32
    bf16 = args.peak_bf16 or bf16
    print(f"device_check: jax {jax.__version__}, {jax.device_count()} x {device.platform} "
          f"'{kind}', peaks (dense, spec sheet) float32 {_fmt(f32, 'g', 'unknown')} / "
          f"bf16 {_fmt(bf16, 'g', 'unknown')} TFLOP/s, "
          f"sizes {'cpu-smoke' if args.cpu_smoke else 'full'}",
          flush=True)
    rows = []
    for part in args.parts:
        limit = TIMEOUTS[part] * args.timeout_scale
        cmd = [sys.executable, __file__, "--_part", part] + (["--cpu-smoke"] if args.cpu_smoke
                                                             else [])
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
            out, err, code = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err, code = f"timed out after {limit:.0f} s", None
        got = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
        rows += got
        if code != 0:
            last = (err.strip().splitlines() or ["?"])[-1][:160]
            rows.append({"part": part, "what": "FAILED" if code is not None else "TIMEOUT",
                         "note": last})
        print(f"  part {part}: {time.perf_counter() - t0:.0f} s, exit {code}", flush=True)

    header = (f"{'part':<10} {'what':<46} {'time_s':>9} {'TFLOP/s':>8} {'% peak':>7} "
              f"{'peakGB':>7}  note")
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        peak = {"f32": f32, "bf16": bf16}.get(r.get("peak"))
        share = (f"{100 * r['tflops'] / peak:.1f}" if peak and r.get("tflops") is not None
                 else ("unknown" if r.get("peak") else "-"))
        print(f"{r['part']:<10} {r['what'][:46]:<46} {_fmt(r.get('seconds'), '9.4f'):>9} "
              f"{_fmt(r.get('tflops'), '8.2f'):>8} {share:>7} {_fmt(r.get('peak_gb'), '7.2f'):>7}"
              f"  {r.get('note', '')}")


if __name__ == "__main__":
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # honest peak memory
    main()
