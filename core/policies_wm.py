"""World-model-driven pieces that workers rebuild: checkpoint bytes and the controller's collection policy.

:class:`WorldModelFiles` carries V, M and optionally C as the bytes of their checkpoint files, so a worker
process, local or on another Ray node, rebuilds the exact models without a shared disk; each process loads a
given set once and caches it. :class:`ControllerPolicyFactory` drives real episodes with a controller plus
exploration noise, for Ha's iterative training procedure (Ha & Schmidhuber, 2018, sec. 5: collect rollouts
with the current C, retrain M, retrain C).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.envs.car_racing import hud_speed
from core.envs.dream import ACTION_HIGH, ACTION_LOW
from core.envs.world_model import RealTracker, WorldModel
from core.errors import CheckpointError

PathLike = str | os.PathLike[str]

_loaded: dict[str, WorldModel] = {}
_LOADED_MAX = 2


def _read(path: PathLike, what: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} checkpoint not found: {p}")
    return p.read_bytes()


@dataclass(frozen=True)
class WorldModelFiles:
    """The checkpoint files of V, M (optional) and C (optional), as bytes.

    Attributes:
        vision, memory, controller: file contents (``.safetensors`` written by ``save_checkpoint``).
        key: SHA-256 over all three, naming this set in per-process caches.
    """

    vision: bytes
    memory: bytes | None
    controller: bytes | None
    key: str

    @classmethod
    def read(
        cls, vision: PathLike, memory: PathLike | None = None, controller: PathLike | None = None
    ) -> WorldModelFiles:
        """Read the files, after loading them here once, so a bad file or a V/M mismatch is reported naming the
        user's file (workers load copies under temporary names) and a lineage warning is issued once.

        Raises:
            CheckpointError: a file is missing, unreadable, or the models do not fit together.
        """
        WorldModel.load(vision, memory, controller)
        v = _read(vision, "vision")
        m = _read(memory, "memory") if memory is not None else None
        c = _read(controller, "controller") if controller is not None else None
        h = hashlib.sha256()
        for blob in (v, m, c):
            h.update(len(blob or b"").to_bytes(8, "little"))
            h.update(blob or b"")
        return cls(v, m, c, h.hexdigest())

    def load(self) -> WorldModel:
        """The :class:`WorldModel` these files hold, loaded once per process (eval mode, CPU).

        Raises:
            CheckpointError: a file is truncated, foreign, or the models do not fit together.
        """
        if self.key not in _loaded:
            with tempfile.TemporaryDirectory(prefix="dream-explorer-wm-") as tmp:

                def written(name: str, blob: bytes) -> Path:
                    path = Path(tmp) / f"{name}.safetensors"
                    path.write_bytes(blob)
                    return path

                vision = written("vision", self.vision)
                memory = written("memory", self.memory) if self.memory is not None else None
                controller = written("controller", self.controller) if self.controller is not None else None
                wm = WorldModel.load(vision, memory, controller, warn=False)
            while len(_loaded) >= _LOADED_MAX:
                _loaded.pop(next(iter(_loaded)))
            _loaded[self.key] = wm
        return _loaded[self.key]


class ControllerPolicy:
    """Drive the real env with C on ``[z, h]`` plus exploration: Gaussian action noise and random excursions.

    Each step: ``z_t`` = V's posterior mean of the frame; ``a_t = C([z_t, h_t])`` with ``noise_std * N(0, 1)``
    added to the steering, clipped to the action box, and ``h_{t+1} = M(z_t, a_t, h_t)`` with the action taken
    (Ha & Schmidhuber, 2018, sec. 2.3 and 5). A V-only controller (hidden size 0) sees ``z_t`` alone.

    Gas and brake get no Gaussian noise: a trained C keeps both near 0 most of the time, so noise clipped to
    [0, 1] would add gas or brake on average and change the driver, not explore around it (the model card
    gives the measurement). Speed varies through the excursions instead.

    With ``noise_corr_steps`` > 0 the steering noise is an AR(1) process, the discrete Ornstein-Uhlenbeck
    process of DDPG's exploration (Lillicrap et al., 2016): ``n_t = rho * n_{t-1} + sqrt(1 - rho^2) * noise_std
    * eps_t``, ``rho = exp(-1 / noise_corr_steps)``, stationary std ``noise_std``. White noise of the same std
    averages out within a few steps and hardly moves the car; correlated noise holds a push for about
    ``noise_corr_steps`` steps, so the car really leaves the controller's line and the recorded steering says
    something the road ahead does not: what the action does. A world model trained on a driver's actions alone
    can learn that steering tells where the road goes (the session-8 finding of docs/history.md).

    Excursions give the data what a good driver never shows: with probability ``excursion_prob`` per step the
    policy takes over from C for U{5..30} steps with one random held action (steer U(-1, 1), gas U(0, 1),
    brake 0 or U(0, 1) with probability 0.2), which sends the car onto the verge or the grass; C then drives
    back, so the episode holds the recovery too. Noise and excursions are seeded per episode, so the same seed
    and frames give the same actions.

    Gas holds decouple speed from the road ahead: with probability ``gas_hold_prob`` per step (outside an
    excursion) the gas is held at one value drawn from U(0, 1), brake 0, for U{20..80} steps while C keeps
    steering, so the car stays on the road at a speed C did not choose. A driver's gas follows the road, so an M
    trained on its data alone can learn the road's pace from the road rather than from the pedal; every such M
    measured in session 23 paid a dream that coasts at least as well as one that drives (docs/history.md). Held gas
    shows what gas does.

    Stops show what no gas does: with probability ``stop_prob`` per step (outside an excursion or a gas hold) the
    policy brakes fully (from a moving car) until the HUD reads it at rest (:func:`core.envs.car_racing.hud_speed` below
    STOP_SPEED), then gives no input for U{20..100} steps, then C drives off again from rest. With ``stop_prob``
    > 0, half the episodes (drawn per episode) also begin parked for U{20..100} steps with no input. A driver never
    stands, so an M trained on its data alone has never seen a car that stays where it is: every M measured in
    session 24 dreamed the car at rest rolling off at about 20 units/s without gas, and paid for it (docs/history.md).

    Pedal pulses show what the brake does at speed: with probability ``pedal_pulse_prob`` per step (outside the
    other overrides) the pedals are drawn afresh every step for U{20..60} steps while C steers: gas U(0, 1), and
    with probability 0.5 brake U(0.1, 1) (else 0), so brakes, gas and both at once alternate at speed. A driver
    brakes little and a stop brakes fully to rest, so an M trained on that data alone priced part brakes at speed
    wrongly: session 26's dream-trained controllers alternated gas and brake, which sped up their dream's car and
    stopped reality's (docs/history.md).

    Args:
        world_model: V, M and C (C required).
        noise_std: standard deviation of the action noise (0 = the controller as trained), >= 0.
        excursion_prob: per-step probability of starting an excursion, in [0, 1].
        noise_corr_steps: correlation time of the steering noise in env steps (0 = white noise), >= 0.
        gas_hold_prob: per-step probability of starting a gas hold, in [0, 1].
        stop_prob: per-step probability of starting a stop (brake to rest, then stand), in [0, 1].
        pedal_pulse_prob: per-step probability of starting pedal pulses, in [0, 1].
    """

    GAS_HOLD_STEPS = (20, 80)
    """Shortest and longest gas hold in env steps (uniform)."""
    STOP_STEPS = (20, 100)
    """Shortest and longest time standing still in a stop, env steps (uniform)."""
    STOP_SPEED = 0.5
    """HUD speed (world units per second) below which a braking car counts as at rest."""
    PEDAL_PULSE_STEPS = (20, 60)
    """Shortest and longest run of pedal pulses in env steps (uniform)."""
    PARKED_START_SHARE = 0.5
    """With stops on, the share of episodes (drawn per episode) that begin parked."""

    def __init__(
        self, world_model: WorldModel, noise_std: float, excursion_prob: float = 0.0, noise_corr_steps: float = 0.0,
        gas_hold_prob: float = 0.0, stop_prob: float = 0.0, pedal_pulse_prob: float = 0.0,
    ) -> None:  # fmt: skip
        if world_model.controller is None:
            raise CheckpointError("a controller policy needs a controller checkpoint")
        self.world_model = world_model
        self.controller = world_model.controller
        self.noise_std = noise_std
        self.excursion_prob = excursion_prob
        self.noise_rho = float(np.exp(-1.0 / noise_corr_steps)) if noise_corr_steps > 0 else 0.0
        self._innovation_std = float(np.sqrt(1.0 - self.noise_rho**2)) * noise_std  # keeps the stationary std
        self._noise = 0.0
        self.include_h = self.controller.config.hidden_dim > 0
        self.tracker = RealTracker(world_model, self.include_h)
        self.rng = np.random.default_rng(0)
        self._excursion_left = 0
        self._excursion_action = np.zeros(3, np.float32)
        self.gas_hold_prob = gas_hold_prob
        self._gas_left = 0
        self._gas = 0.0
        self.stop_prob = stop_prob
        self._braking = False
        self._stand_left = 0
        self.pedal_pulse_prob = pedal_pulse_prob
        self._pulses_left = 0

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.tracker.reset()  # the first frame comes with the first act
        self._excursion_left = 0
        self._gas_left = 0
        self._braking = False
        self._stand_left = 0
        self._pulses_left = 0
        if self.stop_prob > 0 and self.rng.random() < self.PARKED_START_SHARE:
            self._stand_left = int(self.rng.integers(self.STOP_STEPS[0], self.STOP_STEPS[1] + 1))
        self._noise = self.noise_std * self.rng.standard_normal() if self.noise_rho > 0 else 0.0

    def _excursion(self) -> np.ndarray | None:
        """The held random action while an excursion lasts, else None."""
        if self._excursion_left <= 0 and self.excursion_prob > 0 and self.rng.random() < self.excursion_prob:
            r = self.rng
            brake = r.uniform(0.0, 1.0) if r.random() < 0.2 else 0.0
            gas = 0.0 if brake else r.uniform(0.0, 1.0)
            self._excursion_action = np.array([r.uniform(-1.0, 1.0), gas, brake], np.float32)
            self._excursion_left = int(r.integers(5, 31))
        if self._excursion_left <= 0:
            return None
        self._excursion_left -= 1
        return self._excursion_action.copy()

    def _gas_held(self) -> bool:
        """Whether a gas hold lasts this step (starting one with probability ``gas_hold_prob``)."""
        if self._gas_left <= 0 and self.gas_hold_prob > 0 and self.rng.random() < self.gas_hold_prob:
            self._gas = float(self.rng.uniform(0.0, 1.0))
            self._gas_left = int(self.rng.integers(self.GAS_HOLD_STEPS[0], self.GAS_HOLD_STEPS[1] + 1))
        if self._gas_left <= 0:
            return False
        self._gas_left -= 1
        return True

    def _pedal_pulse(self) -> tuple[float, float] | None:
        """This step's random ``(gas, brake)`` while pedal pulses last (starting them with probability
        ``pedal_pulse_prob``), else None."""
        r = self.rng
        if self._pulses_left <= 0 and self.pedal_pulse_prob > 0 and r.random() < self.pedal_pulse_prob:
            self._pulses_left = int(r.integers(self.PEDAL_PULSE_STEPS[0], self.PEDAL_PULSE_STEPS[1] + 1))
        if self._pulses_left <= 0:
            return None
        self._pulses_left -= 1
        return float(r.uniform(0.0, 1.0)), float(r.uniform(0.1, 1.0)) if r.random() < 0.5 else 0.0

    def _stop(self, frame: np.ndarray) -> np.ndarray | None:
        """Full brake until the car is at rest, then no input while the stand lasts (starting a stop with
        probability ``stop_prob`` while the car moves); None when no stop is on."""
        if self.stop_prob <= 0:
            return None
        at_rest = bool(hud_speed(frame) < self.STOP_SPEED)
        if not self._braking and self._stand_left <= 0 and not at_rest and self.rng.random() < self.stop_prob:
            self._braking = True
        if self._braking and at_rest:
            self._braking = False
            self._stand_left = int(self.rng.integers(self.STOP_STEPS[0], self.STOP_STEPS[1] + 1))
        if self._braking:
            return np.array([0.0, 0.0, 1.0], np.float32)
        if self._stand_left <= 0:
            return None
        self._stand_left -= 1
        return np.zeros(3, np.float32)

    @torch.no_grad()
    def act(self, frame: np.ndarray) -> np.ndarray:
        """uint8 (96, 96, 3) frame -> float32 (3,) action [steer, gas, brake]."""
        z = self.world_model.encode(frame)[0]
        self.tracker.observe_frame(z, frame)
        action = self.controller(self.tracker.obs()[0]).numpy()
        # steer only (see the class doc); AR(1) with stationary std noise_std (rho = 0: white noise)
        self._noise = self.noise_rho * self._noise + self._innovation_std * self.rng.standard_normal()
        action[0] += self._noise
        excursion = self._excursion() if self._stand_left <= 0 and not self._braking else None
        stop = self._stop(frame) if excursion is None and self._gas_left <= 0 and self._pulses_left <= 0 else None
        pulse = self._pedal_pulse() if excursion is None and stop is None and self._gas_left <= 0 else None
        if excursion is not None:
            action = excursion
        elif stop is not None:
            action = stop
        elif pulse is not None:
            action[1], action[2] = pulse
        elif self._gas_held():
            action[1], action[2] = self._gas, 0.0
        action = np.clip(action, ACTION_LOW, ACTION_HIGH).astype(np.float32)
        self.tracker.advance(action)
        return action


@dataclass(frozen=True)
class ControllerPolicyFactory:
    """Builds :class:`ControllerPolicy` in a worker from checkpoint bytes (picklable, any machine).

    Attributes:
        files: V, M and C (C required).
        noise_std: action noise standard deviation.
        name: recorded as the episodes' ``policy``.
        excursion_prob: per-step probability of a random excursion (see :class:`ControllerPolicy`).
        noise_corr_steps: correlation time of the steering noise in steps (0 = white; see :class:`ControllerPolicy`).
        gas_hold_prob: per-step probability of a gas hold (see :class:`ControllerPolicy`).
        stop_prob: per-step probability of a stop (see :class:`ControllerPolicy`).
        pedal_pulse_prob: per-step probability of pedal pulses (see :class:`ControllerPolicy`).
    """

    files: WorldModelFiles
    noise_std: float = 0.1
    name: str = "controller"
    excursion_prob: float = 0.0
    noise_corr_steps: float = 0.0
    gas_hold_prob: float = 0.0
    stop_prob: float = 0.0
    pedal_pulse_prob: float = 0.0

    def make(self) -> ControllerPolicy:
        return ControllerPolicy(
            self.files.load(), self.noise_std, self.excursion_prob, self.noise_corr_steps, self.gas_hold_prob,
            self.stop_prob, self.pedal_pulse_prob,
        )  # fmt: skip
