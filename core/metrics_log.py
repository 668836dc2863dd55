"""A stage's metrics on disk: every progress report with metrics becomes one JSON line beside the stage's output,
so a run's curves outlive it (the app's Training panel plots them back; ``jq`` or pandas read them).

File: ``<out>.metrics.jsonl`` beside a checkpoint or file output (``runs/memory.safetensors`` ->
``runs/memory.metrics.jsonl``), ``<out_dir>/metrics.jsonl`` for a stage that writes a folder (collect,
iterate). Each line: ``{"stage": str, "step": int, "total": int, "time": float (s since the run started),
"metrics": {name: float}}``. A new run starts the file afresh; a resumed one (``resume=True``) appends.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from core.errors import DreamExplorerError
from core.progress import Progress, ProgressFn

SUFFIX = ".metrics.jsonl"
"""Suffix of the log beside a file output."""
DIR_NAME = "metrics.jsonl"
"""Name of the log inside a folder output."""


def metrics_log_path(config: Any) -> Path | None:
    """Where the stage run with ``config`` logs its metrics: beside ``config.out`` or inside ``config.out_dir``;
    None for a config with neither (evaluate, divergence, a test's plain dict)."""
    out = getattr(config, "out", None)
    if isinstance(out, str | Path):
        out = Path(out)
        return out.with_name(out.stem + SUFFIX)
    out_dir = getattr(config, "out_dir", None)
    if isinstance(out_dir, str | Path):
        return Path(out_dir) / DIR_NAME
    return None


class MetricsLog:
    """Appends each report with metrics to ``path`` as one JSON line (non-finite values as null), flushed at once,
    so a crash or a kill loses at most the line being written. The file is created with the first line. A folder
    or file that cannot be written turns the log off (the stage itself decides whether its output can be written)."""

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        self._t0 = time.monotonic()
        self._mode = "a" if append else "w"
        self._file: Any = None
        self._off = False  # the file could not be written: stay quiet

    def _open(self) -> bool:
        """Open the file on the first line, so a stage that fails before it reports (a refused output path)
        leaves nothing behind."""
        if self._file is None and not self._off:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, self._mode, encoding="utf-8")  # noqa: SIM115
            except OSError:
                self._off = True
        return self._file is not None

    def write(self, p: Progress) -> None:
        if not p.metrics or not self._open():
            return
        metrics = {k: (float(v) if math.isfinite(v) else None) for k, v in p.metrics.items()}
        line = {"stage": p.stage, "step": p.step, "total": p.total, "time": round(time.monotonic() - self._t0, 3),
                "metrics": metrics}  # fmt: skip
        try:
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()
        except OSError:
            self.close()
            self._off = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def logging_progress(config: Any, on_progress: ProgressFn) -> tuple[ProgressFn, MetricsLog | None]:
    """``on_progress`` that also logs to :func:`metrics_log_path` of ``config`` (when it has one), and the log
    (close it when the stage ends)."""
    path = metrics_log_path(config)
    if path is None:
        return on_progress, None
    log = MetricsLog(path, append=bool(getattr(config, "resume", False)))

    def report(p: Progress) -> None:
        log.write(p)
        on_progress(p)

    return report, log


def read_metrics_log(path: str | Path) -> dict[str, tuple[list[float], list[float]]]:
    """The curves of a metrics log: ``{metric: (steps, values)}`` in file order; null values are skipped, as is a
    last line cut short by a kill.

    Raises:
        DreamExplorerError: the file cannot be read, or a line before the last is not a log line (one line).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DreamExplorerError(f"cannot read the metrics log {path}: {exc}") from None
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for i, line in enumerate(lines):
        try:
            entry = json.loads(line)
            step, metrics = float(entry["step"]), dict(entry["metrics"])
        except (ValueError, KeyError, TypeError):
            if i == len(lines) - 1:
                break  # written when the process was killed
            raise DreamExplorerError(f"{path}:{i + 1} is not a metrics log line") from None
        for key, value in metrics.items():
            if isinstance(value, int | float):
                xs, ys = curves.setdefault(key, ([], []))
                xs.append(step)
                ys.append(float(value))
    return curves
