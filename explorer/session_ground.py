"""The session's grounded dream: the dream's map and CarRacing's car physics around the batched dream (a part of
:class:`explorer.session.Session`).

A dream that starts from reality's frame starts its N cars from the real car's full state
(:class:`core.api.DreamCars`) and its N maps from that frame as V reconstructs it (:class:`core.api.DreamMap`).
Each dream step then moves the cars with the dream's actions on the ground the maps hold, shows the map from the
car's new pose with M's frame where the map holds nothing, and feeds V's encoding of that picture back to M
(:func:`core.api.dream_with_car`). A dream from a random z, a dataset frame or an edited z has no real car to
start from and runs ungrounded, as before.
"""

from __future__ import annotations

import logging

import numpy as np
from torch import Tensor

from core.api import DreamCars, DreamMap, car_state, dream_with_car, to_uint8_hwc
from explorer.session_parts import SessionParts

log = logging.getLogger("explorer")


class GroundSide(SessionParts):
    """The grounded dream of a :class:`explorer.session.Session`. Mixed into Session; its state
    (``ground_dream``, ``_ground``) is set in ``Session.__init__``."""

    @property
    def grounded(self) -> bool:
        """Whether the current dream moves on CarRacing's car physics over its map."""
        return self._ground is not None

    def set_ground_dream(self, on: bool) -> None:
        """Ground new dreams that start from reality (on) or not; the current dream restarts."""
        self.ground_dream = bool(on)
        if self.dream is not None:
            self.start_dream()

    def _ground_start(self, source: str) -> None:
        """After the dream's reset: ground it when ``ground_dream`` is on and it starts from the real frame."""
        self._ground_close()
        if not self.ground_dream or source != "real" or self.dream is None or self.vision_runtime is None:
            return
        try:
            state = car_state(self.env)
        except ValueError as exc:  # no real episode yet
            log.warning("grounded dream: %s", exc)
            return
        cars = DreamCars([state] * self.dream.n)
        with self._inference("decode", vision=True):
            start = self.vision_runtime.decode(self.dream.z)
        world = DreamMap(self.dream.n, start.shape[-1])
        world.reset(start, *cars.pose())
        self._ground = (world, cars)

    def _ground_step(self, actions: Tensor) -> None:
        """After ``dream.step(actions)`` of a grounded dream: move the cars, compose the frames the dreams show and
        cache them for this dream version (the views show the composites, not V's decode of z)."""
        if self._ground is None or self.dream is None or self.vision_runtime is None:
            return
        world, cars = self._ground
        with self._inference("decode", vision=True):  # V's decode of the N dreams and its encode of the composites
            shown = dream_with_car(self.vision_runtime, self.dream, world, cars, actions)
        frames: np.ndarray = to_uint8_hwc(shown)
        self._cache["dream"] = (self.dream_version, frames)
        self._cache["dream_x"] = (self.dream_version, shown[:1])

    def _ground_close(self) -> None:
        if self._ground is not None:
            self._ground[1].close()
            self._ground = None
