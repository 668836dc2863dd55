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


@pytest.mark.xdist_group("ray")  # no other Ray instance beside it (test_ray.py) adds listeners
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


# -- checkpoint and resume state: one pair, whatever moment a run is killed ------------------------------------
def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def tiny_memory(seed: int = 0):
    import torch

    from core.models import MDNRNN, MDNRNNConfig

    torch.manual_seed(seed)
    return MDNRNN(MDNRNNConfig(z_dim=4, hidden_dim=8, n_gaussians=2))


def test_stale_temporary_files_of_killed_writers_are_cleaned_at_the_next_write(tmp_path: Path) -> None:
    from core.checkpoint import TMP_SUFFIX, save_checkpoint

    out = tmp_path / "m.safetensors"
    stale = tmp_path / f".m.safetensors.{dead_pid()}.k1ll3d{TMP_SUFFIX}"
    live = tmp_path / f".m.safetensors.{os.getppid()}.wr1t1ng{TMP_SUFFIX}"  # a running writer's (our parent)
    others = [tmp_path / ".m.safetensors.abc.tmp", tmp_path / f".other.safetensors.{dead_pid()}.x{TMP_SUFFIX}"]
    for p in (stale, live, *others):
        p.write_bytes(b"partial")
    model = tiny_memory()
    save_checkpoint(out, model, kind="mdnrnn", config=model.config)
    assert not stale.exists() and live.exists() and all(p.exists() for p in others)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (out, live, *others))


def test_a_pair_one_write_behind_is_repaired_on_resume(tmp_path: Path) -> None:
    """A kill after the resume state's rename and before the checkpoint's: the new checkpoint waits in its
    temporary file, which --resume puts in place."""
    import hashlib

    import torch

    from core.checkpoint import TMP_SUFFIX, load_resume_state, resume_path, save_checkpoint, save_resume_state
    from core.errors import ResumeRepairedWarning

    out = tmp_path / "m.safetensors"
    old, new = tiny_memory(0), tiny_memory(1)
    save_checkpoint(out, old, kind="mdnrnn", config=old.config, resume_state={"epoch": 1})
    left = tmp_path / f".m.safetensors.{dead_pid()}.n3w{TMP_SUFFIX}"
    save_checkpoint(left, new, kind="mdnrnn", config=new.config)  # the epoch-2 checkpoint, never renamed
    digest = hashlib.sha256(left.read_bytes()).hexdigest()
    save_resume_state(resume_path(out), {"epoch": 2, "checkpoint_sha256": digest})
    with pytest.warns(ResumeRepairedWarning, match="one write behind"):
        state = load_resume_state(resume_path(out), required={"epoch": int}, checkpoint=out)
    assert state["epoch"] == 2 and hashlib.sha256(out.read_bytes()).hexdigest() == digest and not left.exists()
    from core.checkpoint import load_model

    assert torch.equal(load_model(out).state_dict()["lstm.weight_hh_l0"], new.state_dict()["lstm.weight_hh_l0"])


def test_a_checkpoint_that_is_not_its_resume_states_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from core.checkpoint import resume_path, save_checkpoint
    from tests.test_hardening import digest, tiny_latents

    latents = tiny_latents(tmp_path / "lat.npz")
    out = tmp_path / "m.safetensors"
    common = ("--latents", str(latents), "--out", str(out), "--seq-len", "8", "--batch-size", "2", "--hidden-dim", "8")
    assert run(capsys, "train-memory", *common, "--epochs", "1")[0] == 0
    from core.models import MDNRNN, MDNRNNConfig

    other = MDNRNN(MDNRNNConfig(z_dim=4, hidden_dim=8))
    save_checkpoint(out, other, kind="mdnrnn", config=other.config)
    before = digest(out), digest(resume_path(out))
    code, err = run(capsys, "train-memory", *common, "--epochs", "2", "--resume")
    one_line_error(code, err, str(resume_path(out)), "does not match", "without --resume")
    assert (digest(out), digest(resume_path(out))) == before


def session_processes(sid: int) -> list[str]:
    return subprocess.run(["pgrep", "-s", str(sid)], capture_output=True, text=True).stdout.split()


@pytest.mark.slow
def test_killing_a_training_run_at_random_moments_leaves_a_consistent_pair_that_resumes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """kill -9 and SIGHUP to the main process alone (not its group), at random moments of a tiny train-memory
    run: nothing keeps running, the checkpoint and resume state on disk are one pair (old or new, a pair one
    write behind is repaired), and --resume continues from it."""
    import random
    import signal
    import warnings

    from core.checkpoint import TMP_SUFFIX, load_resume_state, read_checkpoint, resume_path
    from tests.test_hardening import tiny_latents

    latents = tiny_latents(tmp_path / "lat.npz", episodes=4, steps=40)
    rng = random.Random()
    signals = (signal.SIGKILL, signal.SIGKILL, signal.SIGHUP)
    outs = [tmp_path / f"run{trial}" / "m.safetensors" for trial in range(len(signals))]

    def args(out: Path) -> list[str]:
        return [
            "--latents",
            str(latents),
            "--out",
            str(out),
            "--seq-len",
            "8",
            "--batch-size",
            "2",
            "--hidden-dim",
            "8",
        ]

    procs = [  # the runs start together (each spends seconds importing torch), each is killed at its own moment
        subprocess.Popen([sys.executable, "-m", "explorer.cli", "train-memory", *args(out), "--epochs", "100000"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
                         start_new_session=True)
        for out in outs
    ]  # fmt: skip
    results = []
    try:
        for proc, out, sig in zip(procs, outs, signals, strict=True):
            deadline = time.monotonic() + 120
            while not resume_path(out).is_file() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            assert resume_path(out).is_file(), proc.stderr.read() if proc.stderr else ""
            delay = rng.uniform(0.0, 1.0)
            time.sleep(delay)
            os.kill(proc.pid, sig)  # the main process alone
            _, err = proc.communicate(timeout=60)
            results.append((f"{signal.Signals(sig).name} after {delay:.2f} s", err, session_processes(proc.pid)))
    finally:
        for proc in procs:
            subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], capture_output=True)  # only this test's sessions
            proc.wait(timeout=30)
    for (where, err, leftover), proc, out, sig in zip(results, procs, outs, signals, strict=True):
        assert leftover == [], f"{where}: processes left running: {leftover}"
        if sig == signal.SIGHUP:  # a stop: it saves, says so and exits 130, no traceback
            assert proc.returncode == 130 and "Traceback" not in err, f"{where}: {err}"
        # -- the pair on disk is consistent (repaired if the kill fell between the two renames) --
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = load_resume_state(resume_path(out), "train-memory", {"epoch": int}, checkpoint=out)
        epoch = int(state["epoch"])
        assert read_checkpoint(out).extra["epochs_done"] == epoch, where
        # -- --resume continues from it; the killed writer's temporary files go at the next write --
        code, err = run(capsys, "train-memory", *args(out), "--epochs", str(epoch + 1), "--resume")
        assert code == 0, f"{where}: {err}"
        assert read_checkpoint(out).extra["epochs_done"] == epoch + 1, where
        assert not list(out.parent.glob(f"*{TMP_SUFFIX}")), where


# -- configs that cannot fit in memory ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, needle",
    [
        (("train-memory", "--seq-len", "100000"), "seq_len 100000"),
        (("train-memory", "--batch-size", "10000000"), "batch_size 10000000"),
        (("train-controller", "--population", "100000000"), "population 100000000"),
        (("train-controller", "--population", "100000000", "--evaluator", "real"), "CMA-ES candidates"),
        (("iterate", "--train-controller.population", "100000000"), "population 100000000"),  # nested, before work
    ],
)
def test_configs_that_cannot_fit_in_memory_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], needle: str
) -> None:
    one_line_error(*run(capsys, *args), needle, "GiB of RAM")


def test_the_memory_bound_is_the_machines_ram(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.memory_budget
    from core.config import MemoryTrainConfig
    from core.errors import ConfigError
    from core.memory_budget import machine_memory_bytes
    from core.train.controller import ControllerTrainConfig

    assert machine_memory_bytes() is not None and machine_memory_bytes() > 2**28
    MemoryTrainConfig(), ControllerTrainConfig()  # the defaults fit (about 75 MiB and 22 MiB)
    monkeypatch.setattr(core.memory_budget, "machine_memory_bytes", lambda: 64 * 2**20)
    with pytest.raises(ConfigError, match="more than this machine's 0.1 GiB"):
        MemoryTrainConfig()
    ControllerTrainConfig()
    with pytest.raises(ConfigError, match="population 256"):
        ControllerTrainConfig(population=256)


# -- shipped assets: every load checks them against the manifest ------------------------------------------------
@pytest.fixture
def assets(tmp_path: Path) -> Path:
    from explorer.tiny import make_untrained_assets

    return make_untrained_assets(tmp_path / "assets", "conv_vae")


BAD_MANIFESTS = {
    "not JSON": ('{"files": {', "not valid JSON"),
    "a list of files": ('{"files": ["convvae_vision.safetensors"]}', 'no "files" object'),
    "a hash that is not one": ('{"files": {"convvae_vision.safetensors": 3}}', "not a file name with a SHA-256"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_malformed_manifest_is_one_line_in_evaluate_and_compare_vision(
    capsys: pytest.CaptureFixture[str], assets: Path, tmp_path: Path, case: str
) -> None:
    text, needle = BAD_MANIFESTS[case]
    (assets / "manifest.json").write_text(text)
    controller, vision = assets / "convvae_controller.safetensors", assets / "convvae_vision.safetensors"
    code, err = run(capsys, "evaluate", "--controller", str(controller), "--episodes", "1", "--workers", "1")
    one_line_error(code, err, str(assets / "manifest.json"), needle)
    code, err = run(capsys, "compare-vision", "--conv-vae", str(vision), "--dds-vae", str(vision),
                    "--data-dir", str(tmp_path), "--grid", str(tmp_path / "g.png"))  # fmt: skip
    one_line_error(code, err, str(assets / "manifest.json"), needle)


def test_a_changed_shipped_file_is_refused_by_every_loader(
    capsys: pytest.CaptureFixture[str], assets: Path, tmp_path: Path
) -> None:
    from core.checkpoint import save_checkpoint
    from core.models import ConvVAE, VAEConfig

    vision = assets / "convvae_vision.safetensors"
    save_checkpoint(vision, ConvVAE(VAEConfig()), kind="conv_vae", config=VAEConfig())  # valid, but not the shipped one
    code, err = run(capsys, "evaluate", "--controller", str(assets / "convvae_controller.safetensors"), "--vision",
                    str(vision), "--memory", str(assets / "convvae_memory.safetensors"), "--episodes", "1",
                    "--workers", "1")  # fmt: skip
    one_line_error(code, err, str(vision), "hash mismatch")
    code, err = run(capsys, "compare-vision", "--conv-vae", str(vision), "--data-dir", str(tmp_path),
                    "--grid", str(tmp_path / "g.png"))  # fmt: skip
    one_line_error(code, err, str(vision), "hash mismatch")
    code, err = run(capsys, "dream", "--vision", str(vision), "--memory", str(assets / "convvae_memory.safetensors"),
                    "--out", str(tmp_path / "d.mp4"))  # fmt: skip
    one_line_error(code, err, str(vision), "hash mismatch")


def test_a_deleted_manifest_warns_in_one_line_and_the_files_still_load(assets: Path) -> None:
    from core.assets import AssetWarning
    from core.checkpoint import load_model
    from explorer.session import Session, SessionConfig

    (assets / "manifest.json").unlink()
    with pytest.warns(AssetWarning, match="no asset manifest beside .*convvae_memory") as record:
        load_model(assets / "convvae_memory.safetensors")
    assert len(record) == 1 and "\n" not in str(record[0].message)
    session = Session(
        SessionConfig(vision_runtime="pytorch", assets=assets, mode="real")
    )  # the app says so beside each part
    try:
        assert session.vision is not None and session.controller is not None
        assert "warning: no asset manifest" in session.model_notes["vision"]
    finally:
        session.close()


# -- a full disk ------------------------------------------------------------------------------------------------------
def test_a_full_disk_mid_run_is_one_line_keeps_the_old_file_and_leaves_no_temporary_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A real full disk: a 1 MiB tmpfs holds the output, so the output check (a tiny probe file) passes and the
    first checkpoint (~1.1 MB with the default 256-unit LSTM) hits ENOSPC in the middle of the run."""
    from tests.test_hardening import digest, tiny_latents

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        msg = f"DISK-FULL TEST SKIPPED: cannot mount a tmpfs here ({mounted.stderr.decode().strip()})"
        print(msg, file=sys.stderr)
        pytest.skip(msg)
    try:
        out = disk / "m.safetensors"
        out.write_bytes(b"an earlier checkpoint")
        before = digest(out)
        latents = tiny_latents(tmp_path / "l.npz")
        code, err = run(capsys, "train-memory", "--latents", str(latents), "--out", str(out), "--epochs", "1",
                        "--seq-len", "8", "--batch-size", "2")  # fmt: skip
        one_line_error(code, err, str(out))
        assert "space" in err.lower()
        assert digest(out) == before  # nothing overwritten
        # no temporary file left behind; the run's metrics log (its curves up to the failure) may stay
        assert sorted(p.name for p in disk.iterdir() if p.name != "m.metrics.jsonl") == ["m.safetensors"]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
