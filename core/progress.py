"""Progress reporting and cancellation shared by every training stage, the CLI and the GUI.

A stage never prints. It calls ``on_progress(Progress(...))`` and polls ``should_stop.is_set()``;
the CLI turns the calls into a tqdm bar, the GUI into a progress widget and live plots.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    """One progress report of a stage.

    Attributes:
        stage: stage name, e.g. ``"collect"``, ``"vision"``, ``"memory"``, ``"controller"``.
        step: units done so far (episodes, optimiser steps, generations), 0 <= step <= total.
        total: units the stage will do when it runs to the end (>= 1).
        metrics: namespaced scalar metrics at this step, e.g. ``{"vision/train/recon": 0.002}``.
        message: optional human-readable line (a checkpoint written, an epoch finished).
    """

    stage: str
    step: int
    total: int
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def fraction(self) -> float:
        """Share of the stage done, in [0, 1]."""
        return min(1.0, max(0.0, self.step / max(1, self.total)))


ProgressFn = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """A progress callback that drops every report."""


def never_stop() -> threading.Event:
    """A stop flag that nobody sets."""
    return threading.Event()
