"""The ``distill-controller`` stage: a controller for one world model learned by imitating another's.

A trained teacher (V, M, C) drives real CarRacing-v3 tracks; the student's V and M read the same frames and
actions, and a linear controller on the student's ``[z, h]`` is fitted to the teacher's actions by least squares
through the action squashing (behaviour cloning; policy distillation, Rusu et al., 2016). Cloning alone trains
on the teacher's states only, and a student's small errors lead it to states the teacher never visited (a
hairpin taken a little wide, a stand on the grass). With ``dagger_rounds`` the student then drives, the teacher
labels every state the student reached with the action it would take there, and the fit is redone on all
states so far (DAgger, Ross, Gordon & Bagnell, 2011, Algorithm 3.1 with beta_i = 0 after the first round). The
result drives as it is or starts real-env CMA-ES (``train-controller --evaluator real --init-controller``),
which then optimises the student's own return. It answers a question CMA-ES from zeros answers slowly on 2 cores: does
this V carry what a linear driver needs?

Teacher tracks come from [0, 900,000), apart from the real checks' and the evaluation's seeds.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import check_output_dir, check_output_file, save_checkpoint
from core.config import CollectConfig, check, check_finite
from core.data.collect import collect
from core.data.datasets import n_validation
from core.data.episodes import episode_path, read_episode
from core.data.seeds import TRAINING
from core.envs.car_racing import hud_speed, hud_yaw_rate
from core.envs.world_model import WorldModel
from core.errors import StageCancelled
from core.evaluate import resolve_world_model_paths
from core.models.controller import Controller, ControllerConfig
from core.policies_wm import ControllerPolicyFactory, WorldModelFiles
from core.progress import Progress, ProgressFn, never_stop, no_progress
from core.train.loop import StageResult


@dataclass(frozen=True)
class DistillConfig:
    """Fit a controller on one world model to the actions of another world model's controller."""

    teacher: Path = Path("assets/convvae_controller.safetensors")
    """Teacher controller checkpoint; its V and M are the ones it records unless given below."""
    teacher_vision: Path | None = None
    """Teacher's vision checkpoint (default: recorded in the teacher controller)."""
    teacher_memory: Path | None = None
    """Teacher's MDN-RNN checkpoint (default: recorded in the teacher controller)."""
    vision: Path = Path("runs/vision.safetensors")
    """Student's vision checkpoint: the fitted controller reads its z."""
    memory: Path = Path("runs/memory.safetensors")
    """Student's MDN-RNN checkpoint: the fitted controller reads its h (unless --v-only)."""
    out: Path = Path("runs/controller_distilled.safetensors")
    """Controller checkpoint to write."""
    episodes_dir: Path = Path("data/teacher")
    """Where the teacher's episodes are recorded (episodes already there are reused)."""
    episodes: int = 6
    """Teacher episodes (track seeds seed .. seed + episodes - 1)."""
    seed: int = 700_000
    """First teacher track seed; the range must stay below 900,000 (real checks and evaluation use the rest)."""
    max_steps: int = 1000
    """Steps per teacher episode at most."""
    dagger_rounds: int = 0
    """Rounds in which the student drives and the teacher labels its states (0: behaviour cloning alone)."""
    dagger_episodes: int = 12
    """Student episodes per DAgger round; their tracks follow the teacher's (seed + episodes onwards)."""
    brake: bool = True
    """Keep the fitted brake. --no-brake writes the student with its brake held at 0 (``Controller.without_brake``),
    for a teacher that brakes little: a fitted brake row can switch on where the teacher would not brake and hold the
    car at a stand. The DAgger students keep theirs, so the rounds still visit such stands."""
    v_only: bool = False
    """Fit a V-only controller (z alone, 99 parameters)."""
    steps: int = 1500
    """Adam steps of the full-batch fit."""
    lr: float = 1e-2
    """Adam learning rate."""
    val_fraction: float = 0.2
    """Share of the teacher episodes held out to report the fit (at least one when there are two or more)."""
    workers: int = 2
    """Parallel teacher episodes (worker processes)."""
    threads: int = 2
    """Torch threads of this process while encoding and fitting; restored when the stage ends."""

    def __post_init__(self) -> None:
        check_finite(self)
        check(self.episodes >= 1, f"episodes must be >= 1, got {self.episodes}")
        check(self.dagger_rounds >= 0, f"dagger_rounds must be >= 0, got {self.dagger_rounds}")
        check(self.dagger_episodes >= 1, f"dagger_episodes must be >= 1, got {self.dagger_episodes}")
        last = self.seed + self.episodes + self.dagger_rounds * self.dagger_episodes - 1
        check(
            0 <= self.seed and last < TRAINING.stop,
            f"teacher and student track seeds must lie in [0, {TRAINING.stop:,}), got {self.seed}..{last}",
        )
        check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        check(self.workers >= 1 and self.threads >= 1, "workers and threads must be >= 1")


@torch.no_grad()
def encode_frames(world_model: WorldModel, frames: np.ndarray) -> torch.Tensor:
    """V's posterior means of uint8 frames (T, 96, 96, 3), in batches of 100: float32 (T, z_dim)."""
    return torch.cat([world_model.encode(frames[i : i + 100])[0] for i in range(0, len(frames), 100)])


@torch.no_grad()
def student_observations(
    world_model: WorldModel, frames: np.ndarray, actions: np.ndarray, v_only: bool, z: torch.Tensor | None = None
) -> torch.Tensor:
    """What the student's controller sees at each step of a recorded episode.

    Args:
        world_model: the student's V and (unless ``v_only``) M.
        frames: uint8 (T, 96, 96, 3), the frames the actions were taken on.
        actions: float32 (T, 3), the actions taken.
        v_only: z alone.
        z: the frames already encoded by this V (:func:`encode_frames`), or None to encode them here.

    Returns:
        float32 (T, z_dim) or (T, z_dim + hidden_dim): ``[z_t, h_t]`` with z_t the posterior mean and h_t M's
        state after z_0..z_{t-1} and a_0..a_{t-1} (h_0 = 0), as the controller sees them when driving.
    """
    if z is None:
        z = encode_frames(world_model, frames)
    if v_only:
        return z
    memory = world_model.require_memory()
    speed = torch.from_numpy(hud_speed(np.asarray(frames)))[None] if memory.config.speed_input else None
    yaw = torch.from_numpy(hud_yaw_rate(np.asarray(frames)))[None] if memory.config.yaw_input else None
    a = torch.from_numpy(np.asarray(actions, np.float32))[None]
    h_after = memory.hidden_sequence(z[None], a, None, speed, yaw)[0]
    h = torch.cat([torch.zeros(1, h_after.shape[-1]), h_after[:-1]])
    return torch.cat([z, h], dim=-1)


def fit_controller(controller: Controller, obs: torch.Tensor, actions: torch.Tensor, steps: int, lr: float) -> float:
    """Least-squares fit of ``controller``'s actions to ``actions`` (float32 (N, 3)) on ``obs`` (N, input_dim).

    Full-batch Adam on the mean squared action error through the squashing (tanh steer, gas, clipped brake),
    from the controller's current parameters. Returns the final training MSE.
    """
    optimizer = torch.optim.Adam(controller.parameters(), lr=lr)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        loss = (controller(obs) - actions).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def teacher_actions(
    teacher: WorldModel, frames: np.ndarray, actions: np.ndarray, z: torch.Tensor | None = None
) -> torch.Tensor:
    """The teacher's own action at each step of a recorded episode (driven by anyone): float32 (T, 3).

    ``teacher`` holds the teacher's V, M and C; it reads the frames and the actions actually taken, as it would
    have had it been driving up to each step, so on its own episodes this gives back what it did. ``z``: the
    frames already encoded by the teacher's V (e.g. when the student shares it), or None to encode them here.
    """
    controller = teacher.controller
    assert controller is not None, "teacher world model without a controller"
    obs = student_observations(teacher, frames, actions, controller.config.hidden_dim == 0, z)
    with torch.no_grad():
        return controller(obs)


def distill_controller(
    config: DistillConfig,
    *,
    on_progress: ProgressFn = no_progress,
    should_stop: threading.Event | None = None,
) -> StageResult:
    """Record the teacher on real tracks, fit the student's controller to its actions, then (``dagger_rounds``)
    let the student drive, label its states with the teacher's actions and fit again on all; write ``config.out``.

    Metrics: ``distill/teacher_return`` (mean over the teacher episodes), ``distill/train_mse``,
    ``distill/val_mse`` and ``distill/val_mse_{steer,gas,brake}`` (held-out teacher episodes; 0 episodes held out:
    NaN), ``distill/val_r2_steer`` (1 - steering MSE / steering variance); with DAgger rounds also
    ``distill/student_return_round_{k}`` (mean over round k's student episodes, driven by the fit before it).

    Raises:
        CheckpointError: a missing or corrupt teacher or student checkpoint. ConfigError: bad settings.
        WorkerCrashed / TaskFailed: a teacher or student episode failed (finished ones stay on disk).
        StageCancelled: the stop flag was set (nothing is written).
        OutputError: ``config.out`` or ``config.episodes_dir`` cannot be written (checked before any work).
    """
    t0 = time.perf_counter()
    stop = should_stop or never_stop()
    check_output_file(config.out, "controller checkpoint")
    check_output_dir(config.episodes_dir, "episode directory")
    teacher_vision, teacher_memory = resolve_world_model_paths(
        config.teacher, config.teacher_vision, config.teacher_memory
    )
    student = WorldModel.load(config.vision, None if config.v_only else config.memory)
    teacher_files = WorldModelFiles.read(teacher_vision, teacher_memory, config.teacher)
    extra = {
        "vision": str(config.vision), "memory": "" if config.v_only else str(config.memory),
        "teacher": str(config.teacher), "evaluator": "distill",
        "train_config": {k: str(v) for k, v in dataclasses.asdict(config).items()},
    }  # fmt: skip

    def check_stop() -> None:
        if stop.is_set():
            raise StageCancelled("distill-controller stopped; nothing written")

    def record(first_seed: int, n: int, factory: ControllerPolicyFactory) -> list[Path]:
        collect(
            CollectConfig(out_dir=config.episodes_dir, episodes=n, seed=first_seed, max_steps=config.max_steps,
                          workers=config.workers),
            factory, on_progress=on_progress, should_stop=stop,
        )  # fmt: skip
        check_stop()
        return [episode_path(config.episodes_dir, first_seed + i) for i in range(n)]

    teacher_paths = record(
        config.seed, config.episodes, ControllerPolicyFactory(teacher_files, noise_std=0.0, name="teacher")
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        obs, targets, returns = [], [], []
        for i, path in enumerate(teacher_paths):
            check_stop()
            episode = read_episode(path)
            obs.append(student_observations(student, episode.frames[:-1], episode.actions, config.v_only))
            targets.append(torch.from_numpy(episode.actions.astype(np.float32)))
            returns.append(episode.episode_return)
            on_progress(Progress("distill", i + 1, config.episodes, message=f"encoded teacher episode {path.stem}"))
        n_val = n_validation(config.episodes, config.val_fraction)
        n_train = config.episodes - n_val
        train_obs, train_targets = obs[:n_train], targets[:n_train]
        controller = Controller(ControllerConfig(student.z_dim, 0 if config.v_only else student.hidden_dim))
        with torch.no_grad():
            controller.fc.weight.zero_()
            controller.fc.bias.zero_()
        train_mse = fit_controller(controller, torch.cat(train_obs), torch.cat(train_targets), config.steps, config.lr)
        metrics = {"distill/teacher_return": float(np.mean(returns))}
        teacher = WorldModel.load(teacher_vision, teacher_memory, config.teacher) if config.dagger_rounds else None
        for k in range(1, config.dagger_rounds + 1):
            assert teacher is not None
            with tempfile.TemporaryDirectory(prefix="dream-explorer-dagger-") as tmp:
                current = save_checkpoint(Path(tmp) / "student.safetensors", controller, kind="controller",
                                          config=controller.config, extra=extra)  # fmt: skip
                files = WorldModelFiles.read(config.vision, None if config.v_only else config.memory, current)
            first = config.seed + config.episodes + (k - 1) * config.dagger_episodes
            shared_vision = files.vision == teacher_files.vision  # then the student's z is the teacher's too
            student_returns = []
            for path in record(first, config.dagger_episodes, ControllerPolicyFactory(files, 0.0, f"student_{k}")):
                check_stop()
                episode = read_episode(path)
                frames, actions = episode.frames[:-1], episode.actions
                z = encode_frames(student, frames)
                train_obs.append(student_observations(student, frames, actions, config.v_only, z))
                train_targets.append(teacher_actions(teacher, frames, actions, z if shared_vision else None))
                student_returns.append(episode.episode_return)
            metrics[f"distill/student_return_round_{k}"] = float(np.mean(student_returns))
            on_progress(Progress("distill", k, config.dagger_rounds,
                                 message=f"DAgger round {k}: student return {np.mean(student_returns):.1f}"))  # fmt: skip
            train_mse = fit_controller(
                controller, torch.cat(train_obs), torch.cat(train_targets), config.steps, config.lr
            )
        metrics["distill/train_mse"] = train_mse
        if not config.brake:
            controller = controller.without_brake()
        if n_val:
            val_obs, val_targets = torch.cat(obs[n_train:]), torch.cat(targets[n_train:])
            with torch.no_grad():
                err = (controller(val_obs) - val_targets).pow(2).mean(0)
            metrics["distill/val_mse"] = float(err.mean())
            for j, name in enumerate(("steer", "gas", "brake")):
                metrics[f"distill/val_mse_{name}"] = float(err[j])
            metrics["distill/val_r2_steer"] = float(1.0 - err[0] / val_targets[:, 0].var().clamp(min=1e-12))
        else:
            metrics["distill/val_mse"] = float("nan")
    finally:
        torch.set_num_threads(threads)
    path = save_checkpoint(
        config.out, controller, kind="controller", config=controller.config, metrics=metrics, extra=extra
    )
    return StageResult(path, metrics, seconds=time.perf_counter() - t0)
