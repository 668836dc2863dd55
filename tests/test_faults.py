"""Faults end in one clear line with nothing left running (issue 15): unreachable clusters, workers that cannot
start, kills in the middle of a checkpoint write, configs that cannot fit in memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_hardening import one_line_error, run

REPO = Path(__file__).resolve().parents[1]


def subprocess_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once by the OS, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- Ray -------------------------------------------------------------------------------------------------------
def test_an_unreachable_ray_address_fails_at_once_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("ray")
    from core.parallel import RAY_CONNECT_TIMEOUT_S

    address = f"127.0.0.1:{closed_port()}"
    t0 = time.monotonic()
    code, err = run(capsys, "collect", "--out-dir", str(tmp_path / "eps"), "--episodes", "1", "--executor", "ray",
                    "--ray-address", address)  # fmt: skip
    assert time.monotonic() - t0 < RAY_CONNECT_TIMEOUT_S
    one_line_error(code, err, address, "cannot reach a Ray cluster")
    assert not list(tmp_path.glob("eps/*.npz"))


def test_a_ray_address_that_never_answers_times_out() -> None:
    from core.parallel import ClusterUnreachable, probe_ray_address

    with socket.socket() as server:  # a listener whose accept queue is full: the kernel drops further SYNs
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                fillers.append(c)
            time.sleep(0.2)
            t0 = time.monotonic()
            with pytest.raises(ClusterUnreachable, match="within 0.5 s"):
                probe_ray_address(f"ray://127.0.0.1:{port}", timeout=0.5)
            assert time.monotonic() - t0 < 3
        finally:
            for c in fillers:
                c.close()


def test_a_malformed_ray_address_is_a_config_error() -> None:
    from core.errors import ConfigError
    from core.parallel import probe_ray_address

    for bad in ("127.0.0.1", "host:port", ":6379", "127.0.0.1:70000"):
        with pytest.raises(ConfigError, match="--ray-address"):
            probe_ray_address(bad)


# -- workers that die before they start ------------------------------------------------------------------------
UNGUARDED_SCRIPT = """
from pathlib import Path
from core.api import CollectConfig, collect

collect(CollectConfig(out_dir=Path({out!r}), episodes=2, max_steps=5, workers=2))
"""


def test_a_script_without_a_main_guard_fails_with_a_hint(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT.format(out=str(tmp_path / "eps")))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180,
                          env=subprocess_env())  # fmt: skip
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "WorkerCrashed" in last and 'if __name__ == "__main__":' in last and str(script) in last, proc.stderr


LOCAL_RAY_SCRIPT = """
import operator
from core.parallel import make_executor

def listeners():
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":
                out.add(local)
    return out

if __name__ == "__main__":
    before = listeners()
    with make_executor("ray", 1, 12) as executor:
        import ray
        assert sorted(executor.map_unordered(operator.floordiv, [1, 2])) == [(0, 12), (1, 6)]
        print("nodes", *[n["NodeManagerAddress"] for n in ray.nodes()])
        print("listeners", *sorted(listeners() - before))
"""
LOOPBACK_HEX = ("0100007F:", "0000000000000000FFFF00000100007F:", "00000000000000000000000001000000:")
"""127.0.0.1 in /proc/net/tcp, ::ffff:127.0.0.1 and ::1 in /proc/net/tcp6."""


def test_a_local_ray_instance_listens_on_loopback_only(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    if not Path("/proc/net/tcp").is_file():
        pytest.skip("needs /proc/net/tcp")
    script = tmp_path / "local_ray.py"
    script.write_text(LOCAL_RAY_SCRIPT)
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("RAY_")}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env,
                          cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert lines["nodes"].split() == ["127.0.0.1"]
    opened = lines["listeners"].split()
    assert opened and all(s.startswith(LOOPBACK_HEX) for s in opened), opened
