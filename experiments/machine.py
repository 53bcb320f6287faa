"""What machine a benchmark ran on: results differ by CPU, so every benchmark prints it."""

from __future__ import annotations

import os
import platform


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and instruction flags from /proc/cpuinfo (Linux)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def cpu_name() -> str:
    """The CPU model, e.g. ``AMD EPYC``."""
    return _cpuinfo()[0] or platform.processor() or platform.machine()


def cpu_description() -> str:
    """The CPU model, the cores visible and which bfloat16 instruction flags it reports."""
    flags = _cpuinfo()[1]
    bf16 = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return (f"{cpu_name()}, {os.cpu_count()} cores visible, bf16 flags: "
            f"{' '.join(bf16) or 'none'}")
