"""``pe-jax run --distributed``: 2 processes x 2 CPU devices write what 1 process x 4 writes.

Each process is a real ``pe-jax run`` in its own interpreter (forced CPU devices; the two join
on 127.0.0.1 with gloo collectives), with seeded noise so that the runs can be compared: the
samples, the ledger and the report's privacy figures must be bitwise those of one process on
four devices. The runs use the glyph generator: the default diffusion prior's convolutions on
XLA:CPU round differently (by about 1e-7) in a 2-device and a 4-device process, so its samples
cannot be compared bit for bit across process layouts. Only process 0 writes: nothing of the run's own is left unfinished (no INCOMPLETE,
no .resume/) and every file is written once. A process given a bad setting alone stops both.
"""

import json

import numpy as np
from subprocesses import free_port, launch

from pe_jax.configs import CONFIG_DIR

TIMEOUT_S = 240
SMALL_RUN = ["--config", str(CONFIG_DIR / "digits_glyphs.py"), "--set", "pe.iterations=2",
             "--set", "pe.samples_per_class=8", "--set", "privacy.noise_seed=5",
             "--set", "metrics.names=", "--quiet"]


def _pe_jax(args_of_process: list[list[str]], devices: int) -> list[tuple[int, str]]:
    """Runs ``pe-jax`` once per argument list, at the same time; (exit status, output) each."""
    return launch([["-m", "pe_jax.cli", *args] for args in args_of_process], devices, TIMEOUT_S)


def _distributed(out, extra: list[list[str]] = ([], [])) -> list[tuple[int, str]]:
    port = free_port()
    return _pe_jax([["run", "--distributed", "--coordinator", f"127.0.0.1:{port}",
                     "--num-processes", "2", "--process-id", str(i), "--out", str(out),
                     *SMALL_RUN, *extra[i]] for i in range(2)], devices=2)


def test_two_processes_write_what_one_process_on_four_devices_writes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    [(status, log)] = _pe_jax([["run", "--out", str(one), *SMALL_RUN]], devices=4)
    assert status == 0, log[-3000:]
    results = _distributed(two)
    for status, log in results:
        assert status == 0, log[-3000:]
    assert "wrote" in results[0][1] and "wrote" not in results[1][1]  # process 0 reports
    expected, got = np.load(one / "samples.npz"), np.load(two / "samples.npz")
    assert sorted(got.files) == sorted(expected.files)
    for name in expected.files:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    ledger_one = json.loads((one / "ledger.json").read_text())
    ledger_two = json.loads((two / "ledger.json").read_text())
    assert ledger_two == ledger_one and len(ledger_two["events"]) == 2
    report_one = json.loads((one / "privacy.json").read_text())
    report_two = json.loads((two / "privacy.json").read_text())
    for key in ("epsilon", "delta", "noise_multiplier", "iterations"):
        assert report_two[key] == report_one[key], key
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert not (two / "INCOMPLETE").exists() and not (two / ".resume").exists()


def test_a_setting_refused_on_one_process_stops_both(tmp_path):
    """Process 1 alone is given a setting its checks refuse: both exit, nothing is written."""
    results = _distributed(tmp_path / "out", extra=[[], ["--set", "pe.iterations=0"]])
    assert all(status != 0 for status, _ in results), [log[-2000:] for _, log in results]
    assert "pe.iterations" in results[1][1], results[1][1][-3000:]
    assert not (tmp_path / "out" / "ledger.json").exists()


def test_distributed_needs_a_named_output_folder(tmp_path):
    [(status, log)] = _pe_jax([["run", "--distributed", "--num-processes", "1",
                                "--process-id", "0", "--coordinator",
                                f"127.0.0.1:{free_port()}", *SMALL_RUN]], devices=1)
    assert status == 2 and "--out" in log, log[-3000:]
