"""The world model bundle (V, M, optional C) and the real env seen through it as ``[z, h]``.

Ha's loop (Ha & Schmidhuber, 2018, sec. 2.3): ``z_t = V(o_t)``, ``a_t = C([z_t, h_t])``,
``h_{t+1} = M(z_t, a_t, h_t)``. The wrapper below gives the real env the same observation as the dream.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from core.checkpoint import load_model, saved_metadata
from core.envs.car_racing import hud_speed, hud_yaw_rate, preprocess_frames, to_tensor, to_uint8_hwc
from core.errors import CheckpointError, LineageWarning
from core.lineage import file_identities
from core.models import VISION_KINDS, VisionModel, set_memory_format
from core.models.controller import Controller
from core.models.mdnrnn import MDNRNN, LSTMState

PathLike = str | os.PathLike[str]


CHANNELS_LAST_KINDS = ("dds_vae",)
"""Vision kinds loaded with channels-last convolution weights: oneDNN then picks the channels-last kernels, which
run the DDS+VAE's full-resolution U-Nets faster on the CPU at every batch size (same outputs to float32
rounding; README, "Figures"). The ConvVAE keeps the default layout."""


def load_vision(path: PathLike) -> VisionModel:
    """Load a ConvVAE or DDS+VAE checkpoint (eval mode; weights channels-last for :data:`CHANNELS_LAST_KINDS`).

    Raises:
        CheckpointError: missing, corrupt or foreign file, or not a vision checkpoint.
    """
    model = load_model(path, VISION_KINDS)
    if model.kind in CHANNELS_LAST_KINDS:
        set_memory_format(model, torch.channels_last)
    return model


def check_vision_memory(vision: VisionModel, memory: MDNRNN) -> str | None:
    """Check that M was trained on latents of this V, from what M's checkpoint records (``encode`` writes the
    vision kind and the SHA-256 of the vision checkpoint into the latent file; ``train-memory`` copies both).

    Args:
        vision, memory: models from :func:`core.checkpoint.load_model` (their ``checkpoint_extra`` and
            ``checkpoint_path`` are read; models built in memory record nothing and pass).

    Returns:
        None when they match or M records nothing; else a one-line warning: same kind and latent size but
        another vision checkpoint (a float16 export of the same V records its source's hash and passes).

    Raises:
        CheckpointError: M was trained on another kind of vision model, or the latent sizes differ.
    """
    v_path = getattr(vision, "checkpoint_path", "the vision model")
    m_path = getattr(memory, "checkpoint_path", "the memory model")
    if memory.config.z_dim != vision.z_dim:
        raise CheckpointError(
            f"{m_path} takes z of size {memory.config.z_dim}, the vision model {v_path} gives {vision.z_dim}"
        )
    recorded = saved_metadata(memory)[1]
    kind = recorded.get("vision_kind")
    if isinstance(kind, str) and kind and kind != str(vision.kind):
        raise CheckpointError(
            f"{m_path} was trained on latents of a {kind} vision model, {v_path} is a {vision.kind}: "
            "load the vision model it was trained with"
        )
    sha = recorded.get("vision_sha256")
    if not isinstance(sha, str) or not sha or not Path(str(v_path)).is_file():
        return None
    actual, source = file_identities(v_path)
    if sha in (actual, source):
        return None
    return (
        f"{m_path} was trained on latents of another vision checkpoint (SHA-256 {sha[:12]}), not {v_path} "
        f"({actual[:12]}): its dreams may not decode well unless that file is a copy of the same model"
    )


class WorldModel:
    """V (a ConvVAE or DDS+VAE), M (an MDN-RNN) and optionally C (a linear controller), on the CPU.

    Args:
        vision: a vision model with ``encode``, ``decode``, ``input_size``, ``z_dim``.
        memory: an :class:`MDNRNN` whose ``z_dim`` equals the vision model's.
        controller: optional :class:`Controller`.

    Attributes:
        lineage_warning: set when M records another vision checkpoint of the same kind
            (see :func:`check_vision_memory`), else None.

    Raises:
        CheckpointError: the models' latent or hidden sizes disagree, or M was trained on another kind of V.
    """

    def __init__(self, vision: VisionModel, memory: MDNRNN | None = None, controller: Controller | None = None):
        self.vision = vision.eval()
        self.memory = memory.eval() if memory is not None else None
        self.controller = controller.eval() if controller is not None else None
        self.z_dim: int = int(vision.z_dim)
        self.size: int = int(vision.input_size)
        self.lineage_warning = check_vision_memory(vision, memory) if memory is not None else None
        if controller is not None:
            cc = controller.config
            hidden = memory.config.hidden_dim if memory is not None else 0
            if cc.z_dim != self.z_dim or cc.hidden_dim not in (0, hidden):
                raise CheckpointError(
                    f"controller expects z {cc.z_dim} + h {cc.hidden_dim}, world model gives z {self.z_dim} + h {hidden}"
                )

    @classmethod
    def load(
        cls,
        vision: PathLike,
        memory: PathLike | None = None,
        controller: PathLike | None = None,
        *,
        warn: bool = True,
    ) -> WorldModel:
        """Load from checkpoint paths; with ``warn``, a :attr:`lineage_warning` is issued as a
        :class:`core.errors.LineageWarning`.

        Raises:
            CheckpointError: a bad file, or models that do not fit together (one-line message).
        """
        v = load_vision(vision)
        m = load_model(memory, "mdnrnn") if memory is not None else None
        c = load_model(controller, "controller") if controller is not None else None
        wm = cls(v, m, c)
        if warn and wm.lineage_warning:
            warnings.warn(wm.lineage_warning, LineageWarning, stacklevel=2)
        return wm

    @property
    def vision_kind(self) -> str:
        return str(self.vision.kind)

    @property
    def hidden_dim(self) -> int:
        return self.memory.config.hidden_dim if self.memory is not None else 0

    def preprocess(self, frames: np.ndarray) -> Tensor:
        """uint8 (96, 96, 3) or (B, 96, 96, 3) real frames -> float32 (B, 3, S, S) in [0, 1]."""
        chw = preprocess_frames(frames if frames.ndim == 4 else frames[None], self.size)
        return to_tensor(chw)

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> tuple[Tensor, Tensor]:
        """Real frames uint8 (B, 96, 96, 3) or (96, 96, 3) -> ``(mu, logvar)`` float32 (B, z_dim)."""
        return self.vision.encode(self.preprocess(frames))

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """z float32 (B, z_dim) -> frames float32 (B, 3, S, S) in [0, 1]."""
        return self.vision.decode(z)

    def decode_uint8(self, z: Tensor) -> np.ndarray:
        """z float32 (B, z_dim) -> uint8 (B, S, S, 3) frames for display."""
        return to_uint8_hwc(self.decode(z))

    def initial_state(self, batch: int = 1) -> LSTMState:
        """Zero LSTM state for ``batch`` rollouts. Raises CheckpointError without a memory model."""
        return self.require_memory().initial_state(batch)

    def require_memory(self) -> MDNRNN:
        if self.memory is None:
            raise CheckpointError("this world model has no memory (MDN-RNN) checkpoint loaded")
        return self.memory


class RealTracker:
    """The real side of a world model, step by step: ``z_t`` and M's state ``(h_t, c_t)``.

    ``z_t`` is V's posterior mean of the current real frame; ``(h_t, c_t)`` the MDN-RNN state after
    ``(z_0, a_0) .. (z_{t-1}, a_{t-1})``, zeros at the episode's start (Ha & Schmidhuber, 2018, sec. 2.3: the
    controller reads ``[z_t, h_t]``). The one place this bookkeeping is written: the gymnasium wrapper
    (:class:`WorldModelObservation`), the collection policy and the app all track reality through it.

    Args:
        world_model: V and M (M optional: without it, or with ``include_h=False``, only z is tracked).
        include_h: track M's state (False for a V-only controller).
    """

    def __init__(self, world_model: WorldModel, include_h: bool = True) -> None:
        self.world_model = world_model
        self.include_h = include_h and world_model.memory is not None
        self.z = torch.zeros(1, world_model.z_dim)
        """Current latent z_t (posterior mean), float32 (1, z_dim)."""
        self.state: LSTMState | None = None
        """M's ``(h_t, c_t)``, each float32 (1, 1, hidden_dim); None when h is not tracked."""
        self.speed: Tensor | None = None
        """The car's speed s_t at the current frame (the HUD's), float32 (1,), world units per second; M reads it
        when it was trained to (``MDNRNNConfig.speed_input``)."""
        self.yaw: Tensor | None = None
        """The car's yaw rate at the current frame (the HUD's), float32 (1,), rad/s (``MDNRNNConfig.yaw_input``)."""

    @property
    def h(self) -> Tensor | None:
        """h_t, float32 (1, hidden_dim), or None when h is not tracked."""
        return None if self.state is None else self.state[0][0]

    def reset(self, z: Tensor | None = None) -> None:
        """Start an episode with M's zero state, at the first frame's latent ``z`` float32 (1, z_dim) (None: the
        first frame is given to :meth:`observe` next, or was already)."""
        if z is not None:
            self.z = z
        self.state = self.world_model.initial_state(1) if self.include_h else None

    def observe(self, z: Tensor, speed: float | None = None, yaw: float | None = None) -> None:
        """Take the latent ``z`` float32 (1, z_dim) of the frame the env returned after :meth:`advance`, and the
        car's ``speed`` there (world units per second, :func:`core.envs.car_racing.hud_speed` of the frame) and
        ``yaw`` rate (rad/s, :func:`core.envs.car_racing.hud_yaw_rate`)."""
        self.z = z
        self.speed = None if speed is None else torch.tensor([float(speed)])
        self.yaw = None if yaw is None else torch.tensor([float(yaw)])

    def observe_frame(self, z: Tensor, frame: np.ndarray) -> None:
        """:meth:`observe` with the speed and yaw rate read from the HUD of ``frame`` (uint8 (96, 96, 3)), the frame
        ``z`` was encoded from."""
        self.observe(z, float(hud_speed(frame)), float(hud_yaw_rate(frame)))

    @torch.no_grad()
    def advance(self, action: np.ndarray | Tensor) -> None:
        """Step M's state with ``(z_t, a_t)`` (and s_t for an M that reads the speed), for the action ``a_t`` (3,)
        just taken in the real env.

        Raises:
            ValueError: M reads the speed and :meth:`observe` was given none.
        """
        if self.state is not None:
            a = torch.as_tensor(np.asarray(action, np.float32)).view(1, -1)
            _, self.state = self.world_model.require_memory().step(self.z, a, self.state, self.speed, self.yaw)

    def obs(self, include_h: bool = True) -> Tensor:
        """``[z_t, h_t]`` float32 (1, z_dim + hidden_dim), or ``z_t`` alone (no h tracked, or ``include_h``
        False)."""
        if not include_h or self.state is None:
            return self.z
        return torch.cat([self.z, self.state[0][0]], dim=1)


class WorldModelObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Real CarRacing seen through V and M: observations ``[z_t, h_t]`` (float32, z_dim + hidden_dim).

    ``z_t`` is the posterior mean of the current frame; ``h_t`` the MDN-RNN state after ``(z_{t-1}, a_{t-1})``
    (zeros at reset). With ``include_h=False`` (or no memory) the observation is ``z_t`` alone (the V-only agent).
    ``info`` carries the raw ``frame`` (uint8 96x96x3) each step.
    """

    def __init__(self, env: gym.Env, world_model: WorldModel, include_h: bool = True) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, world_model=world_model, include_h=include_h)
        gym.Wrapper.__init__(self, env)
        self.world_model = world_model
        self.tracker = RealTracker(world_model, include_h)
        self.include_h = self.tracker.include_h
        dim = world_model.z_dim + (world_model.hidden_dim if self.include_h else 0)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)

    @property
    def z(self) -> Tensor:
        """Current latent z_t (posterior mean), float32 (1, z_dim)."""
        return self.tracker.z

    @property
    def state(self) -> LSTMState | None:
        """MDN-RNN state ``(h_t, c_t)`` after the real steps so far (None without memory)."""
        return self.tracker.state

    def _obs(self) -> np.ndarray:
        return self.tracker.obs()[0].numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        frame, info = self.env.reset(seed=seed, options=options)
        self.tracker.reset()
        self.tracker.observe_frame(self.world_model.encode(frame)[0], frame)
        info = dict(info, frame=frame)
        return self._obs(), info

    def step(self, action: np.ndarray):
        self.tracker.advance(action)
        frame, reward, terminated, truncated, info = self.env.step(action)
        self.tracker.observe_frame(self.world_model.encode(frame)[0], frame)
        info = dict(info, frame=frame)
        return self._obs(), float(reward), terminated, truncated, info
