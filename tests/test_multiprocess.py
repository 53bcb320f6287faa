"""Multi-process PE: 2 processes x 2 CPU devices equal 1 process x 4 devices, bitwise.

Each run is a subprocess (tests/multiprocess_worker.py) with forced CPU devices; the two
processes join ``jax.distributed`` on 127.0.0.1 (gloo CPU collectives) and run on
``sharding.global_mesh()``. Process 0 draws the seeded noise and broadcasts it, so every
process releases the same noisy counts and records the same ledger (process 1 is given another
noise seed, which must change nothing: it would, if a process drew its own noise); the final
population, gathered from both processes, equals the single-process one. Both the loop and
the fused (``lax.scan``) run are compared.
"""

import pathlib

import numpy as np
import pytest
from subprocesses import free_port, launch

WORKER = pathlib.Path(__file__).with_name("multiprocess_worker.py")
TIMEOUT_S = 180


def _launch(out_dir: pathlib.Path, num_processes: int, devices: int,
            fault: str = "") -> list[tuple[int, str]]:
    """Runs the worker in ``num_processes`` processes; their (exit status, log)."""
    port = free_port()
    return launch([[str(WORKER), str(i), str(num_processes), str(port), str(out_dir), fault]
                   for i in range(num_processes)], devices, TIMEOUT_S)


def _run(out_dir: pathlib.Path, num_processes: int, devices: int) -> None:
    for status, log in _launch(out_dir, num_processes, devices):
        assert status == 0, log[-3000:]


def test_two_processes_equal_one_process_bitwise(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    _run(one, num_processes=1, devices=4)
    _run(two, num_processes=2, devices=2)
    reference = np.load(one / "result0.npz")
    assert int(reference["devices"]) == 4 and int(reference["processes"]) == 1
    names = [n for n in reference.files if n not in ("devices", "processes")]
    assert {"loop_noisy", "loop_ledger", "loop_leaf0", "fused_noisy"} <= set(names)
    for process in (0, 1):
        result = np.load(two / f"result{process}.npz")
        assert int(result["devices"]) == 4 and int(result["processes"]) == 2
        assert sorted(result.files) == sorted(reference.files)
        for name in names:  # noisy counts, ledger, labels and every population leaf
            assert result[name].dtype == reference[name].dtype, name
            np.testing.assert_array_equal(result[name], reference[name], err_msg=name)
    for name in names:  # the fused and the resumed run release and end exactly as the loop
        if name.startswith("loop_"):
            for other in ("fused_", "resumed_"):
                np.testing.assert_array_equal(reference[name],
                                              reference[other + name[len("loop_"):]])
    assert not (two / ".resume").exists()  # the completed run's secret folder is gone
    assert reference["loop_noisy"].shape == (2, 12)
    assert '"seeded": true' in str(reference["loop_ledger"])
    assert str(reference["loop_ledger"]).count('"mechanism"') == 2  # T events, recorded once


@pytest.mark.parametrize("fault, problem", [
    ("bad_private", "private_images must be finite"),
    ("small_budget", "budget"),
])
def test_one_process_refusing_stops_every_process_before_a_release(tmp_path, fault, problem):
    """Process 1 alone sees a bad private row (or a ledger whose budget is too small): it
    raises its own clear error, process 0 raises one naming process 1, neither hangs, and no
    result (so no release) is written."""
    (zero, log0), (one, log1) = _launch(tmp_path, num_processes=2, devices=1, fault=fault)
    assert zero != 0 and one != 0, (log0[-2000:], log1[-2000:])
    assert problem in log1, log1[-3000:]
    assert "refused on process(es) [1]" in log0, log0[-3000:]
    assert "before anything is released" in log0
    assert not list(tmp_path.glob("result*.npz"))
