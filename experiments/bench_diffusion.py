"""Images/s of the diffusion APIs (random, variation) against Hugging Face diffusers on CPU.

For two UNet configurations -- the default prior's (8x8 grey) and a CIFAR-sized one (32x32x3,
~35.7M parameters, DDPM's CIFAR-10 model) -- this times ``DiffusionGenerator.random`` and
``.variation`` side by side with the same ``diffusers.UNet2DModel`` configuration (parameter
counts printed next to each other) and ``DDIMScheduler`` (cosine schedule, trailing timestep
spacing, x0 clipping, eta = 0): same batch, same number of DDIM steps, float32, warm-up
excluded, repeats interleaved (ours, diffusers, ours, ...) so that load from other processes
hits both alike; the median of the repeats is reported with the ratio ours / diffusers. Both
use all the CPU cores this process may run on (torch: ``set_num_threads``, OpenMP waiting
passively). The default prior runs with the classifier-free guidance stored in its checkpoint
(both sides then evaluate a doubled batch per step).

    .venv/bin/pip install torch==2.13.0 diffusers     # the CPU wheel
    .venv/bin/python experiments/bench_diffusion.py            # about 2 minutes on 2 cores
    .venv/bin/python experiments/bench_diffusion.py --quick    # fewer repeats and a smaller batch

``--bf16`` computes our model in bfloat16 (for an accelerator; diffusers stays float32 on
CPU); ``--peak-tflops`` adds our share of the chip's peak (model FLOPs from XLA's cost
analysis). Without torch/diffusers installed only our numbers are printed.
"""

import argparse
import dataclasses
import os
import statistics
import time

# PyTorch's OpenMP threads spin at barriers by default; on a machine shared with other jobs
# that made diffusers ~25x slower (1.25 s instead of 0.05 s per forward of the 8x8 prior,
# measured). Passive waiting is what a fair CPU comparison needs; set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax
import jax.numpy as jnp
from flax import nnx

from pe_jax import checkpoints
from pe_jax.apis.diffusion import DEFAULT_PRIOR, DiffusionGenerator
from pe_jax.diffusion import make_schedule
from pe_jax.models.unet import UNetConfig, compiler_options, init_unet

CIFAR = UNetConfig(resolution=32, channels=3, base_width=128, width_multipliers=(1, 2, 2, 2),
                   blocks_per_level=2, attention_resolutions=(16,), norm_groups=32)
SMALL_PRIOR = UNetConfig(resolution=8, channels=1, base_width=32, width_multipliers=(1, 2),
                         blocks_per_level=1, attention_resolutions=(4,), norm_groups=8)
NUM_TRAIN_STEPS = 1000
DEGREE = 0.5


def prior_config() -> tuple[UNetConfig, float, str]:
    """The shipped default prior's UNet config and guidance (its checkpoint metadata), else a
    small stand-in."""
    if not (DEFAULT_PRIOR / checkpoints.METADATA_FILE).is_file():
        return SMALL_PRIOR, 1.0, "stand-in 8x8"
    metadata = checkpoints.load_metadata(DEFAULT_PRIOR)
    guidance = float(metadata.get("sampling", {}).get("guidance", 1.0))
    return UNetConfig.from_dict(metadata["unet"]), guidance, "prior_digits8"


def ours(config: UNetConfig, steps: int, batch: int, guidance: float):
    """Timed callables for our random and variation, the parameter count and model FLOPs."""
    model = init_unet(config)
    generator = DiffusionGenerator(model, make_schedule("cosine", NUM_TRAIN_STEPS), steps=steps,
                                   guidance=guidance)
    labels = jnp.arange(batch, dtype=jnp.int32) % config.num_classes if config.num_classes else None
    start = generator.random(jax.random.key(1), batch, labels)
    params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))

    def random():
        generator.random(jax.random.key(2), batch, labels).images.block_until_ready()

    def variation():
        generator.variation(jax.random.key(3), start, DEGREE).images.block_until_ready()

    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda s, x, t, y: nnx.merge(graphdef, s)(x, t, y))
    x = jnp.zeros((batch, config.resolution, config.resolution, config.channels))
    cost = forward.lower(state, x, jnp.zeros(batch, jnp.int32), labels).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops_per_image_step = float(cost.get("flops", float("nan"))) / batch
    return random, variation, params, flops_per_image_step


def diffusers_side(config: UNetConfig, steps: int, batch: int, guidance: float):
    """The same UNet configuration and a DDIM scheduler in diffusers (PyTorch, float32)."""
    import torch
    from diffusers import DDIMScheduler, UNet2DModel

    down = tuple("AttnDownBlock2D" if r in config.attention_resolutions else "DownBlock2D"
                 for r in config.level_resolutions)
    up = tuple(b.replace("Down", "Up") for b in reversed(down))
    model = UNet2DModel(
        sample_size=config.resolution, in_channels=config.channels,
        out_channels=config.channels, block_out_channels=config.widths,
        layers_per_block=config.blocks_per_level, down_block_types=down, up_block_types=up,
        attention_head_dim=None, norm_num_groups=config.norm_groups, norm_eps=1e-5,
        num_class_embeds=config.num_classes + 1 if config.num_classes else None,
    ).eval()
    scheduler = DDIMScheduler(num_train_timesteps=NUM_TRAIN_STEPS,
                              beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing",
                              clip_sample=True, set_alpha_to_one=True)
    scheduler.set_timesteps(steps)
    labels = (torch.arange(batch) % config.num_classes) if config.num_classes else None
    shape = (batch, config.channels, config.resolution, config.resolution)
    generator = torch.Generator().manual_seed(0)
    start = torch.rand(shape, generator=generator) * 2 - 1
    params = sum(p.numel() for p in model.parameters())

    @torch.inference_mode()
    def denoise(x, timesteps):
        for t in timesteps:
            if guidance == 1.0:
                eps = model(x, t, class_labels=labels).sample
            else:  # classifier-free guidance: labelled and "no label" halves in one batch
                both = model(torch.cat([x, x]), t, class_labels=torch.cat(
                    [labels, torch.full_like(labels, config.num_classes)])).sample
                cond, uncond = both.chunk(2)
                eps = uncond + guidance * (cond - uncond)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        return x

    def random():
        denoise(torch.randn(shape, generator=generator), scheduler.timesteps)

    def variation():
        remaining = scheduler.timesteps[steps - round(DEGREE * steps):]
        noise = torch.randn(shape, generator=generator)
        denoise(scheduler.add_noise(start, noise, remaining[:1]), remaining)

    return random, variation, params


def timed(fn) -> float:
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def bench(name: str, config: UNetConfig, steps: int, batch: int, guidance: float,
          repeats: int, with_diffusers: bool, peak_tflops: float | None) -> list[dict]:
    our_random, our_variation, our_params, flops = ours(config, steps, batch, guidance)
    sides = {"ours": (our_random, our_variation)}
    their_params = None
    if with_diffusers:
        their_random, their_variation, their_params = diffusers_side(config, steps, batch,
                                                                     guidance)
        sides["diffusers"] = (their_random, their_variation)
    for random, variation in sides.values():  # warm-up: compilation, allocator, caches
        random()
        variation()
    times = {(side, api): [] for side in sides for api in ("random", "variation")}
    for _ in range(repeats):
        for api, index in (("random", 0), ("variation", 1)):
            for side, fns in sides.items():
                times[side, api].append(timed(fns[index]))
    rows = []
    for api in ("random", "variation"):
        run_steps = steps if api == "random" else round(DEGREE * steps)
        row = dict(config=name, api=api if api == "random" else f"variation({DEGREE})",
                   batch=batch, steps=run_steps, guidance=guidance, params_ours=our_params,
                   params_diffusers=their_params)
        row["ours"] = batch / statistics.median(times["ours", api])
        row["diffusers"] = (batch / statistics.median(times["diffusers", api])
                            if with_diffusers else None)
        if peak_tflops:
            evaluations = run_steps * (1 if guidance == 1.0 else 2)
            row["peak_share"] = row["ours"] * evaluations * flops / (peak_tflops * 1e12)
        rows.append(row)
    return rows


def print_table(rows: list[dict], peak: bool) -> None:
    header = (f"{'config':<14} {'api':<15} {'batch':>5} {'steps':>5} {'cfg':>4} "
              f"{'params ours':>12} "
              f"{'params diffusers':>16} {'ours img/s':>11} {'diffusers img/s':>15} "
              f"{'ours/diffusers':>14}" + (f" {'peak share':>10}" if peak else ""))
    print(header)
    print("-" * len(header))
    for r in rows:
        theirs = r["diffusers"]
        their_params = f"{r['params_diffusers']:,}" if r["params_diffusers"] else "-"
        print(f"{r['config']:<14} {r['api']:<15} {r['batch']:>5} {r['steps']:>5} "
              f"{r['guidance']:>4g} "
              f"{r['params_ours']:>12,} {their_params:>16} "
              f"{r['ours']:>11.2f} {theirs or float('nan'):>15.2f} "
              f"{r['ours'] / theirs if theirs else float('nan'):>14.2f}"
              + (f" {r['peak_share']:>10.2%}" if peak else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches, few steps")
    parser.add_argument("--bf16", action="store_true", help="our model computes in bfloat16")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-diffusers", action="store_true", help="time ours only")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the chip's peak TFLOP/s, to report our share of it")
    args = parser.parse_args()

    threads = len(os.sched_getaffinity(0))
    with_diffusers = not args.no_diffusers
    if with_diffusers:
        try:
            import diffusers  # noqa: F401
            import torch
        except ImportError:
            print("torch/diffusers not installed: timing ours only")
            with_diffusers = False
        else:
            torch.set_num_threads(threads)
    prior, prior_guidance, prior_name = prior_config()
    dtype = "bfloat16" if args.bf16 else "float32"
    # (name, config, DDIM steps, batch, guidance) -- variation runs DEGREE of the steps.
    if args.quick:
        plan = [(prior_name, prior, 20, 64, prior_guidance), ("cifar32 35.7M", CIFAR, 4, 4, 1.0)]
        repeats = args.repeats or 2
    else:
        plan = [(prior_name, prior, 50, 256, prior_guidance),
                ("cifar32 35.7M", CIFAR, 10, 8, 1.0)]
        repeats = args.repeats or 3
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} "
          f"device(s)), {threads} CPU threads, our dtype {dtype}, XLA options "
          f"{compiler_options() or 'default'}, {repeats} repeats, median"
          + (f"; torch {torch.__version__}, diffusers {diffusers.__version__}, "
             f"{torch.get_num_threads()} threads, float32" if with_diffusers else ""))
    rows = []
    for name, config, steps, batch, guidance in plan:
        config = dataclasses.replace(config, dtype=dtype)
        rows += bench(name, config, steps, batch, guidance, repeats, with_diffusers,
                      args.peak_tflops)
    print_table(rows, peak=bool(args.peak_tflops))


if __name__ == "__main__":
    main()
