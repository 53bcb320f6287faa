"""Running the multi-process tests' processes: each its own interpreter on forced CPU devices.

Not a test file: tests/test_multiprocess.py and tests/test_run_distributed.py use it.
"""

import os
import socket
import subprocess
import sys

import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 (for ``jax.distributed``'s coordinator)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argvs: list[list[str]], devices: int, timeout_s: float) -> list[tuple[int, str]]:
    """Runs ``python ARGV`` for every argument list at once, each process on ``devices``
    forced CPU devices; returns each one's (exit status, output). Fails the test, killing
    them all, if any runs past ``timeout_s``."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(
        [*flags, f"--xla_force_host_platform_device_count={devices}"]))
    procs = [subprocess.Popen([sys.executable, *argv], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for argv in argvs]
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=timeout_s)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"a process ran past {timeout_s} s")
    return [(p.returncode, out) for p, out in zip(procs, outputs)]
