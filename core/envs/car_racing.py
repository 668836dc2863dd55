"""The real environment, Gymnasium's ``CarRacing-v3``, and the frame preprocessing every model shares."""

from __future__ import annotations

import math
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

ENV_ID = "CarRacing-v3"
FRAME_SHAPE = (96, 96, 3)
HUD_ROWS = 12
"""Rows at the bottom of a CarRacing frame that hold the HUD (speed, ABS, steering, gyro bars)."""
EPISODE_STEPS = 1000
"""CarRacing-v3's own episode limit (its TimeLimit): a whole episode."""


def make_real_env(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """``gymnasium.make("CarRacing-v3")`` with continuous actions [steer -1..1, gas 0..1, brake 0..1].

    Observations are uint8 (96, 96, 3) RGB frames. The road is drawn by :mod:`core.envs.road_render` (the stock
    env's pixels, with the off-screen polygons culled in one array pass).
    """
    from core.envs.road_render import install

    return install(gym.make(ENV_ID, render_mode=render_mode, continuous=True, **kwargs))


def car_speed(env: gym.Env) -> float:
    """The car's speed in Box2D world units per second (the length of its hull's linear velocity; CarRacing's
    HUD draws the same), 0.0 before the first reset. Values below 1e-3 read as 0.0: Box2D leaves ~1e-11 at rest."""
    car = getattr(env.unwrapped, "car", None)
    if car is None:
        return 0.0
    vx, vy = car.hull.linearVelocity
    speed = math.hypot(vx, vy)
    return speed if speed > 1e-3 else 0.0


HUD_SPEED_COLUMN = 12
"""Pixel column of a 96x96 frame through the HUD's speed bar (CarRacing draws it at x = 5/40..6/40 of the window,
12.0..14.4 px at 96 px; column 12 is wholly inside it)."""
HUD_SPEED_PER_PIXEL = 20.8
"""Speed (world units per second) per pixel of bar height: CarRacing draws the bar 0.02 * speed * (800 / 40) window
px tall and scales the window to 96 px rows (x 0.12), 0.048 px per unit, 1 / 0.048 = 20.83; fitted on 700 steps
against the hull's speed, 20.80."""
HUD_SPEED_OFFSET = 3.56
"""Speed subtracted from the bar's measured height: the smoothed edge at the bar's foot reads as ~0.17 px of
height (fitted with :data:`HUD_SPEED_PER_PIXEL`; residual within 1.5 units up to speed 37, see the test)."""


def _frame_batch(frames: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(batch, single)``: uint8 frames (96, 96, 3) or (B, 96, 96, 3) as a batch (B, 96, 96, 3), and whether one
    frame came in. Raises ValueError for anything else."""
    single = frames.ndim == 3
    batch = frames[None] if single else frames
    if batch.dtype != np.uint8 or batch.shape[1:] != FRAME_SHAPE:
        raise ValueError(f"expected uint8 frames of shape (B, 96, 96, 3), got {batch.dtype} {batch.shape}")
    return batch, single


def hud_speed(frames: np.ndarray) -> np.ndarray:
    """The car's speed read from the speed bar of CarRacing's HUD in recorded frames (the bottom rows that
    :func:`preprocess_frames` crops away), for episodes saved without the env's state.

    Args:
        frames: uint8 (96, 96, 3) or (B, 96, 96, 3) RGB, as the env gives them.

    Returns:
        float32 () or (B,): speed in world units per second (the unit of :func:`car_speed`), >= 0; 0 where no bar
        is drawn (CarRacing draws none below 1e-4).

    Raises:
        ValueError: frames are not uint8 96x96x3.
    """
    batch, single = _frame_batch(frames)
    column = batch[:, 96 - HUD_ROWS :, HUD_SPEED_COLUMN].astype(np.float32).mean(-1)  # the bar is white
    height = column.sum(-1) / 255.0
    speed = np.where(height > 0, np.maximum(HUD_SPEED_PER_PIXEL * height - HUD_SPEED_OFFSET, 0.0), 0.0)
    speed = speed.astype(np.float32)
    return speed[0] if single else speed


def car_yaw_rate(env: gym.Env) -> float:
    """The car's yaw rate: its hull's angular velocity in rad/s (Box2D's sign: counter-clockwise positive), 0.0
    before the first reset."""
    car = getattr(env.unwrapped, "car", None)
    return 0.0 if car is None else float(car.hull.angularVelocity)


HUD_GYRO_COLUMN = 72
"""Pixel column where CarRacing's gyroscope bar starts: it draws the bar from x = 30/40 of the window, 72.0 px at 96
px, to the right for a clockwise turn and to the left for a counter-clockwise one."""
HUD_GYRO_ROWS = slice(87, 91)
"""Rows of a 96x96 frame wholly inside the gyroscope bar (drawn from 4/40 to 2/40 of the height above the bottom,
rows 86.4..91.2)."""
HUD_GYRO_PX_PER_RAD_S = 1.92
"""Bar length in pixels per rad/s: CarRacing draws 0.8 * angular velocity units of W/40 window px, W = 1000 scaled
to 96 px (0.8 * 25 * 0.096); a fit on 400 steps against the hull's angular velocity gives 1.935."""


def hud_yaw_rate(frames: np.ndarray) -> np.ndarray:
    """The car's yaw rate read from the gyroscope bar of CarRacing's HUD (red, in the bottom rows that
    :func:`preprocess_frames` crops away), as :func:`hud_speed` reads the speed.

    Args:
        frames: uint8 (96, 96, 3) or (B, 96, 96, 3) RGB, as the env gives them.

    Returns:
        float32 () or (B,): rad/s, counter-clockwise positive (the sign of :func:`car_yaw_rate`); 0 where no bar is
        drawn (below 1e-4 rad/s). The bar's antialiased ends read as fractions of a pixel (within 0.13 rad/s up to 11
        rad/s, see the test).

    Raises:
        ValueError: frames are not uint8 96x96x3.
    """
    batch, single = _frame_batch(frames)
    rows = batch[:, HUD_GYRO_ROWS].astype(np.float32)  # (B, 4, 96, 3)
    red = np.clip(rows[..., 0] - np.maximum(rows[..., 1], rows[..., 2]), 0.0, None).mean(1) / 255.0  # (B, 96)
    left, right = red[:, :HUD_GYRO_COLUMN].sum(-1), red[:, HUD_GYRO_COLUMN:].sum(-1)  # pixels of bar each side
    rate = ((left - right) / HUD_GYRO_PX_PER_RAD_S).astype(np.float32)
    return rate[0] if single else rate


def preprocess_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Crop the HUD and resize, as every vision model here expects.

    The bottom 12 HUD rows are cropped (96x96 -> 84x96) and the rest is resized to ``size`` x ``size``
    with area interpolation (64 for Ha's ConvVAE, 96 for the DDS+VAE, as in the seed work).

    Args:
        frames: uint8 (96, 96, 3) or (B, 96, 96, 3) RGB.
        size: output side in pixels.

    Returns:
        uint8 (3, size, size) or (B, 3, size, size), channels first.

    Raises:
        ValueError: frames are not uint8 96x96x3.
    """
    batch, single = _frame_batch(frames)
    cropped = batch[:, : 96 - HUD_ROWS]
    out = np.empty((len(batch), size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(cropped):
        out[i] = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    return out[0] if single else out


def to_tensor(frames_chw: np.ndarray | Tensor) -> Tensor:
    """uint8 (..., 3, S, S) -> float32 in [0, 1]."""
    t = torch.as_tensor(frames_chw)
    return t.float().div_(255.0)


def to_uint8_hwc(x: Tensor) -> np.ndarray:
    """float (3, S, S) or (B, 3, S, S) in [0, 1] -> uint8 (S, S, 3) or (B, S, S, 3) for display."""
    t = x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return t.movedim(-3, -1).cpu().numpy()
