"""The dream's car: CarRacing's own car physics, driven on the ground the dream shows.

A dream must move its car as reality would, or its map (:mod:`core.envs.dream_map`) lays the ground it remembers
in the wrong place: a learned car model's heading is off by about 2 rad after 100 steps of a spinning car
(docs/history.md, session 36). The car's motion is no mystery, though: CarRacing steps gymnasium's top-down car
(``gymnasium.envs.box2d.car_dynamics.Car``, after Chris Campbell's top-down car tutorial) in a Box2D world whose
only tie to the track is each wheel's friction limit, full on a road tile and 0.6 of it on grass. The road's
tiles are sensors; nothing else touches the car.

So each dream here carries that same car in a Box2D world of its own, started from the real car's full state
(hull and wheels: pose, velocities, wheel spin, pedals and steering; :func:`car_state`), stepped exactly as
``CarRacing.step`` steps it, with each wheel's friction read from the dream's own map: a wheel is on the road
where the map's ground under it is road-grey (:func:`core.metrics.road.road_mask`), and keeps its last reading
where the map holds nothing. Copied into an empty world and given reality's friction, the car follows the real
one to the last bit (``tests/test_dream_car.py``); what remains is the dream's ground.

This is a hybrid world model: the physics of the car is the env's, the world it drives through is dreamed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from core.envs.dream_map import DreamMap, ground_z
from core.metrics.road import road_mask

FPS = 50.0
"""CarRacing's steps per second (its ``FPS``): each step advances the car by 1 / 50 s."""
VELOCITY_ITERATIONS, POSITION_ITERATIONS = 6 * 30, 2 * 30
"""Box2D solver iterations per step, as ``CarRacing.step`` sets them."""


@dataclass(frozen=True)
class CarState:
    """The full state of one CarRacing car, enough to restart its physics anywhere.

    ``bodies``: hull then the four wheels (front left, front right, rear left, rear right), each (x, y, angle, vx,
    vy, angular velocity) in Box2D world units, rad, units/s and rad/s; ``wheels``: per wheel (omega, phase, gas,
    brake, steer), the car_dynamics wheel's own fields (spin in rad/s, its angle, pedals in [0, 1], steering target
    in [-1, 1]); ``on_road``: per wheel, whether it touches a road tile.
    """

    bodies: tuple[tuple[float, ...], ...]
    wheels: tuple[tuple[float, ...], ...]
    on_road: tuple[bool, ...]


def car_state(env: Any) -> CarState:
    """The full state of a real CarRacing env's car (after a reset).

    Raises:
        ValueError: the env has no car yet (not reset).
    """
    car = getattr(getattr(env, "unwrapped", env), "car", None)
    if car is None:
        raise ValueError("the env has no car: reset it first")
    bodies = tuple(
        (*map(float, b.position), float(b.angle), *map(float, b.linearVelocity), float(b.angularVelocity))
        for b in [car.hull, *car.wheels]
    )
    wheels = tuple((float(w.omega), float(w.phase), float(w.gas), float(w.brake), float(w.steer)) for w in car.wheels)
    return CarState(bodies, wheels, tuple(bool(w.tiles) for w in car.wheels))


def visited_road(env: Any, spacing: float = 0.5) -> Tensor:
    """Points filling the road tiles a real CarRacing env's car has touched so far (its ``road_visited`` tiles;
    tile i is the quad between track points i - 1 and i, the road's width across, as ``CarRacing._create_track``
    lays it), ``spacing`` world units apart: float32 (K, 2), world units, K >= 0. What :meth:`TileReward.start`
    takes as covered.

    Raises:
        ValueError: the env has no track yet (not reset).
    """
    env = getattr(env, "unwrapped", env)
    track, road = getattr(env, "track", None), getattr(env, "road", None)
    if not track or road is None:
        raise ValueError("the env has no track: reset it first")
    done = [i for i, tile in enumerate(road) if tile.road_visited]
    if not done:
        return torch.zeros(0, 2)
    ends = torch.tensor([[track[i][1:4], track[i - 1][1:4]] for i in done], dtype=torch.float64)  # (K, 2, [beta, x, y])
    across = torch.stack([torch.cos(ends[..., 0]), torch.sin(ends[..., 0])], dim=-1)  # (K, 2 ends, 2)
    length = float((ends[:, 0, 1:] - ends[:, 1, 1:]).norm(dim=1).max())
    u = torch.linspace(0.0, 1.0, max(2, math.ceil(length / spacing) + 1), dtype=torch.float64)
    v = torch.linspace(-ROAD_HALF_WIDTH, ROAD_HALF_WIDTH, math.ceil(2 * ROAD_HALF_WIDTH / spacing) + 1,
                       dtype=torch.float64)  # fmt: skip
    u, v = u[:, None, None, None], v[None, :, None, None]
    first, second = ends[:, 0, 1:] + v * across[:, 0], ends[:, 1, 1:] + v * across[:, 1]  # (1, V, K, 2) each
    return (first + u * (second - first)).reshape(-1, 2).float()


class _Road:
    """Stands for a road tile in a wheel's ``tiles``: car_dynamics reads only its ``road_friction``."""

    road_friction = 1.0


_ROAD = _Road()


class DreamCars:
    """N CarRacing cars, one per dream, each in a Box2D world of its own.

    Args:
        states: one :class:`CarState` per dream (the real car's where the dream starts).

    Poses are Box2D world coordinates: position (N, 2) in world units, heading (N,) in rad (the hull's angle,
    counter-clockwise positive; heading 0 faces +y), the frame :class:`core.envs.dream_map.DreamMap` uses when it
    is reset at the cars' poses.

    Raises:
        ValueError: no states.
    """

    def __init__(self, states: list[CarState]) -> None:
        if not states:
            raise ValueError("DreamCars needs at least one car state")
        import Box2D
        from gymnasium.envs.box2d.car_dynamics import Car

        self.n = len(states)
        self._worlds, self._cars = [], []
        for state in states:
            world = Box2D.b2World((0, 0))
            x, y, angle = state.bodies[0][:3]
            car = Car(world, angle, x, y)
            for body, (bx, by, ba, vx, vy, av) in zip([car.hull, *car.wheels], state.bodies, strict=True):
                body.transform = ((bx, by), ba)
                body.linearVelocity = (vx, vy)
                body.angularVelocity = av
            for wheel, (omega, phase, gas, brake, steer) in zip(car.wheels, state.wheels, strict=True):
                wheel.omega, wheel.phase, wheel.gas, wheel.brake, wheel.steer = omega, phase, gas, brake, steer
            self._worlds.append(world)
            self._cars.append(car)
        self.on_road = torch.tensor([s.on_road for s in states], dtype=torch.bool)
        """Each wheel's last ground reading, bool (N, 4): True on the road (full friction), False on grass."""

    def step(self, actions: Tensor, live: Tensor | None = None) -> None:
        """Step every live car by one CarRacing step with ``actions`` float (N, 3) (steer in [-1, 1], gas and brake
        in [0, 1]) on the ground of :attr:`on_road`, as ``CarRacing.step`` does: steer, gas, brake, the car's step,
        then the world's. ``live`` bool (N,): cars to step (default all)."""
        acts = actions.detach().cpu().double().numpy()
        for i, (world, car) in enumerate(zip(self._worlds, self._cars, strict=True)):
            if live is not None and not bool(live[i]):
                continue
            for wheel, road in zip(car.wheels, self.on_road[i].tolist(), strict=True):
                wheel.tiles = {_ROAD} if road else set()
            steer, gas, brake = (float(a) for a in acts[i])
            car.steer(-steer)  # CarRacing steers the car by -action[0]
            car.gas(gas)
            car.brake(brake)
            car.step(1.0 / FPS)
            world.Step(1.0 / FPS, VELOCITY_ITERATIONS, POSITION_ITERATIONS)

    def pose(self) -> tuple[Tensor, Tensor]:
        """``(position, heading)``: float32 (N, 2) world units and (N,) rad of every hull."""
        position = torch.tensor([tuple(c.hull.position) for c in self._cars], dtype=torch.float32)
        return position, torch.tensor([c.hull.angle for c in self._cars], dtype=torch.float32)

    def wheels(self) -> Tensor:
        """World positions of every wheel: float32 (N, 4, 2), world units."""
        return torch.tensor([[tuple(w.position) for w in c.wheels] for c in self._cars], dtype=torch.float32)

    def speed(self) -> Tensor:
        """Every hull's speed, float32 (N,), world units per second (:func:`core.envs.car_racing.car_speed`'s)."""
        return torch.tensor([math.hypot(*c.hull.linearVelocity) for c in self._cars], dtype=torch.float32)

    def yaw(self) -> Tensor:
        """Every hull's yaw rate, float32 (N,), rad/s, counter-clockwise positive."""
        return torch.tensor([c.hull.angularVelocity for c in self._cars], dtype=torch.float32)

    def read_ground(self, road: Tensor, held: Tensor) -> None:
        """Update :attr:`on_road` from the ground under the wheels: ``road`` and ``held`` bool (N, 4), whether the
        ground there is road and whether there is any; a wheel over no ground keeps its last reading."""
        self.on_road = torch.where(held, road, self.on_road)

    def read_map(self, dream_map: DreamMap) -> None:
        """:meth:`read_ground` from what ``dream_map`` holds under each wheel: road where it is road-grey
        (:func:`core.metrics.road.road_mask`)."""
        colours, held = dream_map.ground(self.wheels())  # (N, 4, 3), (N, 4)
        self.read_ground(road_mask(colours.transpose(1, 2).unsqueeze(-1))[..., 0], held)

    def close(self) -> None:
        """Free the Box2D worlds."""
        for car in self._cars:
            car.destroy()
        self._cars, self._worlds = [], []


TILE_LENGTH = 3.51
"""World units of track per CarRacing tile (the track's points are ``TRACK_DETAIL_STEP`` = 3.5 units apart along
it; measured 3.510-3.513 on four tracks)."""
ROAD_HALF_WIDTH = 40.0 / 6.0
"""Half the road's width, world units (CarRacing's ``TRACK_WIDTH / SCALE``)."""
STEP_COST = 0.1
"""What CarRacing charges for every step."""
PLAYFIELD = 2000.0 / 6.0
"""Half the side of CarRacing's playfield, world units (gymnasium's ``PLAYFIELD`` = 2000 / ``SCALE``): a hull whose
centre passes |x| or |y| = 333.3 ends the episode."""
OFF_PLAYFIELD_REWARD = -100.0
"""CarRacing's reward for the step on which the hull leaves the playfield (in place of that step's own)."""
LEAD = 80 * 0.02 + TILE_LENGTH / 2.0
"""How far ahead of the hull's centre :class:`TileReward` reads the road, world units: CarRacing pays as soon as a
front wheel (80 * SIZE = 1.6 units ahead, gymnasium's ``car_dynamics``) touches a new tile, a whole tile at once,
which is on average half a tile ahead of a wheel paid by distance."""


class TileReward:
    """CarRacing's reward rule for the dreams' cars on the ground their maps show: -0.1 a step, and 1000 / N for the
    road a car covers first, as if it touched new tiles.

    CarRacing pays 1000 / N the first time a wheel touches each of the track's N tiles (strips
    :data:`TILE_LENGTH` long, the road's full width across; gymnasium's ``FrictionDetector``) and charges 0.1 a step.
    A dream has no tiles, only the ground its map shows. So a car is paid 1000 / (N * TILE_LENGTH) per world unit it
    moves while a wheel is on the map's road (:attr:`DreamCars.on_road`) and it is on ground it has not covered yet;
    covered is within :data:`ROAD_HALF_WIDTH` of a point of its path at least twice that much path behind, so a car
    that turns back along the road, or drives back on its other side, earns nothing there, as a full-width tile pays
    once. A parked car pays -0.1 a step, and one on the grass too. A dream starts with the tiles reality's car has
    touched covered (:meth:`start`), so road it covered before the dream began does not pay again. A car whose hull
    leaves the playfield (:data:`PLAYFIELD`) is paid :data:`OFF_PLAYFIELD_REWARD` for that step and its episode is
    over (:attr:`ended`), as CarRacing's is. ``tests/test_tile_reward.py`` checks the rule against CarRacing's own
    reward on a real drive, and the playfield's edge against CarRacing's.

    Args:
        n: number of dreams.
        tiles: N, the number of tiles of the track being dreamed (reality's, where the dream starts from it).
        cell: side of the cells that record covered ground, world units.

    Raises:
        ValueError: ``n < 1``, ``tiles < 1`` or ``cell <= 0``.
    """

    def __init__(self, n: int, tiles: int, cell: float = 1.0) -> None:
        if n < 1 or tiles < 1 or cell <= 0:
            raise ValueError(f"need n >= 1, tiles >= 1 and cell > 0, got n={n}, tiles={tiles}, cell={cell}")
        self.per_unit = 1000.0 / (tiles * TILE_LENGTH)
        self.cell = cell
        self._covered: list[set[int]] = [set() for _ in range(n)]  # cells, as :meth:`_key`s
        self._trail: list[deque[tuple[float, float, float]]] = [deque() for _ in range(n)]  # (odometer, x, y) on road
        self._odometer = [0.0] * n
        self._last: list[tuple[float, float] | None] = [None] * n
        self.returns = torch.zeros(n, dtype=torch.float64)
        """Each car's return so far (the sum of :meth:`step`'s rewards), float64 (N,)."""
        self.ended = torch.zeros(n, dtype=torch.bool)
        """Each car whose hull has left the playfield, bool (N,): its episode is over and it earns nothing more."""
        r = int(math.ceil(ROAD_HALF_WIDTH / cell))
        self._disc = [i * _ROW + j for i in range(-r, r + 1) for j in range(-r, r + 1)
                      if math.hypot(i, j) * cell <= ROAD_HALF_WIDTH]  # fmt: skip  # key offsets

    def start(self, position: Tensor, heading: Tensor, covered: Tensor | list[Tensor] | None = None) -> None:
        """Every car's pose at the dreams' start (``position`` float (N, 2), world units; ``heading`` (N,), rad, 0
        facing +y, counter-clockwise positive), and the road already covered: float (K, 2) points, each covering its
        cell (those filling the tiles reality has touched, :func:`visited_road`), one tensor for every car or a list
        of one per car."""
        self._last = [(float(x), float(y)) for x, y in _lead(position, heading).tolist()]
        if isinstance(covered, Tensor):  # the same points for every car (the app's futures): one set of cells
            cells = self._cells(covered)
            for done in self._covered:
                done.update(cells)
        else:
            for done, points in zip(self._covered, covered or [], strict=False):
                done.update(self._cells(points))

    def _cells(self, points: Tensor) -> set[int]:
        """The cells of ``points`` float (K, 2), as :meth:`_key`'s, vectorised."""
        cells = torch.round(points.double() / self.cell).long() + _ROW // 2
        return set((cells[:, 0] * _ROW + cells[:, 1]).unique().tolist())

    def _key(self, x: float, y: float) -> int:
        """The cell of world point (x, y) as one integer (cells within 2^20 of the origin)."""
        return (round(x / self.cell) + _ROW // 2) * _ROW + round(y / self.cell) + _ROW // 2

    def _cover(self, i: int, x: float, y: float) -> None:
        key = self._key(x, y)
        self._covered[i].update(key + d for d in self._disc)

    def step(self, position: Tensor, heading: Tensor, on_road: Tensor, live: Tensor | None = None) -> Tensor:
        """The step's reward of each car, float32 (N,), from its new pose (as :meth:`start`'s) and ``on_road`` bool
        (N,) (a wheel on the map's road); cars not ``live`` bool (N,), or :attr:`ended`, get 0. The distance and the
        ground covered are those of a point :data:`LEAD` ahead of the hull's centre; a hull now off the playfield
        gets :data:`OFF_PLAYFIELD_REWARD` and ends."""
        rewards = torch.zeros(len(self._covered))
        off = (position.abs() > PLAYFIELD).any(1).tolist()
        for i, ((x, y), road) in enumerate(zip(_lead(position, heading).tolist(), on_road.tolist(), strict=True)):
            if (live is not None and not bool(live[i])) or bool(self.ended[i]):
                continue
            if off[i]:
                rewards[i] = OFF_PLAYFIELD_REWARD
                self.ended[i] = True
                continue
            last = self._last[i]
            moved = 0.0 if last is None else math.hypot(x - last[0], y - last[1])
            self._last[i] = (x, y)
            self._odometer[i] += moved
            trail, covered = self._trail[i], self._covered[i]
            while trail and self._odometer[i] - trail[0][0] >= 2.0 * ROAD_HALF_WIDTH:
                _, tx, ty = trail.popleft()
                self._cover(i, tx, ty)
            new = self._key(x, y) not in covered
            rewards[i] = (moved * self.per_unit if road and new else 0.0) - STEP_COST
            if road:
                trail.append((self._odometer[i], x, y))
        self.returns += rewards.double()
        return rewards


_ROW = 1 << 21
"""Cells per row of :class:`TileReward`'s cell keys."""


def _lead(position: Tensor, heading: Tensor) -> Tensor:
    """The points :data:`LEAD` ahead of ``position`` (N, 2) along ``heading`` (N,): float64 (N, 2)."""
    h = heading.double()
    return position.double() + LEAD * torch.stack([-torch.sin(h), torch.cos(h)], dim=1)


def dream_with_car(vision: Any, dream: Any, dream_map: DreamMap, cars: DreamCars, actions: Tensor) -> Tensor:
    """After ``dream.step(actions)``: step each dream's car with the same actions on the ground its map holds,
    place the map's car there, lay the map over V's decoding of the dreamed z, put V's encoding of the composite back
    as z where the map changed the picture (:func:`core.envs.dream_map.ground_z`), read the ground now under the
    wheels, and give M the car's speed and yaw rate where it reads them.

    Args:
        vision: V (``encode`` float (N, 3, S, S) in [0, 1] -> (mu, logvar); ``decode`` z -> frames).
        dream: the N dreams (a :class:`core.envs.dream.BatchedDream`), just stepped with ``actions``.
        dream_map: their :class:`core.envs.dream_map.DreamMap`, reset at the cars' poses.
        cars: their cars.
        actions: float (N, 3), the actions the dreams were just stepped with.

    Returns:
        The frames the dreams show, float32 (N, 3, S, S) in [0, 1].
    """
    live = dream.stepped  # a dream that ended on this step still took it
    cars.step(actions, live)
    dream_map.place(*cars.pose())
    decoded = vision.decode(dream.z)
    frames = dream_map.composite(decoded)
    ground_z(vision, dream, frames, decoded)
    cars.read_map(dream_map)
    if dream.speed_input:
        dream.speed = torch.where(live, cars.speed(), dream.speed)
    if dream.yaw_input:
        dream.yaw = torch.where(live, cars.yaw(), dream.yaw)
    return frames
