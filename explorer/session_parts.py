"""What the parts of :class:`explorer.session.Session` share: its state, declared once with its types.

``Session`` is assembled from :class:`explorer.session_models.ModelSlots`, :class:`explorer.session_dream.DreamSide`
and :class:`explorer.session_inside.InsideViews`; each part reads state that ``Session.__init__`` sets and calls
methods that another part defines. :class:`SessionParts` declares both (annotations only: no values, no code at
run time), so the type checker sees one shared interface and a newcomer finds every attribute in one place, with
its meaning documented where ``Session.__init__`` sets it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from core.api import BatchedDream, DreamCars, DreamMap, RandomExplorationPolicy, RealTracker, TileReward, WorldModel
from core.models import MDNRNN, Controller, VisionModel
from core.models.dds_vae import DDSMaskOutput
from core.vision_runtime import VisionRuntime
from explorer.input import HumanInput
from explorer.profiler import FrameClock
from explorer.recording import Recorder
from explorer.session_state import (
    DreamSource,
    Driver,
    Mode,
    Reconstruction,
    RingBuffer,
    RoadShares,
    SessionConfig,
    Tally,
)


class SessionParts:
    """The attributes of a session and the methods its parts call across each other (see the module)."""

    # -- settings --
    config: SessionConfig
    clock: FrameClock
    rng: np.random.Generator
    torch_rng: torch.Generator
    mode: Mode
    driver: Driver
    _tau: float
    _horizon: int
    _futures: int
    dream_source: DreamSource
    data_dir: Path
    seed: int
    paused: bool
    _step_once: bool
    decode_all_futures: bool
    native_kernels: bool
    second_core_free: bool
    _kernels_pinned: bool
    parallel_split: bool
    vision_onednn: bool
    wants_reconstruction: bool
    human: HumanInput
    random_policy: RandomExplorationPolicy
    action: np.ndarray
    recorder: Recorder
    history: dict[str, RingBuffer]
    real_tally: Tally
    dream_tally: Tally
    _zoom_resync: bool
    # -- models --
    vision: VisionModel | None
    vision_runtime: VisionRuntime | None
    memory: MDNRNN | None
    controller: Controller | None
    model_notes: dict[str, str]
    model_paths: dict[str, Path | None]
    world_model: WorldModel | None
    # -- the real env and its [z, h] tracking --
    env: gym.Env
    real_frame: np.ndarray
    real_version: int
    _real_x: Tensor | None
    _tracker: RealTracker | None
    _real_mask: DDSMaskOutput | None
    speed: float
    dream_speed: float | None
    # -- the dream --
    dream: BatchedDream | None
    dream_version: int
    dataset_frame: np.ndarray | None
    dream_origin: str
    _road: RoadShares | None
    ground_dream: bool
    _ground: tuple[DreamMap, DreamCars] | None
    _ground_reward: TileReward | None
    _reality_map: DreamMap | None
    _reality_episode: int
    # -- the views inside --
    z_edit: np.ndarray | None
    edit_version: int
    _cache: dict[str, tuple[Any, Any]]
    """Views computed once per state: name -> (stamp, view); the stamp is the version of the state the view
    shows, or (that version, time.monotonic() when made) for views refreshed at a lower rate."""
    _recon_seconds: float
    recon_version: int
    mask_version: int

    if TYPE_CHECKING:  # defined by one part, called by another

        def _inference(self, stage: str, vision: bool = False) -> AbstractContextManager[None]: ...
        def _track_reset(self) -> None: ...
        def _encode_real(self) -> None: ...
        def _step_real(self, action: np.ndarray) -> tuple[float, bool, bool]: ...
        def _ground_start(self, source: str) -> None: ...
        def _settle_real(self) -> None: ...
        def _ground_observe(self) -> None: ...
        def _ground_step(self, actions: Tensor) -> float | None: ...
        def start_dream(self, source: DreamSource | None = None, z: np.ndarray | None = None) -> None: ...
        def _recon_due(self, now: float) -> bool: ...
        def _make_reconstruction(self, out: Tensor, now: float) -> Reconstruction: ...
        @property
        def _batched_reconstruction(self) -> bool: ...
        @property
        def _parallel_step(self) -> bool: ...
        @property
        def _real_z(self) -> Tensor | None: ...
        @property
        def _real_state(self) -> tuple[Tensor, Tensor] | None: ...
        @property
        def real_z(self) -> np.ndarray | None: ...
        @property
        def dream_z(self) -> np.ndarray | None: ...
        @property
        def futures(self) -> int: ...
        @property
        def can_dream(self) -> bool: ...
        @property
        def can_autopilot(self) -> bool: ...
        @property
        def has_mask(self) -> bool: ...
