"""Processes end with their parent: workers of a killed stage, and Ctrl-C to the process group."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

ORPHAN_SCRIPT = """
import sys, time
from core.parallel import LocalExecutor

def nap(shared, seconds):
    time.sleep(seconds)
    return seconds

if __name__ == "__main__":
    with LocalExecutor(2, None) as pool:
        for _ in pool.map_unordered(nap, [0.01, 0.01, 600, 600]):
            print("ready", flush=True)
"""


def processes_left(selector: str, pid: int) -> list[str]:
    """PIDs ``pgrep selector pid`` still finds (``-g``: the process group, ``-s``: the session), after up to 10 s
    for them to exit: a pool's workers and multiprocessing's resource tracker exit within moments."""
    leftover = ["?"]
    for _ in range(20):
        leftover = subprocess.run(["pgrep", selector, str(pid)], capture_output=True, text=True).stdout.split()
        if not leftover:
            break
        time.sleep(0.5)
    return leftover


def _alive(pids: list[int]) -> list[int]:
    import os

    out = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
        if ") Z " not in stat:  # a zombie has ended; it only waits to be reaped
            out.append(pid)
    return out


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "pool.py"
    script.write_text(ORPHAN_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                   text=True).stdout.split()]  # fmt: skip
        assert len(children) >= 2  # two workers (and multiprocessing's resource tracker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(children) == [], "workers outlived their killed parent"
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], capture_output=True)  # only this test's session


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_stops_gracefully(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from core.data.episodes import read_episode

    out = tmp_path / "eps"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "explorer.cli", "collect", "--out-dir", str(out), "--episodes", "30", "--max-steps", "60",
         "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("ep_*.npz")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert list(out.glob("ep_*.npz")), "no episode was written"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
        output, _ = proc.communicate(timeout=120)
        leftover = processes_left("-s", proc.pid)
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], capture_output=True)  # only this test's session
    assert proc.returncode == 130, output
    assert "stopped early (partial)" in output and "Traceback" not in output and "WorkerCrashed" not in output
    assert leftover == [], f"processes left running: {leftover}"
    files = list(out.glob("ep_*.npz"))
    assert 0 < len(files) < 30
    for path in files:
        read_episode(path)  # every file written is whole
