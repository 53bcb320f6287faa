"""One PE iteration broken into its parts, the compiled step's overhead, and loop vs scan.

For each case the script builds the real step (``pe_jax.step``) and times, steady state
(after compilation), each part on its own jitted on the same shapes -- variation, embedding
(with rendering), vote, selection -- and the host's noise draw (ledger check, CSPRNG draw,
record), then the whole step; "rest" is the step minus its parts (threshold, gathers,
concatenation, dispatch). The share outside the model and the vote is
``1 - (variation + embedding + vote) / step``. Then the compile time of the step, and a
whole run of T iterations as the per-iteration loop against the fused ``lax.scan``
(``evolve.run(fused=...)``, compilation excluded).

    .venv/bin/python experiments/bench_step.py [--cases digits diffusion32]
        [--diffusion-samples 10000] [--repeats 5] [--iterations 10]

Cases: ``digits`` is the default run (glyphs, 10 x 100 samples, pixel votes, 1,335 private
digits); ``diffusion32`` is a class-conditional CIFAR-sized UNet (32x32x3, untrained weights:
timing only) with ``--diffusion-samples`` samples over 10 classes and as many random private
images, voting on 256-d random projections. On a CPU use a few hundred diffusion samples;
the 10k setting is for an accelerator.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from machine import cpu_name
from measure import median_seconds

from pe_jax import embeddings, evolve, population, privacy, step, voting


def digits_case(samples: int):
    from pe_jax.apis.glyphs import GlyphGenerator
    from pe_jax.data import load_sklearn_digits

    private, _ = load_sklearn_digits().split(0.25)
    return (GlyphGenerator(), embeddings.PixelEmbedder(), private.images, private.labels,
            (100,) * 10)


def diffusion32_case(samples: int):
    from flax import nnx

    from pe_jax.apis.diffusion import DiffusionGenerator
    from pe_jax.diffusion import make_schedule
    from pe_jax.models.unet import UNet, UNetConfig

    config = UNetConfig(resolution=32, channels=3, base_width=128, width_multipliers=(1, 2, 2, 2),
                        blocks_per_level=2, attention_resolutions=(16,), norm_groups=32,
                        num_classes=10)
    generator = DiffusionGenerator(UNet(config, rngs=nnx.Rngs(0)),
                                   make_schedule("cosine", 1000), steps=20)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (samples, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, samples).astype(np.int32)
    return (generator, embeddings.RandomProjectionEmbedder(256), images, labels,
            (samples // 10,) * 10)


CASES = {"digits": digits_case, "diffusion32": diffusion32_case}


def bench_case(name: str, samples: int, repeats: int, iterations: int) -> dict:
    generator, embedder, images, labels, per_class = CASES[name](samples)
    degree = jnp.float32(0.3)
    config = evolve.PEConfig(iterations=iterations, noise_multiplier=3.0,
                             samples_per_class=per_class,
                             degrees=(0.3,) * iterations, threshold=0.0)
    layout = config.layout
    private = voting.prepare_private(embedder(jnp.asarray(images)), labels,
                                     num_classes=layout.num_classes)
    state = step.initial_state(jax.random.key(0), generator, layout, conditional=True)
    samples = state.samples
    key = jax.random.key(1)
    weights = jnp.ones(len(layout.labels), jnp.float32)
    embed = jax.jit(lambda s: embedder(generator.images(s)))
    vary = jax.jit(lambda s: generator.variation(key, s, degree))
    choose = jax.jit(lambda w: population.select_parents(key, w, layout))
    synthetic = embed(samples)
    parts = {
        "variation": median_seconds(lambda: vary(samples), repeats),
        "embedding": median_seconds(lambda: embed(samples), repeats),
        "vote": median_seconds(lambda: voting.vote(private, synthetic, layout.members),
                                repeats),
        "selection": median_seconds(lambda: choose(weights), repeats),
    }
    event = privacy.release_event(noise_multiplier=3.0)
    ledger = privacy.PrivacyLedger(1e-5)
    parts["noise draw (host)"] = median_seconds(
        lambda: privacy.draw_noise(event, ledger, len(layout.labels)), repeats)
    one_step = step.make_step(generator, embedder, layout, config.step_settings)
    noise = jax.device_put(jnp.zeros(len(layout.labels), jnp.int32))
    t0 = time.perf_counter()
    compiled = one_step.lower(state, private, noise, degree).compile()
    compile_s = time.perf_counter() - t0
    current = [jax.tree.map(jnp.copy, state)]

    def run_step():
        current[0], output = compiled(current[0], private, noise, degree)
        return output

    step_s = median_seconds(run_step, repeats)
    model_and_vote = parts["variation"] + parts["embedding"] + parts["vote"]
    runs = {}
    for fused in (False, True):  # whole runs, each compiling its step or scan once
        t0 = time.perf_counter()
        evolve.run(jax.random.key(2), config, generator=generator, embedder=embedder,
                   private_images=images, private_labels=labels,
                   ledger=privacy.PrivacyLedger(1e-5), progress=False, fused=fused)
        runs[fused] = time.perf_counter() - t0
    return dict(case=name, parts=parts, step=step_s, compile=compile_s,
                outside=1 - model_and_vote / step_s, loop=runs[False], fused=runs[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["digits"], choices=sorted(CASES))
    parser.add_argument("--diffusion-samples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; backend {jax.default_backend()}, {jax.device_count()} device(s)")
    for name in args.cases:
        row = bench_case(name, args.diffusion_samples, args.repeats, args.iterations)
        print(f"\n{name}: step {row['step'] * 1e3:.1f} ms (compile {row['compile']:.1f} s)")
        for part, seconds in row["parts"].items():
            print(f"  {part:<20} {seconds * 1e3:9.2f} ms  {seconds / row['step']:6.1%}")
        print(f"  {'outside model+vote':<20} {'':>9}     {row['outside']:6.1%}")
        print(f"  evolve.run of {args.iterations} iterations, with compilation: loop "
              f"{row['loop']:.2f} s, fused scan {row['fused']:.2f} s")


if __name__ == "__main__":
    main()
