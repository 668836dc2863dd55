"""The car's speed in an MDN-RNN: its units and the speed heads (``core.models.mdnrnn.MDNRNNConfig.speed_model``)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

SPEED_SCALE = 100.0
"""The speed head predicts speed / SPEED_SCALE (world units per second; CarRacing's agents drive at 40-80)."""
SpeedModel = Literal["lstm", "markov"]
MARKOV_WIDTH = 64
"""Hidden width of the Markov speed model's MLP (``MDNRNNConfig.speed_model``)."""
MARKOV_Z_DIMS = 2
"""How many linear read-outs of z_t the Markov speed model sees (what the frame says of grass and bends)."""


def required_speed(speed: Tensor | None) -> Tensor:
    """``speed`` for an M that reads the speed. Raises ValueError when it is None."""
    if speed is None:
        raise ValueError("this MDN-RNN reads the car's speed (speed_input): give the speed of each input frame")
    return speed


class MarkovSpeed(nn.Module):
    """The Markov speed model of ``MDNRNNConfig.speed_model``: (z_t, a_t, s_t / SPEED_SCALE) -> the change of
    s / SPEED_SCALE over the step, an MLP over ``[a_t, s_t / SPEED_SCALE, W z_t]`` with W (MARKOV_Z_DIMS, z_dim)."""

    def __init__(self, z_dim: int, action_dim: int) -> None:
        super().__init__()
        width = MARKOV_WIDTH
        self.read_z = nn.Linear(z_dim, MARKOV_Z_DIMS, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(action_dim + 1 + MARKOV_Z_DIMS, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
            nn.Linear(width, 1),
        )  # fmt: skip

    def forward(self, z: Tensor, action: Tensor, s: Tensor) -> Tensor:
        """z (..., z_dim), action (..., action_dim), s (...) in SPEED_SCALE units -> the change (...)."""
        return self._change(action, s, self.read_z(z))

    def _change(self, action: Tensor, s: Tensor, read: Tensor) -> Tensor:
        """The MLP on ``[a_t, s_t, W z_t]`` given the read-outs ``read`` (..., MARKOV_Z_DIMS): the change (...)."""
        return self.mlp(torch.cat([action, s.unsqueeze(-1), read], dim=-1)).squeeze(-1)

    def rollout(self, z: Tensor, action: Tensor, s0: Tensor) -> Tensor:
        """The speed stepped by this model alone along given frames and actions, as the dream steps it
        (s_{t+1} = max(s_t + f(z_t, a_t, s_t), 0)).

        Args:
            z: float32 (B, T, z_dim) z_0..z_{T-1}; action: float32 (B, T, action_dim) a_0..a_{T-1}.
            s0: float32 (B,) the speed s_0 in SPEED_SCALE units.

        Returns:
            float32 (B, T): s_1..s_T in SPEED_SCALE units, differentiable through every step.
        """
        read = self.read_z(z)  # (B, T, MARKOV_Z_DIMS), once for all steps
        s, out = s0, []
        for t in range(action.shape[1]):
            s = (s + self._change(action[:, t], s, read[:, t])).clamp(min=0.0)
            out.append(s)
        return torch.stack(out, dim=1)


def speed_head(model: SpeedModel, weight: float, z_dim: int, action_dim: int, hidden_dim: int) -> nn.Module | None:
    """The speed head an MDN-RNN's config asks for (``MDNRNNConfig.speed_model`` and ``speed_weight``): None
    without a weight, :class:`MarkovSpeed` for "markov", a linear head on h for "lstm"."""
    if weight <= 0:
        return None
    if model == "markov":
        return MarkovSpeed(z_dim, action_dim)
    return nn.Linear(hidden_dim, 1)
