#!/usr/bin/env bash
# One prepared device check for a machine with one GPU (see experiments/device_check.py):
# vote throughput at (1M, 100k, 2048) in float32 and on the bf16 path as a share of the chip's
# peak, the diffusion APIs' images/s in bf16 with model-FLOPs utilisation, and one whole PE
# iteration's breakdown. Prints one table. No network needed; every part has its own timeout
# and the whole run is capped at 470 s (under 8 minutes).
#
#   experiments/device_check.sh                # on the GPU machine
#   experiments/device_check.sh --cpu-smoke    # tiny sizes: checks it runs end to end anywhere
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # peak memory in the table is what was used
exec timeout --kill-after=10 470 "$PY" experiments/device_check.py "$@"
