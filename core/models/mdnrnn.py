"""MDN-RNN (Ha & Schmidhuber, 2018, sec. 2.2 and app. A.2; Graves, 2013, sec. 4; Bishop, 1994).

An LSTM over ``[z_t, a_t]`` whose head gives a mixture of K Gaussians over ``z_{t+1}`` (for every latent dimension
independently, as Ha's; or one mixture over the whole vector, ``MDNRNNConfig.joint``), plus a reward head (``r_{t+1}``) and a done head (``terminated_{t+1}``, as Ha's
Doom model had). The same module trains on sequences (``forward``) and dreams one step at a time (``step``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.errors import ConfigError
from core.models.mdn import LOG_SIGMA_MAX, LOG_SIGMA_MIN, mdn_nll, sample_mdn_with_noise
from core.models.speed import SPEED_SCALE, MarkovSpeed, SpeedModel, required_speed, speed_head


def _masked_mse(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the steps where ``mask`` (same shape, 1 = a real step) is set."""
    return ((predicted - target).pow(2) * mask).sum() / mask.sum().clamp(min=1.0)


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


class MDNOutput(NamedTuple):
    """Head outputs; leading dims ``...`` are (B, T) for sequences and (B,) for one step.

    log_pi: float32 (..., z_dim, K) log mixture weights (log-softmax over K); with a joint mixture the same K
        weights are repeated along z_dim.
    mu: float32 (..., z_dim, K) component means of z_{t+1}.
    log_sigma: float32 (..., z_dim, K) component log standard deviations.
    reward: float32 (...) predicted reward r_{t+1} (CarRacing units: -0.1 per frame, +1000/N per tile).
    done_logit: float32 (...) logit of P(terminated_{t+1}).
    """

    log_pi: Tensor
    mu: Tensor
    log_sigma: Tensor
    reward: Tensor
    done_logit: Tensor


LSTMState = tuple[Tensor, Tensor]


class MDNRNN(nn.Module):
    """LSTM(z_dim + action_dim -> hidden_dim) + MDN head (z_{t+1}) + reward head + done head."""

    kind = "mdnrnn"

    def __init__(self, config: MDNRNNConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or MDNRNNConfig()
        self.lstm = nn.LSTM(cfg.z_dim + cfg.action_dim + int(cfg.speed_input), cfg.hidden_dim, batch_first=True)
        self.n_mdn = cfg.z_dim * cfg.n_gaussians
        self.n_logits = cfg.n_gaussians if cfg.joint else self.n_mdn
        # head rows: mixture logits (K joint, z_dim * K per dimension), then mu and log_sigma (z_dim * K each),
        # then the reward and the done logit
        self.head = nn.Linear(cfg.hidden_dim, self.n_logits + 2 * self.n_mdn + 2)
        self.speed_head = speed_head(cfg.speed_model, cfg.speed_weight, cfg.z_dim, cfg.action_dim, cfg.hidden_dim)

    @torch.no_grad()
    def init_head_priors(self, reward_mean: float, done_rate: float) -> None:
        """Set the reward head's bias to ``reward_mean`` and the done head's to ``logit(done_rate)``.

        The prior-probability bias init of Lin et al. (2017, "Focal Loss for Dense Object Detection", sec. 4.1)
        for a rare positive class: a state that carries little information (the zero LSTM state at a dream's
        first step) then predicts the base rates, not P(done) = 0.5.

        Args:
            reward_mean: mean per-step reward of the training data (CarRacing units).
            done_rate: share of steps that terminate, clipped to [1e-4, 0.5].
        """
        p = min(max(float(done_rate), 1e-4), 0.5)
        self.head.bias[-2] = float(reward_mean)
        self.head.bias[-1] = math.log(p / (1.0 - p))

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> LSTMState:
        """Zero LSTM state ``(h, c)``, each float32 (1, batch, hidden_dim)."""
        shape = (1, batch, self.config.hidden_dim)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def heads(self, h: Tensor, z: Tensor) -> MDNOutput:
        """Head outputs from LSTM outputs ``h`` (..., hidden_dim) and the inputs' latents ``z`` (..., z_dim)."""
        cfg = self.config
        y = self.head(h)
        lead = y.shape[:-1]
        d, k, n = cfg.z_dim, cfg.n_gaussians, self.n_logits
        logits = y[..., :n].reshape(*lead, -1, k)  # (..., z_dim or 1, K)
        log_pi = F.log_softmax(logits, dim=-1).expand(*lead, d, k)
        mdn = y[..., n : n + 2 * self.n_mdn].reshape(*lead, 2, d, k)
        mu = mdn[..., 0, :, :]
        if cfg.residual:
            mu = mu + z.unsqueeze(-1)
        log_sigma = mdn[..., 1, :, :].clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)
        return MDNOutput(log_pi, mu, log_sigma, y[..., -2], y[..., -1])

    def _inputs(self, z: Tensor, action: Tensor, speed: Tensor | None) -> Tensor:
        """The LSTM's input ``[z, a]``, or ``[z, a, s / SPEED_SCALE]`` for an M with ``speed_input``.

        Raises:
            ValueError: the M reads the speed and ``speed`` is None.
        """
        if not self.config.speed_input:
            return torch.cat([z, action], dim=-1)
        return torch.cat([z, action, required_speed(speed).unsqueeze(-1) / SPEED_SCALE], dim=-1)

    def _speed_raw(
        self, h: Tensor, speed: Tensor | None, action: Tensor | None = None, z: Tensor | None = None
    ) -> Tensor:
        """The speed head's unclamped prediction of s_{t+1} / SPEED_SCALE from h_{t+1} (and s_t with
        ``speed_input``, whose head predicts the change; the Markov model reads z_t, a_t and s_t instead of h).

        Raises:
            ValueError: the head needs ``speed``, ``action`` or ``z`` and it is None.
        """
        assert self.speed_head is not None
        if self.config.speed_model == "markov":
            if action is None or z is None:
                raise ValueError("this MDN-RNN's speed model steps from the frame and the action: give z_t and a_t")
            s = required_speed(speed) / SPEED_SCALE
            return self.speed_head(z, action, s) + s
        out = self.speed_head(h).squeeze(-1)
        return out + required_speed(speed) / SPEED_SCALE if self.config.speed_input else out

    def _next_speed(
        self, h: Tensor, speed: Tensor | None, action: Tensor | None = None, z: Tensor | None = None
    ) -> Tensor:
        """:meth:`speed` for an M known to have a speed head: world units per second, clamped at 0."""
        return (self._speed_raw(h, speed, action, z) * SPEED_SCALE).clamp(min=0.0)

    def speed(
        self, h: Tensor, speed: Tensor | None = None, action: Tensor | None = None, z: Tensor | None = None
    ) -> Tensor | None:
        """The car's speed predicted from LSTM outputs ``h`` (..., hidden_dim): float32 (...), world units per
        second, >= 0 (the head's output clamped: a speed is a length; training fits the head unclamped; see
        ``MDNRNNConfig.speed_weight``); None for an M without a speed head. An M with ``speed_input`` predicts the
        change from ``speed`` (...), the input speed of the step that gave ``h``; a Markov speed model
        (``MDNRNNConfig.speed_model``) predicts it from ``speed``, that step's ``action`` a_t (..., action_dim) and
        latent ``z`` z_t (..., z_dim), and ignores ``h``.

        Raises:
            ValueError: ``speed_input`` and no ``speed``; a Markov speed model and no ``action`` or ``z``.
        """
        return None if self.speed_head is None else self._next_speed(h, speed, action, z)

    def _speed_mse(
        self,
        h: Tensor,
        batch: dict[str, Tensor],
        sl: slice,
        mask: Tensor,
        speed_in: Tensor | None = None,
        z_in: Tensor | None = None,
    ) -> Tensor | None:
        """Masked MSE of the speed head on LSTM outputs ``h`` (B, T', hidden) against ``batch["speed"][:, sl]``,
        in SPEED_SCALE units; None without a head. ``speed_in`` (B, T'): the input speeds (``speed_input``);
        default ``batch["speed_in"][:, sl]``. ``z_in`` (B, T', z_dim): the input latents (a Markov speed model's);
        default ``batch["z"][:, sl]``.

        Raises:
            ValueError: the model has a speed head and the batch has no speeds.
        """
        if self.speed_head is None:
            return None
        if "speed" not in batch:
            raise ValueError("this MDN-RNN has a speed head but the latents have no speeds (run encode again)")
        if speed_in is None and self.config.speed_input:
            speed_in = batch["speed_in"][:, sl]
        z_in = batch["z"][:, :-1][:, sl] if z_in is None else z_in
        predicted = self._speed_raw(h, speed_in, batch["action"][:, sl], z_in)
        return _masked_mse(predicted, batch["speed"][:, sl] / SPEED_SCALE, mask)

    def speed_rollout_mse(self, batch: dict[str, Tensor]) -> Tensor:
        """Masked MSE (SPEED_SCALE units) of a Markov speed model stepped alone along a batch's real z and actions
        from each window's first real speed (:meth:`MarkovSpeed.rollout`) against the real speeds: the error the
        dream sums over many steps, which a one-step fit leaves free (a bias of 0.1 units/s per step is 20 after
        200 steps). Multi-step prediction objective as in Hafner et al., 2019, "PlaNet", sec. 4.

        Args:
            batch: as :meth:`loss`, with ``speed`` and ``speed_in``.

        Raises:
            ValueError: the model has no Markov speed model, or the batch no speeds.
        """
        if not isinstance(self.speed_head, MarkovSpeed):
            raise ValueError("the speed rollout loss steps a Markov speed model: this MDN-RNN has none")
        if "speed" not in batch or "speed_in" not in batch:
            raise ValueError("the speed rollout loss needs the latents' speeds (run encode again)")
        rolled = self.speed_head.rollout(batch["z"][:, :-1], batch["action"], batch["speed_in"][:, 0] / SPEED_SCALE)
        mask = batch.get("mask")
        return _masked_mse(rolled, batch["speed"] / SPEED_SCALE, torch.ones_like(rolled) if mask is None else mask)

    def forward(
        self, z: Tensor, action: Tensor, state: LSTMState | None = None, speed: Tensor | None = None
    ) -> tuple[MDNOutput, LSTMState]:
        """Run over sequences.

        Args:
            z: float32 (B, T, z_dim) latents z_0..z_{T-1}.
            action: float32 (B, T, action_dim) actions a_0..a_{T-1}.
            state: optional LSTM state, each (1, B, hidden_dim).
            speed: float32 (B, T) speeds s_0..s_{T-1} (world units per second), needed with ``speed_input``.

        Returns:
            ``(out, state)``; ``out`` fields are (B, T, ...) predictions for step t+1.
        """
        out, new_state = self.lstm(self._inputs(z, action, speed), state)
        return self.heads(out, z), new_state

    def hidden_sequence(
        self, z: Tensor, action: Tensor, state: LSTMState | None = None, speed: Tensor | None = None
    ) -> Tensor:
        """LSTM outputs h_1..h_T, float32 (B, T, hidden_dim), for the same inputs as :meth:`forward`."""
        return self.lstm(self._inputs(z, action, speed), state)[0]

    def state_after(self, z: Tensor, action: Tensor, lengths: Tensor, speed: Tensor | None = None) -> LSTMState:
        """LSTM state after each sequence's own prefix: sequence ``i`` is fed z_0..z_{L_i - 1} and
        a_0..a_{L_i - 1} from the zero state (what :meth:`step` would hold after ``L_i`` steps).

        Args:
            z: float32 (B, T, z_dim); action: float32 (B, T, action_dim), padded past each length.
            lengths: int64 (B,) prefix lengths in [0, T]; 0 gives the zero state.
            speed: float32 (B, T) input speeds, needed with ``speed_input``.

        Returns:
            ``(h, c)``, each float32 (1, B, hidden_dim).
        """
        h, c = self.initial_state(len(z), z.device)
        live = lengths > 0
        if bool(live.any()):
            x = self._inputs(z[live], action[live], None if speed is None else speed[live])
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths[live].cpu(), batch_first=True, enforce_sorted=False)
            _, (h_live, c_live) = self.lstm(packed)
            h[:, live], c[:, live] = h_live, c_live
        return h, c

    def step(
        self, z: Tensor, action: Tensor, state: LSTMState | None, speed: Tensor | None = None
    ) -> tuple[MDNOutput, LSTMState]:
        """One dream step with the same weights as :meth:`forward`.

        Args:
            z: float32 (B, z_dim); action: float32 (B, action_dim); state: ``(h, c)`` each (1, B, hidden_dim);
            speed: float32 (B,) the speed s_t, needed with ``speed_input``.

        Returns:
            ``(out, state)``; ``out`` fields are (B, ...) and ``state[0][0]`` is the new h (B, hidden_dim).
        """
        out, new_state = self.forward(
            z.unsqueeze(1), action.unsqueeze(1), state, None if speed is None else speed[:, None]
        )
        return MDNOutput(*(t.squeeze(1) for t in out)), new_state

    def nll(self, out: MDNOutput, target: Tensor) -> Tensor:
        """NLL of ``target`` (..., z_dim) under this model's mixtures ``out``, in nats per dimension: float32 (...).

        See :func:`mdn_nll` (per-dimension or joint, as ``config.joint`` says).
        """
        return mdn_nll(out.log_pi, out.mu, out.log_sigma, target, self.config.joint).mean(-1)

    def _step_losses(
        self, out: MDNOutput, batch: dict[str, Tensor], target: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Masked means of the NLL (per dimension), reward MSE and done BCE of predictions ``out`` (B, T, ...)."""
        n = mask.sum().clamp(min=1.0)
        nll = (self.nll(out, target) * mask).sum() / n
        reward_mse = ((out.reward - batch["reward"]).pow(2) * mask).sum() / n
        done_bce = (
            F.binary_cross_entropy_with_logits(out.done_logit, batch["done"], reduction="none") * mask
        ).sum() / n
        return nll, reward_mse, done_bce

    def open_loop_loss(
        self, batch: dict[str, Tensor], start: int, steps: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Loss of a dream: M reads the real z_0..z_start, then feeds itself its own samples for ``steps`` steps
        (with the real actions) and is scored on the real z, reward and done along the way.

        The dream is what M is used for (split mode, dream training of C), and a model trained only with the
        real z as input (teacher forcing) has never seen its own errors, so they compound (Bengio et al., 2015,
        "Scheduled Sampling"; Hafner et al., 2019, "PlaNet", sec. 4, latent overshooting, for the multi-step
        objective). Samples are drawn as in :func:`sample_mdn_with_noise` at tau = 1 and reparameterised
        (``mu_k + sigma_k * eps``, the component index carries no gradient), so the loss at step k reaches the
        predictions of steps < k through the fed-back z (back-propagation through the dream).

        Args:
            batch: as :meth:`loss`; needs T >= start + steps.
            start: real inputs read before the dream (z_0..z_start), >= 0.
            steps: dream steps scored, >= 1; the targets are z_{start+2}..z_{start+steps+1}, the first dreamed
                input is M's sample of z_{start+1}.
            generator: torch RNG of the dream's noise.

        Returns:
            ``(loss, metrics)`` like :meth:`loss`, metrics named ``open_loop_nll``, ``open_loop_reward_mse``,
            ``open_loop_done_bce``.

        Raises:
            ValueError: the window is shorter than ``start + steps + 1`` steps, or ``steps`` < 1.
        """
        z, action = batch["z"], batch["action"]
        horizon = action.shape[1]
        if steps < 1 or start < 0 or start + steps + 1 > horizon:
            raise ValueError(f"open-loop dream of {steps} steps from step {start} does not fit a {horizon}-step window")
        target = batch["z_target"] if "z_target" in batch else z[:, 1:]
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones(target.shape[:2], device=z.device)
        speed_in = batch.get("speed_in") if self.config.speed_input else None
        out, state = self(
            z[:, : start + 1], action[:, : start + 1], None, None if speed_in is None else speed_in[:, : start + 1]
        )
        last = MDNOutput(*(t[:, -1] for t in out))
        # with speed_input the dream runs on its own speed: s_{t+1} = s_t + the head's change (clamped at 0)
        s_t = (
            None
            if speed_in is None
            else self._next_speed(state[0][0], speed_in[:, start], action[:, start], z[:, start])
        )
        preds, hs, ins, zs = [], [], [], []
        for t in range(start + 1, start + steps + 1):
            noise = torch.randn((*last.mu.shape[:-1], 2), generator=generator, dtype=z.dtype, device=z.device)
            z_t = sample_mdn_with_noise(
                last.log_pi, last.mu, last.log_sigma, 1.0, noise, self.config.joint
            )  # index: no grad
            last, state = self.step(z_t, action[:, t], state, s_t)
            preds.append(last)
            hs.append(state[0][0])
            if s_t is not None:
                ins.append(s_t)
                zs.append(z_t)
                s_t = self._next_speed(state[0][0], s_t, action[:, t], z_t)
        dream = MDNOutput(*(torch.stack(field, dim=1) for field in zip(*preds, strict=True)))
        sl = slice(start + 1, start + steps + 1)
        part = {"reward": batch["reward"][:, sl], "done": batch["done"][:, sl]}
        nll, reward_mse, done_bce = self._step_losses(dream, part, target[:, sl], mask[:, sl])
        loss = nll + self.config.reward_weight * reward_mse + self.config.done_weight * done_bce
        metrics = {
            "open_loop_nll": nll.item(), "open_loop_reward_mse": reward_mse.item(), "open_loop_done_bce": done_bce.item()
        }  # fmt: skip
        speed_mse = self._speed_mse(
            torch.stack(hs, dim=1), batch, sl, mask[:, sl], torch.stack(ins, 1) if ins else None,
            torch.stack(zs, 1) if zs else None,
        )  # fmt: skip
        if speed_mse is not None:
            loss = loss + self.config.speed_weight * speed_mse
            metrics["open_loop_speed_mse"] = speed_mse.item()
        return loss, metrics

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Training loss on a batch of sequences.

        Args:
            batch: ``z`` float32 (B, T+1, z_dim) (z_0..z_T), ``action`` (B, T, action_dim),
                ``reward`` (B, T) (r_1..r_T), ``done`` (B, T) in {0, 1} (terminated_1..T),
                optional ``mask`` (B, T) in {0, 1} marking real (not padded) steps, optional ``z_target``
                (B, T, z_dim): the z_1..z_T to fit when they differ from the inputs' (e.g. mu while the inputs
                are sampled); default ``z[:, 1:]``; ``speed`` (B, T) (speeds at frames 1..T, world units per
                second), needed with a speed head; ``speed_in`` (B, T) (frames 0..T-1), needed with ``speed_input``.

        Returns:
            ``(loss, metrics)``: loss = NLL per latent dimension + reward_weight * reward MSE
            + done_weight * done BCE (+ speed_weight * speed MSE with a speed head); metrics ``nll`` (nats per
            dimension), ``reward_mse``, ``done_bce`` (and ``speed_mse``, in SPEED_SCALE units).

        Raises:
            ValueError: a speed head and no ``speed`` in the batch.
        """
        z, action = batch["z"], batch["action"]
        h = self.hidden_sequence(z[:, :-1], action, None, batch.get("speed_in"))
        out = self.heads(h, z[:, :-1])
        target = batch["z_target"] if "z_target" in batch else z[:, 1:]
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones(target.shape[:2], device=z.device)
        nll, reward_mse, done_bce = self._step_losses(out, batch, target, mask)
        loss = nll + self.config.reward_weight * reward_mse + self.config.done_weight * done_bce
        metrics = {"nll": nll.item(), "reward_mse": reward_mse.item(), "done_bce": done_bce.item()}
        speed_mse = self._speed_mse(h, batch, slice(None), mask)
        if speed_mse is not None:
            loss = loss + self.config.speed_weight * speed_mse
            metrics["speed_mse"] = speed_mse.item()
        return loss, metrics
