"""``pe-jax audit``: empirical privacy audits of the release path, with negative controls.

``pe-jax audit [--config FILE] [--set key=value ...] [--out DIR]`` prints a table of claimed
against audited bounds (the real mechanism must pass, every control must be flagged) and
writes ``audit.json`` and ``audit.png`` to a new output folder. Without ``--config`` it runs
``pe_jax/configs/audit.py``. A progress bar on stderr names the audit that is running
(``--quiet`` hides it). Exit status 1 when the real mechanism is flagged or a control is not
flagged by any audit.
"""

import argparse
import json

from pe_jax.commands import add_config_arguments, output_dir
from pe_jax.configs import CONFIG_DIR, load_config

NAME = "audit"
HELP = "audit the privacy of the release path empirically, with negative controls"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, CONFIG_DIR / "audit.py", "pe_jax/configs/audit.py")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def execute(args: argparse.Namespace) -> int:
    import time

    from pe_jax import audit, reporting

    config = load_config(args.config, args.set)
    out = reporting.prepare_output_dir(output_dir(args.out, config.name))
    start = time.perf_counter()
    rows = audit.run_suite(config, progress=not args.quiet)
    seconds = time.perf_counter() - start
    table = audit.format_table(rows)
    real = audit.Control.NONE.value
    violations = [r for r in rows if r.control == real and _flagged(r)]
    missed = sorted({r.control for r in rows if r.control != real}
                    - {r.control for r in rows if r.control != real and _flagged(r)})
    (out / "audit.json").write_text(json.dumps({
        "config": json.loads(config.to_json()),
        "audits": [r.to_dict() for r in rows],
        "real_mechanism_flagged": bool(violations),
        "controls_not_flagged": missed,
        "seconds": round(seconds, 1),
    }, indent=2) + "\n")
    audit.plot(rows, out / "audit.png")
    print(table)
    print(f"controls flagged: {'all' if not missed else 'NOT ' + ', '.join(missed)}; "
          f"real mechanism: {'FLAGGED' if violations else 'within its claim'}")
    print(f"audits took {seconds:.0f} s; wrote {out} (audit.json, audit.png)")
    return 1 if violations or missed else 0


def _flagged(row) -> bool:
    return row.epsilon_flagged or row.mu_flagged
