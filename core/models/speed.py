"""The car's state in an MDN-RNN: its speed and yaw rate, their units, and the heads that step them
(``core.models.mdnrnn.MDNRNNConfig.speed_model`` and ``yaw_input``)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

SPEED_SCALE = 100.0
"""The speed head predicts speed / SPEED_SCALE (world units per second; CarRacing's agents drive at 40-80)."""
SPEED_MAX = 100.0
"""The dream's speed is clamped to [0, SPEED_MAX] world units per second: CarRacing's car cannot go faster (Box2D
moves a body at most 2 world units a step, b2_maxTranslation, at 50 steps a second; full gas from the start reaches
100.0 and stays there on 4 of 5 tracks), so a dream of a held pedal cannot run away."""
YAW_SCALE = 5.0
"""The LSTM reads, and the Markov model steps, yaw rate / YAW_SCALE (rad/s; driving a bend takes 0.5-2, a spin on
the grass up to the HUD's limit of about 11)."""
YAW_MAX = 15.0
"""The dream's yaw rate is clamped to +-YAW_MAX rad/s (beyond any the HUD shows), so a model stepped far from its
data cannot run away."""
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


def required_yaw(yaw: Tensor | None) -> Tensor:
    """``yaw`` for an M that reads the yaw rate. Raises ValueError when it is None."""
    if yaw is None:
        raise ValueError(
            "this MDN-RNN reads the car's yaw rate (yaw_input): give the yaw rate of each input frame (latent files"
            " written before encode read it: scripts/add_yaw_rates.py)"
        )
    return yaw


def masked_mse(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the steps where ``mask`` (same shape, 1 = a real step) is set."""
    return ((predicted - target).pow(2) * mask).sum() / mask.sum().clamp(min=1.0)


def part_mses(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """:func:`masked_mse` of each part of car states ``predicted`` and ``target`` (..., n_state) over the steps of
    ``mask`` (...): float32 (n_state,), in the state's units (:func:`car_state`)."""
    return torch.stack([masked_mse(predicted[..., i], target[..., i], mask) for i in range(predicted.shape[-1])])


def car_state(speed: Tensor, yaw: Tensor | None) -> Tensor:
    """The car state c_t the Markov model steps: float32 (..., 1) ``[s / SPEED_SCALE]``, or (..., 2)
    ``[s / SPEED_SCALE, yaw / YAW_SCALE]`` with a yaw rate; ``speed`` and ``yaw`` (...) in world units."""
    s = speed.unsqueeze(-1) / SPEED_SCALE
    return s if yaw is None else torch.cat([s, yaw.unsqueeze(-1) / YAW_SCALE], dim=-1)


class MarkovSpeed(nn.Module):
    """The Markov car model of ``MDNRNNConfig.speed_model``: (z_t, a_t, c_t) -> c_{t+1} - c_t for the car state c
    of :func:`car_state` (the speed, and with ``yaw`` the yaw rate), an MLP over ``[a_t, c_t, W z_t]`` with W
    (MARKOV_Z_DIMS, z_dim): a first-order model of the car's dynamics, as a physics engine steps them."""

    low: Tensor
    high: Tensor

    def __init__(self, z_dim: int, action_dim: int, yaw: bool = False) -> None:
        super().__init__()
        width, n = MARKOV_WIDTH, 1 + int(yaw)
        self.n_state = n
        self.read_z = nn.Linear(z_dim, MARKOV_Z_DIMS, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(action_dim + n + MARKOV_Z_DIMS, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
            nn.Linear(width, n),
        )  # fmt: skip
        # the state's range: 0 <= speed <= SPEED_MAX, |yaw rate| <= YAW_MAX (not saved: a function of the sizes)
        self.register_buffer("low", torch.tensor([0.0, -YAW_MAX / YAW_SCALE][:n]), persistent=False)
        self.register_buffer("high", torch.tensor([SPEED_MAX / SPEED_SCALE, YAW_MAX / YAW_SCALE][:n]), persistent=False)

    def forward(self, z: Tensor, action: Tensor, car: Tensor) -> Tensor:
        """z (..., z_dim), action (..., action_dim), car (..., n_state) -> the change of c (..., n_state)."""
        return self._change(action, car, self.read_z(z))

    def _change(self, action: Tensor, car: Tensor, read: Tensor) -> Tensor:
        """The MLP on ``[a_t, c_t, W z_t]`` given the read-outs ``read`` (..., MARKOV_Z_DIMS)."""
        return self.mlp(torch.cat([action, car, read], dim=-1))

    def clamp(self, car: Tensor) -> Tensor:
        """``car`` (..., n_state) clamped to the state's range (0 <= speed <= SPEED_MAX, |yaw rate| <= YAW_MAX)."""
        return torch.maximum(torch.minimum(car, self.high), self.low)

    def rollout(self, z: Tensor, action: Tensor, car0: Tensor) -> Tensor:
        """The car state stepped by this model alone along given frames and actions, as the dream steps it
        (c_{t+1} = clamp(c_t + f(z_t, a_t, c_t))).

        Args:
            z: float32 (B, T, z_dim) z_0..z_{T-1}; action: float32 (B, T, action_dim) a_0..a_{T-1}.
            car0: float32 (B, n_state) the state c_0 (:func:`car_state`).

        Returns:
            float32 (B, T, n_state): c_1..c_T, differentiable through every step.
        """
        read = self.read_z(z)  # (B, T, MARKOV_Z_DIMS), once for all steps
        car, out = car0, []
        for t in range(action.shape[1]):
            car = self.clamp(car + self._change(action[:, t], car, read[:, t]))
            out.append(car)
        return torch.stack(out, dim=1)

    def rollout_mse(self, z: Tensor, action: Tensor, car0: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
        """Masked MSE of :meth:`rollout` against the real states ``target`` (B, T, n_state), summed over the
        state's parts; ``mask`` (B, T) marks real steps (None: all)."""
        rolled = self.rollout(z, action, car0)
        return part_mses(rolled, target, torch.ones_like(rolled[..., 0]) if mask is None else mask).sum()


def speed_head(
    model: SpeedModel, weight: float, z_dim: int, action_dim: int, hidden_dim: int, yaw: bool = False
) -> nn.Module | None:
    """The speed head an MDN-RNN's config asks for (``MDNRNNConfig.speed_model``, ``speed_weight`` and
    ``yaw_input``): None without a weight, :class:`MarkovSpeed` for "markov", a linear head on h for "lstm"."""
    if weight <= 0:
        return None
    if model == "markov":
        return MarkovSpeed(z_dim, action_dim, yaw)
    return nn.Linear(hidden_dim, 1)
