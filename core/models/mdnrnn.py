"""MDN-RNN (Ha & Schmidhuber, 2018, sec. 2.2 and app. A.2; Graves, 2013, sec. 4; Bishop, 1994).

An LSTM over ``[z_t, a_t]`` whose head gives a mixture of K Gaussians over ``z_{t+1}`` (for every latent dimension
independently, as Ha's; or one mixture over the whole vector, ``MDNRNNConfig.joint``), plus a reward head (``r_{t+1}``) and a done head (``terminated_{t+1}``, as Ha's
Doom model had). The same module trains on sequences (``forward``) and dreams one step at a time (``step``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.models.mdn import LOG_SIGMA_MAX, LOG_SIGMA_MIN, mdn_nll
from core.models.mdnrnn_config import MDNRNNConfig
from core.models.speed import (
    SPEED_MAX,
    SPEED_SCALE,
    YAW_SCALE,
    MarkovSpeed,
    car_state,
    part_mses,
    required_speed,
    required_yaw,
    speed_head,
)


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
        self.lstm = nn.LSTM(
            cfg.z_dim + cfg.action_dim + int(cfg.speed_input) + int(cfg.yaw_input), cfg.hidden_dim, batch_first=True
        )
        self.n_mdn = cfg.z_dim * cfg.n_gaussians
        self.n_logits = cfg.n_gaussians if cfg.joint else self.n_mdn
        # head rows: mixture logits (K joint, z_dim * K per dimension), then mu and log_sigma (z_dim * K each),
        # then the reward and the done logit
        self.head = nn.Linear(cfg.hidden_dim, self.n_logits + 2 * self.n_mdn + 2)
        self.speed_head = speed_head(
            cfg.speed_model, cfg.speed_weight, cfg.z_dim, cfg.action_dim, cfg.hidden_dim, cfg.yaw_input
        )

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

    def lstm_input(self, z: Tensor, action: Tensor, speed: Tensor | None, yaw: Tensor | None = None) -> Tensor:
        """The LSTM's input ``[z, a]``, with ``s / SPEED_SCALE`` for an M with ``speed_input`` and then
        ``yaw / YAW_SCALE`` for one with ``yaw_input``: float32 (..., z_dim + action_dim [+ 1] [+ 1]) from ``z``
        (..., z_dim), ``action`` (..., action_dim), ``speed`` and ``yaw`` (...) in world units (the dream's
        fused LSTM step reads the same vector).

        Raises:
            ValueError: the M reads the speed (yaw rate) and ``speed`` (``yaw``) is None.
        """
        cfg = self.config
        parts = [z, action]
        if cfg.speed_input:
            parts.append(required_speed(speed).unsqueeze(-1) / SPEED_SCALE)
        if cfg.yaw_input:
            parts.append(required_yaw(yaw).unsqueeze(-1) / YAW_SCALE)
        return torch.cat(parts, dim=-1)

    def _car_raw(
        self, h: Tensor, speed: Tensor | None, action: Tensor | None = None, z: Tensor | None = None,
        yaw: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """The speed head's unclamped prediction of the car state c_{t+1} (``core.models.speed.car_state``;
        (..., 1), or (..., 2) with ``yaw_input``) from h_{t+1} (and s_t with ``speed_input``, whose head predicts
        the change; the Markov model reads z_t, a_t and c_t instead of h).

        Raises:
            ValueError: the head needs ``speed``, ``yaw``, ``action`` or ``z`` and it is None.
        """
        assert self.speed_head is not None
        if isinstance(self.speed_head, MarkovSpeed):
            if action is None or z is None:
                raise ValueError("this MDN-RNN's speed model steps from the frame and the action: give z_t and a_t")
            car = car_state(required_speed(speed), required_yaw(yaw) if self.config.yaw_input else None)
            return self.speed_head(z, action, car) + car
        out = self.speed_head(h)
        return out + required_speed(speed).unsqueeze(-1) / SPEED_SCALE if self.config.speed_input else out

    def next_car(
        self, h: Tensor, speed: Tensor | None = None, action: Tensor | None = None, z: Tensor | None = None,
        yaw: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None] | None:  # fmt: skip
        """The car's speed and yaw rate at t+1 as the dream steps them; None for an M without a speed head.

        Args:
            h: float32 (..., hidden_dim), the LSTM output h_{t+1}.
            speed: float32 (...) the input speed s_t of the step that gave ``h`` (world units per second), needed
                with ``speed_input``.
            action: float32 (..., action_dim) that step's a_t, and ``z`` (..., z_dim) its z_t: needed by a Markov
                speed model (``MDNRNNConfig.speed_model``).
            yaw: float32 (...) that step's yaw rate (rad/s), needed with ``yaw_input``.

        Returns:
            ``(speed, yaw)``: speed float32 (...) world units per second in [0, SPEED_MAX] (the head's output
            clamped; training fits it unclamped; see ``MDNRNNConfig.speed_weight``); yaw float32 (...) rad/s within
            +-YAW_MAX, or None for an M without ``yaw_input``.

        Raises:
            ValueError: ``speed_input`` and no ``speed``; ``yaw_input`` and no ``yaw``; a Markov speed model and no
                ``action`` or ``z``.
        """
        if self.speed_head is None:
            return None
        car = self._car_raw(h, speed, action, z, yaw)
        if isinstance(self.speed_head, MarkovSpeed):
            car = self.speed_head.clamp(car)
        speed_next = (car[..., 0] * SPEED_SCALE).clamp(0.0, SPEED_MAX)
        return speed_next, (car[..., 1] * YAW_SCALE if self.config.yaw_input else None)

    def speed(
        self, h: Tensor, speed: Tensor | None = None, action: Tensor | None = None, z: Tensor | None = None,
        yaw: Tensor | None = None,
    ) -> Tensor | None:  # fmt: skip
        """The speed of :meth:`next_car`, float32 (...) world units per second in [0, SPEED_MAX]; None without a speed
        head."""
        car = self.next_car(h, speed, action, z, yaw)
        return None if car is None else car[0]

    def car_mse(
        self, h: Tensor, batch: dict[str, Tensor], sl: slice, mask: Tensor, speed_in: Tensor | None = None,
        z_in: Tensor | None = None, yaw_in: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None] | None:  # fmt: skip
        """Masked MSEs of the speed head on LSTM outputs ``h`` (B, T', hidden) against ``batch["speed"][:, sl]``
        (SPEED_SCALE units) and, with ``yaw_input``, ``batch["yaw"][:, sl]`` (YAW_SCALE units): ``(speed_mse,
        yaw_mse or None)``; None without a head. ``speed_in``, ``yaw_in`` (B, T'): the input speeds and yaw rates;
        default ``batch["speed_in"][:, sl]``, ``batch["yaw_in"][:, sl]``. ``z_in`` (B, T', z_dim): the input
        latents (a Markov speed model's); default the inputs ``batch["z"][:, :-1][:, sl]``.

        Raises:
            ValueError: the model has a speed head and the batch has no speeds (or no yaw rates, with ``yaw_input``).
        """
        if self.speed_head is None:
            return None
        cfg = self.config
        if "speed" not in batch or (cfg.yaw_input and "yaw" not in batch):
            raise ValueError(
                "this MDN-RNN has a speed head but the latents have no speeds or yaw rates (run encode again, or "
                "scripts/add_yaw_rates.py)"
            )
        if speed_in is None and cfg.speed_input:
            speed_in = batch["speed_in"][:, sl]
        if yaw_in is None and cfg.yaw_input:
            yaw_in = batch["yaw_in"][:, sl]
        z_in = batch["z"][:, :-1][:, sl] if z_in is None else z_in
        predicted = self._car_raw(h, speed_in, batch["action"][:, sl], z_in, yaw_in)
        target = car_state(batch["speed"][:, sl], batch["yaw"][:, sl] if cfg.yaw_input else None)
        mses = part_mses(predicted, target, mask)
        return mses[0], (mses[1] if cfg.yaw_input else None)

    def speed_rollout_mse(self, batch: dict[str, Tensor]) -> Tensor:
        """Masked MSE of a Markov speed model stepped alone along a batch's real z and actions from each window's
        first real car state (:meth:`MarkovSpeed.rollout`) against the real states, summed over the state's
        parts (speed in SPEED_SCALE units, with ``yaw_input`` the yaw rate in YAW_SCALE units): the error the
        dream sums over many steps, which a one-step fit on noisy HUD readings leaves biased (a bias of 0.1 units/s
        per step is 20 after 200 steps). Multi-step prediction objective as in Hafner et al., 2019, "PlaNet",
        sec. 4.

        Args:
            batch: as :meth:`loss`, with ``speed`` and ``speed_in`` (and ``yaw``, ``yaw_in`` with ``yaw_input``).

        Raises:
            ValueError: the model has no Markov speed model, or the batch no speeds (or yaw rates).
        """
        if not isinstance(self.speed_head, MarkovSpeed):
            raise ValueError("the speed rollout loss steps a Markov speed model: this MDN-RNN has none")
        yaw = self.config.yaw_input
        if "speed" not in batch or "speed_in" not in batch or (yaw and ("yaw" not in batch or "yaw_in" not in batch)):
            raise ValueError("the speed rollout loss needs the latents' speeds and yaw rates (run encode again)")
        car0 = car_state(batch["speed_in"][:, 0], batch["yaw_in"][:, 0] if yaw else None)
        target = car_state(batch["speed"], batch["yaw"] if yaw else None)
        return self.speed_head.rollout_mse(batch["z"][:, :-1], batch["action"], car0, target, batch.get("mask"))

    def forward(
        self, z: Tensor, action: Tensor, state: LSTMState | None = None, speed: Tensor | None = None,
        yaw: Tensor | None = None,
    ) -> tuple[MDNOutput, LSTMState]:  # fmt: skip
        """Run over sequences.

        Args:
            z: float32 (B, T, z_dim) latents z_0..z_{T-1}.
            action: float32 (B, T, action_dim) actions a_0..a_{T-1}.
            state: optional LSTM state, each (1, B, hidden_dim).
            speed: float32 (B, T) speeds s_0..s_{T-1} (world units per second), needed with ``speed_input``.
            yaw: float32 (B, T) yaw rates (rad/s) of the same frames, needed with ``yaw_input``.

        Returns:
            ``(out, state)``; ``out`` fields are (B, T, ...) predictions for step t+1.
        """
        out, new_state = self.lstm(self.lstm_input(z, action, speed, yaw), state)
        return self.heads(out, z), new_state

    def hidden_sequence(
        self, z: Tensor, action: Tensor, state: LSTMState | None = None, speed: Tensor | None = None,
        yaw: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """LSTM outputs h_1..h_T, float32 (B, T, hidden_dim), for the same inputs as :meth:`forward`."""
        return self.lstm(self.lstm_input(z, action, speed, yaw), state)[0]

    def state_after(
        self, z: Tensor, action: Tensor, lengths: Tensor, speed: Tensor | None = None, yaw: Tensor | None = None
    ) -> LSTMState:
        """LSTM state after each sequence's own prefix: sequence ``i`` is fed z_0..z_{L_i - 1} and
        a_0..a_{L_i - 1} from the zero state (what :meth:`step` would hold after ``L_i`` steps).

        Args:
            z: float32 (B, T, z_dim); action: float32 (B, T, action_dim), padded past each length.
            lengths: int64 (B,) prefix lengths in [0, T]; 0 gives the zero state.
            speed, yaw: float32 (B, T) input speeds and yaw rates, needed with ``speed_input`` / ``yaw_input``.

        Returns:
            ``(h, c)``, each float32 (1, B, hidden_dim).
        """
        h, c = self.initial_state(len(z), z.device)
        live = lengths > 0
        if bool(live.any()):
            x = self.lstm_input(
                z[live], action[live], None if speed is None else speed[live], None if yaw is None else yaw[live]
            )
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths[live].cpu(), batch_first=True, enforce_sorted=False)
            _, (h_live, c_live) = self.lstm(packed)
            h[:, live], c[:, live] = h_live, c_live
        return h, c

    def step(
        self, z: Tensor, action: Tensor, state: LSTMState | None, speed: Tensor | None = None,
        yaw: Tensor | None = None,
    ) -> tuple[MDNOutput, LSTMState]:  # fmt: skip
        """One dream step with the same weights as :meth:`forward`.

        Args:
            z: float32 (B, z_dim); action: float32 (B, action_dim); state: ``(h, c)`` each (1, B, hidden_dim);
            speed: float32 (B,) the speed s_t, needed with ``speed_input``; yaw: float32 (B,) the yaw rate, needed
                with ``yaw_input``.

        Returns:
            ``(out, state)``; ``out`` fields are (B, ...) and ``state[0][0]`` is the new h (B, hidden_dim).
        """
        out, new_state = self.forward(
            z.unsqueeze(1), action.unsqueeze(1), state, None if speed is None else speed[:, None],
            None if yaw is None else yaw[:, None],
        )  # fmt: skip
        return MDNOutput(*(t.squeeze(1) for t in out)), new_state

    def nll(self, out: MDNOutput, target: Tensor) -> Tensor:
        """NLL of ``target`` (..., z_dim) under this model's mixtures ``out``, in nats per dimension: float32 (...).

        See :func:`mdn_nll` (per-dimension or joint, as ``config.joint`` says).
        """
        return mdn_nll(out.log_pi, out.mu, out.log_sigma, target, self.config.joint).mean(-1)

    def step_losses(
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

    def with_car_loss(
        self, loss: Tensor, metrics: dict[str, float], car_mse: tuple[Tensor, Tensor | None] | None, prefix: str
    ) -> tuple[Tensor, dict[str, float]]:
        """``loss`` + speed_weight * (speed MSE + yaw MSE) of :meth:`car_mse`, and the metrics ``speed_mse`` and
        ``yaw_mse`` (named with ``prefix``)."""
        if car_mse is None:
            return loss, metrics
        for name, mse in zip(("speed_mse", "yaw_mse"), car_mse, strict=True):
            if mse is not None:
                loss = loss + self.config.speed_weight * mse
                metrics[prefix + name] = mse.item()
        return loss, metrics

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Training loss on a batch of sequences.

        Args:
            batch: ``z`` float32 (B, T+1, z_dim) (z_0..z_T), ``action`` (B, T, action_dim),
                ``reward`` (B, T) (r_1..r_T), ``done`` (B, T) in {0, 1} (terminated_1..T),
                optional ``mask`` (B, T) in {0, 1} marking real (not padded) steps, optional ``z_target``
                (B, T, z_dim): the z_1..z_T to fit when they differ from the inputs' (e.g. mu while the inputs
                are sampled); default ``z[:, 1:]``; ``speed`` (B, T) (speeds at frames 1..T, world units per
                second), needed with a speed head; ``speed_in`` (B, T) (frames 0..T-1), needed with ``speed_input``;
                ``yaw`` and ``yaw_in`` (B, T): the yaw rates (rad/s) of the same frames, needed with ``yaw_input``.

        Returns:
            ``(loss, metrics)``: loss = NLL per latent dimension + reward_weight * reward MSE
            + done_weight * done BCE (+ speed_weight * (speed MSE + yaw MSE) with a speed head); metrics ``nll``
            (nats per dimension), ``reward_mse``, ``done_bce`` (and ``speed_mse``, ``yaw_mse``, in SPEED_SCALE and
            YAW_SCALE units).

        Raises:
            ValueError: a speed head and no ``speed`` (with ``yaw_input``, no ``yaw``) in the batch.
        """
        z, action = batch["z"], batch["action"]
        h = self.hidden_sequence(z[:, :-1], action, None, batch.get("speed_in"), batch.get("yaw_in"))
        out = self.heads(h, z[:, :-1])
        target = batch["z_target"] if "z_target" in batch else z[:, 1:]
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones(target.shape[:2], device=z.device)
        nll, reward_mse, done_bce = self.step_losses(out, batch, target, mask)
        loss = nll + self.config.reward_weight * reward_mse + self.config.done_weight * done_bce
        metrics = {"nll": nll.item(), "reward_mse": reward_mse.item(), "done_bce": done_bce.item()}
        return self.with_car_loss(loss, metrics, self.car_mse(h, batch, slice(None), mask), "")
