"""The stages the app runs: the job runner (thread and process), cancel, one-line errors, the stage list shared
with the CLI, and how a stage's end is said."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from pathlib import Path

import pytest

from core.api import (
    Progress,
    StageResult,
)
from core.stages import STAGES, Stage, app_stages, stage
from explorer.jobs import JobRunner

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fake_stage(config: dict, *, on_progress, should_stop: threading.Event) -> StageResult:  # type: ignore[no-untyped-def]
    """A stage for the job runner tests: reports steps; raises or waits for the stop flag on request."""
    if config.get("report_priority"):  # the stage's own thread: its scheduling policy and nice value
        tid = threading.get_native_id()
        policy = {"policy": float(os.sched_getscheduler(tid)), "nice": float(os.getpriority(os.PRIO_PROCESS, tid))}
        tids = [int(t) for t in os.listdir("/proc/self/task")]
        policy["threads"] = float(len(tids))
        policy["idle_threads"] = float(sum(os.sched_getscheduler(t) == os.SCHED_IDLE for t in tids))
        return StageResult(None, policy)
    for step in range(1, config["steps"] + 1):
        if config.get("raise") == step:
            raise ZeroDivisionError("boom")
        if should_stop.is_set():
            return StageResult(None, {}, cancelled=True)
        on_progress(Progress("fake", step, config["steps"], {"fake/train/loss": 1.0 / step}, f"step {step}"))
        if config.get("slow"):
            should_stop.wait(0.05)
    return StageResult(Path("out.safetensors"), {"fake/train/loss": 0.1})


def run_job(config: dict, cancel: bool = False, **runner_args: str) -> JobRunner:
    job = JobRunner(Stage("fake", "fake", "Fake", dict, f"{__name__}:fake_stage", "a test stage"), **runner_args)  # type: ignore[arg-type]
    job.start(config)
    with pytest.raises(RuntimeError):
        job.start(config)
    if cancel:  # after the first report: a stage process takes seconds to start
        job.poll_until(lambda j: j.progress is not None, 60, every=0.02)
        job.cancel()
    job.join(180)  # a spawned stage process imports torch first: slow on a loaded machine
    job.poll()
    return job


def test_job_runner_reports_progress_and_result() -> None:
    job = run_job({"steps": 5})
    assert job.status == "done" and job.fraction == 1.0 and job.checkpoint == Path("out.safetensors")
    xs, ys = job.history.arrays("fake/train/loss")
    assert xs.tolist() == [1, 2, 3, 4, 5] and ys[-1] == pytest.approx(0.2)
    assert any("step 5" in line for line in job.log)


def test_job_runner_catches_a_crash_and_a_cancel() -> None:
    crashed = run_job({"steps": 5, "raise": 3})
    assert crashed.status == "failed" and crashed.error == "ZeroDivisionError: boom"
    assert any("Traceback" in line for line in crashed.log)
    cancelled = run_job({"steps": 1000, "slow": True}, cancel=True)
    assert cancelled.status == "cancelled" and cancelled.fraction < 1.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_IDLE and per-thread nice are Linux's")
@pytest.mark.parametrize("runner", ["process", "thread"])
def test_a_stage_runs_below_the_gui_priority(runner: str) -> None:
    gui_tid = threading.get_native_id()
    gui = (os.sched_getscheduler(gui_tid), os.getpriority(os.PRIO_PROCESS, gui_tid))
    idle = run_job({"steps": 1, "report_priority": True}, runner=runner)
    assert idle.status == "done" and idle.result.metrics["policy"] == os.SCHED_IDLE
    assert any("priority idle" in line for line in idle.log) and "CPU priority: SCHED_IDLE" in idle.log
    # in its own process every thread of the stage is idle (a queue's feeder, torch's); in a thread, that one only
    expected_idle = idle.result.metrics["threads"] if runner == "process" else 1
    assert idle.result.metrics["idle_threads"] == expected_idle
    low = run_job({"steps": 1, "report_priority": True}, runner=runner, priority="low")
    assert low.result.metrics["policy"] == os.SCHED_OTHER and low.result.metrics["nice"] >= 5
    assert any(line.startswith("CPU priority: nice") for line in low.log)
    # only the stage's thread (or process) was lowered, never the GUI's
    assert (os.sched_getscheduler(gui_tid), os.getpriority(os.PRIO_PROCESS, gui_tid)) == gui
    with pytest.raises(ValueError, match="priority must be one of"):
        JobRunner(STAGES[0], priority="high")  # type: ignore[arg-type]


def test_stage_errors_are_one_line() -> None:
    job = JobRunner(stage("memory"))
    from core.api import MemoryTrainConfig

    job.start(MemoryTrainConfig(latents=Path("/nonexistent/latents.npz")))
    job.join(30)
    job.poll()
    assert job.status == "failed" and "latent file not found" in job.error


def test_the_cli_and_the_training_panel_are_built_from_one_stage_list(capsys: pytest.CaptureFixture[str]) -> None:
    from explorer.cli import main

    assert main(["--help"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.split("subcommands:")[1].strip().splitlines()]
    assert listed == [s.name for s in STAGES]  # the CLI offers every stage, in pipeline order
    keys = [s.key for s in app_stages()]
    assert keys == [
        "collect",
        "vision",
        "encode",
        "memory",
        "controller",
        "distill",
        "evaluate",
        "divergence",
        "iterate",
    ]
    assert len({s.name for s in STAGES}) == len({s.key for s in STAGES}) == len(STAGES)
    for spec in STAGES:
        assert callable(spec.resolve()) and stage(spec.name) is stage(spec.key) is spec
        assert set(spec.defaults) <= {f.name for f in dataclasses.fields(spec.config_cls)}
    with pytest.raises(KeyError, match="known: collect"):
        stage("train")


# -- app settings without a window ---------------------------------------------------------------


CANCEL_COLLECT = """
import multiprocessing, sys, time
from pathlib import Path
from core.api import CollectConfig, read_episode
from core.stages import stage
from explorer.jobs import JobRunner

out = Path(sys.argv[1])
job = JobRunner(stage(sys.argv[2]), sys.argv[3])
job.start(CollectConfig(out_dir=out, episodes=8, max_steps=1000, workers=2, seed=3))
job.poll_until(lambda j: j.progress is not None, 120, every=0.2)  # the first report: the workers have started
time.sleep(4.0)  # the workers are inside their first episodes (1000 steps take several seconds each)
t0 = time.monotonic()
job.cancel()
job.poll_until(lambda j: not j.running, 30)
cancel_s = time.monotonic() - t0
job.join(120)  # the episodes already running finish in their workers, then they (and a stage process) exit
deadline = time.monotonic() + 120
while multiprocessing.active_children() and time.monotonic() < deadline:
    time.sleep(0.5)
written = sorted(out.glob("*.npz"))
print(cancel_s, job.status, len(multiprocessing.active_children()), len(written),
      all(read_episode(p).steps > 0 for p in written))
"""


@pytest.mark.parametrize("runner", ["process", "thread"])
def test_cancel_of_collect_stops_within_seconds_and_leaves_no_workers(tmp_path: Path, runner: str) -> None:
    """Cancel returns within seconds, nothing queued starts, the workers exit, only whole episodes are written.
    Runs in a fresh interpreter: inside the suite's process, after the GUI tests, the stage's thread crashed
    the whole process now and then (a segmentation fault not yet understood; see the README, "The explorer")."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", CANCEL_COLLECT, str(tmp_path / "episodes"), "collect", runner],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    cancel_s, status, alive, written, whole = run.stdout.split()[-5:]
    assert float(cancel_s) < 3.0 and status == "cancelled"
    assert alive == "0" and int(written) < 8 and whole == "True"


# -- first-hour friction: settings, defaults, messages -------------------------------------------


def test_a_stage_end_is_said_in_the_main_log_and_status_bar() -> None:
    from explorer.app import Notices, log_stage_end
    from explorer.panels.training import progress_overlay

    notices = Notices()
    logger = logging.getLogger("explorer")
    logger.addHandler(notices)
    level = logger.level
    logger.setLevel(logging.INFO)  # as build_app sets it
    try:
        done = run_job({"steps": 1})
        log_stage_end(done)
        assert notices.current() == (logging.INFO, "Fake done: wrote out.safetensors")
        assert progress_overlay(done) == "done"
        cancelled = run_job({"steps": 1000, "slow": True}, cancel=True)
        log_stage_end(cancelled)
        level, text = notices.current()  # type: ignore[misc]
        assert level == logging.WARNING and text.startswith("Fake cancelled (partial")
        assert progress_overlay(cancelled).startswith("cancelled at ")
        failed = run_job({"steps": 5, "raise": 2})
        log_stage_end(failed)
        assert notices.current() == (logging.ERROR, "Fake failed: ZeroDivisionError: boom")
        logger.info("human takes over")  # an info line does not hide a standing error
        assert notices.current() == (logging.ERROR, "Fake failed: ZeroDivisionError: boom")
        notices.latest = (logging.ERROR, "old", 0.0)  # expired lines leave the status bar
        assert notices.current() is None
    finally:
        logger.removeHandler(notices)
        logger.setLevel(level)
