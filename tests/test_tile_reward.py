"""CarRacing's reward rule for a grounded dream's car (core.envs.dream_car.TileReward): paid for new road by the
distance covered on it, charged 0.1 a step, and checked against CarRacing's own reward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.envs.car_racing import make_real_env
from core.envs.dream_car import (
    OFF_PLAYFIELD_REWARD,
    PLAYFIELD,
    ROAD_HALF_WIDTH,
    STEP_COST,
    TILE_LENGTH,
    TileReward,
    visited_road,
)


def _drive(reward: TileReward, path: list[tuple[float, float]], heading: float = 0.0) -> list[float]:
    """A car's rewards along ``path`` facing ``heading`` (0: +y), a wheel on the road throughout."""
    h = torch.tensor([heading])
    return [float(reward.step(torch.tensor([p]), h, torch.tensor([True]))[0]) for p in path]


def test_new_road_pays_by_distance_and_covered_road_pays_nothing() -> None:
    reward = TileReward(1, tiles=300)
    reward.start(torch.tensor([[0.0, 0.0]]), torch.zeros(1))
    ahead = _drive(reward, [(0.0, float(t)) for t in range(1, 101)])  # 100 units up the road, 1 a step
    assert reward.per_unit == pytest.approx(1000.0 / (300 * TILE_LENGTH))
    assert sum(ahead) == pytest.approx(100 * reward.per_unit - 100 * STEP_COST)
    back = _drive(reward, [(0.0, float(t)) for t in range(99, 49, -1)], heading=3.14159)  # turned round
    assert sum(r > 0 for r in back) <= int(ROAD_HALF_WIDTH)  # only the stretch not yet past the lag
    side = _drive(reward, [(4.0, float(t)) for t in range(50, 10, -1)], heading=3.14159)  # on its other side
    assert all(r == pytest.approx(-STEP_COST) for r in side)


def test_parked_or_on_the_grass_pays_the_step_cost_alone() -> None:
    reward = TileReward(2, tiles=250)
    reward.start(torch.zeros(2, 2), torch.zeros(2))
    for t in range(1, 30):
        r = reward.step(torch.tensor([[0.0, 0.0], [0.0, 2.0 * t]]), torch.zeros(2), torch.tensor([True, False]))
        assert r.tolist() == pytest.approx([-STEP_COST, -STEP_COST])  # parked on the road; moving on the grass
    assert reward.step(torch.tensor([[0.0, 5.0], [0.0, 100.0]]), torch.zeros(2), torch.tensor([True, True]),
                       live=torch.tensor([True, False])).tolist()[1] == 0.0  # fmt: skip


def test_on_a_real_track_it_pays_about_what_carracing_pays() -> None:
    """The real car driven up a track (gas, gentle steering toward the road's centre line), its wheels' own road
    contact as the ground: the rule's sum is within 5% of CarRacing's reward over the same steps."""
    env = make_real_env()
    try:
        env.reset(seed=11)
        for _ in range(50):  # the opening zoom
            env.step(np.zeros(3, np.float32))
        car, track = env.unwrapped.car, env.unwrapped.track
        reward = TileReward(1, tiles=len(track))
        reward.start(torch.tensor([tuple(car.hull.position)]), torch.tensor([car.hull.angle]), [visited_road(env)])
        real = rule = 0.0
        for _ in range(250):
            x, y = car.hull.position
            nearest = int(np.argmin([(x - t[2]) ** 2 + (y - t[3]) ** 2 for t in track]))
            tx, ty = track[(nearest + 6) % len(track)][2:4]  # a point 20 units on
            aim = np.arctan2(-(tx - x), ty - y) - car.hull.angle  # heading 0 faces +y
            steer = float(np.clip(-2.0 * np.arctan2(np.sin(aim), np.cos(aim)), -1, 1))
            _, r, terminated, truncated, _ = env.step(np.array([steer, 0.3, 0.0], np.float32))
            real += float(r)
            on_road = any(bool(w.tiles) for w in car.wheels)
            pose = torch.tensor([tuple(car.hull.position)]), torch.tensor([car.hull.angle])
            rule += float(reward.step(*pose, torch.tensor([on_road]))[0])
            assert not (terminated or truncated)
        assert real > 100.0  # it drove on the road
        assert rule == pytest.approx(real, rel=0.05)
        # the tiles touched are the road it drove: covered from the start, driving it again pays nothing
        assert env.unwrapped.tile_visited_count > 50
        centres = torch.tensor([t[2:4] for t, tile in zip(track, env.unwrapped.road, strict=True) if tile.road_visited])
        step = centres[1:] - centres[:-1]
        headings = torch.atan2(-step[:, 0], step[:, 1])  # 0 faces +y, counter-clockwise positive
        side = torch.stack([torch.cos(headings), torch.sin(headings)], dim=1) * 4.0  # 4 units right of the line
        for offset in (0.0, 1.0):  # along the centre line, then beside it: still on the tiles touched
            again = TileReward(1, tiles=len(track))
            done = visited_road(env)  # for every car at once, or as a list of one per car
            again.start(centres[:1], headings[:1], done if offset else [done])
            path = (centres[1:] + offset * side)[:-3]  # not up to the last tile touched: the car reads ahead
            paid = [
                float(again.step(p[None], h[None], torch.tensor([True]))[0])
                for p, h in zip(path, headings[:-3], strict=True)
            ]
            assert paid == pytest.approx([-STEP_COST] * len(path))
    finally:
        env.close()


def test_leaving_the_playfield_ends_the_episode_with_minus_100_as_carracing_does() -> None:
    """A hull that passes the playfield's edge: CarRacing pays -100 and ends the episode; so does the rule, at the
    same edge, and nothing more after."""
    from gymnasium.envs.box2d.car_racing import PLAYFIELD as GYM_PLAYFIELD

    assert PLAYFIELD == pytest.approx(GYM_PLAYFIELD)
    env = make_real_env()
    try:
        env.reset(seed=11)
        hull = env.unwrapped.car.hull
        for x, ends in ((PLAYFIELD - 1.0, False), (PLAYFIELD + 1.0, True)):
            hull.position = (x, 0.0)  # the car moved there; CarRacing reads the hull after the world's step
            _, r, terminated, _, _ = env.step(np.zeros(3, np.float32))
            assert terminated == ends and (r == OFF_PLAYFIELD_REWARD) == ends, (x, r, terminated)
    finally:
        env.close()
    reward = TileReward(2, tiles=300)
    reward.start(torch.tensor([[0.0, 100.0], [0.0, PLAYFIELD - 2.0]]), torch.zeros(2))
    inside, heading, road = torch.tensor([0.0, 100.0]), torch.zeros(2), torch.tensor([True, True])
    paid = []
    for y in (PLAYFIELD - 1.0, PLAYFIELD + 1.0, PLAYFIELD + 2.0):  # the second car drives out at the top
        r = reward.step(torch.stack([inside, torch.tensor([0.0, y])]), heading, road)
        assert r[0] == pytest.approx(-STEP_COST)  # the other car goes on (parked)
        paid.append(float(r[1]))
    assert paid[0] > 0.0 and paid[1:] == [OFF_PLAYFIELD_REWARD, 0.0]
    assert reward.ended.tolist() == [False, True]


def test_bad_settings_say_so() -> None:
    with pytest.raises(ValueError, match="tiles >= 1"):
        TileReward(1, tiles=0)
    env = make_real_env()
    try:
        with pytest.raises(ValueError, match="reset it first"):
            visited_road(env)
    finally:
        env.close()
