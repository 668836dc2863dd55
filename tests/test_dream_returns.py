"""scripts/dream_returns.py: controllers' returns on the same dreams, paired, with and without the penalty."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.data.datasets import LatentEpisodes
from core.models import Controller
from tests.controller_world import H, controller_checkpoint
from tests.test_dream_fidelity import _script

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_same_controller_pairs_to_zero_and_equal_members_cost_nothing(world: SimpleNamespace,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    script = _script("dream_returns")
    c = controller_checkpoint(world, tmp_path / "c.safetensors", H)
    base = ["--memory", str(world.memory), "--latents", str(world.latents), "--dreams", "6", "--max-steps", "12"]
    out = script.main([*base, "--controllers", str(c), str(c), "--penalty", "0"])
    assert out[0.0].shape == (2, 6) and np.array_equal(out[0.0][0], out[0.0][1])
    assert np.all(out[0.0] != 0)  # M's reward was summed
    # an ensemble of M with itself disagrees by 0: the penalty takes nothing off
    both = script.main([*base, "--dream-ensemble", str(world.memory), "--controllers", str(c), "--penalty", "0", "5"])
    np.testing.assert_allclose(both[5.0], both[0.0], atol=1e-5)
    released = script.main([*base, "--controllers", str(c), "--release-brake"])
    assert released[0.0].shape == (2, 6)
    original = _controller(c)
    brake = original.without_brake()
    with torch.no_grad():
        obs = torch.randn(4, brake.config.input_dim)
        assert float(brake(obs)[:, 2].abs().max()) == 0.0 and float(original(obs)[:, 2].max()) > 0.0
        assert torch.equal(brake(obs)[:, :2], original(obs)[:, :2])  # steering and gas as they were
    assert script.main([*base, "--controllers", str(c), "--at-rest"]) == 2  # these latents carry no speeds
    with pytest.raises(SystemExit):  # argparse's one-line error
        script.main([*base, "--controllers", str(c), "--penalty", "1"])  # a penalty needs an ensemble


def _controller(path: Path) -> Controller:
    from core.checkpoint import load_model

    c = load_model(path, "controller")
    assert isinstance(c, Controller)
    return c


def test_states_at_rest_are_where_the_car_stood_twenty_steps(world: SimpleNamespace) -> None:
    latents = LatentEpisodes.load(world.latents)
    speeds = np.full(len(latents.mu), 30.0, np.float32)
    first = latents.episode(0)  # 41 frames: at rest from frame 15 on
    speeds[15 : len(first["mu"])] = 0.0
    episodes, steps = _script("dream_returns").rest_states(dataclasses.replace(latents, speeds=speeds), step_min=10,
                                                           every=5, before=5)  # fmt: skip
    assert episodes.tolist() == [0, 0, 0, 0] and steps.tolist() == [20, 25, 30, 35]  # 15: 10 was moving; 40: last
