"""Runs each file of tests/multidevice in its own process with 8 forced CPU devices.

JAX fixes the device count when it starts, so the sharded tests cannot share this process.
"""

import os
import pathlib
import subprocess
import sys

import pytest

MULTIDEVICE_DIR = pathlib.Path(__file__).parent / "multidevice"


@pytest.mark.parametrize("test_file", sorted(p.name for p in MULTIDEVICE_DIR.glob("test_*.py")))
def test_multidevice_suite_passes_on_8_cpu_devices(test_file):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--override-ini",
         "addopts=", str(MULTIDEVICE_DIR / test_file)],
        env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-3000:]
    assert " passed" in completed.stdout and "skipped" not in completed.stdout, completed.stdout
