"""Ha's linear controller: ``a = W [z, h] + b`` (Ha & Schmidhuber, 2018, sec. 2.3), 867 parameters at 32+256 -> 3."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from core.errors import ConfigError


@dataclass(frozen=True)
class ControllerConfig:
    """Input and output sizes of the linear controller."""

    z_dim: int = 32
    """Latent size."""
    hidden_dim: int = 256
    """MDN-RNN hidden size; 0 gives the V-only controller (z alone)."""
    action_dim: int = 3
    """CarRacing: steer, gas, brake."""

    def __post_init__(self) -> None:
        if self.z_dim < 1 or self.hidden_dim < 0 or self.action_dim != 3:
            raise ConfigError("controller needs z_dim >= 1, hidden_dim >= 0 and action_dim == 3")

    @property
    def input_dim(self) -> int:
        return self.z_dim + self.hidden_dim


def squash_actions(raw: Tensor) -> Tensor:
    """Map raw outputs (..., 3) to CarRacing actions: steer ``tanh`` in [-1, 1],
    gas ``(tanh + 1) / 2`` in [0, 1], brake ``clip(tanh, 0, 1)`` in [0, 1] (Ha's CarRacing controller)."""
    t = torch.tanh(raw)
    return torch.stack([t[..., 0], (t[..., 1] + 1.0) * 0.5, t[..., 2].clamp(min=0.0)], dim=-1)


class Controller(nn.Module):
    """One linear layer from ``[z, h]`` (z_dim + hidden_dim) to 3 squashed actions."""

    kind = "controller"

    def __init__(self, config: ControllerConfig | None = None) -> None:
        super().__init__()
        self.config = config or ControllerConfig()
        self.fc = nn.Linear(self.config.input_dim, self.config.action_dim)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, obs: Tensor) -> Tensor:
        """``obs`` float32 (..., z_dim + hidden_dim) -> actions float32 (..., 3) in the env's ranges."""
        return squash_actions(self.fc(obs))

    def act(self, obs: np.ndarray) -> np.ndarray:
        """NumPy convenience for one observation (input_dim,) -> action float32 (3,)."""
        with torch.no_grad():
            return self(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    def without_brake(self) -> Controller:
        """A copy whose brake is 0 for every input (its brake row's weights 0 and bias -5: ``clip(tanh(-5), 0, 1)``
        is 0); steering and gas unchanged. What the controller does without its brake (diagnostics), or a
        student written without the brake it learned from a teacher that brakes little (``distill-controller
        --no-brake``)."""
        copy = Controller(self.config)
        copy.load_state_dict(self.state_dict())
        with torch.no_grad():
            copy.fc.weight[2].zero_()
            copy.fc.bias[2] = -5.0
        return copy.train(self.training)

    def get_flat(self) -> np.ndarray:
        """All parameters as one float64 vector (weights row-major, then bias), as CMA-ES sees them."""
        return torch.cat([self.fc.weight.flatten(), self.fc.bias]).detach().double().numpy()

    def set_flat(self, flat: np.ndarray) -> None:
        """Load parameters from a vector made by :meth:`get_flat`.

        Raises:
            ValueError: wrong length.
        """
        if flat.shape != (self.n_params,):
            raise ValueError(f"expected {self.n_params} parameters, got shape {flat.shape}")
        w = self.fc.weight
        with torch.no_grad():
            w.copy_(torch.as_tensor(flat[: w.numel()], dtype=torch.float32).view_as(w))
            self.fc.bias.copy_(torch.as_tensor(flat[w.numel() :], dtype=torch.float32))


def batched_actions(weights: Tensor, biases: Tensor, obs: Tensor) -> Tensor:
    """Actions of many controllers at once (for CMA-ES in the dream).

    Args:
        weights: float32 (N, 3, input_dim); biases: float32 (N, 3); obs: float32 (N, input_dim).

    Returns:
        float32 (N, 3) squashed actions.
    """
    return squash_actions(torch.baddbmm(biases.unsqueeze(-1), weights, obs.unsqueeze(-1)).squeeze(-1))
