"""Frame-time accounting (model, env, GUI) and resident memory, for ``--profile`` and the status bar. No GUI imports."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np

SECTIONS = ("model", "env")
"""Timed sections inside a frame; the rest of the frame is the GUI (layout, texture upload, rendering, swap)."""
STAGES = {
    "encode": "V encodes the real frame (the DDS+VAE: with its mask)",
    "memory": "MDN-RNN steps: reality's tracking, the dream, the next-step spread",
    "decode": "V decodes the dream (and the reconstruction, batched with it)",
    "recon": "V decodes the reconstruction alone (no dream to batch it with)",
    "controller": "the autopilot's action",
    "mask": "the DDS mask views (uint8 images)",
    "upload": "texture uploads (only images that changed)",
    "wait": "the frame waits for the dream's step on the second thread (split mode)",
    "step": "the frame waits for its step, run on the step thread during the previous swap (--pipeline)",
}
"""Stages inside the sections, timed for ``--profile`` (a stage lies inside ``model`` or the GUI; panels are
timed as ``panel:<name>``)."""


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux ``/proc/self/statm``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class FrameClock:
    """Accumulates the time spent in each section during the current frame, and keeps per-frame totals.

    Per-frame figures go to fixed-size arrays (the last ``capacity`` frames), so a long run does not grow.

    Args:
        capacity: frames kept for the statistics.
    """

    def __init__(self, capacity: int = 2048) -> None:
        self.capacity = capacity
        self._owner = threading.get_ident()
        """The frame loop's thread: time another thread spends in a section runs beside the frame, not in it."""
        self._adopted: set[int] = set()
        """Threads whose sections are the frame's own work although they run off the loop's thread (the step
        thread of explorer.pipeline, overlapping the swap)."""
        self._lock = threading.Lock()
        self._current = dict.fromkeys(SECTIONS, 0.0)
        self._beside = 0.0
        self._loop_busy = 0.0
        """Seconds of the current frame the loop's thread spent in sections or waiting (the rest is the GUI's)."""
        self._gui = np.zeros(capacity, np.float64)
        """Per-frame seconds of the loop's thread not in a section and not waiting: layout, upload, render, swap."""
        self._frames = np.zeros((capacity, len(SECTIONS) + 1), np.float64)  # sections..., frame total
        self._beside_frames = np.zeros(capacity, np.float64)
        """Per-frame seconds of model work on a second thread, overlapping the frame loop's own (split mode)."""
        self._stage_now: dict[str, float] = {}
        self._stages: dict[str, np.ndarray] = {}
        """Per-frame seconds of each stage (see STAGES), created at its first use."""
        self.last_frame = 0.0
        """Seconds the previous frame took (0 before two frames)."""
        self._count = 0
        self._last_tick: float | None = None
        self._last_cpu = 0.0
        self._cpu = np.zeros(capacity, np.float64)
        """Per-frame process CPU seconds, all threads (steadier than wall time on a shared machine)."""
        self.rss_start_mb = rss_mb()
        self.rss_samples: list[tuple[int, float]] = []

    @contextmanager
    def _timed(self, record: Callable[[float], None]) -> Iterator[None]:
        """Time a block and hand its seconds to ``record``, under the clock's lock (threads time blocks at once)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            with self._lock:
                record(dt)

    def section(self, name: str) -> AbstractContextManager[None]:
        """Time a block as part of section ``name`` (one of :data:`SECTIONS`); on another thread than the
        clock's (unless adopted), as time spent beside the frame (it overlaps the frame loop's own work)."""
        thread = threading.get_ident()

        def record(dt: float) -> None:
            if thread == self._owner or thread in self._adopted:
                self._current[name] += dt
                self._loop_busy += dt if thread == self._owner else 0.0
            else:
                self._beside += dt

        return self._timed(record)

    def adopt_thread(self) -> None:
        """Count the calling thread's sections as the frame's own work (not as work beside it), although they
        overlap the loop's GUI time: the step thread of :class:`explorer.pipeline.StepThread`."""
        with self._lock:
            self._adopted.add(threading.get_ident())

    def _add_stage(self, name: str, dt: float) -> None:
        self._stage_now[name] = self._stage_now.get(name, 0.0) + dt

    def waiting(self, stage: str) -> AbstractContextManager[None]:
        """Time a block where the loop's thread waits for another thread's work, as the stage ``stage`` and as
        neither GUI nor a section (the work itself is timed on its own thread)."""

        def record(dt: float) -> None:
            self._loop_busy += dt
            self._add_stage(stage, dt)

        return self._timed(record)

    def stage(self, name: str) -> AbstractContextManager[None]:
        """Time a block as the stage ``name`` (e.g. one of :data:`STAGES`), inside whatever section it runs in."""
        return self._timed(lambda dt: self._add_stage(name, dt))

    def end_frame(self) -> None:
        """Close the current frame: its total is the time since the previous call."""
        now, cpu = time.perf_counter(), time.process_time()
        if self._last_tick is not None:
            self._cpu[self._count % self.capacity] = cpu - self._last_cpu
            row = self._frames[self._count % self.capacity]
            row[: len(SECTIONS)] = [self._current[s] for s in SECTIONS]
            row[-1] = self.last_frame = now - self._last_tick
            self._gui[self._count % self.capacity] = self.last_frame - self._loop_busy
            self._beside_frames[self._count % self.capacity] = self._beside
            for name in self._stage_now.keys() | self._stages.keys():
                column = self._stages.setdefault(name, np.zeros(self.capacity, np.float64))
                column[self._count % self.capacity] = self._stage_now.get(name, 0.0)
            self._count += 1
            if self._count % 1000 == 0:
                self.rss_samples.append((self._count, rss_mb()))
        self._last_tick, self._last_cpu = now, cpu
        self._current = dict.fromkeys(SECTIONS, 0.0)
        self._beside = 0.0
        self._loop_busy = 0.0
        self._stage_now = {}

    @property
    def frames(self) -> int:
        """Frames measured so far."""
        return self._count

    def _span(self, skip: int = 0) -> slice:
        """The rows of the frames kept, leaving out the first ``skip`` while they are still among them."""
        if self._count > self.capacity:
            return slice(0, self.capacity)
        return slice(min(skip, max(0, self._count - 1)), self._count)

    def _recent(self, skip: int = 0) -> np.ndarray:
        """The frames kept, leaving out the first ``skip`` while they are still among them."""
        return self._frames[self._span(skip)]

    def stages(self, skip: int = 0) -> dict[str, float]:
        """Mean milliseconds per frame of each stage timed so far (frames without it count as 0)."""
        span = self._span(skip)
        return {name: float(column[span].mean() * 1000.0) for name, column in sorted(self._stages.items())
                if len(column[span])}  # fmt: skip

    def fps(self) -> float:
        """Mean frames per second over the recent frames (0 before two frames)."""
        rows = self._recent()
        return float(len(rows) / rows[:, -1].sum()) if len(rows) and rows[:, -1].sum() > 0 else 0.0

    def breakdown(self, skip: int = 0) -> dict[str, float]:
        """Mean milliseconds per frame: ``model``, ``env``, ``gui`` (the loop's thread outside sections and waits:
        the frame minus model and env where the step runs on the loop's thread) and ``frame``; plus ``fps``, ``cpu``
        (process CPU time) and ``beside`` (model work on a second thread, overlapping the frame's own).

        Args:
            skip: leading frames to leave out (start-up, first texture uploads).
        """
        rows = self._recent(skip)
        if not len(rows):
            return {}
        mean = rows.mean(0) * 1000.0
        out = {name: float(mean[i]) for i, name in enumerate(SECTIONS)}
        out["gui"] = float(self._gui[self._span(skip)].mean() * 1000.0)
        out["frame"] = float(mean[-1])
        out["frame_p95"] = float(np.percentile(rows[:, -1], 95) * 1000.0)
        out["fps"] = 1000.0 / out["frame"] if out["frame"] > 0 else 0.0
        out["cpu"] = float(self._cpu[self._span(skip)].mean() * 1000.0)
        out["beside"] = float(self._beside_frames[self._span(skip)].mean() * 1000.0)
        return out

    def report(self, skip: int = 0) -> str:
        """A few lines for ``--profile``: the breakdown and the memory figures."""
        b = self.breakdown(skip)
        if not b:
            return "profile: no frames measured"
        lines = [
            f"profile over the last {len(self._recent(skip))} frames (of {self._count}):",
            f"  fps    {b['fps']:7.1f}   (frame {b['frame']:.2f} ms, p95 {b['frame_p95']:.2f} ms)",
            f"  model  {b['model']:7.2f} ms/frame   (encode, MDN-RNN step, decode, controller)",
            f"  env    {b['env']:7.2f} ms/frame   (CarRacing-v3 step)",
            f"  gui    {b['gui']:7.2f} ms/frame   (layout, plots, texture upload, render, swap)",
            f"  beside {b['beside']:7.2f} ms/frame   (model work on a second thread, overlapping the above: split "
            "mode's dream step and decode)",
            f"  cpu    {b['cpu']:7.2f} ms/frame   (process CPU time, all threads: the work a frame takes, steadier "
            "than the frame rate when other jobs share the cores)",
        ]
        stages = self.stages(skip)
        if stages:
            lines.append("  per stage (inside model and gui):")
            for name, ms in sorted(stages.items(), key=lambda kv: -kv[1]):
                lines.append(f"    {name:18s} {ms:6.2f} ms/frame   {STAGES.get(name, '')}".rstrip())
        rss = rss_mb()
        lines.append(f"  rss    {self.rss_start_mb:7.1f} MB at start, {rss:.1f} MB now")
        if len(self.rss_samples) >= 2:
            (f0, m0), (f1, m1) = self.rss_samples[0], self.rss_samples[-1]
            lines.append(f"  rss growth {m1 - m0:+.1f} MB from frame {f0} to frame {f1}")
            lines.append("  rss every 1000 frames: " + " ".join(f"{m:.0f}" for _, m in self.rss_samples))
        return "\n".join(lines)


REPORT_FIGURES = {"fps": r"fps\s+([\d.]+)\s+\(frame ([\d.]+) ms, p95 ([\d.]+) ms\)", "model": r"model\s+([\d.]+) ms",
                  "env": r"env\s+([\d.]+) ms", "gui": r"gui\s+([\d.]+) ms", "cpu": r"cpu\s+([\d.]+) ms"}  # fmt: skip
"""Patterns of the figures :meth:`FrameClock.report` prints, one line each."""


def parse_report(text: str) -> dict[str, float]:
    """The figures of a ``--profile`` report found in ``text`` (the app's whole output may be passed).

    Returns:
        ``fps``, ``frame`` and ``frame_p95`` (ms), ``model``, ``env``, ``gui`` and ``cpu`` (ms per frame).

    Raises:
        ValueError: no report in ``text`` (the app failed, or ran without ``--profile``).
    """
    start = text.rfind("profile over the last")
    if start < 0:
        raise ValueError("no --profile report in the output")
    body, out = text[start:], {}
    for key, pattern in REPORT_FIGURES.items():
        match = re.search(pattern, body)
        if match is None:
            raise ValueError(f"the --profile report has no {key} line")
        out[key] = float(match.group(1))
        if key == "fps":
            out["frame"], out["frame_p95"] = float(match.group(2)), float(match.group(3))
    return out
