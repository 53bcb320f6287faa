"""Larger privacy audits than CI runs: PE calibrated to epsilon 1 and 4, 10^5 runs per dataset.

``python experiments/audit_large.py [--runs 100000] [--out DIR]``

For each target epsilon (delta = 1e-5, T = 10 releases, sigma from the accountant) it runs the
vote-release audit of the real mechanism (k = 1 and k = 4) and of every control, with
``--runs`` seeded runs per neighbouring dataset, and the one-run audit of the whole pipeline
(``--canaries``, 10^5 by default, with its own ``--one-run-delta``: the one-run bound pays
2 m delta, so delta must stay below about 0.1 / m) with its controls. ``--one-run-only`` skips
the vote-release audits. The mu bound is compared with mu = sqrt(T) / sigma; the
epsilon bounds with the accountant's epsilon at ``--audit-delta`` (1e-3 by default: 10^5 runs
cannot resolve delta = 1e-5, where every epsilon bound would be far below any claim). Prints
the table and writes ``audit.json`` and ``audit.png`` to a new folder. About an hour on 2 CPU
cores (3,424 s measured, at low priority beside other work); most of it is the one-run audits.
"""

import argparse
import datetime
import json
import time

from pe_jax import audit, privacy, reporting

TARGETS = (1.0, 4.0)
DELTA = 1e-5
ITERATIONS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--audit-delta", type=float, default=1e-3)
    parser.add_argument("--canaries", type=int, default=100_000)
    parser.add_argument("--one-run-delta", type=float, default=1e-6)
    parser.add_argument("--one-run-only", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = reporting.prepare_output_dir(args.out or f"outputs/audit-large-{stamp}")
    rows, started = [], time.perf_counter()
    for target in TARGETS:
        sigma = privacy.noise_multiplier(target, DELTA, ITERATIONS)
        print(f"target ({target}, {DELTA:g})-DP over T = {ITERATIONS}: sigma = {sigma:.4f}, "
              f"claimed mu = {ITERATIONS ** 0.5 / sigma:.4f}", flush=True)
        vote = dict(noise_multiplier=sigma, iterations=ITERATIONS, runs=args.runs,
                    delta=args.audit_delta, seed=int(target))
        rows += [] if args.one_run_only else [
            audit.vote_release_audit(control, k=k, **vote) for control, k in (
                (audit.Control.NONE, 1), (audit.Control.NONE, 4), (audit.Control.NO_NOISE, 1),
                (audit.Control.HALF_NOISE, 1), (audit.Control.REPLACE_ONE, 1),
                (audit.Control.UNWEIGHTED_KNN, 4))]
        rows += [audit.one_run_audit(control, canaries=args.canaries, noise_multiplier=sigma,
                                     iterations=ITERATIONS, delta=args.one_run_delta,
                                     seed=int(target))
                 for control in audit.ONE_RUN_CONTROLS]
    print(audit.format_table(rows))
    print(f"{time.perf_counter() - started:.0f} s")
    (out / "audit.json").write_text(json.dumps([r.to_dict() for r in rows], indent=2) + "\n")
    audit.plot(rows, out / "audit.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
