"""``bench/whisper.py``'s own rules, without a model: the quiet-machine rule (``wait_quiet`` polls the
load average, sleeping, and gives up when told) and the honest peak RSS of an engine's process."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_whisper", REPO / "bench" / "whisper.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


class FakeMachine:
    """A load average that follows a script, and a clock that only sleeping moves."""

    def __init__(self, loads: list[float]) -> None:
        self.loads, self.now, self.sleeps = loads, 0.0, []

    def loadavg(self) -> tuple[float, float, float]:
        load = self.loads.pop(0) if len(self.loads) > 1 else self.loads[0]
        return (load, load, load)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def _wait(machine: FakeMachine, limit_s: float):
    return bench.wait_quiet(limit_s, loadavg=machine.loadavg, sleep=machine.sleep, clock=machine.clock)


def test_quiet_machine_starts_at_once_without_sleeping():
    machine = FakeMachine([0.2])
    quiet = _wait(machine, 600)
    assert quiet.quiet and quiet.got_quiet and machine.sleeps == []
    assert quiet.line() == "quiet machine: yes (load average 0.20 before, threshold 0.5); waited 0 s"


def test_wait_quiet_polls_by_sleeping_until_the_load_drops_below_the_threshold():
    machine = FakeMachine([2.0, 1.1, 0.7, 0.49])
    quiet = _wait(machine, 600)
    assert quiet.quiet and quiet.got_quiet and quiet.load == 0.49
    assert machine.sleeps == [5.0, 5.0, 5.0] and quiet.waited_s == 15.0


def test_wait_quiet_gives_up_at_its_limit_and_says_the_machine_never_got_quiet():
    machine = FakeMachine([1.3])
    quiet = _wait(machine, 12)
    assert not quiet.quiet and quiet.got_quiet is False
    assert sum(machine.sleeps) == 12 and max(machine.sleeps) <= 5.0  # never past the limit
    assert quiet.line() == (
        "quiet machine: no (load average 1.30 before, threshold 0.5); waited 12 s, it never got quiet"
    )


def test_quiet_line_without_waiting_states_the_load_and_threshold():
    assert bench.Quiet(0.5).line() == "quiet machine: no (load average 0.50 before, threshold 0.5)"
    assert bench.QUIET_LOAD == 0.5


@pytest.mark.slow
def test_engine_peak_rss_is_its_own_not_the_parents(tmp_path):
    """ru_maxrss survives exec on Linux: a child of a 300 MB parent would report 300 MB. The bench's
    ``_rss_mb`` reads the child's own peak (VmHWM)."""
    child = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('b', {str(REPO / 'bench' / 'whisper.py')!r}); "
        "m = importlib.util.module_from_spec(spec); sys.modules['b'] = m; spec.loader.exec_module(m); "
        "print(m._rss_mb())"
    )
    parent = (
        "import subprocess, sys; ballast = bytearray(300 * 1024 * 1024); "
        f"print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True, check=True).stdout)"
    )
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, check=True, timeout=60)
    assert float(out.stdout.strip()) < 150, out.stdout
