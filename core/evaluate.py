"""The ``evaluate`` stage: a controller (with its V and M) on held-out real tracks, in parallel workers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from core.errors import ConfigError
from core.progress import Progress, ProgressFn, never_stop, no_progress

EVAL_SEED_START = 1_000_000
"""Held-out track seeds start here; training and collection seeds stay below it."""


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluate a controller on held-out CarRacing-v3 tracks."""

    controller: Path = Path("runs/controller.safetensors")
    """Controller checkpoint."""
    vision: Path | None = None
    """Vision checkpoint (default: the one recorded in the controller checkpoint)."""
    memory: Path | None = None
    """MDN-RNN checkpoint (default: the one recorded in the controller checkpoint)."""
    episodes: int = 100
    """Number of held-out tracks."""
    seed: int = EVAL_SEED_START
    """First held-out track seed (seeds seed .. seed + episodes - 1; must be >= 1,000,000)."""
    workers: int = 2
    """Worker processes."""
    max_steps: int = 1000
    """Steps per episode at most."""
    json: bool = False
    """Print one JSON object instead of the report."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ConfigError(f"episodes must be >= 1, got {self.episodes}")
        if self.seed < EVAL_SEED_START:
            raise ConfigError(f"evaluation seeds must be >= {EVAL_SEED_START} (held out from training), got {self.seed}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class EvaluationResult:
    """Returns on held-out tracks."""

    returns: list[float]
    seeds: list[int]
    seconds: float

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns)) if self.returns else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.returns)) if self.returns else float("nan")

    def as_json(self) -> dict[str, object]:
        return {
            "return_mean": self.mean,
            "return_std": self.std,
            "episodes": len(self.returns),
            "seeds": self.seeds,
        }


_worker_cache: dict[str, object] = {}


def _worker_init() -> None:
    torch.set_num_threads(1)


def rollout_return(env, controller, seed: int, max_steps: int) -> float:  # type: ignore[no-untyped-def]
    """One real episode of ``controller`` through a :class:`WorldModelObservation` env; its return."""
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for _ in range(max_steps):
        obs, reward, terminated, truncated, _ = env.step(controller.act(obs))
        total += reward
        if terminated or truncated:
            break
    return total


def _eval_one(vision: str, memory: str | None, controller: str, seed: int, max_steps: int) -> tuple[int, float]:
    from core.envs.car_racing import make_real_env
    from core.envs.world_model import WorldModel, WorldModelObservation

    key = f"{vision}|{memory}|{controller}"
    if key not in _worker_cache:
        _worker_cache.clear()
        wm = WorldModel.load(vision, memory, controller)
        include_h = wm.controller is not None and wm.controller.config.hidden_dim > 0
        _worker_cache[key] = (WorldModelObservation(make_real_env(), wm, include_h=include_h), wm.controller)
    env, ctrl = _worker_cache[key]  # type: ignore[misc]
    return seed, rollout_return(env, ctrl, seed, max_steps)


def resolve_world_model_paths(controller: Path, vision: Path | None, memory: Path | None) -> tuple[Path, Path | None]:
    """The V and M a controller was trained with, unless given. Raises CheckpointError."""
    from core.checkpoint import read_checkpoint
    from core.errors import CheckpointError

    extra = read_checkpoint(controller).extra
    v = vision or (Path(extra["vision"]) if extra.get("vision") else None)
    m = memory or (Path(extra["memory"]) if extra.get("memory") else None)
    if v is None:
        raise CheckpointError(f"{controller} does not record its vision model; pass --vision")
    return v, m


def evaluate(
    config: EvaluateConfig,
    *,
    on_progress: ProgressFn = no_progress,
    should_stop: threading.Event | None = None,
) -> EvaluationResult:
    """Run ``config.episodes`` real episodes on seeds ``config.seed + i`` with no early stopping.

    Raises:
        CheckpointError: a checkpoint is missing or bad.
    """
    stop = should_stop or never_stop()
    vision, memory = resolve_world_model_paths(config.controller, config.vision, config.memory)
    t0 = time.perf_counter()
    seeds = [config.seed + i for i in range(config.episodes)]
    results: dict[int, float] = {}
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=config.workers, mp_context=ctx, initializer=_worker_init) as pool:
        args = (str(vision), str(memory) if memory else None, str(config.controller))
        queue = list(seeds)
        pending: set = set()
        while queue or pending:
            while queue and len(pending) < config.workers * 2 and not stop.is_set():
                pending.add(pool.submit(_eval_one, *args, queue.pop(0), config.max_steps))
            if not pending:
                break
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in finished:
                seed, ret = fut.result()
                results[seed] = ret
                values = list(results.values())
                metrics = {"evaluate/return": ret, "evaluate/return_mean": float(np.mean(values))}
                on_progress(Progress("evaluate", len(results), len(seeds), metrics))
            if stop.is_set():
                queue.clear()
    done = sorted(results)
    return EvaluationResult([results[s] for s in done], done, time.perf_counter() - t0)


def histogram(returns: list[float], bins: int = 10, width: int = 40) -> str:
    """A text histogram of returns, one line per bin."""
    if not returns:
        return ""
    counts, edges = np.histogram(returns, bins=bins)
    top = max(1, counts.max())
    lines = []
    for c, lo, hi in zip(counts, edges[:-1], edges[1:], strict=True):
        lines.append(f"{lo:8.1f} .. {hi:8.1f} | {'#' * int(round(width * c / top))} {c}")
    return "\n".join(lines)
