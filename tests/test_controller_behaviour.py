"""scripts/controller_behaviour.py: dreams that branch off a controller's own real episode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.envs.world_model import WorldModel
from tests.test_dream_fidelity import _script


def test_dreams_branch_from_reality_own_state(tiny_world_model: dict[str, Path], one_torch_thread: None) -> None:
    behaviour = _script("controller_behaviour")
    p = tiny_world_model
    wm = WorldModel.load(p["vision"], p["memory"], p["controller"], warn=False)
    real = behaviour.in_reality(wm, True, track=3, steps=30, block=30)
    states, actions, rewards, speeds = real
    assert len(states) == len(actions) == len(rewards) == len(speeds) == 30
    out = behaviour.branches(wm, 3, real, [0, 12, 25], dreams=3, steps=10, tau=0.0)
    assert [b["step"] for b in out] == [0, 12]  # 25 + 10 steps would run past the 30 real ones
    for b in out:
        k = b["step"]
        assert b["real_return"] == pytest.approx(sum(rewards[k : k + 10]))
        assert b["dream_actions"].shape == (10, 3, 3) and len(b["dream_speeds"]) == len(b["real_speeds"]) == 11
        # the dreams start from reality's own z and h there: the controller's first action is reality's
        np.testing.assert_allclose(b["dream_actions"][0], np.repeat(actions[k][None], 3, axis=0), atol=1e-5)
        assert np.all(b["dream_returns"] == b["dream_returns"][0])  # tau 0: the dreams are one and the same
    # a branch later in the episode starts from M's state after the real prefix, not from M's zero state
    assert not np.allclose(out[0]["dream_actions"][1], out[1]["dream_actions"][1])
