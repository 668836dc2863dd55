"""The dream's car (core.envs.dream_car): CarRacing's car physics restarted from the real car's state, driven on
the ground the dream's map holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from core.envs.car_racing import make_real_env
from core.envs.dream_car import DreamCars, car_state
from core.envs.dream_map import DreamMap


def _real_drive(steps: int, seed: int = 5) -> tuple[list, list, list, np.ndarray]:
    """A real car driven for ``steps`` steps past the opening, swerving and braking: its state before each step,
    each wheel's road contact then, and the actions."""
    env = make_real_env()
    env.reset(seed=seed)
    for _ in range(60):
        env.step(np.array([0.0, 0.5, 0.0], np.float32))
    rng = np.random.default_rng(seed)
    actions = np.stack([rng.uniform(-1, 1, steps), rng.uniform(0, 1, steps), rng.uniform(0, 0.3, steps)], 1)
    states, roads, poses = [], [], []
    for action in actions.astype(np.float32):
        states.append(car_state(env))
        roads.append([bool(w.tiles) for w in env.unwrapped.car.wheels])
        env.step(action)
        poses.append((*env.unwrapped.car.hull.position, env.unwrapped.car.hull.angle))
    env.close()
    return states, roads, poses, actions


def test_a_copied_car_given_reality_s_ground_follows_the_real_car_exactly() -> None:
    """Restarted in an empty world from the real car's state after 60 steps and fed reality's actions and each
    wheel's road contact, the dream's car is where the real one is after 120 steps; on grass everywhere (wrong
    ground under the wheels that touch the road) it is not, so the ground reading is what moves it."""
    states, roads, poses, actions = _real_drive(120)
    assert 0 < sum(map(sum, roads)) < 4 * len(roads)  # both road and grass under the wheels on the way
    exact, grass = DreamCars([states[0]]), DreamCars([states[0]])
    for t, action in enumerate(torch.from_numpy(actions).float()):
        exact.on_road = torch.tensor([roads[t]])
        grass.on_road = torch.zeros(1, 4, dtype=torch.bool)
        exact.step(action[None])
        grass.step(action[None])
    (position, heading), real = exact.pose(), torch.tensor(poses[-1])
    assert torch.allclose(position[0], real[:2], atol=1e-3) and abs(float(heading[0]) - float(real[2])) < 1e-4
    assert float((grass.pose()[0][0] - real[:2]).norm()) > 0.5
    assert float(exact.speed()[0]) > 1.0
    exact.close()
    grass.close()


def test_a_car_state_needs_a_reset_env_and_cars_need_a_state() -> None:
    env = make_real_env()
    with pytest.raises(ValueError, match="reset"):
        car_state(env)
    env.close()
    with pytest.raises(ValueError, match="at least one"):
        DreamCars([])


def test_the_map_s_ground_under_the_wheels_and_the_last_reading_where_it_holds_none() -> None:
    """The map returns what it holds at world points (kept ground), nothing off what it was shown; a wheel over no
    ground keeps its last reading."""
    grey = torch.full((1, 3, 64, 64), 0.41)
    grey[:, 1, :, :32] = 0.8  # left half green grass, right half road-grey
    world = DreamMap(1, 64)
    world.reset(grey, torch.tensor([[10.0, -5.0]]), torch.zeros(1))
    points = torch.tensor([[[10.0 - 15.0, 10.0], [10.0 + 15.0, 10.0], [10.0, 500.0]]])  # left, right, far away
    colours, held = world.ground(points)
    assert held.tolist() == [[True, True, False]]
    assert colours[0, 0, 1] == pytest.approx(0.8, abs=1e-6) and colours[0, 1].tolist() == pytest.approx([0.41] * 3)
    states = _real_drive(1)[0]
    cars = DreamCars(states)
    before = cars.on_road.clone()
    cars.read_ground(torch.tensor([[True, False, True, False]]), torch.tensor([[True, True, False, False]]))
    assert cars.on_road[0, :2].tolist() == [True, False] and torch.equal(cars.on_road[0, 2:], before[0, 2:])
    cars.close()


def test_divergence_moves_the_map_with_the_car_s_physics(pipeline: dict, real_episodes: Path) -> None:
    """``divergence --dream-map --map-pose car``: the car restarted from each replayed window start and driven on
    the map's ground; at tau 0 it is deterministic, and 10 steps on the map are nearer reality than standing still."""
    from core.divergence import DivergenceConfig, dream_divergence

    base = DivergenceConfig(
        data_dir=real_episodes, vision=pipeline["vision"], memory=pipeline["memory"], horizons=(1, 10), warmup=5,
        start_every=20, samples=2, tau=0.0, parked=False, steer=False, dream_map=True, map_pose="car",
    )  # fmt: skip
    car = dream_divergence(base).metrics
    assert car["divergence/windows"] == 9
    assert car["divergence/pixel_mse_dream@10"] < car["divergence/pixel_mse_copy@10"]
    assert car == dream_divergence(base).metrics
    # CarRacing's reward rule for the car on the map: at least the step cost, 10 x -0.1, over 10 steps
    assert -1.0 - 1e-9 <= car["divergence/reward_sum_ground@10"] < 30.0
    assert car["divergence/reward_sum_ground@1"] >= -0.1 - 1e-9
    # the dream's car against reality's replayed car: one step on reality's ground keeps them together
    assert car["divergence/car_distance@1"] < 1e-3 and car["divergence/car_within_road@1"] == 1.0
    assert 0.0 <= car["divergence/car_distance@10"] < 50.0 and 0.0 <= car["divergence/car_within_road@10"] <= 1.0
    from core.divergence_table import format_table

    table = format_table(car, base.horizons)
    assert "reward rule" in table and "the dream's car against reality's" in table
    with_past = dream_divergence(dataclasses.replace(base, map_history=10)).metrics
    assert with_past["divergence/pixel_mse_dream@10"] < with_past["divergence/pixel_mse_copy@10"]


def test_dream_with_car_gives_m_the_car_s_speed_and_grounds_z(tiny_world_model: dict) -> None:
    from core.envs.dream import BatchedDream
    from core.envs.dream_car import dream_with_car
    from core.envs.world_model import WorldModel
    from core.models import MDNRNN, MDNRNNConfig

    wm = WorldModel.load(tiny_world_model["vision"])
    torch.manual_seed(0)
    memory = MDNRNN(MDNRNNConfig(speed_input=True, speed_weight=1.0, speed_model="markov"))
    states = _real_drive(1)[0] * 2
    cars = DreamCars(states)
    dream = BatchedDream(memory, 2, tau=0.5)
    z0 = torch.randn(2, memory.config.z_dim)
    dream.reset([1, 2], z=z0, speed=0.0)
    world = DreamMap(2, wm.size)
    world.reset(wm.decode(z0), *cars.pose())
    gas = torch.tensor([[0.0, 1.0, 0.0]] * 2)
    dream.step(gas)
    shown = dream_with_car(wm.vision, dream, world, cars, gas)
    assert not bool(dream.done.any())
    assert torch.allclose(dream.z, wm.vision.encode(shown)[0])
    assert torch.equal(dream.speed, cars.speed()) and float(dream.speed[0]) > 1.0
    assert torch.equal(world.position, cars.pose()[0])
    # a dream's last step (truncated here) still moves its car and grounds its z: the final picture is the car's
    last = BatchedDream(memory, 2, tau=0.5, max_steps=1)
    last.reset([1, 2], z=z0, speed=0.0)
    before = cars.pose()[0].clone()
    last.step(gas)
    assert bool(last.done.all()) and bool(last.stepped.all())
    shown = dream_with_car(wm.vision, last, world, cars, gas)
    assert float((cars.pose()[0] - before).norm(dim=1).min()) > 0.0
    assert torch.allclose(last.z, wm.vision.encode(shown)[0])
    last.step(gas)  # over: the next step advances nothing
    assert not bool(last.stepped.any())
    cars.close()


def test_divergence_with_the_car_refuses_an_episode_whose_replay_differs(
    pipeline: dict, real_episodes: Path, tmp_path: Path
) -> None:
    """An episode whose recorded rewards its replay does not reproduce (another env version, an edited file) has no
    real car state to start from: one clear error, not a dream from a wrong car."""
    from core.data.episodes import list_episodes, read_episode, write_episode
    from core.divergence import DivergenceConfig, dream_divergence
    from core.errors import EpisodeError

    ep = read_episode(list_episodes(real_episodes)[0])
    rewards = np.array(ep.rewards, copy=True)
    rewards[0] += 1.0
    write_episode(tmp_path / "ep_0000000001.npz", dataclasses.replace(ep, rewards=rewards))
    config = DivergenceConfig(
        data_dir=tmp_path, vision=pipeline["vision"], memory=pipeline["memory"], horizons=(1, 10), warmup=5,
        start_every=20, samples=1, tau=0.0, parked=False, steer=False, dream_map=True, map_pose="car",
    )  # fmt: skip
    with pytest.raises(EpisodeError, match="does not reproduce"):
        dream_divergence(config)
