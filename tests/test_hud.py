"""The HUD readers: the car's speed and yaw rate read from the bars of CarRacing's frames."""

from __future__ import annotations

import numpy as np
import pytest

from core.envs.car_racing import car_speed, car_yaw_rate, hud_speed, hud_yaw_rate, make_real_env


def test_hud_speed_reads_the_cars_speed_from_the_frame() -> None:
    """Full gas for 120 steps, then coasting and braking: the bar's reading follows the hull's speed both ways."""
    env = make_real_env()
    env.reset(seed=3)
    frames, truth = [], []
    for t in range(220):
        action = np.array([0.0, 1.0 if t < 120 else 0.0, 0.6 if t >= 180 else 0.0], np.float32)
        obs, *_ = env.step(action)
        frames.append(obs)
        truth.append(car_speed(env))
    env.close()
    read, truth_a = hud_speed(np.stack(frames)), np.array(truth)
    assert read.dtype == np.float32 and read.shape == (220,)
    assert truth_a.max() > 30 and truth_a[-1] < 0.5 * truth_a.max()  # the run spans fast and slow
    assert np.abs(read - truth_a).max() < 2.5
    assert hud_speed(frames[100]) == pytest.approx(read[100])
    no_bar = np.stack(frames[:2]).copy()
    no_bar[:, 84:] = 0
    assert (hud_speed(no_bar) == 0).all()
    with pytest.raises(ValueError, match="96, 96, 3"):
        hud_speed(np.zeros((2, 64, 64, 3), np.uint8))


def test_hud_yaw_rate_reads_the_cars_turning_from_the_gyroscope_bar() -> None:
    """The wheel turned both ways, then a hard spin: the red bar's reading follows the hull's angular velocity in
    sign and size, and other bars (speed, ABS, steering) do not leak into it."""
    env = make_real_env()
    env.reset(seed=3)
    steer = np.random.default_rng(0).uniform(-1, 1, 16)
    frames, truth = [], []
    for t in range(400):
        obs, *_ = env.step(np.array([steer[t // 25], 0.6 if t < 150 else 0.2, 0.0], np.float32))
        frames.append(obs)
        truth.append(car_yaw_rate(env))
    env.close()
    read, truth_a = hud_yaw_rate(np.stack(frames)), np.array(truth)
    assert read.dtype == np.float32 and read.shape == (400,)
    assert truth_a.min() < -2 and truth_a.max() > 8  # both ways, and a spin
    assert np.abs(read - truth_a).max() < 0.2  # rad/s (seen: 0.13, RMS 0.06)
    assert hud_yaw_rate(frames[80]) == pytest.approx(read[80])
    no_bar = np.stack(frames[:40]).copy()
    no_bar[:, 86:92, 40:] = 0  # the gyroscope and steering bars gone: speed and ABS bars remain
    assert (hud_yaw_rate(no_bar) == 0).all() and hud_speed(no_bar).max() > 0
    with pytest.raises(ValueError, match="96, 96, 3"):
        hud_yaw_rate(np.zeros((2, 64, 64, 3), np.uint8))
