"""The MDN-RNN's sizes and loss weights (:class:`core.models.mdnrnn.MDNRNN`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from core.errors import ConfigError
from core.models.speed import SpeedModel


@dataclass(frozen=True)
class MDNRNNConfig:
    """Sizes and loss weights of the MDN-RNN."""

    z_dim: int = 32
    """Latent size of the vision model."""
    action_dim: int = 3
    """Action size (CarRacing: steer, gas, brake)."""
    hidden_dim: int = 256
    """LSTM state size (Ha: 256)."""
    n_gaussians: int = 5
    """Mixture components per latent dimension (Ha: 5)."""
    reward_weight: float = 1.0
    """Weight of the reward MSE in the loss."""
    done_weight: float = 1.0
    """Weight of the done BCE in the loss."""
    speed_weight: float = 0.0
    """> 0 adds a speed head: h_{t+1} -> the car's speed at t+1 (from the HUD the frames crop away), fitted by MSE
    in units of SPEED_SCALE with this weight. The LSTM must then carry the speed and integrate the pedal into it,
    which frames alone (one z per step) leave to chance; the dream's reward and motion can read it. 0: no head
    (every M before it)."""
    speed_input: bool = False
    """The LSTM also reads the car's speed s_t (speed / SPEED_SCALE) beside z_t and a_t, and the speed head
    predicts the change s_{t+1} - s_t: reality feeds the HUD's speed, the dream its own running sum (needs
    ``speed_weight`` > 0). The pedal then acts on an explicit speed that the reward and the motion can read."""
    speed_model: SpeedModel = "lstm"
    """What the speed head reads. "lstm": h_{t+1}, a linear head (every M before it). "markov": only the present,
    s_{t+1} - s_t = f(a_t, s_t, W z_t), an MLP (width MARKOV_WIDTH) of the action, the speed and MARKOV_Z_DIMS
    learned linear read-outs W z_t of the frame (the surface under the car and the bend ahead, which slow it): a
    first-order model of the car's longitudinal dynamics, as a physics engine steps it, whose answer to a pedal
    cannot depend on the history a controller leads the LSTM through (a pattern of pulses is priced as the sum of
    its steps). Needs ``speed_input``."""
    yaw_input: bool = False
    """The car's yaw rate (rad/s, counter-clockwise positive, from the HUD's gyroscope bar) joins the car state:
    the LSTM reads yaw_t / YAW_SCALE beside s_t, and the Markov model steps both, c_{t+1} - c_t = f(a_t, c_t, W z_t)
    with c = [s, yaw], fitted on the HUD's readings with ``speed_weight``. The wheel then turns an explicit yaw
    rate, integrated as a physics engine integrates it, which the LSTM reads to rotate the road (frames alone leave
    the LSTM to infer the turning from the road's motion, and a dream then turns less than reality for the same
    wheel). Needs ``speed_model`` "markov"."""
    residual: bool = True
    """Component means are predicted as offsets from z_t (mu_k = z_t + head output), so "no change" is the
    default and the LSTM learns the motion; False gives Ha's absolute means."""
    joint: bool = False
    """One mixture over the whole latent vector: K components, each a diagonal Gaussian over all z_dim dimensions,
    with one set of weights pi_k (Bishop, 1994, eq. 22 with a diagonal covariance; the form of ctallec's PyTorch
    port). False: Ha's independent mixture per dimension, where a dream picks each dimension's component on its
    own, so at a fork of the road (left or right) it can draw half of one future and half of the other; a joint
    mixture picks one future for the whole z."""

    def __post_init__(self) -> None:
        for name in ("z_dim", "action_dim", "hidden_dim", "n_gaussians"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.reward_weight < 0 or self.done_weight < 0 or self.speed_weight < 0:
            raise ConfigError("reward_weight, done_weight and speed_weight must be >= 0")
        if self.speed_input and self.speed_weight <= 0:
            raise ConfigError("speed_input needs a speed head (speed_weight > 0): the dream integrates its output")
        if self.speed_model not in get_args(SpeedModel):
            raise ConfigError(f"speed_model must be one of {get_args(SpeedModel)}, got {self.speed_model!r}")
        if self.speed_model == "markov" and not self.speed_input:
            raise ConfigError("speed_model 'markov' steps the speed from (z_t, a_t, s_t): it needs speed_input")
        if self.yaw_input and self.speed_model != "markov":
            raise ConfigError("yaw_input steps the yaw rate with the Markov car model: it needs speed_model 'markov'")
