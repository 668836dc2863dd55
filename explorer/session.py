"""The explorer's state and simulation, in one object with no GUI imports.

A :class:`Session` holds the world model (V, M, C, each optional), the real ``CarRacing-v3`` with its ``[z, h]``
tracking (as :class:`core.api.WorldModelObservation` does it: ``z_t`` the posterior mean of the frame, ``h_t`` the
MDN-RNN state after ``(z_{t-1}, a_{t-1})``), N dreams batched in a :class:`core.api.BatchedDream`, who drives
(human, autopilot or random), the telemetry, and the recorder. The GUI reads it and calls its methods; the GUI
tests and the unit tests drive it the same way. Everything shown is computed lazily and cached per step, so a
hidden panel costs nothing.

The class is written in five rooms: this module (settings, the real env and its tracking, the step, recording),
:mod:`explorer.session_models` (the model slots), :mod:`explorer.session_dream` (the dream),
:mod:`explorer.session_ground` (the grounded dream: its map and car physics) and :mod:`explorer.session_inside` (the
views inside the models); :mod:`explorer.session_state` holds the value types and constants the panels read.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from core.api import (
    BatchedDream,
    RandomExplorationPolicy,
    RealTracker,
    WorldModel,
    car_speed,
    car_yaw_rate,
    default_paths,
    make_real_env,
)
from core.vision_runtime import VisionRuntime
from explorer.input import DriveKeys, HumanInput
from explorer.profiler import FrameClock
from explorer.recording import Recorder
from explorer.session_dream import DreamSide
from explorer.session_ground import GroundSide
from explorer.session_inside import InsideViews
from explorer.session_models import ModelSlots
from explorer.session_state import (  # noqa: F401  (re-exported: the panels and tests import them from here)
    DREAM_SOURCES,
    DRIVERS,
    FRAME_BUDGET,
    HISTORY,
    LOST_ROAD_STEPS,
    MASK_PERIOD,
    MAX_FUTURES,
    MISSING,
    MODES,
    NO_KEYS,
    ONEDNN_CHANNELS_LAST,
    REAL_ROAD_MIN,
    RECON_PERIOD,
    RECON_SHARE,
    SPREAD_PERIOD,
    SPREAD_SAMPLES,
    TAU_RANGE,
    VISION_KINDS,
    ZOOM_STEPS,
    DreamSource,
    Driver,
    MaskViews,
    Mode,
    Part,
    Reconstruction,
    RingBuffer,
    RoadShares,
    SessionConfig,
    Tally,
    describe,
    heat_map,
)

log = logging.getLogger("explorer")


class Session(ModelSlots, DreamSide, GroundSide, InsideViews):
    """Models, the real env, the dream, the driver, telemetry and recording.

    Args:
        config: the start settings.
        clock: frame clock that times the model and env sections (for ``--profile``).
    """

    def __init__(self, config: SessionConfig | None = None, clock: FrameClock | None = None) -> None:
        self.config = cfg = config or SessionConfig()
        self.clock = clock or FrameClock()
        self.rng = np.random.default_rng(cfg.seed)
        self.torch_rng = torch.Generator().manual_seed(cfg.seed)
        self.mode: Mode = cfg.mode
        self.driver: Driver = cfg.driver
        self._tau = float(np.clip(cfg.tau, *TAU_RANGE))
        self._horizon = max(1, cfg.horizon)
        self._futures = int(np.clip(cfg.futures, 1, MAX_FUTURES))
        self.dream_source: DreamSource = cfg.dream_source
        self.data_dir = Path(cfg.data_dir)
        self.seed = cfg.seed
        self.paused = False
        self._step_once = False
        self.decode_all_futures = False
        """Set by the futures grid when it is on screen: decode every dream, not only the first."""
        self.native_kernels = True
        """Run inference on PyTorch's native CPU kernels instead of oneDNN (except a vision model of
        ONEDNN_CHANNELS_LAST): oneDNN re-packs a ConvTranspose2d's weights at every call, which at batch 1 costs 5
        of the ConvVAE's 7.7 ms decode (native: 2.7 ms). The switch is process-wide, so the app turns this off while
        a training thread runs (bf16 training is 30x slower without oneDNN)."""
        self.second_core_free = True
        """Nothing else computes beside the frame's thread (the app clears it while a training stage runs): V may
        then run on VISION_THREADS threads wherever it is the only model work (not in split mode's parallel step)."""
        self._kernels_pinned = False
        """Inside ``_pinned_kernels``: model sections leave the oneDNN switch as it was set there."""
        self.parallel_split = cfg.parallel_split
        """Split mode steps the dream on a second thread beside the real env step (see SessionConfig)."""
        self._dream_thread: ThreadPoolExecutor | None = None
        self.vision_onednn = False
        """V runs on oneDNN with channels-last weights and inputs (see ONEDNN_CHANNELS_LAST); set at load."""
        self.wants_reconstruction = False
        """Set by the Vision panel when it is on screen: the reconstruction is decoded in one batch with the
        dream when it is due."""
        self.human = HumanInput()
        self.random_policy = RandomExplorationPolicy()
        self.action = np.zeros(3, np.float32)
        self.recorder = Recorder()
        self.history = {name: RingBuffer() for name in ("real_return", "dream_return", "speed", "div_latent",
                                                        "div_pixel", "spread", "road_real", "road_dream",
                                                        "dream_speed")}  # fmt: skip
        self.real_tally = Tally()
        self.dream_tally = Tally()
        self._zoom_resync = False  # the real episode started zoomed in; re-sync the split dream once settled
        # -- models --
        self.vision = None
        self.vision_runtime: VisionRuntime | None = None
        self.memory = None
        self.controller = None
        self.model_notes: dict[str, str] = dict(MISSING)
        self.model_paths: dict[str, Path | None] = dict.fromkeys(MISSING)
        self.world_model: WorldModel | None = None
        # -- real env and its [z, h] tracking --
        self.env = make_real_env()
        self.real_frame = np.zeros((96, 96, 3), np.uint8)
        self.real_version = 0
        self._real_x: Tensor | None = None
        self._tracker: RealTracker | None = None  # z_t and M's (h_t, c_t) of the real episode (None without V)
        self._real_mask = None
        self.speed = self.yaw_rate = 0.0  # reality's car: world units/s, rad/s (counter-clockwise positive)
        self.dream_speed = None  # the first dream's speed from M's speed head (world units/s), None without one
        # -- dream --
        self.dream: BatchedDream | None = None
        self.dream_version = 0
        self.ground_dream = cfg.ground_dream
        self._ground = None  # the grounded dream's maps and cars, and reality's map (explorer.session_ground)
        self._ground_reward = None  # its reward rule
        self._reality_map, self._reality_episode = None, 0
        self.dataset_frame: np.ndarray | None = None
        self.dream_origin = "real"
        """Where the current dream started: a DreamSource, or "edit" (an edited latent)."""
        self._road: RoadShares | None = None
        self.z_edit: np.ndarray | None = None
        self.edit_version = 0
        self._cache = {}
        self._recon_seconds = 0.0
        self.recon_version = 0
        """Counts the reconstructions made (a texture uploads a new one only)."""
        self.mask_version = 0
        """Counts the mask views made."""
        self.reset_real(self.seed)
        paths = default_paths(cfg.vision_kind, cfg.assets)
        self.load_models(cfg.vision or paths.vision, cfg.memory or paths.memory, cfg.controller or paths.controller)
        if self.mode != "real" and not self.can_dream:
            self.mode = "real"
        if cfg.driver == "autopilot" and self.driver != "autopilot":
            self.reset_real()  # no controller: load_models handed the wheel to a human, who starts past the zoom

    # ------------------------------------------------------------------------------------------------
    # settings the GUI edits
    # ------------------------------------------------------------------------------------------------
    @property
    def tau(self) -> float:
        """MDN temperature; a new value acts on the next dream step."""
        return self._tau

    @tau.setter
    def tau(self, value: float) -> None:
        self._tau = float(np.clip(value, *TAU_RANGE))
        if self.dream is not None:
            self.dream.tau = self._tau

    @property
    def horizon(self) -> int:
        """Dream steps before the dream restarts."""
        return self._horizon

    @horizon.setter
    def horizon(self, value: int) -> None:
        self._horizon = max(1, int(value))
        if self.dream is not None:
            self.dream.max_steps = self._horizon

    @property
    def futures(self) -> int:
        """Dreams batched from one state; a new number restarts the dream."""
        return self._futures

    @futures.setter
    def futures(self, value: int) -> None:
        value = int(np.clip(value, 1, MAX_FUTURES))
        if value != self._futures:
            self._futures = value
            if self.dream is not None:
                self.start_dream()

    def set_mode(self, mode: Mode) -> None:
        """Switch between real, dream and split; the dream needs V and M (otherwise the mode stays real)."""
        if mode != "real" and not self.can_dream:
            log.warning("cannot dream: %s", self.model_notes["vision" if self.vision is None else "memory"])
            return
        previous, self.mode = self.mode, mode
        if mode == "split" or (mode == "dream" and self.dream is None) or previous == "real":
            self.start_dream("real" if mode == "split" else None)

    def set_driver(self, driver: Driver) -> None:
        """Hand the wheel to ``driver`` (the autopilot needs a controller)."""
        if driver == "autopilot" and not self.can_autopilot:
            log.warning("autopilot: %s", self.model_notes["controller"])
            return
        if driver == "random":
            self.random_policy.reset(int(self.rng.integers(2**31)))
        self.driver = driver
        self.human.reset()

    def toggle_autopilot(self) -> None:
        """Autopilot on, or back to the human."""
        self.set_driver("human" if self.driver == "autopilot" else "autopilot")

    def request_step(self) -> None:
        """While paused: advance exactly one step at the next tick."""
        self._step_once = True

    # ------------------------------------------------------------------------------------------------
    # real env
    # ------------------------------------------------------------------------------------------------
    def reset_real(self, seed: int | None = None) -> None:
        """Start a real episode on track ``seed`` (default: the same track).

        A human or the random driver starts past CarRacing's zoom-in (no action, uncounted); the autopilot
        drives from the first frame, as in ``evaluate`` and controller training, so its returns match theirs
        (starting it after the zoom, still and with a fresh MDN-RNN state, is a start it never trained on).
        """
        if seed is not None:
            self.seed = int(seed)
        skip_zoom = self.driver != "autopilot"  # set_driver and load_models keep it off without a controller
        with self.clock.section("env"):
            frame, _ = self.env.reset(seed=self.seed)
            for _ in range(ZOOM_STEPS if skip_zoom else 0):
                frame, *_ = self.env.step(np.zeros(3, np.float32))
        self.real_frame = frame
        self._zoom_resync = not skip_zoom
        self.real_tally = Tally(episode=self.real_tally.episode + 1)
        self.history["real_return"].clear()
        self.human.reset()
        self.random_policy.reset(self.seed)
        self._track_reset()
        if self.recorder.active:
            self.recorder.stop()
        if self.mode == "split" and self.can_dream:
            self.start_dream("real")

    def new_track(self) -> None:
        """Next track seed."""
        self.reset_real(self.seed + 1)

    def _track_reset(self) -> None:
        """Encode the current real frame afresh and zero the MDN-RNN state (the start of a tracking run)."""
        self._tracker = RealTracker(self.world_model) if self.world_model is not None else None
        self._encode_real()
        if self._tracker is not None:
            self._tracker.reset()  # z is the frame just encoded

    def _encode_real(self) -> None:
        self.real_version += 1
        self._real_x = self._real_mask = None
        if self.world_model is None or self._tracker is None:
            return
        assert self.vision_runtime is not None
        with self._inference("encode", vision=True):
            x = self.world_model.preprocess(self.real_frame)
            if self.vision_onednn and self.vision_runtime.backend == "pytorch":
                x = x.contiguous(memory_format=torch.channels_last)
            mu, _, self._real_mask = self.vision_runtime.encode(x)
        self._real_x = x
        self._tracker.observe_frame(mu, self.real_frame)
        self._ground_observe()

    @property
    def _real_z(self) -> Tensor | None:
        """z_t of the real frame, float32 (1, z_dim); None without V."""
        return None if self._tracker is None else self._tracker.z

    @property
    def _real_state(self) -> tuple[Tensor, Tensor] | None:
        """M's (h_t, c_t) in the real episode, each float32 (1, 1, hidden_dim); None without V and M."""
        return None if self._tracker is None else self._tracker.state

    def _real_obs(self) -> Tensor:
        """``[z_t, h_t]`` (or ``z_t`` for a V-only controller), float32 (1, input_dim)."""
        assert self.world_model is not None and self.world_model.controller is not None and self._tracker is not None
        return self._tracker.obs(include_h=self.world_model.controller.config.hidden_dim > 0)

    def _step_real(self, action: np.ndarray) -> tuple[float, bool, bool]:
        if self._tracker is not None and self._tracker.state is not None:
            with self._inference("memory"):
                self._tracker.advance(action)
        with self.clock.section("env"):
            frame, reward, terminated, truncated, _ = self.env.step(action)
            self.speed, self.yaw_rate = car_speed(self.env), car_yaw_rate(self.env)
        self.real_frame = frame
        self._encode_real()
        self.real_tally.add(float(reward))
        self.history["real_return"].append(self.real_tally.ret)
        self.history["speed"].append(self.speed)
        return float(reward), bool(terminated), bool(truncated)

    @property
    def real_z(self) -> np.ndarray | None:
        """z of the current real frame (posterior mean), float32 (z_dim,), or None without V."""
        return None if self._real_z is None else self._real_z[0].numpy()

    # ------------------------------------------------------------------------------------------------
    # the step
    # ------------------------------------------------------------------------------------------------
    def tick(self, keys: DriveKeys, pad: np.ndarray | None = None) -> bool:
        """One frame of the app: hand the wheel to a human who touches a key, then step unless paused.

        Returns:
            Whether a step was taken.
        """
        if self.driver != "human" and (keys.any or pad is not None):
            self.driver = "human"
            log.info("human takes over")
        if self.paused and not self._step_once:
            return False
        self._step_once = False
        self.step(keys, pad)
        return True

    def _choose_action(self, keys: DriveKeys, pad: np.ndarray | None) -> np.ndarray:
        """The driver's action, float32 (3,); in dream mode the autopilot drives the first dream."""
        if self.driver == "autopilot" and self.can_autopilot:
            assert self.world_model is not None and self.world_model.controller is not None
            controller = self.world_model.controller
            if self.mode == "dream" and self.dream is not None:
                obs = self.dream.observation()[:1]
                if controller.config.hidden_dim == 0:
                    obs = obs[:, : self.world_model.z_dim]
            else:
                obs = self._real_obs()
            with self._inference("controller"):
                return controller(obs)[0].numpy().astype(np.float32)
        if self.driver == "random":
            return np.asarray(self.random_policy.act(self.real_frame), np.float32)
        return self.human.step(keys, pad)

    def step(self, keys: DriveKeys = NO_KEYS, pad: np.ndarray | None = None) -> None:
        """Advance whatever the mode runs by one step with the driver's action, and record it."""
        self.action = self._choose_action(keys, pad)
        runs_real = self.mode in ("real", "split")
        runs_dream = self.mode in ("dream", "split") and self.dream is not None
        reward, terminated, truncated = 0.0, False, False
        dream_done = False
        if runs_real and runs_dream and self._parallel_step:
            reward, terminated, truncated, dream_done = self._step_both(self.action)
        else:
            if runs_real:
                reward, terminated, truncated = self._step_real(self.action)
            if runs_dream:
                dream_reward, dream_done = self._step_dream(self.action)
                if not runs_real:
                    reward, truncated = dream_reward, dream_done
        if runs_real and runs_dream:
            self._record_divergence()
        if self.recorder.active:
            self.recorder.add(
                self.real_frame if runs_real else None,
                self.dream_frame() if runs_dream else None,
                self.action, reward, terminated, truncated, self.driver,
            )  # fmt: skip
        if runs_real and runs_dream and self._zoom_resync and self.real_tally.step >= ZOOM_STEPS:
            # A dream started from a zooming-in frame imagines the wrong scale for its whole horizon: start
            # it again from the first settled frame (once per real episode).
            self._zoom_resync = False
            self.start_dream("real")
            dream_done = False
        if runs_real and (terminated or truncated):
            outcome = "lap complete" if terminated and reward > 0 else "episode over"
            log.info("%s on track %d: return %.1f in %d steps", outcome, self.seed, self.real_tally.ret,
                     self.real_tally.step)  # fmt: skip
            self.new_track()
        elif dream_done:
            self.start_dream("real" if self.mode == "split" else None)

    @property
    def _parallel_step(self) -> bool:
        """Split mode with ``parallel_split``: the dream steps on a second thread beside the real env step."""
        return self.parallel_split and self.mode == "split" and self.dream is not None

    def _step_both(self, action: np.ndarray) -> tuple[float, bool, bool, bool]:
        """Split mode's step with the dream's model work (M's step, V's decode) on a second thread while this one
        steps the real env and encodes its frame; the same states and frames as one after the other (tested).

        Returns:
            ``(real reward, terminated, truncated, dream done)``.
        """
        if self._dream_thread is None:
            self._dream_thread = ThreadPoolExecutor(1, thread_name_prefix="dream-step")
        with self._pinned_kernels():
            dream = self._dream_thread.submit(self._advance_dream, action, True)
            try:
                real = self._step_real(action)
            finally:
                with self.clock.section("model"), self.clock.stage("wait"):
                    dream_reward, dream_done = dream.result()
        self._dream_stepped(dream_reward)
        return (*real, dream_done)

    # ------------------------------------------------------------------------------------------------
    # recording
    # ------------------------------------------------------------------------------------------------
    def start_recording(self) -> None:
        """Record from now on what the mode runs (real frames, dream frames, or both)."""
        real = self.real_frame if self.mode in ("real", "split") else None
        dream = self.dream_frame() if self.mode in ("dream", "split") else None
        self.recorder.start(real, dream, self.seed)
        log.info("recording %s", self.mode)

    def close(self) -> None:
        """Release the env and the dream's thread."""
        if self._dream_thread is not None:
            self._dream_thread.shutdown(wait=True)
            self._dream_thread = None
        self.env.close()
