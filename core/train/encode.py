"""The ``encode`` stage: every frame of every episode -> (mu, logvar) with a trained vision model."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from core.checkpoint import check_output_file
from core.config import EncodeConfig
from core.data.datasets import LatentEpisodes, file_sha256
from core.data.episodes import list_episodes, read_episode
from core.envs.car_racing import hud_speed, hud_yaw_rate, preprocess_frames, to_tensor
from core.envs.world_model import load_vision
from core.errors import StageCancelled
from core.progress import Progress, ProgressFn, never_stop, no_progress
from core.train.loop import StageResult
from core.vision_runtime import MAX_BATCH, VisionRuntime


def train_encode(
    config: EncodeConfig,
    *,
    on_progress: ProgressFn = no_progress,
    should_stop: threading.Event | None = None,
) -> StageResult:
    """Encode all episodes of ``config.data_dir`` with ``config.vision`` and write ``config.out``.

    The latent file holds, per episode, ``mu``/``logvar`` float32 (T+1, z_dim) and the actions, rewards and
    terminated flags, the driving policy's label and the car's speed and yaw rate at each frame (read from the
    HUD), plus the vision kind and the SHA-256 of its checkpoint (see :class:`LatentEpisodes`).
    ``config.extra_data_dirs`` are encoded after ``config.data_dir``. V runs on ``config.runtime`` (ONNX Runtime: its
    outputs are checked against PyTorch's at start, :data:`core.vision_runtime.TOLERANCE`).

    Raises:
        EpisodeError: no or corrupt episodes. CheckpointError: bad vision checkpoint.
        StageCancelled: the stop flag was set (nothing is written).
        OutputError: ``config.out`` cannot be written (checked before any work).
    """
    t0 = time.perf_counter()
    stop = should_stop or never_stop()
    check_output_file(config.out, "latent file")
    files = [f for d in (config.data_dir, *config.extra_data_dirs) for f in list_episodes(d)]
    if config.max_episodes:
        files = files[: config.max_episodes]
    vision = load_vision(config.vision)
    size = int(vision.input_size)
    runtime = VisionRuntime(vision, config.runtime, threads=torch.get_num_threads())
    runtime.wide = True  # nothing else computes in this process: a call may use every torch thread
    batch = min(config.batch_size, MAX_BATCH) if runtime.backend == "onnxruntime" else config.batch_size
    if runtime.note:
        on_progress(Progress("encode", 0, len(files), message=runtime.note))
    mus, logvars, actions, rewards, terminated, seeds, policies, speeds, starts = [], [], [], [], [], [], [], [], [0]
    yaw_rates: list[np.ndarray] = []
    for i, path in enumerate(files):
        if stop.is_set():
            raise StageCancelled("encode stopped; nothing written")
        ep = read_episode(path)
        chw = preprocess_frames(ep.frames, size)
        mu_parts, lv_parts = [], []
        with torch.inference_mode():
            for j in range(0, len(chw), batch):
                mu, logvar, _ = runtime.encode(to_tensor(chw[j : j + batch]))
                mu_parts.append(mu.numpy())
                lv_parts.append(logvar.numpy())
        mus.append(np.concatenate(mu_parts))
        logvars.append(np.concatenate(lv_parts))
        actions.append(ep.actions.astype(np.float32))
        rewards.append(ep.rewards.astype(np.float32))
        terminated.append(ep.terminated.astype(np.float32))
        seeds.append(ep.seed)
        policies.append(ep.policy)
        speeds.append(hud_speed(ep.frames))
        yaw_rates.append(hud_yaw_rate(ep.frames))
        starts.append(starts[-1] + len(ep.frames))
        on_progress(Progress("encode", i + 1, len(files), {"encode/frames": float(starts[-1])}))
    latents = LatentEpisodes(
        mu=np.concatenate(mus),
        logvar=np.concatenate(logvars),
        actions=np.concatenate(actions),
        rewards=np.concatenate(rewards),
        terminated=np.concatenate(terminated),
        starts=np.asarray(starts, np.int64),
        seeds=np.asarray(seeds, np.int64),
        vision_kind=str(vision.kind),
        vision_sha256=file_sha256(config.vision),
        policies=np.asarray(policies, str),
        speeds=np.concatenate(speeds),
        yaw_rates=np.concatenate(yaw_rates),
    )
    path = latents.save(config.out)
    metrics = {"encode/episodes": float(len(files)), "encode/frames": float(starts[-1])}
    return StageResult(path, metrics, False, time.perf_counter() - t0)
