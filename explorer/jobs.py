"""Training stages run from the GUI: a :class:`JobRunner` runs one of :data:`core.stages.STAGES` in its own
process (or a background thread), with a stop flag and a queue of :class:`core.api.Progress` reports that the
GUI drains once a frame. A stage that raises leaves its message in the job and the app goes on. No GUI imports.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.api import DreamExplorerError, Progress, StageCancelled
from core.metrics_log import read_metrics_log
from core.stages import Stage

Status = Literal["idle", "running", "done", "cancelled", "failed"]
Runner = Literal["thread", "process"]
RUNNERS: tuple[Runner, ...] = ("process", "thread")
Priority = Literal["idle", "low"]
PRIORITIES: tuple[Priority, ...] = ("idle", "low")
STAGE_NICE = 5
"""Nice value of stage threads and processes at priority ``low`` (and where ``idle`` is not available: 19)."""
STAGE_THREADS = 1
"""Torch intra-op threads of a stage run in its own process (the GUI's frame loop needs the other core)."""
LOG_LINES = 400
"""Log lines kept per job."""
PLOT_POINTS = 4000
"""Points kept per metric for the live plots (thinned evenly beyond that, so memory stays flat)."""


def lower_priority(priority: Priority = "idle", whole_process: bool = False) -> str:
    """Give the calling thread (and the threads and worker processes it starts later) a lower CPU priority than
    the GUI's, and return what was set.

    ``idle``: Linux's ``SCHED_IDLE`` policy, so the stage runs on what the frame loop leaves of the cores (the
    GUI's frame rate stays near what it is without the stage, the stage slows instead); where that policy is
    missing, nice 19.
    ``low``: nice :data:`STAGE_NICE` (the scheduler still shares the cores, weighted about 3:1 for the GUI).
    On Linux both act per thread (a thread id is a valid pid for these calls): the calling thread only, or with
    ``whole_process`` every thread the process has now (a stage's own process: threads its start-up made, such
    as a queue's feeder, would keep the GUI's priority otherwise). Returns ``"SCHED_IDLE"``, ``"nice N"`` or
    ``"unchanged"`` (neither is possible here). Raises ValueError on an unknown ``priority``.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, got {priority!r}")
    tids = [threading.get_native_id()]
    if whole_process:
        try:
            tids = sorted(int(t) for t in os.listdir("/proc/self/task"))
        except OSError:
            pass

    def apply(set_one: Callable[[int], None]) -> bool:
        try:
            for tid in tids:
                set_one(tid)
        except (AttributeError, OSError):
            return False
        return True

    def to_idle(tid: int) -> None:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined,unused-ignore]

    if priority == "idle" and apply(to_idle):
        return "SCHED_IDLE"
    nice = STAGE_NICE if priority == "low" else 19
    return f"nice {nice}" if apply(lambda tid: os.setpriority(os.PRIO_PROCESS, tid, nice)) else "unchanged"


def summarize(result: Any) -> str:
    """One line about what a stage returned (a checkpoint, returns, episodes)."""
    if result is None:
        return "finished"
    checkpoint = getattr(result, "checkpoint", None)
    if checkpoint is not None:
        return f"wrote {checkpoint}"
    if hasattr(result, "returns"):
        return f"return {result.mean:.1f} +- {result.std:.1f} over {len(result.returns)} tracks"
    metrics = getattr(result, "metrics", None)
    if metrics:
        shown = [k for k in metrics if "pixel_mse" in k and "@10" in k] or list(metrics)[:3]
        return ", ".join(f"{k.split('/')[-1]} {metrics[k]:.4g}" for k in shown)
    if isinstance(result, list):
        return f"recorded {len(result)} episodes"
    return "finished"


class MetricHistory:
    """(step, value) points per metric for the live plots, evenly thinned: every ``stride``-th report is kept,
    and when PLOT_POINTS are held every other one goes and the stride doubles. The latest report is always shown.
    """

    def __init__(self) -> None:
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self._stride: dict[str, int] = {}
        self._count: dict[str, int] = {}
        self._last: dict[str, tuple[float, float]] = {}

    def add(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            xs, ys = self.series.setdefault(key, ([], []))
            count, stride = self._count.get(key, 0), self._stride.get(key, 1)
            if count % stride == 0:
                xs.append(float(step))
                ys.append(float(value))
                if len(xs) >= PLOT_POINTS:
                    del xs[1::2], ys[1::2]
                    self._stride[key] = 2 * stride
            self._count[key] = count + 1
            self._last[key] = (float(step), float(value))

    def arrays(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """float64 (n,) steps and values of ``key``, ending with the latest report."""
        xs, ys = self.series.get(key, ([], []))
        last = self._last.get(key)
        if last is not None and (not xs or xs[-1] != last[0]):
            xs, ys = [*xs, last[0]], [*ys, last[1]]
        return np.asarray(xs, np.float64), np.asarray(ys, np.float64)


def _run_and_report(spec: Stage, config: Any, stop: Any, out: Any) -> None:
    """Run ``spec`` on ``config`` and put every report and then the outcome on ``out``: ("progress", Progress),
    then ("done" | "cancelled", result), ("cancelled", message) or ("failed", (message, traceback)). A crash
    inside the stage ends as "failed": it must not take the app down. (The runner also puts ("log", line) lines
    on ``out`` before this.)"""
    try:
        result = spec.run(config, on_progress=lambda p: out.put(("progress", p)), should_stop=stop)
    except StageCancelled as exc:
        out.put(("cancelled", str(exc)))
    except DreamExplorerError as exc:
        out.put(("failed", (str(exc), "")))
    except Exception as exc:
        out.put(("failed", (f"{type(exc).__name__}: {exc}", traceback.format_exc())))
    else:
        cancelled = bool(getattr(result, "cancelled", False)) or stop.is_set()
        out.put(("cancelled" if cancelled else "done", result))


def _stage_process(spec: Stage, config: Any, stop: Any, out: Any, priority: Priority = "idle") -> None:
    """Body of a stage's own process (spawned): every thread it has so far at the lowered priority, before torch's
    import (threads and worker processes started later inherit it), STAGE_THREADS torch threads, then the stage
    (:func:`_run_and_report`)."""
    priority_set = lower_priority(priority, whole_process=True)  # before torch's import starts its threads
    import torch

    out.put(("log", f"CPU priority: {priority_set}"))
    torch.set_num_threads(STAGE_THREADS)
    _run_and_report(spec, config, stop, out)
    out.close()
    out.join_thread()
    # End now: a cancelled pool's running tasks would keep this process alive until they finish, though their
    # results are no longer wanted; its workers die with this process (die_with_parent) and write atomically.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class JobRunner:
    """Runs one stage at a time, in its own process (default) or a thread, and keeps what the panel shows.

    In a process (spawned, so no GUI state is inherited) the stage has its own interpreter lock and torch
    settings: the frame loop keeps its core. Reports and the outcome come back over a multiprocessing queue,
    cancel is a multiprocessing event; the result must pickle (every core stage's does).

    Attributes:
        spec: the stage.
        status: idle, running, done, cancelled or failed.
        progress: the last report (None before the first).
        history: metrics over steps, for the live plot.
        log: recent lines (messages, status changes, the traceback of a crash).
        error: the message of the exception that ended the stage, if any.
        result: what the stage returned.
    """

    def __init__(self, spec: Stage, runner: Runner = "process", priority: Priority = "idle") -> None:
        if runner not in RUNNERS:
            raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}, got {priority!r}")
        self.spec = spec
        self.runner: Runner = runner
        self.priority: Priority = priority
        self.status: Status = "idle"
        self.progress: Progress | None = None
        self.history = MetricHistory()
        self.log: deque[str] = deque(maxlen=LOG_LINES)
        self.error = ""
        self.result: Any = None
        self.started = 0.0
        self.elapsed = 0.0
        self._stop: Any = threading.Event()
        self._queue: Any = queue.Queue()
        self._thread: threading.Thread | None = None
        self._process: Any = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def fraction(self) -> float:
        """Share of the stage done, in [0, 1] (1 once finished)."""
        if self.status == "done":
            return 1.0
        return self.progress.fraction if self.progress is not None else 0.0

    @property
    def checkpoint(self) -> Path | None:
        """The ``.safetensors`` file the finished stage wrote, if any (it can be loaded into the app)."""
        path = getattr(self.result, "checkpoint", None)
        return Path(path) if path is not None and str(path).endswith(".safetensors") else None

    def start(self, config: Any) -> None:
        """Run the stage on ``config`` in a new thread. Raises RuntimeError when already running."""
        if self.running:
            raise RuntimeError(f"{self.spec.title} is already running")
        self.status, self.progress, self.error, self.result = "running", None, "", None
        self.history = MetricHistory()
        self.log.clear()
        self.started = time.monotonic()
        self.log.append(f"started {self.spec.key} in a {self.runner} (priority {self.priority}) with {config}")
        if self.runner == "process":
            context = multiprocessing.get_context("spawn")
            self._stop, self._queue = context.Event(), context.Queue()
            # not a daemon: a stage (collect) may start worker processes of its own
            self._process = context.Process(target=_stage_process, args=(self.spec, config, self._stop,
                                            self._queue, self.priority), name=f"stage-{self.spec.key}")  # fmt: skip
            self._process.start()
            return
        self._stop, self._queue = threading.Event(), queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(config, self._stop, self._queue),
                                        name=f"stage-{self.spec.key}", daemon=True)  # fmt: skip
        self._thread.start()

    def _run(self, config: Any, stop: threading.Event, out: queue.Queue[tuple[str, Any]]) -> None:
        out.put(("log", f"CPU priority: {lower_priority(self.priority)}"))
        _run_and_report(self.spec, config, stop, out)

    def load_history(self, path: Path) -> None:
        """Fill the plot's history from a metrics log a run wrote (:func:`core.metrics_log.read_metrics_log`).
        Raises DreamExplorerError when the file cannot be read as one."""
        history = MetricHistory()
        for key, (steps, values) in read_metrics_log(path).items():
            for step, value in zip(steps, values, strict=True):
                history.add(int(step), {key: value})
        self.history = history
        self.log.append(f"curves of {path} ({len(history.series)} metrics)")

    def cancel(self) -> None:
        """Ask the stage to stop at its next check of the stop flag."""
        if self.running:
            self._stop.set()
            self.log.append("cancelling...")

    def poll(self) -> None:
        """Drain the reports that arrived since the last call (the GUI calls this once a frame). A stage process
        that ended without an outcome (killed, crashed in native code) leaves the job failed with its exit code."""
        exited = self._process is not None and self.running and not self._process.is_alive()
        while True:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            except (EOFError, OSError, ValueError):  # the queue's pipe is gone with the process
                break
            if kind == "log":
                self.log.append(payload)
                continue
            if kind == "progress":
                self.progress = payload
                if payload.metrics:
                    self.history.add(payload.step, payload.metrics)
                if payload.message:
                    self.log.append(f"[{payload.step}/{payload.total}] {payload.message}")
                continue
            self.status = kind
            if kind == "failed":
                self.error, trace = payload
                self.log.append(f"FAILED: {self.error}")
                self.log.extend(trace.rstrip().splitlines())
            elif kind == "cancelled":
                self.result = payload if not isinstance(payload, str) else None
                self.log.append(f"cancelled: {summarize(self.result) if self.result else payload}")
            else:
                self.result = payload
                self.log.append(f"done: {summarize(payload)}")
        if exited and self.running:
            self.status, code = "failed", self._process.exitcode
            self.error = f"the stage's process ended without a result (exit code {code})"
            self.log.append(f"FAILED: {self.error}")
        if self.running:
            self.elapsed = time.monotonic() - self.started

    def poll_until(self, done: Callable[[JobRunner], bool], timeout: float, every: float = 0.05) -> bool:
        """Poll, as the GUI does once a frame, until ``done(self)`` holds or ``timeout`` seconds have passed (scripts
        and tests that drive a job without the GUI); returns whether ``done`` held."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if done(self):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(every)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread or process (tests, and the app on exit after cancelling); a process still alive
        after ``timeout`` is terminated."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5.0)
