"""Video output (OpenCV) and the ``dream`` stage: a dream seeded from a real frame, written to an MP4."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from core.checkpoint import atomic_path, check_output_file
from core.config import DreamVideoConfig
from core.data.policies import RandomExplorationPolicy
from core.envs.car_racing import hud_speed, make_real_env
from core.envs.dream import DreamEnv
from core.envs.world_model import WorldModel, WorldModelObservation
from core.errors import DreamExplorerError, StageCancelled
from core.progress import Progress, ProgressFn, never_stop, no_progress
from core.train.loop import StageResult


def write_video(path: str | Path, frames: list[np.ndarray], fps: int = 50) -> Path:
    """Write RGB uint8 frames (H, W, 3), all the same size, to an MP4 (``mp4v``) atomically.

    Raises:
        DreamExplorerError: no frames, or OpenCV cannot open a writer for the path.
    """
    if not frames:
        raise DreamExplorerError("no frames to write")
    target = Path(path)
    h, w = frames[0].shape[:2]
    with atomic_path(target) as tmp:
        tmp_mp4 = tmp.with_suffix(".mp4")
        writer = cv2.VideoWriter(str(tmp_mp4), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise DreamExplorerError(f"OpenCV cannot write video to {target}")
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        writer.release()
        tmp_mp4.replace(tmp)
    return target


ROW_LABEL_WIDTH = 150
"""Pixels of the left margin that names the rows of :func:`write_png_grid`."""


def write_png_grid(
    path: str | Path,
    rows: list[list[np.ndarray]],
    column_labels: list[str],
    row_labels: list[str] | None = None,
    side: int = 192,
) -> Path:
    """Write a grid of RGB uint8 tiles (H, W, 3) to a PNG atomically, each tile resized to ``side`` x ``side``
    pixels (nearest neighbour), with a header naming the columns and, when given, a left margin naming each row.

    Raises:
        DreamExplorerError: no rows, rows of unequal length, or OpenCV cannot encode the image.
    """
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise DreamExplorerError("a PNG grid needs at least one row, all of the same length")
    grid = np.concatenate([np.concatenate([_upscale(t, side) for t in r], 1) for r in rows], 0)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.55
    if row_labels is not None:
        margin = np.full((grid.shape[0], ROW_LABEL_WIDTH, 3), 255, np.uint8)
        for i, label in enumerate(row_labels):
            for j, line in enumerate(label.split("\n")):
                cv2.putText(margin, line, (6, i * side + 24 + 22 * j), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
        grid = np.concatenate([margin, grid], 1)
    header = np.full((28, grid.shape[1], 3), 255, np.uint8)
    x0 = ROW_LABEL_WIDTH if row_labels is not None else 0
    for j, label in enumerate(column_labels):
        cv2.putText(header, label, (x0 + j * side + 6, 20), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.concatenate([header, grid], 0)
    target = Path(path)
    with atomic_path(target) as tmp:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        if not ok:
            raise DreamExplorerError(f"cannot encode the PNG grid for {target}")
        tmp.write_bytes(buf.tobytes())
    return target


def _upscale(frame: np.ndarray, side: int) -> np.ndarray:
    return cv2.resize(frame, (side, side), interpolation=cv2.INTER_NEAREST)


def record_dream(
    config: DreamVideoConfig,
    *,
    on_progress: ProgressFn = no_progress,
    should_stop: threading.Event | None = None,
) -> StageResult:
    """Drive ``config.warmup`` real steps, encode the frame, then dream ``config.steps`` steps and save a video.

    The same actions drive reality alongside (left: real, right: dream) when ``side_by_side``. Actions come
    from the controller when given, else the random exploration policy.

    Raises:
        CheckpointError: bad checkpoints. StageCancelled: stopped (nothing written).
        OutputError: ``config.out`` cannot be written (checked before any work).
    """
    t0 = time.perf_counter()
    stop = should_stop or never_stop()
    check_output_file(config.out, "video")
    wm = WorldModel.load(config.vision, config.memory, config.controller)
    # reality runs through V and M during the warm-up, so the dream continues with M's state where reality stands
    real = WorldModelObservation(make_real_env(), wm)
    obs, info = real.reset(seed=config.seed)
    frame = info["frame"]
    policy = RandomExplorationPolicy()
    policy.reset(config.seed)
    for _ in range(config.warmup):
        action = wm.controller.act(obs) if wm.controller is not None else policy.act(frame)
        obs, _, _, _, info = real.step(action)
        frame = info["frame"]
    dream = DreamEnv(wm, tau=config.tau, render_mode="rgb_array", max_steps=config.steps)
    obs, _ = dream.reset(
        seed=config.seed, options={"z": real.z[0], "state": real.state, "speed": float(hud_speed(frame))}
    )
    side = 256
    frames: list[np.ndarray] = []
    total_reward = 0.0
    for t in range(config.steps):
        if stop.is_set():
            raise StageCancelled("dream video stopped; nothing written")
        if wm.controller is not None:
            action = wm.controller.act(obs)
        else:
            action = policy.act(frame)
        dream_frame = _upscale(dream.frame(), side)
        if config.side_by_side:
            frames.append(np.concatenate([_upscale(frame, side), dream_frame], axis=1))
            frame = real.step(action)[4]["frame"]
        else:
            frames.append(dream_frame)
        obs, reward, terminated, truncated, _ = dream.step(action)
        total_reward += reward
        on_progress(Progress("dream", t + 1, config.steps, {"dream/return": total_reward}))
        if terminated or truncated:
            break
    real.close()
    path = write_video(config.out, frames, config.fps)
    return StageResult(
        path,
        {"dream/return": total_reward, "dream/steps": float(len(frames))},
        False,
        time.perf_counter() - t0,
    )
