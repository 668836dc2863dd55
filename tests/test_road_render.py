"""core.envs.road_render: the real env draws the stock env's exact pixels, on and off the road, zooming and not."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from core.envs import road_render
from core.envs.car_racing import ENV_ID, make_real_env


def drive(env: gym.Env, seed: int, steps: int) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    """Observations (steps + 1, 96, 96, 3), rgb_array renders every 50 steps and rewards of one episode driven by a
    fixed random policy: wandering steering and gas (off the road within a few hundred steps), a little brake."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames, renders, rewards = [obs], [], []
    steer = 0.0
    for t in range(steps):
        steer = float(np.clip(steer + rng.normal(0.0, 0.3), -1.0, 1.0))
        action = np.array([steer, rng.uniform(0.3, 1.0), rng.uniform(0.0, 0.1)], dtype=np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        frames.append(obs)
        rewards.append(float(reward))
        if t % 50 == 0:
            renders.append(env.render())
        if terminated or truncated:
            break
    return np.stack(frames), renders, rewards


@pytest.mark.parametrize("seed", [5, 1_960_003])
def test_the_culled_road_draws_the_stock_envs_pixels(seed: int) -> None:
    stock_env = gym.make(ENV_ID, render_mode="rgb_array", continuous=True)
    fast_env = make_real_env(render_mode="rgb_array")
    assert fast_env.unwrapped._render_road.__func__ is road_render.render_road
    try:
        stock, fast = drive(stock_env, seed, 300), drive(fast_env, seed, 300)
    finally:
        stock_env.close()
        fast_env.close()
    assert stock[0].shape == fast[0].shape == (301, 96, 96, 3)
    # the first 50 steps zoom in; later the car leaves the road (the grass patches and the playfield's edge show)
    assert np.array_equal(stock[0], fast[0]), f"{int((stock[0] != fast[0]).any(axis=(1, 2, 3)).sum())} frames differ"
    assert len(stock[1]) == len(fast[1]) == 6 and all(map(np.array_equal, stock[1], fast[1]))
    assert stock[2] == fast[2] and sum(r > 0 for r in fast[2]) >= 3  # the same tiles, so the same rewards
    assert len({frame.tobytes() for frame in fast[0][::25]}) == 13  # a moving picture, not one frame


def test_the_road_is_rebuilt_for_each_new_track() -> None:
    env = make_real_env()
    try:
        env.reset(seed=1)
        first = env.unwrapped.road_poly
        env.step(np.zeros(3, dtype=np.float32))
        cached = env.unwrapped.__dict__["_road_arrays"]
        assert cached[0] is first and len(cached[1]) == len(first) > 100
        env.reset(seed=2)
        env.step(np.zeros(3, dtype=np.float32))
        again = env.unwrapped.__dict__["_road_arrays"]
        assert again[0] is env.unwrapped.road_poly is not first and not np.array_equal(again[1][:10], cached[1][:10])
    finally:
        env.close()


def test_install_refuses_another_env() -> None:
    env = gym.make("Pendulum-v1")
    try:
        with pytest.raises(TypeError, match="expected a CarRacing env, got PendulumEnv"):
            road_render.install(env)
    finally:
        env.close()
