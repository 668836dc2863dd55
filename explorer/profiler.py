"""Frame-time accounting (model, env, GUI) and resident memory, for ``--profile`` and the status bar. No GUI imports."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

SECTIONS = ("model", "env")
"""Timed sections inside a frame; the rest of the frame is the GUI (layout, texture upload, rendering, swap)."""


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
        self._current = dict.fromkeys(SECTIONS, 0.0)
        self._frames = np.zeros((capacity, len(SECTIONS) + 1), np.float64)  # sections..., frame total
        self._count = 0
        self._last_tick: float | None = None
        self.rss_start_mb = rss_mb()
        self.rss_samples: list[tuple[int, float]] = []

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Time a block as part of section ``name`` (one of :data:`SECTIONS`)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._current[name] += time.perf_counter() - t0

    def end_frame(self) -> None:
        """Close the current frame: its total is the time since the previous call."""
        now = time.perf_counter()
        if self._last_tick is not None:
            row = self._frames[self._count % self.capacity]
            row[: len(SECTIONS)] = [self._current[s] for s in SECTIONS]
            row[-1] = now - self._last_tick
            self._count += 1
            if self._count % 1000 == 0:
                self.rss_samples.append((self._count, rss_mb()))
        self._last_tick = now
        self._current = dict.fromkeys(SECTIONS, 0.0)

    @property
    def frames(self) -> int:
        """Frames measured so far."""
        return self._count

    def _recent(self, skip: int = 0) -> np.ndarray:
        """The frames kept, leaving out the first ``skip`` while they are still among them."""
        if self._count > self.capacity:
            return self._frames
        return self._frames[min(skip, max(0, self._count - 1)) : self._count]

    def fps(self) -> float:
        """Mean frames per second over the recent frames (0 before two frames)."""
        rows = self._recent()
        return float(len(rows) / rows[:, -1].sum()) if len(rows) and rows[:, -1].sum() > 0 else 0.0

    def breakdown(self, skip: int = 0) -> dict[str, float]:
        """Mean milliseconds per frame: ``model``, ``env``, ``gui`` (the rest) and ``frame``; plus ``fps``.

        Args:
            skip: leading frames to leave out (start-up, first texture uploads).
        """
        rows = self._recent(skip)
        if not len(rows):
            return {}
        mean = rows.mean(0) * 1000.0
        out = {name: float(mean[i]) for i, name in enumerate(SECTIONS)}
        out["gui"] = float(mean[-1] - mean[: len(SECTIONS)].sum())
        out["frame"] = float(mean[-1])
        out["frame_p95"] = float(np.percentile(rows[:, -1], 95) * 1000.0)
        out["fps"] = 1000.0 / out["frame"] if out["frame"] > 0 else 0.0
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
        ]
        rss = rss_mb()
        lines.append(f"  rss    {self.rss_start_mb:7.1f} MB at start, {rss:.1f} MB now")
        if len(self.rss_samples) >= 2:
            (f0, m0), (f1, m1) = self.rss_samples[0], self.rss_samples[-1]
            lines.append(f"  rss growth {m1 - m0:+.1f} MB from frame {f0} to frame {f1}")
            lines.append("  rss every 1000 frames: " + " ".join(f"{m:.0f}" for _, m in self.rss_samples))
        return "\n".join(lines)
