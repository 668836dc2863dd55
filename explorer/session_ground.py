"""The session's grounded dream: the dream's map and CarRacing's car physics around the batched dream (a part of
:class:`explorer.session.Session`).

While the real env runs, reality's frames are written to a map of their own at the real car's pose. A dream that
starts from reality's frame starts its N cars from the real car's full state (:class:`core.api.DreamCars`) and its N
maps as copies of reality's (:class:`core.api.DreamMap`; V's reconstruction of the start frame where there is none).
Each dream step then moves the cars with the dream's actions on the ground the maps hold, shows the map from the
car's new pose with M's frame where the map holds nothing, and feeds V's encoding of that picture back to M
(:func:`core.api.dream_with_car`). A dream from a random z, a dataset frame or an edited z has no real car to
start from, and one from a frame of CarRacing's opening zoom (its first second, at another scale) no map that fits:
they run ungrounded, as before.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from core.api import DreamCars, DreamMap, TileReward, car_state, dream_with_car, to_uint8_hwc, visited_road
from explorer.session_parts import SessionParts

log = logging.getLogger("explorer")


class GroundSide(SessionParts):
    """The grounded dream of a :class:`explorer.session.Session`. Mixed into Session; its state
    (``ground_dream``, ``_ground``) is set in ``Session.__init__``."""

    @property
    def grounded(self) -> bool:
        """Whether the current dream moves on CarRacing's car physics over its map."""
        return self._ground is not None

    @property
    def dream_yaw_rate(self) -> float | None:
        """The first dream's yaw rate, rad/s counter-clockwise positive: its car's in a grounded dream, M's where it
        steps one, else None."""
        if self._ground is not None:
            return float(self._ground[1].yaw()[0])
        if self.dream is not None and self.dream.yaw_input:
            return float(self.dream.yaw[0])
        return None

    @property
    def _real_zooming(self) -> bool:
        """The real env is in CarRacing's opening zoom (its first second, ``t`` < 1 s): its frames have another
        scale than the map's geometry."""
        return float(getattr(self.env.unwrapped, "t", 0.0)) < 1.0

    def _settle_real(self) -> None:
        """Dream mode, a dream about to start from reality's frame while CarRacing is still zooming in: step reality
        through the rest of the zoom with no action (counted, as reality's episode goes on), so the dream starts from
        a frame at the scale V and M learned, and grounded. From a zooming frame M dreams a black void."""
        if self.mode != "dream":
            return
        while self._real_zooming:
            _, terminated, truncated = self._step_real(np.zeros(3, np.float32))
            if terminated or truncated:
                break
        self._zoom_resync = False

    def set_ground_dream(self, on: bool) -> None:
        """Ground new dreams that start from reality (on) or not; the current dream restarts."""
        self.ground_dream = bool(on)
        if not self.ground_dream:
            self._reality_map = None
        if self.dream is not None:
            self.start_dream()

    def _ground_observe(self) -> None:
        """After V encoded a new real frame: write it to reality's map at the real car's pose (past CarRacing's opening
        zoom, whose frames have another scale), a new map for a new episode. Dreams grounded from reality start from a
        copy of it, so ground reality has shown comes back in the dream."""
        if not self.ground_dream or self._real_x is None:
            self._reality_map = None
            return
        car = getattr(self.env.unwrapped, "car", None)
        if car is None or self._real_zooming:
            return
        position = torch.tensor([tuple(car.hull.position)], dtype=torch.float32)
        heading = torch.tensor([car.hull.angle], dtype=torch.float32)
        x = self._real_x.float()
        episode = self.real_tally.episode
        if self._reality_map is None or self._reality_episode != episode or x.shape[-1] != self._reality_map.size:
            self._reality_map, self._reality_episode = DreamMap(1, x.shape[-1]), episode
            self._reality_map.reset(x, position, heading)
        else:
            self._reality_map.place(position, heading)
            self._reality_map.write(x, whole=True)

    def _ground_start(self, source: str) -> None:
        """After the dream's reset: ground it when ``ground_dream`` is on and it starts from the real frame."""
        self._ground_close()
        if not self.ground_dream or source != "real" or self.dream is None or self.vision_runtime is None:
            return
        if self._real_zooming:
            return
        try:
            state = car_state(self.env)
        except ValueError as exc:  # no real episode yet
            log.warning("grounded dream: %s", exc)
            return
        cars = DreamCars([state] * self.dream.n)
        track = getattr(self.env.unwrapped, "track", None)
        if track:  # the dream is paid by CarRacing's rule for the road its car covers on the map
            self._ground_reward = TileReward(self.dream.n, len(track))
            self._ground_reward.start(*cars.pose(), visited_road(self.env))
        reality = self._reality_map
        if reality is not None and self._reality_episode == self.real_tally.episode:
            world = reality.repeat(self.dream.n)  # reality's ground so far, the current frame on top
        else:
            with self._inference("decode", vision=True):
                start = self.vision_runtime.decode(self.dream.z)
            world = DreamMap(self.dream.n, start.shape[-1])
            world.reset(start, *cars.pose())
        self._ground = (world, cars)

    def _ground_step(self, actions: Tensor) -> float | None:
        """After ``dream.step(actions)`` of a grounded dream: move the cars, compose the frames the dreams show and
        cache them for this dream version (the views show the composites, not V's decode of z). Returns the first
        dream's reward by CarRacing's rule for its car on the map (:class:`core.api.TileReward`), None when the dream
        is not grounded (M's reward head pays it)."""
        if self._ground is None or self.dream is None or self.vision_runtime is None:
            return None
        world, cars = self._ground
        live = self.dream.stepped  # a dream that ended on this step still took it
        with self._inference("decode", vision=True):  # V's decode of the N dreams and its encode of the composites
            shown = dream_with_car(self.vision_runtime, self.dream, world, cars, actions)
        frames: np.ndarray = to_uint8_hwc(shown)
        self._cache["dream"] = (self.dream_version, frames)
        self._cache["dream_x"] = (self.dream_version, shown[:1])
        if self._ground_reward is None:
            return None
        reward = float(self._ground_reward.step(*cars.pose(), cars.on_road.any(1), live)[0])
        self.dream.done = self.dream.done | self._ground_reward.ended  # off the playfield: over, as in CarRacing
        return reward

    def _ground_close(self) -> None:
        if self._ground is not None:
            self._ground[1].close()
            self._ground = None
        self._ground_reward = None
