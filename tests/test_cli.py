"""The command line as a user meets it: help, one-line errors that overwrite nothing, no display, SIGTERM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.data.episodes import read_episode
from tests.test_process_lifetimes import processes_left

pytestmark = pytest.mark.slow


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "explorer.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_bad_input_is_one_line_and_overwrites_nothing(pipeline: dict[str, Path], tmp_path: Path) -> None:
    # empty dataset directory
    r = _cli("train-vision", "--data-dir", str(tmp_path), "--out", str(tmp_path / "v.safetensors"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no episode files" in r.stderr
    assert not (tmp_path / "v.safetensors").exists()
    # truncated checkpoint given to encode: error, and the existing latent file is untouched
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(pipeline["vision"].read_bytes()[:1000])
    before = pipeline["latents"].read_bytes()
    r = _cli("encode", "--data-dir", str(pipeline["dir"]), "--vision", str(bad), "--out", str(pipeline["latents"]))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert pipeline["latents"].read_bytes() == before
    # wrong config value
    r = _cli("train-memory", "--seq-len", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "seq_len" in r.stderr
    # evaluate --json prints one JSON object
    r = _cli("evaluate", "--controller", str(bad), "--json")
    assert r.returncode == 2 and "cannot read checkpoint" in r.stderr


def test_cli_help_lists_stages() -> None:
    r = _cli("--help")
    assert r.returncode == 0
    for stage in ("collect", "train-vision", "encode", "train-memory", "dream", "evaluate"):
        assert stage in r.stdout


@pytest.mark.parametrize("args", [("iterate", "--help"), ("--help",)])
def test_help_into_a_closed_pipe_ends_quietly(args: tuple[str, ...]) -> None:
    """`dream-explorer iterate --help | head`: the reader is gone before the help is written; no traceback."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader at all: the first write fails with EPIPE
    proc = subprocess.Popen([sys.executable, "-m", "explorer.cli", *args], stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_app_without_display_says_so_in_one_line() -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run(
        [sys.executable, "-m", "explorer.cli", "--frames", "2"], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no display" in r.stderr


def test_sigterm_stops_a_stage_gracefully_with_its_workers(tmp_path: Path) -> None:
    import os
    import signal
    import time

    out = tmp_path / "eps"
    proc = subprocess.Popen(
        [sys.executable, "-m", "explorer.cli", "collect", "--out-dir", str(out), "--episodes", "40", "--max-steps", "150",
         "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not list(out.glob("ep_*.npz")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert list(out.glob("ep_*.npz")), "no episode was written"
    proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the stage did not stop within 120 s of SIGTERM")
    assert proc.returncode == 130, output  # stopped: the exit code says so, and the report says partial
    assert "stopping after the current step" in output and "stopped early (partial)" in output
    leftover = processes_left("-g", proc.pid)
    assert leftover == [], f"worker processes left running: {leftover}"
    assert 0 < len(list(out.glob("ep_*.npz"))) < 40
    for path in out.glob("ep_*.npz"):
        read_episode(path)  # every file written is whole
