"""One process of a small PE run on ``sharding.global_mesh()``, for tests/test_multiprocess.py.

    python tests/multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR [FAULT]

With NUM_PROCESSES > 1 it joins ``jax.distributed`` on 127.0.0.1:PORT (gloo CPU collectives);
the device count comes from XLA_FLAGS. Every process runs the same PE run (glyph generator,
3 classes, T = 2, seeded noise) on its own share of the private rows; the final population
(gathered from every process), the noisy counts of each iteration and the ledger, of the
loop, of the fused run and of a loop interrupted in iteration 2 and resumed from its
checkpoint (``pe_jax.resume``, in OUT_DIR), are written by every process to
OUT_DIR/result{PROCESS_INDEX}.npz.
FAULT ``bad_private`` puts a NaN pixel in the last process's share; ``small_budget`` gives the
last process a ledger whose budget does not allow the run. Not a test file: the test launches
it.
"""

import json
import pathlib
import sys

import jax
import numpy as np


def main(process_id: int, num_processes: int, port: int, out_dir: str, fault: str) -> None:
    if num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                                   num_processes=num_processes, process_id=process_id,
                                   initialization_timeout=60)
    from jax.experimental import multihost_utils

    from pe_jax import embeddings, evolve, privacy, resume, sharding
    from pe_jax.apis.glyphs import GlyphGenerator
    from pe_jax.data.source import host_rows

    mesh = sharding.global_mesh()
    generator = GlyphGenerator(characters="012", resolution=8)
    # The private data: glyphs drawn from the generator with another key; every process keeps
    # only its share of the rows (sizes 9 and 8 of 17 rows on 2 processes).
    labels = np.array([0, 1, 2] * 5 + [0, 2], np.int32)
    private = generator.random(jax.random.key(7), len(labels), jax.numpy.asarray(labels))
    images = np.clip(np.asarray(generator.images(private)), 0.0, 1.0)
    share = host_rows(len(labels), jax.process_index(), jax.process_count())
    images, labels = images[share], labels[share]
    last = jax.process_index() == jax.process_count() - 1
    if fault == "bad_private" and last:
        images[0, 0, 0, 0] = np.nan
    budget = 1e-3 if fault == "small_budget" and last else None
    config = evolve.PEConfig(iterations=2, noise_multiplier=2.0, samples_per_class=(4, 4, 4),
                             degrees=(0.5, 0.3), threshold=0.5)
    # Process 0's seed is the one the release uses; another process's generator is never
    # drawn from (its noise comes from process 0), so a different seed there must change
    # nothing -- and would, if any process drew its own noise.
    noise_rng = lambda: np.random.default_rng(3 + 1000 * jax.process_index())  # noqa: E731
    out = {"devices": jax.device_count(), "processes": jax.process_count()}

    def pe(ledger, noisy: list, stop_at: int = 0, **options) -> evolve.RunResult:
        def stop(result: evolve.IterationResult) -> None:
            if result.iteration == stop_at:
                raise KeyboardInterrupt  # on every process, like a Ctrl-C of the whole job
        return evolve.run(jax.random.key(0), config, generator=generator,
                          embedder=embeddings.PixelEmbedder(), private_images=images,
                          private_labels=labels, ledger=ledger, mesh=mesh,
                          noise_rng=noise_rng(), progress=False,
                          callbacks=[lambda r: noisy.append(r.release.noisy), stop], **options)

    def interrupted_and_resumed() -> tuple[evolve.RunResult, list]:
        """Stopped in iteration 2's callbacks (state 1 saved, noise 2 drawn), then resumed."""
        ledger, fingerprint = privacy.PrivacyLedger(1e-5), resume.build_fingerprint({}, "", "")
        noisy = []
        try:
            pe(ledger, noisy, stop_at=2,
               checkpoint=resume.RunCheckpoint.create(out_dir, fingerprint, run={}))
        except KeyboardInterrupt:
            del noisy[1:]  # iteration 2 runs again
        checkpoint = resume.RunCheckpoint.open(out_dir, fingerprint)
        result = pe(ledger, noisy, checkpoint=checkpoint)
        checkpoint.remove()
        return result, noisy

    for name in ("loop", "fused", "resumed"):  # the loop, the run as one scan, a resumed loop
        noisy = []
        if name == "resumed":
            result, noisy = interrupted_and_resumed()
        else:
            result = pe(privacy.PrivacyLedger(1e-5, epsilon_budget=budget), noisy,
                        fused=name == "fused")
        leaves = jax.tree.leaves(result.samples)
        if num_processes > 1:  # the population is sharded over every process's devices
            leaves = multihost_utils.process_allgather(leaves, tiled=True)
        out[f"{name}_noisy"] = np.stack(noisy)
        out[f"{name}_labels"] = result.labels
        out[f"{name}_ledger"] = json.dumps(result.ledger.to_dict(), sort_keys=True)
        out.update({f"{name}_leaf{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
    # Every process writes what it saw (outputs of a real run: process 0 only).
    np.savez(pathlib.Path(out_dir) / f"result{jax.process_index()}.npz", **out)
    if num_processes > 1:
        multihost_utils.sync_global_devices("pe_jax multiprocess worker done")

if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
         sys.argv[5] if len(sys.argv) > 5 else "")
