"""The dream's map inside ``dream-explorer divergence`` (``--dream-map``): its set-up for one episode's windows and
its step, with the car moved by the dream's own car state, by reality's HUD, or by CarRacing's car physics
(:mod:`core.envs.dream_car`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from core.envs.car_racing import make_real_env
from core.envs.dream_car import ROAD_HALF_WIDTH, DreamCars, TileReward, dream_with_car
from core.envs.dream_map import DreamMap, dream_with_map, map_reality
from core.errors import EpisodeError
from core.metrics.replay import car_states


class EpisodeMaps:
    """The maps of one episode's N open-loop dreams (``DivergenceConfig.dream_map``).

    Args:
        wm: the world model (its V decodes reality's latents for the map's past).
        config: the divergence config (``map_history``, ``map_pose``, ``warmup``).
        ep: the episode (its seed and actions, replayed for ``map_pose`` "car").
        mu: float32 (T + 1, Z), V's encoding of every frame.
        hud: float32 (T + 1,) each, the HUD's speed and yaw rate.
        idx: int64 (N,), each dream's start step.
        start_frames: float32 (N, 3, S, S), V's reconstruction of each start frame.

    Raises:
        EpisodeError: ``map_pose`` "car" and the replay of the episode does not reproduce its recorded rewards.
    """

    def __init__(self, wm: Any, config: Any, ep: Any, mu: Tensor, hud: tuple[Tensor, Tensor], idx: Tensor,
                 start_frames: Tensor) -> None:  # fmt: skip
        self.vision, self.pose, self.hud, self.idx = wm.vision, config.map_pose, hud, idx
        self.map = DreamMap(len(idx), start_frames.shape[-1])
        self.cars: DreamCars | None = None
        self.tiles: TileReward | None = None
        """With the car: CarRacing's reward rule for it on its map, and each dream's return by it so far."""
        poses = None
        self.known = torch.zeros(len(mu), dtype=torch.bool)
        """Steps at which reality's car pose is known (replayed): the window starts' pasts and every horizon but an
        episode's last step (a replay that reaches the end of a lap ends there)."""
        if self.pose == "car":
            first = max(0, int(idx.min()) - config.map_history)
            last = min(len(mu) - 2, int(idx.max()) + max(config.horizons))
            visited: dict[int, Tensor] = {}
            states = car_states(ep, set(range(first, last + 1)), visited, {int(s) for s in idx})
            if states is None:
                raise EpisodeError(f"episode seed {int(ep.seed)}: replaying its actions does not reproduce its rewards")
            self.cars = DreamCars([states[int(s)] for s in idx])
            self.tiles = TileReward(len(idx), _track_tiles(int(ep.seed)))
            self.tiles.start(*self.cars.pose(), [visited[int(s)] for s in idx])
            steps = len(mu)
            position, heading = torch.zeros(steps, 2), torch.zeros(steps)
            for t, state in states.items():
                position[t] = torch.tensor(state.bodies[0][:2])
                heading[t] = state.bodies[0][2]
                self.known[t] = True
            poses = (position, heading)
        self.real_poses = poses
        """Reality's car at every step, ``(position (T + 1, 2), heading (T + 1,))`` in Box2D's frame, valid where
        :attr:`known`; None unless ``map_pose`` is "car"."""
        if config.map_history:
            recon = torch.cat([wm.decode(mu[i : i + 256]) for i in range(0, len(mu), 256)])
            map_reality(self.map, recon, *hud, idx, config.map_history, config.warmup, poses)
        elif poses is not None:
            self.map.reset(start_frames, poses[0][idx], poses[1][idx])
        else:
            self.map.reset(start_frames)

    def step(self, dream: Any, actions: Tensor, k: int) -> Tensor:
        """After ``dream.step(actions)``, the k-th step from the starts: move the cars, compose, ground z; returns
        the frames the dreams show, float32 (N, 3, S, S) in [0, 1]."""
        if self.cars is not None and self.tiles is not None:
            frames = dream_with_car(self.vision, dream, self.map, self.cars, actions)
            self.tiles.step(*self.cars.pose(), self.cars.on_road.any(1), dream.stepped)
            dream.done = dream.done | self.tiles.ended  # off the playfield: over, as in CarRacing
            return frames
        car = (self.hud[0][self.idx + k], self.hud[1][self.idx + k]) if self.pose == "reality" else (None, None)
        return dream_with_map(self.vision, dream, self.map, *car)

    def car_distance(self, k: int) -> Tensor | None:
        """How far each dream's car is from reality's car k steps after the window's start (both after the same k
        recorded actions): float32 (N,), world units, NaN where reality's pose at that step is not known; None
        without the car (``map_pose`` other than "car"). Where the map's ground under the wheels is reality's, the
        two cars agree to about 1e-3 units (``tests/test_dream_car.py``); they part where the dream's ground does."""
        if self.cars is None or self.real_poses is None:
            return None
        t = (self.idx + k).clamp(max=len(self.known) - 1)  # the last step is never known: past it neither
        d = (self.cars.pose()[0] - self.real_poses[0][t]).norm(dim=1)
        return torch.where(self.known[t], d, torch.full_like(d, float("nan")))

    def figures(self, k: int, dream: Any, real_return: Tensor) -> dict[str, tuple[float, int]]:
        """The grounded dream's figures k steps after the starts, as ``name: (sum, count)`` over the dreams (empty
        unless ``map_pose`` is "car"): ``reward_sum_ground`` and ``reward_sum_ground_abs_error``, the return by
        CarRacing's rule for the car on the map (:class:`core.envs.dream_car.TileReward`) and its distance from
        ``real_return`` float64 (N,), reality's over the same steps; ``car_distance`` (world units) and
        ``car_within_road`` (within half the road's width, ``ROAD_HALF_WIDTH`` = 6.67 units), the dream's car against
        reality's (:meth:`car_distance`), over the dreams ``dream.stepped`` where reality's pose is known. The two
        cars agree wherever the wheels read reality's ground, so these say how soon the dream's ground sends its car
        off reality's line."""
        if self.tiles is None:
            return {}
        n, returns = len(self.idx), self.tiles.returns
        out = {"reward_sum_ground": (float(returns.sum()), n),
               "reward_sum_ground_abs_error": (float((returns - real_return).abs().sum()), n)}  # fmt: skip
        distance = self.car_distance(k)
        assert distance is not None  # the car's reality was replayed with it
        ok = ~torch.isnan(distance) & dream.stepped
        if bool(ok.any()):
            out["car_distance"] = (float(distance[ok].sum()), int(ok.sum()))
            out["car_within_road"] = (float((distance[ok] <= ROAD_HALF_WIDTH).sum()), int(ok.sum()))
        return out

    def close(self) -> None:
        """Free the cars' Box2D worlds."""
        if self.cars is not None:
            self.cars.close()


def _track_tiles(seed: int) -> int:
    """The number of tiles of CarRacing's track ``seed``."""
    env = make_real_env()
    try:
        env.reset(seed=seed)
        return len(env.unwrapped.track)  # type: ignore[attr-defined]
    finally:
        env.close()
