"""The ``evaluate`` stage: a controller (with its V and M) on held-out real tracks, in parallel workers."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.config import check_finite
from core.data.seeds import DEVELOPMENT, check_evaluation_seeds
from core.errors import CheckpointError, ConfigError
from core.parallel import EXECUTOR_KINDS, ExecutorKind, make_executor, task_abandoned
from core.policies_wm import WorldModelFiles
from core.progress import Progress, ProgressFn, never_stop, no_progress

if TYPE_CHECKING:
    from core.envs.world_model import WorldModelObservation

EVAL_SEED_START = DEVELOPMENT.start
"""Held-out evaluation tracks start here (the development range, :mod:`core.data.seeds`); training,
collection and model-selection seeds stay below it."""
STEP_REWARD = -0.1
"""CarRacing's reward for a step that visits no new tile."""
ABANDON_CHECK_STEPS = 10
"""Steps between two looks of :func:`rollout_return` at its ``abandoned`` callable (a cross-process flag)."""


def never() -> bool:
    """An ``abandoned`` callable for episodes that always run to their end."""
    return False


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
    """First held-out track seed (seeds seed .. seed + episodes - 1, all in the development range
1,000,000..1,999,999 or the final range from 7,000,000; see core/data/seeds.py)."""
    workers: int = 2
    """Worker processes."""
    max_steps: int = 1000
    """Steps per episode at most."""
    json: bool = False
    """Print one JSON object instead of the report."""
    results: Path | None = None
    """Write the per-track results (the --json object plus the files' SHA-256 and the seed range) to this JSON
    file (default: beside the controller, <controller stem>.eval_<seed>x<episodes>.json). Written atomically,
    only when every episode ran."""
    v_only: Path | None = None
    """Also evaluate this V-only controller (z without h, from `train-controller --v-only`) on the same tracks
    and report it as the baseline (Ha's V-only agent)."""
    executor: ExecutorKind = "local"
    """Where episodes run: "local" worker processes or a "ray" cluster."""
    ray_address: str | None = None
    """Ray cluster to join with --executor ray ("auto", "host:6379", "ray://host:10001"; default: start a
    local Ray instance)."""

    def __post_init__(self) -> None:
        check_finite(self)
        if self.episodes < 1:
            raise ConfigError(f"episodes must be >= 1, got {self.episodes}")
        check_evaluation_seeds(self.seed, self.episodes)
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.executor not in EXECUTOR_KINDS:
            raise ConfigError(f"executor must be one of {', '.join(EXECUTOR_KINDS)}, got {self.executor!r}")


@dataclass(frozen=True)
class EvaluationResult:
    """Returns on held-out tracks."""

    returns: list[float]
    seeds: list[int]
    seconds: float
    v_only: EvaluationResult | None = None
    """The V-only baseline on the same tracks, when asked for."""
    results_path: Path | None = None
    """The per-track results file written (None: the run was stopped before every episode ran)."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns)) if self.returns else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.returns)) if self.returns else float("nan")

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "return_mean": self.mean,
            "return_std": self.std,
            "return_min": min(self.returns, default=float("nan")),
            "return_max": max(self.returns, default=float("nan")),
            "episodes": len(self.returns),
            "seeds": self.seeds,
            "returns": self.returns,
            "seconds": self.seconds,
        }
        if self.v_only is not None:
            out["v_only"] = self.v_only.as_json()
        return out


def results_path(config: EvaluateConfig) -> Path:
    """Where :func:`evaluate` writes the per-track results of ``config``: ``config.results``, else beside the
    controller as ``<controller stem>.eval_<first seed>x<episodes>.json``; a shipped controller's (in the assets
    folder, which holds only the shipped files and the card) go to ``runs/results/`` instead."""
    if config.results is not None:
        return Path(config.results)
    from core.assets import ASSETS_DIR

    controller = Path(config.controller)
    name = f"{controller.stem}.eval_{config.seed}x{config.episodes}.json"
    if controller.resolve().parent == Path(ASSETS_DIR).resolve():
        return Path("runs/results") / name
    return controller.with_name(name)


def write_results(config: EvaluateConfig, result: EvaluationResult, path: Path) -> Path:
    """Write ``result.as_json()`` plus what it was measured on (V, M and C paths with their SHA-256, the seed
    range, max_steps) atomically to ``path`` as JSON."""
    from core.checkpoint import atomic_path
    from core.data.datasets import file_sha256
    from core.data.seeds import FINAL

    vision, memory = resolve_world_model_paths(config.controller, config.vision, config.memory)
    files = {"controller": Path(config.controller), "vision": vision, "memory": memory}
    if config.v_only is not None:
        files["v_only"] = Path(config.v_only)
    record = {
        **result.as_json(),
        "seed_range": (FINAL if config.seed in FINAL else DEVELOPMENT).name,
        "max_steps": config.max_steps,
        "files": {k: {"path": str(p), "sha256": file_sha256(p)} for k, p in files.items() if p is not None},
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return path


def rollout_return(
    env, controller, seed: int, max_steps: int, early_stop_patience: int = 0, abandoned: Callable[[], bool] = never
) -> tuple[float, int]:
    """One real episode of ``controller`` through a :class:`WorldModelObservation` env: its return and the
    real-env steps it took (at most ``max_steps``; fewer when the episode ends or stops early).

    With ``early_stop_patience`` > 0 a hopeless episode (that many steps in a row without a positive reward:
    off the track or stuck) stops early and every remaining step counts ``STEP_REWARD``, as if it had run to
    ``max_steps`` without reaching another tile. Evaluation never stops early. ``abandoned`` is asked every
    :data:`ABANDON_CHECK_STEPS` steps; once it says True the episode ends there (its cut return is for a caller
    that drops it: a stopped run's worker, :func:`core.parallel.task_abandoned`).
    """
    obs, _ = env.reset(seed=seed)
    total = 0.0
    since_positive = 0
    steps = 0
    for t in range(max_steps):
        if t % ABANDON_CHECK_STEPS == 0 and t and abandoned():
            break
        obs, reward, terminated, truncated, _ = env.step(controller.act(obs))
        total += reward
        steps = t + 1
        if terminated or truncated:
            break
        since_positive = 0 if reward > 0 else since_positive + 1
        if early_stop_patience and since_positive >= early_stop_patience:
            total += STEP_REWARD * (max_steps - 1 - t)
            break
    return total, steps


@dataclass(frozen=True)
class RealRolloutSpec:
    """What every real-rollout task of a run shares (the executor's payload).

    Attributes:
        files: V and M (and C when episodes drive the checkpointed controller) as bytes.
        max_steps: steps per episode at most.
        include_h: the controller sees ``[z, h]`` (False: z alone, the V-only controller).
    """

    files: WorldModelFiles
    max_steps: int = 1000
    include_h: bool = True


@dataclass(frozen=True)
class RealRollout:
    """One real episode to run: track ``seed``; controller ``params`` (a flat vector as
    :meth:`Controller.get_flat` gives, or None for the checkpointed controller); early stop patience."""

    seed: int
    params: np.ndarray | None = None
    early_stop_patience: int = 0


_worker_envs: dict[tuple[str, bool], WorldModelObservation] = {}


def real_rollout_task(spec: RealRolloutSpec, rollout: RealRollout) -> tuple[float, int]:
    """Worker task: one real CarRacing-v3 episode's return and real-env steps (env and models built once per
    process)."""
    from core.envs.car_racing import make_real_env
    from core.envs.world_model import WorldModelObservation
    from core.models.controller import Controller, ControllerConfig

    key = (spec.files.key, spec.include_h)
    if key not in _worker_envs:
        for old in _worker_envs.values():
            old.close()
        _worker_envs.clear()
        wm = spec.files.load()
        _worker_envs[key] = WorldModelObservation(make_real_env(), wm, include_h=spec.include_h)
    env = _worker_envs[key]
    wm = env.world_model
    if rollout.params is None:
        controller = wm.controller
        if controller is None:
            raise CheckpointError("real_rollout_task got no controller parameters and no controller checkpoint")
    else:
        controller = Controller(ControllerConfig(wm.z_dim, wm.hidden_dim if spec.include_h else 0))
        controller.set_flat(np.asarray(rollout.params, np.float64))
    return rollout_return(env, controller, rollout.seed, spec.max_steps, rollout.early_stop_patience, task_abandoned)


def resolve_world_model_paths(controller: Path, vision: Path | None, memory: Path | None) -> tuple[Path, Path | None]:
    """The V and M a controller was trained with, unless given. Raises CheckpointError."""
    from core.checkpoint import read_checkpoint
    from core.errors import CheckpointError

    extra = read_checkpoint(controller).extra

    def recorded(key: str) -> Path | None:
        # relative paths (as in shipped assets) are relative to the controller's own directory
        if not extra.get(key):
            return None
        p = Path(extra[key])
        return p if p.is_absolute() or p.exists() else Path(controller).parent / p

    v = vision or recorded("vision")
    m = memory or recorded("memory")
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

    Episodes run in parallel on ``config.executor`` (local worker processes or Ray); progress reports
    ``evaluate/return`` and ``evaluate/return_mean`` after each episode. With ``config.v_only`` the V-only
    controller then runs on the same seeds and comes back as ``result.v_only``.

    When every episode ran, the per-track results go to :func:`results_path` (see :func:`write_results`).

    Raises:
        CheckpointError: a checkpoint is missing or bad, or models that do not fit together.
        ConfigError: ``config.v_only`` is a full controller (it reads h).
        WorkerCrashed / TaskFailed: a worker died or failed.
    """
    from core.checkpoint import read_checkpoint

    stop = should_stop or never_stop()
    t0 = time.perf_counter()
    if config.v_only is not None:  # checked before the long main evaluation, not after it
        v_only = read_checkpoint(config.v_only)
        if v_only.kind != "controller":
            raise CheckpointError(f"{config.v_only}: holds a {v_only.kind!r} model, expected a controller")
        if int(v_only.config.get("hidden_dim", 0)) != 0:
            raise ConfigError(
                f"--v-only {config.v_only} is a full controller (it reads h); give one trained with "
                "`train-controller --v-only`"
            )
    seeds = [config.seed + i for i in range(config.episodes)]
    result = _evaluate_controller(config, config.controller, seeds, "evaluate", on_progress, stop)
    if config.v_only is not None and not stop.is_set():
        baseline = _evaluate_controller(config, config.v_only, seeds, "evaluate-v-only", on_progress, stop)
        result = EvaluationResult(result.returns, result.seeds, time.perf_counter() - t0, baseline)
    complete = len(result.returns) == len(seeds) and (
        config.v_only is None or (result.v_only is not None and len(result.v_only.returns) == len(seeds))
    )
    if complete:
        result = dataclasses.replace(result, results_path=write_results(config, result, results_path(config)))
    return result


def _evaluate_controller(
    config: EvaluateConfig,
    controller: Path,
    seeds: list[int],
    stage: str,
    on_progress: ProgressFn,
    stop: threading.Event,
) -> EvaluationResult:
    from core.checkpoint import read_checkpoint

    t0 = time.perf_counter()
    vision, memory = resolve_world_model_paths(controller, config.vision, config.memory)
    include_h = int(read_checkpoint(controller).config.get("hidden_dim", 0)) > 0
    spec = RealRolloutSpec(WorldModelFiles.read(vision, memory, controller), config.max_steps, include_h)
    results: dict[int, float] = {}
    workers = min(config.workers, len(seeds))
    with make_executor(config.executor, workers, spec, config.ray_address) as executor:
        tasks = [RealRollout(seed) for seed in seeds]
        for i, (ret, _) in executor.map_unordered(real_rollout_task, tasks, should_stop=stop):
            results[seeds[i]] = ret
            metrics = {f"{stage}/return": ret, f"{stage}/return_mean": float(np.mean(list(results.values())))}
            on_progress(Progress(stage, len(results), len(seeds), metrics))
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
