"""Fits the glyph simulator's pose priors to the held-out digits only; writes the shipped file.

    .venv/bin/python experiments/fit_glyph_priors.py --out pe_jax/assets/glyph_priors.json

wrote the shipped ``DEFAULT_PRIORS`` (``pe_jax/assets/glyph_priors.json``, their values and
origin). It loads scikit-learn's 1,797 digits, keeps the rows that ``split(TUNING_HELDOUT)``
holds out (fixed by index and salt, ``pe_jax.data.heldout_mask``; they never vote in a run)
and drops the rest before fitting (``pe_jax.apis.glyph_priors.fit_digits_priors``). It prints
the broad starting priors, the shipped ones and the new fit side by side, and how close glyphs
drawn from each come to the held-out digits (mean pixel L2 from each digit to the nearest of
``--evaluate`` glyphs of its class; lower is closer). The fit depends on the installed fonts:
the file records them. Takes about 20 s on 2 CPU cores.
"""

import argparse
import json
import pathlib
import shlex
import sys
import time

from pe_jax.apis import glyph_priors
from pe_jax.apis.glyphs import DEFAULT_PRIORS
from pe_jax.data import TUNING_HELDOUT, load_sklearn_digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the priors and origin here (JSON)")
    parser.add_argument("--evaluate", type=int, default=2000,
                        help="glyphs per class for the closeness check (0: skip it)")
    args = parser.parse_args()

    digits = load_sklearn_digits()
    start = time.perf_counter()
    priors, origin = glyph_priors.fit_digits_priors(digits, TUNING_HELDOUT)
    seconds = time.perf_counter() - start
    origin["command"] = shlex.join(["python", "experiments/fit_glyph_priors.py", *sys.argv[1:]])
    print(f"fit on {origin['reference_rows']} held-out digits in {seconds:.0f} s "
          f"({len(origin['fonts'])} fonts); mean, std, low, high:")
    sets = {"broad": glyph_priors.BROAD_PRIORS, "shipped": DEFAULT_PRIORS, "fitted": priors}
    print(f"{'parameter':10s}" + "".join(f"{name:>28s}" for name in sets))
    for parameter in priors:
        print(f"{parameter:10s}" + "".join(
            f"{' '.join(f'{v:6.2f}' for v in values[parameter]):>28s}" for values in sets.values()))
    if args.evaluate:
        _, held_out = digits.split(TUNING_HELDOUT)
        print(f"mean pixel L2 from a held-out digit to the nearest of {args.evaluate} glyphs of "
              "its class:")
        for name, candidate in sets.items():
            _, record = glyph_priors.fit_priors(held_out, bank_per_class=args.evaluate,
                                                passes=1, seed=1, broad=candidate)
            print(f"  {name:8s} {record['mean_nearest_distance']:.3f}")
    if args.out:
        shipped = {"priors": {name: p._asdict() for name, p in priors.items()}, "origin": origin}
        pathlib.Path(args.out).write_text(json.dumps(shipped, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
