"""Keyboard and gamepad mapping of the explorer, without a window."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.input import BRAKE_FORCE, DriveKeys, HumanInput, Ramp, gamepad_action, smooth_action, target_action


def test_targets_are_those_of_gymnasiums_keyboard_demo() -> None:
    assert target_action(DriveKeys()).tolist() == [0, 0, 0]
    assert target_action(DriveKeys(left=True, gas=True)).tolist() == [-1, 1, 0]
    assert target_action(DriveKeys(right=True, brake=True)).tolist() == pytest.approx([1, 0, BRAKE_FORCE])
    assert target_action(DriveKeys(left=True, right=True)).tolist() == [0, 0, 0]
    assert DriveKeys(brake=True).any and not DriveKeys().any


def test_steering_ramps_to_full_lock_and_recentres_faster() -> None:
    ramp = Ramp()
    action = np.zeros(3, np.float32)
    steps = 0
    while action[0] > -1.0:
        action = smooth_action(action, DriveKeys(left=True), ramp)
        steps += 1
        assert -1.0 <= action[0] <= 0.0
    assert steps == int(np.ceil(1.0 / ramp.steer - 1e-9))
    back = 0
    while action[0] < 0.0:
        action = smooth_action(action, DriveKeys(), ramp)
        back += 1
    assert back < steps and action[0] == 0.0


def test_reversing_the_wheel_goes_through_the_centre_at_the_return_rate() -> None:
    action = np.array([0.6, 0, 0], np.float32)
    action = smooth_action(action, DriveKeys(left=True))
    assert action[0] == pytest.approx(0.6 - Ramp().steer_return)


def test_gas_rises_gradually_and_drops_fast_brake_is_immediate() -> None:
    action = np.zeros(3, np.float32)
    action = smooth_action(action, DriveKeys(gas=True))
    assert 0 < action[1] < 0.2
    for _ in range(20):
        action = smooth_action(action, DriveKeys(gas=True))
    assert action[1] == 1.0
    action = smooth_action(action, DriveKeys(brake=True))
    assert action[1] == pytest.approx(1.0 - Ramp().gas_release) and action[2] == BRAKE_FORCE


def test_gamepad_mapping_deadzone_triggers_and_buttons() -> None:
    rest = [0.05, 0.0, 0.0, 0.0, -1.0, -1.0]
    assert gamepad_action(rest, [False] * 4) is None
    assert gamepad_action([], []) is None
    steer_left = gamepad_action([-0.5, 0, 0, 0, -1, -1], [False] * 4)
    assert steer_left is not None and steer_left.tolist() == [-0.5, 0, 0]
    triggers = gamepad_action([0, 0, 0, 0, 0.0, 1.0], [False] * 4)
    assert triggers is not None and triggers.tolist() == pytest.approx([0, 1.0, 0.5])
    buttons = gamepad_action([0.0, 0.0], [True, True])  # a pad without trigger axes
    assert buttons is not None and buttons.tolist() == pytest.approx([0, 1.0, BRAKE_FORCE])


def test_human_input_prefers_a_touched_gamepad() -> None:
    human = HumanInput()
    pad = np.array([0.3, 0.7, 0.0], np.float32)
    assert human.step(DriveKeys(left=True), pad).tolist() == pytest.approx(pad.tolist())
    keyboard = human.step(DriveKeys(left=True))
    assert keyboard[0] == pytest.approx(0.3 - Ramp().steer_return)  # back towards the keys' target from the pad's
    human.reset()
    assert human.action.tolist() == [0, 0, 0]
