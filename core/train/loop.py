"""One generic epoch loop for every gradient-trained model (V and M), fed by ``model.loss(batch)``."""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, cast

import torch
from torch import Tensor, nn

from core.checkpoint import first_non_finite
from core.errors import NonFiniteError
from core.progress import Progress, ProgressFn


@dataclass
class StageResult:
    """What a stage produced.

    Attributes:
        checkpoint: the file written (None when nothing was written).
        metrics: final namespaced metrics, e.g. ``vision/val/recon``.
        cancelled: the stop flag ended the stage early (the checkpoint can be resumed).
        seconds: wall-clock time of this call.
        history: (step, metrics) pairs as reported through progress.
    """

    checkpoint: Path | None
    metrics: dict[str, float]
    cancelled: bool = False
    seconds: float = 0.0
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG and return a generator with the same seed."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


LossFn: TypeAlias = Callable[[Any], tuple[Tensor, dict[str, float]]]
"""A training loss: batch -> (scalar loss tensor, float metrics by name)."""


@dataclass
class EpochLoop:
    """Signposted training loop over epochs with progress, stop flag, gradient clipping and autocast.

    Attributes:
        stage: name reported in :class:`Progress` (e.g. ``"vision"``).
        prefix: metric namespace (e.g. ``"vision"``): train metrics become ``<prefix>/train/<name>``.
        model: the module; its ``loss(batch) -> (loss, metrics)`` is called (or ``loss_fn`` when given).
        optimizer, scheduler: stepped once per batch.
        epochs: epochs to run in total; ``start_epoch`` those already done (resume).
        steps_per_epoch: optimiser steps per epoch.
        batches: ``batches(epoch)`` yields the epoch's batches.
        evaluate: ``evaluate()`` -> validation metrics (already namespaced), run after every epoch.
        save: ``save(epoch_done, metrics)`` writes checkpoint + resume state, run after every epoch and on stop.
        grad_clip: clip the global gradient norm (None: no clipping).
        bf16: run the forward pass under CPU bfloat16 autocast.
        report_every: progress reports per this many steps.
    """

    stage: str
    prefix: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    epochs: int
    steps_per_epoch: int
    batches: Callable[[int], Iterable[Any]]
    evaluate: Callable[[], dict[str, float]]
    save: Callable[[int, dict[str, float]], Path]
    on_progress: ProgressFn
    should_stop: threading.Event
    start_epoch: int = 0
    grad_clip: float | None = None
    bf16: bool = False
    report_every: int = 10
    loss_fn: LossFn | None = None

    def _diverged(self, what: str, last: Path | None) -> NonFiniteError:
        kept = f"the last finite checkpoint is kept at {last}" if last is not None else "this run wrote no checkpoint"
        return NonFiniteError(f"{self.stage}: {what}; stopped ({kept}); try a lower --lr")

    def _save(self, epochs_done: int, metrics: dict[str, float], last: Path | None) -> Path:
        """``save`` after checking the weights: non-finite weights are never written over a finite file."""
        bad = first_non_finite(self.model)
        if bad is not None:
            raise self._diverged(f"weights became NaN or inf ({bad})", last)
        return self.save(epochs_done, metrics)

    def _schedule(self) -> tuple[list[float], dict[str, Any] | None]:
        """The learning rates and the scheduler's state now."""
        lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
        return lrs, copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None

    def _restore_schedule(self, schedule: tuple[list[float], dict[str, Any] | None]) -> None:
        """Put the learning rates and the scheduler back where an epoch began, so that a resumed run, which redoes
        that epoch, steps the schedule exactly as an uninterrupted run does and ends where it would (a cosine
        schedule stepped past its end climbs again). The weights and the optimiser's moments keep what the
        unfinished epoch taught them."""
        lrs, state = schedule
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        if state is not None:
            self.scheduler.load_state_dict(state)

    def run(self) -> StageResult:
        """Train from ``start_epoch`` to ``epochs``, saving after every epoch and when stopped.

        Raises:
            NonFiniteError: the loss or the weights became NaN or inf; the checkpoint on disk (if any) is the
                last finite one.
        """
        t0 = time.perf_counter()
        total = self.epochs * self.steps_per_epoch
        history: list[tuple[int, dict[str, float]]] = []
        metrics: dict[str, float] = {}
        path: Path | None = None
        loss_fn = self.loss_fn if self.loss_fn is not None else cast(LossFn, self.model.loss)
        for epoch in range(self.start_epoch, self.epochs):
            self.model.train()
            schedule = self._schedule()  # where this epoch starts, for a stop inside it
            running: dict[str, float] = {}
            n = 0
            # -- one epoch of optimiser steps --
            for i, batch in enumerate(self.batches(epoch)):
                step = epoch * self.steps_per_epoch + i + 1
                ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
                with ctx:
                    loss, parts = loss_fn(batch)
                if not math.isfinite(loss.item()):
                    raise self._diverged(f"loss became {loss.item()} at step {step}", path)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.grad_clip is not None:
                    gnorm = torch.nn.utils.clip_grad_norm_(
                        [p for p in self.model.parameters() if p.requires_grad], self.grad_clip
                    )
                    parts = dict(parts, grad_norm=float(gnorm))
                self.optimizer.step()
                if self.scheduler is not None:
                    self.scheduler.step()
                n += 1
                for k, v in dict(parts, loss=loss.item()).items():
                    running[k] = running.get(k, 0.0) + v
                if n % self.report_every == 0 or i + 1 == self.steps_per_epoch:
                    metrics = {f"{self.prefix}/train/{k}": v / n for k, v in running.items()}
                    metrics[f"{self.prefix}/lr"] = self.optimizer.param_groups[0]["lr"]
                    history.append((step, metrics))
                    self.on_progress(Progress(self.stage, step, total, metrics))
                if self.should_stop.is_set():  # the unfinished epoch is redone on resume, on its own schedule
                    self._restore_schedule(schedule)
                    path = self._save(epoch, metrics, path)
                    return StageResult(path, metrics, True, time.perf_counter() - t0, history)
            # -- end of epoch: validate, checkpoint --
            self.model.eval()
            with torch.no_grad():
                val = self.evaluate()
            metrics = {**metrics, **val}
            path = self._save(epoch + 1, metrics, path)
            history.append(((epoch + 1) * self.steps_per_epoch, metrics))
            msg = f"epoch {epoch + 1}/{self.epochs}: " + ", ".join(f"{k}={v:.5g}" for k, v in val.items())
            self.on_progress(Progress(self.stage, (epoch + 1) * self.steps_per_epoch, total, metrics, msg))
        return StageResult(path, metrics, False, time.perf_counter() - t0, history)
