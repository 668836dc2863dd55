"""The ``collect`` stage: real CarRacing-v3 rollouts in parallel worker processes, one file per episode."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.checkpoint import check_output_dir
from core.config import CollectConfig
from core.data.episodes import Episode, episode_path, read_episode, write_episode
from core.data.policies import PolicyFactory, RandomPolicyFactory
from core.errors import EpisodeError
from core.parallel import make_executor
from core.progress import Progress, ProgressFn, never_stop, no_progress

_worker_env = None


@dataclass(frozen=True)
class EpisodeSummary:
    """What a collected episode was: its track seed, length, return and file."""

    seed: int
    steps: int
    episode_return: float
    path: str


def run_episode(env, policy, seed: int, max_steps: int, policy_name: str) -> Episode:
    """Drive ``policy`` for one episode on track ``seed`` (at most ``max_steps`` steps) and record it."""
    frame, _ = env.reset(seed=seed)
    policy.reset(seed)
    frames = [frame]
    actions, rewards, terminated, truncated = [], [], [], []
    for t in range(max_steps):
        action = np.asarray(policy.act(frame), dtype=np.float32)
        frame, reward, term, trunc, _ = env.step(action)
        trunc = trunc or t == max_steps - 1
        frames.append(frame)
        actions.append(action)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc and not term)
        if term or trunc:
            break
    return Episode(
        frames=np.stack(frames),
        actions=np.stack(actions),
        rewards=np.asarray(rewards, np.float32),
        terminated=np.asarray(terminated, bool),
        truncated=np.asarray(truncated, bool),
        seed=seed,
        policy=policy_name,
    )


@dataclass(frozen=True)
class _CollectSpec:
    """What every collection task shares: the policy factory, the horizon, and where workers write episodes
    (None: workers return them and the caller writes, for workers on other machines)."""

    factory: PolicyFactory
    max_steps: int
    out_dir: str | None


def _collect_one(spec: _CollectSpec, seed: int) -> EpisodeSummary | Episode:
    global _worker_env
    from core.envs.car_racing import make_real_env

    if _worker_env is None:
        _worker_env = make_real_env()
    episode = run_episode(_worker_env, spec.factory.make(), seed, spec.max_steps, spec.factory.name)
    if spec.out_dir is None:
        return episode
    path = write_episode(episode_path(spec.out_dir, seed), episode)
    return EpisodeSummary(seed, episode.steps, episode.episode_return, str(path))


def _is_complete(path: Path) -> bool:
    """The episode file exists and reads whole, frames included (zip CRCs checked; ~50 ms per episode, a few
    percent of recording one): a file with corrupt frames is recorded again, not kept as done forever."""
    if not path.is_file():
        return False
    try:
        read_episode(path)
    except EpisodeError:
        return False
    return True


def policy_factory(config: CollectConfig) -> PolicyFactory:
    """The driving policy ``config.policy`` names: the random explorer, or a controller with exploration.

    Raises:
        CheckpointError: a controller policy's checkpoint is missing or does not fit the others.
    """
    if config.policy == "random":
        return RandomPolicyFactory()
    from core.policies_wm import ControllerPolicyFactory, WorldModelFiles

    assert config.vision is not None  # CollectConfig refuses --policy controller without it
    files = WorldModelFiles.read(config.vision, config.memory, config.controller)
    files.load()  # fail here, with a clear line, rather than in every worker
    return ControllerPolicyFactory(
        files, config.noise_std, excursion_prob=config.excursion_prob, noise_corr_steps=config.noise_corr_steps,
        gas_hold_prob=config.gas_hold_prob,
        stop_prob=config.stop_prob, pedal_pulse_prob=config.pedal_pulse_prob,
    )  # fmt: skip


def collect(
    config: CollectConfig,
    policy: PolicyFactory | None = None,
    *,
    on_progress: ProgressFn = no_progress,
    should_stop: threading.Event | None = None,
) -> list[EpisodeSummary]:
    """Record ``config.episodes`` real episodes on track seeds ``config.seed, config.seed + 1, ...``.

    Episodes whose file already exists and validates are skipped (resume; append with a new seed range).
    Workers are separate processes with one torch thread each (local pool or Ray, ``config.executor``);
    a stopped run keeps every finished episode.

    Args:
        config: the stage config.
        policy: a picklable factory of the driving policy; default the one ``config.policy`` names.
        on_progress: called after each episode with ``collect/return`` and ``collect/steps``.
        should_stop: when set, no new episode starts and this returns within a second or so with the finished
            ones; the episodes already running finish in their workers and are written (atomically) after.

    Raises:
        WorkerCrashed / TaskFailed: a worker died or a policy failed (finished episodes stay on disk).
        OutputError: ``config.out_dir`` cannot be written (checked before any episode runs).

    Returns:
        Summaries of the episodes recorded by this call (skipped ones excluded), in seed order.
    """
    check_output_dir(config.out_dir, "episode directory")
    factory = policy or policy_factory(config)
    stop = should_stop or never_stop()
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = [config.seed + i for i in range(config.episodes)]
    todo = [s for s in seeds if not _is_complete(episode_path(out_dir, s))]
    done_before = len(seeds) - len(todo)
    summaries: list[EpisodeSummary] = []
    on_progress(Progress("collect", done_before, len(seeds), message=f"{done_before} episodes already present"))
    if not todo:
        return summaries
    workers = max(1, min(config.workers, len(todo)))
    # local workers write their episodes; Ray workers may sit on other machines, so they send them back
    spec = _CollectSpec(factory, config.max_steps, str(out_dir) if config.executor == "local" else None)
    with make_executor(config.executor, workers, spec, config.ray_address) as executor:
        for _, out in executor.map_unordered(_collect_one, todo, should_stop=stop, abandon_on_stop=True):
            if isinstance(out, Episode):
                path = write_episode(episode_path(out_dir, out.seed), out)
                out = EpisodeSummary(out.seed, out.steps, out.episode_return, str(path))
            summaries.append(out)
            metrics = {"collect/return": out.episode_return, "collect/steps": float(out.steps)}
            on_progress(Progress("collect", done_before + len(summaries), len(seeds), metrics))
        if stop.is_set():
            executor.terminate()  # running episodes finish in their workers, each written atomically
    return sorted(summaries, key=lambda s: s.seed)
