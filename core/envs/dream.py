"""The dream: CarRacing as the MDN-RNN imagines it (Ha & Schmidhuber, 2018, sec. 4).

:class:`BatchedDream` steps N dreams as one tensor (for CMA-ES and for the explorer's futures grid);
:class:`DreamEnv` is a ``gymnasium.Env`` over one of them, registered as ``DreamCarRacing-v0``.

Each rollout owns a random stream (a ``torch.Generator`` seeded with its seed) from which it draws its
sampling noise in fixed chunks of ``NOISE_CHUNK`` steps, so a rollout's dream depends only on its seed,
its actions and tau, not on how many other rollouts are batched with it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from core.envs.car_racing import hud_speed, hud_yaw_rate
from core.envs.world_model import WorldModel
from core.models.mdn import LOG_SIGMA_MAX, LOG_SIGMA_MIN, normal_to_uniform
from core.models.mdnrnn import MDNRNN, LSTMState

NOISE_CHUNK = 128
"""Steps of sampling noise drawn at once per rollout stream (one generator call per rollout per chunk)."""
DONE_THRESHOLD = 0.5
"""A dream ends when the done head's probability exceeds this."""
DONE_LOGIT_THRESHOLD = math.log(DONE_THRESHOLD / (1.0 - DONE_THRESHOLD))
ACTION_LOW = np.array([-1.0, 0.0, 0.0], np.float32)
ACTION_HIGH = np.array([1.0, 1.0, 1.0], np.float32)
_ACTION_LOW_T, _ACTION_HIGH_T = torch.from_numpy(ACTION_LOW), torch.from_numpy(ACTION_HIGH)


def window_seeds(seed: int, episode: int, n: int) -> list[int]:
    """Seeds of the ``n`` dream streams started in episode ``episode`` of an open-loop check run with ``seed``:
    ``seed * 1_000_003 + episode * 10_007 + j`` (distinct for every episode below 100 with at most 10,007 streams,
    and the same at every call, so two models are checked on the same noise)."""
    return [seed * 1_000_003 + episode * 10_007 + j for j in range(n)]


def _fused_lstm(memory: MDNRNN, bf16: bool) -> tuple[Tensor, Tensor]:
    """M's LSTM as one (z_dim + 3 + hidden, 4 * hidden) matrix and its bias: a single GEMM per step for the gates.
    The cell-input gate's columns are doubled so that one sigmoid serves all four gates (tanh(x) = 2 sigmoid(2x) - 1).
    """
    lstm = memory.lstm
    h4 = memory.config.hidden_dim
    w_ih, w_hh, b_ih, b_hh = (
        lstm.get_parameter(n) for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    )
    w = torch.cat([w_ih, w_hh], dim=1).detach().t().contiguous()
    b = (b_ih + b_hh).detach().clone()
    w[:, 2 * h4 : 3 * h4] *= 2.0
    b[2 * h4 : 3 * h4] *= 2.0
    return (w.to(torch.bfloat16), b.to(torch.bfloat16)) if bf16 else (w, b)


def _lstm_step(w: Tensor, b: Tensor, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM cell step (Hochreiter & Schmidhuber, 1997; gate order i, f, g, o as in torch.nn.LSTM) on the input
    ``x`` (N, input_size; :meth:`MDNRNN.lstm_input`) with the fused weights of :func:`_fused_lstm`: the new
    ``(h, c)``, each float32 (N, hidden)."""
    x = torch.cat([x, h], dim=1)
    gates = torch.sigmoid(torch.addmm(b, x.to(w.dtype), w)).float()
    i, f, g, o = gates.chunk(4, dim=1)
    c = f * c + i * (2.0 * g - 1.0)
    return o * torch.tanh(c), c


class BatchedDream:
    """N dreams stepped together through the MDN-RNN; no decoding (cheap enough for training controllers).

    State per rollout: ``z`` (N, z_dim), LSTM ``(h, c)`` (1, N, hidden_dim), step count, done flag, and for an M
    that reads the speed (``MDNRNNConfig.speed_input``) the dream's own speed ``speed`` (N,), world units per
    second: s_{t+1} = s_t + the speed head's change, clamped to [0, SPEED_MAX] (the car's top speed), fed to the
    LSTM with z and the action; for one that also reads the yaw rate (``MDNRNNConfig.yaw_input``) its own yaw rate
    ``yaw`` (N,), rad/s, stepped with it.
    After a rollout is done its reward is 0 and its state stops changing.

    Args:
        memory: the MDN-RNN (its weights are used as-is, in eval mode, without gradients).
        n: number of rollouts.
        tau: MDN temperature (>= 0); settable between steps.
        max_steps: a rollout is truncated after this many steps.
        bf16: run the two matrix products of a step (LSTM gates, MDN heads) in bfloat16 with float32 state,
            sampling and residual sum: about 2.3x faster products on this CPU; a rollout then differs from the
            float32 one by rounding (same distribution; measured in the README, "Figures"), so the default is float32.
        reader: another MDN-RNN of the same sizes whose LSTM runs along on the dream's own z and actions; the
            observations then carry its h instead of the dreaming M's. An ensemble's member dreams while the
            controller reads the h of the M it drives with in reality (:class:`core.train.fitness.DreamEvaluator`).

    Raises:
        ValueError: ``n < 1``, or a reader of other sizes or that reads the speed where M does not (or not where
            M does).
    """

    def __init__(
        self, memory: MDNRNN, n: int, tau: float = 1.0, max_steps: int = 1000, bf16: bool = False,
        reader: MDNRNN | None = None,
    ) -> None:  # fmt: skip
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.memory = memory.eval()
        self.n = n
        self.tau = tau
        self.max_steps = max_steps
        cfg = memory.config
        self.z_dim, self.hidden_dim, self.k = cfg.z_dim, cfg.hidden_dim, cfg.n_gaussians
        self._w, self._b = _fused_lstm(memory, bf16)
        # head rows reordered from (3, z_dim, k) to (3, k, z_dim): the per-dimension mixture reductions then run
        # over a short outer axis, vectorised along z_dim, instead of over a contiguous axis of length k
        d, k = self.z_dim, self.k
        self.joint = cfg.joint
        n_logits = memory.n_logits  # K for a joint mixture (one set of weights), d * k per dimension
        logit_order = torch.arange(n_logits) if self.joint else torch.arange(d * k).view(d, k).t().reshape(-1)
        rest = n_logits + torch.arange(2 * d * k).view(2, d, k).permute(0, 2, 1).reshape(-1)
        order = torch.cat([logit_order, rest, torch.arange(n_logits + 2 * d * k, memory.head.out_features)])
        self._n_logits = n_logits
        self._head_w = memory.head.weight.detach()[order].contiguous()
        self._head_b = memory.head.bias.detach()[order].contiguous()
        self.bf16 = bf16
        if bf16:
            self._head_w, self._head_b = self._head_w.to(torch.bfloat16), self._head_b.to(torch.bfloat16)
        self.z = torch.zeros(n, self.z_dim)
        self.h = torch.zeros(n, self.hidden_dim)
        self.c = torch.zeros(n, self.hidden_dim)
        self.speed_input = cfg.speed_input
        self.speed = torch.zeros(n)
        """The dream's speed (N,), world units per second (kept at 0 for an M that does not read it)."""
        self.yaw_input = cfg.yaw_input
        self.yaw = torch.zeros(n)
        """The dream's yaw rate (N,), rad/s counter-clockwise positive (kept at 0 for an M that does not read it)."""
        self.reader = reader
        if reader is not None:
            if (reader.config.z_dim, reader.config.hidden_dim) != (self.z_dim, self.hidden_dim):
                raise ValueError(
                    f"reader has z_dim {reader.config.z_dim}, hidden_dim {reader.config.hidden_dim}; the dream's M "
                    f"{self.z_dim}, {self.hidden_dim}"
                )
            if (reader.config.speed_input, reader.config.yaw_input) != (self.speed_input, self.yaw_input):
                raise ValueError("the reader and the dream's M must read the same car state (speed, yaw rate)")
            self._reader_w, self._reader_b = _fused_lstm(reader.eval(), bf16)
        self.reader_h = self.reader_c = torch.zeros(n, self.hidden_dim)  # the reader's LSTM state (with a reader)
        self.steps = 0
        self.done = torch.zeros(n, dtype=torch.bool)
        self.stepped = torch.zeros(n, dtype=torch.bool)
        """The rollouts the last :meth:`step` advanced, bool (N,): those live before it, including any it ended (a
        car or map that follows the dream moves on that last step too)."""
        self._generators: list[torch.Generator] = []
        self._noise_chunk = torch.empty(0)
        self._chunk_pos = NOISE_CHUNK

    # -- random streams -------------------------------------------------------------------------
    def _refill(self) -> None:
        chunk = torch.empty(NOISE_CHUNK, self.n, self.z_dim, 2)
        for i, g in enumerate(self._generators):
            chunk[:, i] = torch.randn(NOISE_CHUNK, self.z_dim, 2, generator=g)
        # the component draw uses u = Phi(first normal), as in sample_mdn_with_noise
        chunk[..., 0] = normal_to_uniform(chunk[..., 0])
        self._noise_chunk, self._chunk_pos = chunk, 0

    def _noise(self) -> Tensor:
        if self._chunk_pos >= NOISE_CHUNK:
            self._refill()
        self._chunk_pos += 1
        return self._noise_chunk[self._chunk_pos - 1]

    # -- API ------------------------------------------------------------------------------------
    def reset(
        self,
        seeds: list[int] | np.ndarray,
        z: Tensor | None = None,
        state: LSTMState | None = None,
        reader_state: LSTMState | None = None,
        speed: Tensor | float | None = None,
        yaw: Tensor | float | None = None,
    ) -> Tensor:
        """Start N rollouts.

        Args:
            seeds: one integer seed per rollout (its random stream).
            z: float32 (N, z_dim) or (z_dim,) starting latents; default z ~ N(0, I) drawn from each stream.
            state: optional LSTM ``(h, c)``, each (1, N, hidden_dim) or (1, 1, hidden_dim); default zeros.
            reader_state: the reader's LSTM ``(h, c)`` (same shapes) with a ``reader``; default: ``state``.
            speed: the starting speed, float32 (N,) or a number, world units per second (an M that reads the speed;
                default 0, a car at rest).
            yaw: the starting yaw rate, float32 (N,) or a number, rad/s (an M that reads it; default 0).

        Returns:
            The observations ``[z, h]``, float32 (N, z_dim + hidden_dim).
        """
        if len(seeds) != self.n:
            raise ValueError(f"need {self.n} seeds, got {len(seeds)}")
        self._generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self._chunk_pos = NOISE_CHUNK
        if z is None:
            self.z = torch.stack([torch.randn(self.z_dim, generator=g) for g in self._generators])
        else:
            self.z = torch.as_tensor(z, dtype=torch.float32).reshape(-1, self.z_dim).expand(self.n, -1).clone()
        if state is None:
            self.h = torch.zeros(self.n, self.hidden_dim)
            self.c = torch.zeros(self.n, self.hidden_dim)
        else:
            self.h = state[0].reshape(-1, self.hidden_dim).expand(self.n, -1).clone()
            self.c = state[1].reshape(-1, self.hidden_dim).expand(self.n, -1).clone()
        if self.reader is not None:
            h, c = (self.h, self.c) if reader_state is None else (reader_state[0], reader_state[1])
            self.reader_h = h.reshape(-1, self.hidden_dim).expand(self.n, -1).clone()
            self.reader_c = c.reshape(-1, self.hidden_dim).expand(self.n, -1).clone()
        self.speed = torch.zeros(self.n)
        if speed is not None and self.speed_input:
            self.speed = torch.as_tensor(speed, dtype=torch.float32).reshape(-1).expand(self.n).clone()
        self.yaw = torch.zeros(self.n)
        if yaw is not None and self.yaw_input:
            self.yaw = torch.as_tensor(yaw, dtype=torch.float32).reshape(-1).expand(self.n).clone()
        self.steps = 0
        self.done = torch.zeros(self.n, dtype=torch.bool)
        self.stepped = torch.zeros(self.n, dtype=torch.bool)
        return self.observation()

    def observation(self) -> Tensor:
        """``[z, h]``, float32 (N, z_dim + hidden_dim); with a ``reader``, h is the reader's."""
        return torch.cat([self.z, self.h if self.reader is None else self.reader_h], dim=1)

    @torch.no_grad()
    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Advance every rollout one step.

        Args:
            action: float32 (N, 3), clipped to the CarRacing action box.

        Returns:
            ``(obs, reward, terminated, truncated)``: obs float32 (N, z_dim + hidden_dim); reward float32 (N,)
            (0 for rollouts already done); terminated, truncated bool (N,) for this step.
        """
        a = torch.as_tensor(action, dtype=torch.float32).reshape(self.n, 3)
        act = a.clamp(min=_ACTION_LOW_T, max=_ACTION_HIGH_T)
        x = self.memory.lstm_input(self.z, act, self.speed, self.yaw)  # [z, a] (+ the car state M reads)
        h, c = _lstm_step(self._w, self._b, x, self.h, self.c)
        live = ~self.done
        self.stepped = live
        keep = live.unsqueeze(1)
        if self.speed_input:
            car = self.memory.next_car(h, self.speed, act, self.z, self.yaw if self.yaw_input else None)
            assert car is not None  # speed_input implies a speed head
            self.speed = torch.where(live, car[0], self.speed)
            if car[1] is not None:
                self.yaw = torch.where(live, car[1], self.yaw)
        if self.reader is not None:  # the reader's LSTM on the same z_t, a_t (and car state)
            reader_h, reader_c = _lstm_step(self._reader_w, self._reader_b, x, self.reader_h, self.reader_c)
            self.reader_h = torch.where(keep, reader_h, self.reader_h)
            self.reader_c = torch.where(keep, reader_c, self.reader_c)
        z_next, reward_pred, done_logit = self._sample(h)
        reward = torch.where(live, reward_pred, torch.zeros_like(reward_pred))
        terminated = live & (done_logit > DONE_LOGIT_THRESHOLD)
        self.steps += 1
        truncated = live & ~terminated & (self.steps >= self.max_steps)
        self.z = torch.where(keep, z_next, self.z)
        self.h = torch.where(keep, h, self.h)
        self.c = torch.where(keep, c, self.c)
        self.done = self.done | terminated | truncated
        return self.observation(), reward, terminated, truncated

    def _sample(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Heads and temperature sampling for one step: ``(z_next, reward, done_logit)``.

        The same distribution as ``MDNRNN.heads`` followed by :func:`sample_mdn_with_noise` with this step's noise
        (tested equal), computed on the picked component only: the softmax shift of ``log_pi`` cancels under
        ``softmax(log_pi / tau)``, and the residual offset, clamp and exp apply after the gather.
        """
        cfg = self.memory.config
        d, k = self.z_dim, self.k
        y = torch.nn.functional.linear(h.to(self._head_w.dtype), self._head_w, self._head_b).float()
        n_logits = self._n_logits
        logits = y[:, :n_logits].view(self.n, k, -1)  # (N, k, z_dim), or (N, k, 1) for a joint mixture
        mdn = y[:, n_logits : n_logits + 2 * d * k].view(self.n, 2, k, d)
        mu, log_sigma = mdn[:, 0], mdn[:, 1]  # each (N, k, z_dim)
        noise = self._noise()
        if self.tau <= 0:
            pick = logits.argmax(dim=1, keepdim=True).expand(-1, -1, d)
            z_next = mu.gather(1, pick).squeeze(1)
        else:
            # inverse CDF of softmax(logits / tau) without normalising: u * total > unnormalised cumsum
            scaled = logits * (1.0 / self.tau)
            cdf = (scaled - scaled.amax(dim=1, keepdim=True)).exp_().cumsum_(dim=1)
            u_all = noise[:, :1, 0] if self.joint else noise[:, :, 0]  # a joint mixture: one draw for all of z
            u = u_all.unsqueeze(1) * cdf[:, -1:]
            pick = (u > cdf).sum(dim=1, keepdim=True).clamp_(max=k - 1).expand(-1, -1, d)
            sigma = log_sigma.gather(1, pick).squeeze(1).clamp_(LOG_SIGMA_MIN, LOG_SIGMA_MAX).exp_()
            z_next = mu.gather(1, pick).squeeze(1) + sigma * noise[..., 1] * math.sqrt(self.tau)
        if cfg.residual:
            z_next = z_next + self.z
        return z_next, y[:, -2], y[:, -1]

    def predicted_speed(self) -> Tensor | None:
        """The dream's speed, float32 (N,), world units per second: its running speed for an M that reads the speed,
        the speed head on h for one that only predicts it, None for an M without a speed head."""
        return self.speed.clone() if self.speed_input else self.memory.speed(self.h)

    @property
    def state(self) -> LSTMState:
        """LSTM state ``(h, c)``, each float32 (1, N, hidden_dim)."""
        return self.h.unsqueeze(0), self.c.unsqueeze(0)


class DreamEnv(gym.Env):
    """A gymnasium env driven by the MDN-RNN: CarRacing as dreamt, one rollout.

    Observation: ``z`` (float32, z_dim) or ``[z, h]`` (z_dim + hidden_dim) with ``obs="zh"``.
    Action: CarRacing's Box([-1, 0, 0], [1, 1, 1]). Reward: the reward head's prediction of r_{t+1}.
    Terminated: the done head's probability > 0.5. Truncated: after ``max_steps`` steps.
    ``render()`` (``render_mode="rgb_array"``) decodes z through V: uint8 (S, S, 3), S = V's input size.

    ``reset(seed=..., options=...)`` options (at most one start):
        ``"frame"``: a real uint8 (96, 96, 3) frame, encoded to its posterior mean;
        ``"z"``: a latent (z_dim,);
        ``"state"``: an LSTM ``(h, c)`` to continue from (e.g. where reality stands), with ``"z"`` or ``"frame"``;
        ``"speed"``: the car's speed there (world units per second; an M that reads the speed; default: the HUD's
        in ``"frame"``, else 0); ``"yaw"``: its yaw rate, rad/s (an M with ``yaw_input``; default likewise);
        none of them: z ~ N(0, I).

    Args:
        world_model: a :class:`WorldModel` with memory, or None to load ``vision``/``memory`` paths.
        vision, memory: checkpoint paths (used when ``world_model`` is None).
        tau: temperature (>= 0); the ``tau`` attribute can be changed between steps.
        obs: ``"z"`` or ``"zh"``.
        max_steps: truncation horizon.
        render_mode: None or ``"rgb_array"``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        world_model: WorldModel | None = None,
        *,
        vision: str | os.PathLike[str] | None = None,
        memory: str | os.PathLike[str] | None = None,
        tau: float = 1.0,
        obs: str = "zh",
        max_steps: int = 1000,
        render_mode: str | None = None,
    ) -> None:
        if world_model is None:
            if vision is None or memory is None:
                from core.assets import default_paths

                paths = default_paths()
                vision, memory = vision or paths.vision, memory or paths.memory
            world_model = WorldModel.load(vision, memory)
        if obs not in ("z", "zh"):
            raise ValueError(f"obs must be 'z' or 'zh', got {obs!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.world_model = world_model
        self.obs_mode = obs
        self.render_mode = render_mode
        self._dream = BatchedDream(world_model.require_memory(), 1, tau=tau, max_steps=max_steps)
        dim = world_model.z_dim + (world_model.hidden_dim if obs == "zh" else 0)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.action_space = gym.spaces.Box(ACTION_LOW, ACTION_HIGH, dtype=np.float32)

    @property
    def tau(self) -> float:
        return self._dream.tau

    @tau.setter
    def tau(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"tau must be >= 0, got {value}")
        self._dream.tau = float(value)

    @property
    def z(self) -> Tensor:
        """Current latent, float32 (z_dim,)."""
        return self._dream.z[0].clone()

    @property
    def state(self) -> LSTMState:
        return self._dream.state

    def _obs(self) -> np.ndarray:
        full = self._dream.observation()[0]
        return (full if self.obs_mode == "zh" else full[: self.world_model.z_dim]).numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        stream_seed = int(self.np_random.integers(0, 2**62))
        z, speed, yaw = None, options.get("speed"), options.get("yaw")
        if options.get("frame") is not None:
            frame = np.asarray(options["frame"], np.uint8)
            z = self.world_model.encode(frame)[0]
            speed = hud_speed(frame) if speed is None else speed
            yaw = hud_yaw_rate(frame) if yaw is None else yaw
        elif options.get("z") is not None:
            z = torch.as_tensor(np.asarray(options["z"], np.float32))
        self._dream.reset(
            [stream_seed], z=z, state=options.get("state"), speed=None if speed is None else float(speed),
            yaw=None if yaw is None else float(yaw),
        )  # fmt: skip
        return self._obs(), {"stream_seed": stream_seed}

    def step(self, action: np.ndarray):
        a = torch.as_tensor(np.asarray(action, np.float32)).view(1, 3)
        _, reward, terminated, truncated = self._dream.step(a)
        return self._obs(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def frame(self) -> np.ndarray:
        """The dreamed frame: V's decoding of the current z, uint8 (H, W, 3) at V's resolution, whatever the
        render mode."""
        return self.world_model.decode_uint8(self._dream.z[:1])[0]

    def render(self) -> np.ndarray | None:
        return self.frame() if self.render_mode == "rgb_array" else None


def register_dream_env() -> None:
    """Register ``DreamCarRacing-v0`` (idempotent). Keyword args of ``gym.make`` go to :class:`DreamEnv`."""
    if "DreamCarRacing-v0" not in gym.registry:
        gym.register(id="DreamCarRacing-v0", entry_point="core.envs.dream:DreamEnv")
