"""Policies that drive the real env during collection: a random explorer and any object with ``act``.

A policy has ``reset(seed)`` (called at the start of each episode) and ``act(frame) -> action`` where
``frame`` is the uint8 (96, 96, 3) observation and ``action`` float32 (3,) [steer, gas, brake].
Worker processes build policies from picklable factories (``make()``), so anything a worker needs (a
checkpoint path, a noise level) travels as plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Policy(Protocol):
    def reset(self, seed: int) -> None: ...

    def act(self, frame: np.ndarray) -> np.ndarray: ...


class PolicyFactory(Protocol):
    @property
    def name(self) -> str: ...

    def make(self) -> Policy: ...


class RandomExplorationPolicy:
    """Random actions held for a random number of steps, biased towards gas (as in the seed work's rollouts).

    Each hold: steer ~ U(-1, 1); gas ~ U(gas_min, 1) with probability ``p_gas`` else 0; brake ~ U(0, 1)
    with probability ``p_brake`` else 0 (and then no gas); held for U{hold_min..hold_max} steps. Seeded per
    episode, so the same seed gives the same actions.
    """

    def __init__(
        self,
        hold_min: int = 1,
        hold_max: int = 15,
        p_gas: float = 0.8,
        gas_min: float = 0.3,
        p_brake: float = 0.1,
    ) -> None:
        self.hold_min, self.hold_max = hold_min, hold_max
        self.p_gas, self.gas_min, self.p_brake = p_gas, gas_min, p_brake
        self.rng = np.random.default_rng(0)
        self._action = np.zeros(3, np.float32)
        self._left = 0

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self._left = 0

    def act(self, frame: np.ndarray) -> np.ndarray:
        if self._left <= 0:
            r = self.rng
            steer = r.uniform(-1.0, 1.0)
            brake = r.uniform(0.0, 1.0) if r.random() < self.p_brake else 0.0
            gas = r.uniform(self.gas_min, 1.0) if (brake == 0.0 and r.random() < self.p_gas) else 0.0
            self._action = np.array([steer, gas, brake], np.float32)
            self._left = int(r.integers(self.hold_min, self.hold_max + 1))
        self._left -= 1
        return self._action.copy()


@dataclass(frozen=True)
class RandomPolicyFactory:
    """Builds :class:`RandomExplorationPolicy` in a worker."""

    hold_min: int = 1
    hold_max: int = 15
    p_gas: float = 0.8
    name: str = "random"

    def make(self) -> Policy:
        return RandomExplorationPolicy(self.hold_min, self.hold_max, self.p_gas)
