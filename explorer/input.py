"""Keyboard and gamepad -> CarRacing action ``[steer in -1..1, gas 0..1, brake 0..1]``.

The targets are those of Gymnasium's ``car_racing.py`` keyboard demo (left/right -> steer -1/+1, up -> gas 1,
down -> brake 0.8, "1.0 blocks the wheels"); instead of jumping to them, steering and gas ramp towards them a
little every step and steering recentres when released, so a tap of a key gives a small correction and the car
does not spin out at the first touch. The mapping is pure (no GUI, no clock: rates are per env step, 50 Hz), so it
is tested without a window. :class:`Gamepad` reads the first joystick through pygame when one is present.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

BRAKE_FORCE = 0.8
"""Brake of a held key, as in Gymnasium's demo (1.0 locks the wheels)."""


@dataclass(frozen=True)
class DriveKeys:
    """Which driving keys are held (arrows or WASD)."""

    left: bool = False
    right: bool = False
    gas: bool = False
    brake: bool = False

    @property
    def any(self) -> bool:
        """A driving key is held (this takes the wheel from the autopilot)."""
        return self.left or self.right or self.gas or self.brake


@dataclass(frozen=True)
class Ramp:
    """How fast the keyboard action follows its target, in action units per env step."""

    steer: float = 0.12
    """Steering towards a held direction (full lock after ~8 steps, 0.16 s)."""
    steer_return: float = 0.25
    """Steering back to the centre when no direction is held (or against the current one)."""
    gas: float = 0.08
    """Gas rising while held (full gas after ~12 steps); released gas drops at ``gas_release``."""
    gas_release: float = 0.35
    """Gas falling when released."""


def target_action(keys: DriveKeys) -> np.ndarray:
    """The action Gymnasium's keyboard demo would send for ``keys``: float32 (3,) [steer, gas, brake]."""
    steer = float(keys.right) - float(keys.left)
    return np.array([steer, 1.0 if keys.gas else 0.0, BRAKE_FORCE if keys.brake else 0.0], np.float32)


def _approach(value: float, target: float, rate: float) -> float:
    return min(target, value + rate) if target > value else max(target, value - rate)


def smooth_action(previous: np.ndarray, keys: DriveKeys, ramp: Ramp = Ramp()) -> np.ndarray:
    """One step of the smoothed keyboard action.

    Args:
        previous: the last action, float32 (3,).
        keys: the keys held now.
        ramp: per-step rates.

    Returns:
        float32 (3,): steer moves towards the target at ``ramp.steer`` (at ``ramp.steer_return`` when going back
        towards the centre), gas rises at ``ramp.gas`` and falls at ``ramp.gas_release``, brake follows at once.
    """
    target = target_action(keys)
    steer, gas = float(previous[0]), float(previous[1])
    toward_centre = abs(target[0]) < abs(steer) or target[0] * steer < 0
    steer = _approach(steer, float(target[0]), ramp.steer_return if toward_centre else ramp.steer)
    gas = _approach(gas, float(target[1]), ramp.gas if target[1] > gas else ramp.gas_release)
    return np.array([steer, gas, target[2]], np.float32)


def gamepad_action(axes: list[float], buttons: list[bool], deadzone: float = 0.15) -> np.ndarray | None:
    """Map a gamepad (SDL's standard layout) to an action, or None when the pad is at rest.

    Left stick X steers; the right trigger (axis 5) or button A (0) gives gas; the left trigger (axis 4) or
    button B (1) brakes. SDL reports triggers in -1 (released) .. 1 (pressed); pads without trigger axes use the
    buttons alone.

    Args:
        axes: axis values in [-1, 1].
        buttons: button states.
        deadzone: stick and trigger values below this are zero.

    Returns:
        float32 (3,) action, or None when nothing is pressed (the keyboard or the autopilot keep the wheel).
    """

    def trigger(i: int) -> float:
        if len(axes) <= i:
            return 0.0
        v = (float(axes[i]) + 1.0) / 2.0
        return v if v > deadzone else 0.0

    def button(i: int) -> float:
        return 1.0 if len(buttons) > i and buttons[i] else 0.0

    steer = float(axes[0]) if axes else 0.0
    steer = 0.0 if abs(steer) < deadzone else float(np.clip(steer, -1.0, 1.0))
    gas = max(trigger(5), button(0))
    brake = max(trigger(4), BRAKE_FORCE * button(1))
    if steer == 0.0 and gas == 0.0 and brake == 0.0:
        return None
    return np.array([steer, gas, brake], np.float32)


class HumanInput:
    """The human driver's action: the gamepad when it is touched, else the smoothed keyboard."""

    def __init__(self, ramp: Ramp = Ramp()) -> None:
        self.ramp = ramp
        self.action = np.zeros(3, np.float32)

    def reset(self) -> None:
        """Release everything (a new episode starts)."""
        self.action = np.zeros(3, np.float32)

    def step(self, keys: DriveKeys, pad: np.ndarray | None = None) -> np.ndarray:
        """Advance one env step and return the action, float32 (3,)."""
        self.action = pad.astype(np.float32) if pad is not None else smooth_action(self.action, keys, self.ramp)
        return self.action.copy()


class Gamepad:
    """The first joystick, read through pygame with SDL's dummy video driver; inert without pygame or a pad.

    pygame does not open a window here (``SDL_VIDEODRIVER=dummy``); its event pump only refreshes joystick state.
    Pads plugged in later are picked up from SDL's device events.
    """

    def __init__(self) -> None:
        self._pygame = None
        self._joystick = None
        try:
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
            import pygame

            pygame.display.init()
            pygame.joystick.init()
            self._pygame = pygame
            self._open()
        except Exception:  # no SDL, no joystick subsystem: the keyboard still drives
            self._pygame = None

    def _open(self) -> None:
        pg = self._pygame
        self._joystick = pg.joystick.Joystick(0) if pg is not None and pg.joystick.get_count() > 0 else None

    @property
    def name(self) -> str | None:
        """The pad's name, or None when there is none."""
        return self._joystick.get_name() if self._joystick is not None else None

    def read(self) -> np.ndarray | None:
        """Pump SDL events and return the pad's action (see :func:`gamepad_action`), or None."""
        pg = self._pygame
        if pg is None:
            return None
        if pg.event.get((pg.JOYDEVICEADDED, pg.JOYDEVICEREMOVED)):
            self._open()
        pg.event.pump()
        js = self._joystick
        if js is None:
            return None
        axes = [js.get_axis(i) for i in range(js.get_numaxes())]
        buttons = [bool(js.get_button(i)) for i in range(js.get_numbuttons())]
        return gamepad_action(axes, buttons)
