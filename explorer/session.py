"""The explorer's state and simulation, in one object with no GUI imports.

A :class:`Session` holds the world model (V, M, C, each optional), the real ``CarRacing-v3`` with its ``[z, h]``
tracking (as :class:`core.api.WorldModelObservation` does it: ``z_t`` the posterior mean of the frame, ``h_t`` the
MDN-RNN state after ``(z_{t-1}, a_{t-1})``), N dreams batched in a :class:`core.api.BatchedDream`, who drives
(human, autopilot or random), the telemetry, and the recorder. The GUI reads it and calls its methods; the GUI
tests and the unit tests drive it the same way. Everything shown is computed lazily and cached per step, so a
hidden panel costs nothing.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from core.api import (
    AssetWarning,
    BatchedDream,
    CheckpointError,
    ConfigError,
    DreamExplorerError,
    RandomExplorationPolicy,
    WorldModel,
    default_paths,
    list_episodes,
    load_model,
    make_real_env,
    read_checkpoint,
    read_episode,
    road_share,
    sample_mdn,
    to_uint8_hwc,
    tracks_road,
)
from explorer.input import DriveKeys, HumanInput
from explorer.profiler import FrameClock
from explorer.recording import Recorder

log = logging.getLogger("explorer")

Mode = Literal["real", "dream", "split"]
Driver = Literal["human", "autopilot", "random"]
DreamSource = Literal["real", "random", "dataset"]
Part = Literal["vision", "memory", "controller"]

MODES: tuple[Mode, ...] = ("real", "dream", "split")
DRIVERS: tuple[Driver, ...] = ("human", "autopilot", "random")
DREAM_SOURCES: tuple[DreamSource, ...] = ("real", "random", "dataset")
VISION_KINDS = ("conv_vae", "dds_vae")
MISSING = {
    "vision": "no vision model: train one in the Training panel or run `make assets`",
    "memory": "no memory model (MDN-RNN): train one in the Training panel or run `make assets`",
    "controller": "no controller: train one in the Training panel or run `make assets` (autopilot off)",
}
"""What a panel says when a part of the world model is not loaded."""
ZOOM_STEPS = 50
"""CarRacing zooms in during its first second (50 steps); a reset drives through it with no action."""
HISTORY = 600
"""Steps kept in the live plots."""
TAU_RANGE = (0.0, 2.0)
"""The temperatures the tau slider offers; 0 (its left end) is the deterministic dream: each step takes the most
likely component's mean, no noise (the MDN's mode, as ``--tau 0`` on the command line)."""
MAX_FUTURES = 16
"""Most dreams batched from one state."""
RECON_PERIOD = 0.1
"""Seconds between two refreshes of V's reconstruction in the Vision panel, at least (see RECON_SHARE)."""
RECON_SHARE = 0.1
"""Most of the wall time the Vision panel's decode may take: a slow decoder refreshes less often."""
MASK_PERIOD = 0.1
"""Seconds between two refreshes of the DDS mask views while the frame rate is below FRAME_BUDGET's."""
FRAME_BUDGET = 1 / 50
"""Seconds a frame may take (CarRacing's 50 Hz); slower frames refresh the mask views at most every MASK_PERIOD."""
ONEDNN_CHANNELS_LAST = ("dds_vae",)
"""Vision kinds that run inference on oneDNN with channels-last weights (measured at batch 1 on 2 cores: the
DDS+VAE encodes in 9.8 ms instead of 19 ms on the native kernels, decodes in 11 ms instead of 21). The ConvVAE
stays on the native kernels (decode 1.1 ms vs 4.6 ms: oneDNN re-packs a ConvTranspose2d's weights at every
call), and so does the MDN-RNN (a step 0.09 ms vs 0.34 ms)."""
NO_KEYS = DriveKeys()
"""No driving key held."""
SPREAD_PERIOD = 0.1
"""Seconds between two refreshes of the next-step spread at the same tau, at least."""
SPREAD_SAMPLES = 16
"""Samples of z_{t+1} drawn to measure the next-step spread at the current tau."""
LOST_ROAD_STEPS = 30
"""Split steps the dream may lose the road while reality shows road before the view suggests a restart (G)."""
REAL_ROAD_MIN = 0.05
"""Road share above which reality's frame counts as showing road (an on-road frame shows 0.1 or more)."""


@dataclass
class SessionConfig:
    """Where the models come from and how the session starts."""

    assets: Path | None = None
    """Directory of the shipped checkpoints (default: core's ``assets/``)."""
    vision_kind: str = "conv_vae"
    """Which shipped world model to load: ``conv_vae`` or ``dds_vae``."""
    vision: Path | None = None
    """Vision checkpoint (overrides the shipped one)."""
    memory: Path | None = None
    """MDN-RNN checkpoint (overrides the shipped one)."""
    controller: Path | None = None
    """Controller checkpoint (overrides the shipped one)."""
    mode: Mode = "split"
    """What runs: the real env, the dream, or both side by side fed the same actions."""
    driver: Driver = "human"
    """Who drives at start."""
    tau: float = 1.0
    """MDN temperature of the dream, in TAU_RANGE (0: the deterministic dream, the MDN's mode)."""
    seed: int = 0
    """Track seed of the real env (and seed of the dream's random streams)."""
    horizon: int = 300
    """Dream steps before the dream restarts (in split mode: re-synchronises with reality)."""
    futures: int = 4
    """Dreams batched from the same state (the futures grid)."""
    dream_source: DreamSource = "real"
    """Where a new dream starts: the current real frame, a random z, or a frame of the dataset."""
    data_dir: Path = Path("data/episodes")
    """Dataset directory (dataset frames for dreams, recorded episodes)."""


class RingBuffer:
    """The last ``size`` values of a stream in a fixed float32 array (memory stays flat)."""

    def __init__(self, size: int = HISTORY) -> None:
        self._data = np.zeros(size, np.float32)
        self._n = 0

    def append(self, value: float) -> None:
        self._data[self._n % len(self._data)] = value
        self._n += 1

    def clear(self) -> None:
        self._n = 0

    def values(self) -> np.ndarray:
        """Values in order, oldest first, float32 (min(n, size),)."""
        size = len(self._data)
        if self._n <= size:
            return self._data[: self._n]
        return np.roll(self._data, -(self._n % size))

    @property
    def last(self) -> float:
        return float(self._data[(self._n - 1) % len(self._data)]) if self._n else 0.0


@dataclass
class Tally:
    """Running figures of one side (real or dream) in its current episode."""

    step: int = 0
    reward: float = 0.0
    ret: float = 0.0
    episode: int = 0

    def add(self, reward: float) -> None:
        self.step += 1
        self.reward = reward
        self.ret += reward


@dataclass(frozen=True)
class RoadShares:
    """How much road reality and the dream show (``core.api.road_share``), measured at each dream step.

    Reality's share is taken on V's input (the real frame as ``WorldModel.preprocess`` makes it), the dream's on
    the first dream's decoded frame, so both are at the model's resolution without the HUD.
    """

    dream: float
    """Road share of the first dream's decoded frame, in [0, 1]."""
    real: float | None
    """Road share of V's input, in [0, 1]; None outside split mode."""
    tracks: bool | None
    """``core.api.tracks_road``: the dream's share is within +-50% of reality's (or within 0.02); None outside
    split mode."""
    dream_steps: int
    """Dream steps since the dream (re)started."""
    lost_steps: int = 0
    """Consecutive split steps the dream has not tracked the road while reality showed road."""

    @property
    def lost(self) -> bool:
        """The dream has lost the road for more than LOST_ROAD_STEPS steps while reality has road."""
        return self.lost_steps > LOST_ROAD_STEPS


class Reconstruction(NamedTuple):
    """V's view of the current real frame, uint8 (S, S, 3) images at the model's resolution."""

    input: np.ndarray
    """What V sees: the frame without the HUD, resized to S x S."""
    output: np.ndarray
    """decode(mu)."""
    error: np.ndarray
    """Per-pixel absolute error, mean over channels, as a heat map (inferno, 0 .. max_error)."""
    mse: float
    """Mean squared error per pixel value, in [0, 1] units."""
    max_error: float
    """Error shown as the hottest colour, in [0, 1] units."""


class MaskViews(NamedTuple):
    """The DDS+VAE's selection on the current real frame, uint8 RGB images."""

    mask: np.ndarray
    """The binary DDS mask (96, 96, 3): a channel value is 255 where selected."""
    gated: np.ndarray
    """The gated input x * mask * g (96, 96, 3), brightened x4 to be visible."""
    mini_mask: np.ndarray
    """The 4 x 16 x 16 mini mask as four grey tiles in a 2 x 2 grid (32, 32, 3)."""
    kept: float
    """Share of input values the mask keeps (about 0.03)."""


def describe(model: nn.Module, path: Path) -> str:
    """One line about a loaded checkpoint: its kind, file name and headline metric."""
    metrics: dict[str, float] = getattr(model, "checkpoint_metrics", {}) or {}
    keys = [k for k in metrics if k.endswith(("val/recon", "val/nll", "return_mean", "real_return", "fitness_best"))]
    extra = f", {keys[0].split('/', 1)[-1]} {metrics[keys[0]]:.4g}" if keys else ""
    return f"{getattr(model, 'kind', type(model).__name__)}: {path.name}{extra}"


def heat_map(error: np.ndarray, max_error: float) -> np.ndarray:
    """Errors float (H, W) in [0, max_error] -> uint8 (H, W, 3) RGB inferno colours."""
    scaled = np.clip(error / max(max_error, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


class Session:
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
                                                        "div_pixel", "spread", "road_real", "road_dream")}  # fmt: skip
        self.real_tally = Tally()
        self.dream_tally = Tally()
        self._zoom_resync = False  # the real episode started zoomed in; re-sync the split dream once settled
        # -- models --
        self.vision: nn.Module | None = None
        self.memory: nn.Module | None = None
        self.controller: nn.Module | None = None
        self.model_notes: dict[str, str] = dict(MISSING)
        self.model_paths: dict[str, Path | None] = dict.fromkeys(MISSING)
        self.world_model: WorldModel | None = None
        # -- real env and its [z, h] tracking --
        self.env = make_real_env()
        self.real_frame = np.zeros((96, 96, 3), np.uint8)
        self.real_version = 0
        self._real_x: Tensor | None = None
        self._real_z: Tensor | None = None
        self._real_state: tuple[Tensor, Tensor] | None = None
        self._real_mask = None
        self.speed = 0.0
        # -- dream --
        self.dream: BatchedDream | None = None
        self.dream_version = 0
        self.dataset_frame: np.ndarray | None = None
        self.dream_origin = "real"
        """Where the current dream started: a DreamSource, or "edit" (an edited latent)."""
        self._road: RoadShares | None = None
        self.z_edit: np.ndarray | None = None
        self.edit_version = 0
        self._cache: dict[str, tuple[object, object]] = {}
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
    # models
    # ------------------------------------------------------------------------------------------------
    @contextmanager
    def _inference(self, stage: str, vision: bool = False) -> Iterator[None]:
        """A model section without autograd, timed as ``stage``, on native kernels when ``native_kernels`` is set
        (for V: unless it runs on oneDNN, ``vision_onednn``)."""
        mkldnn = torch.backends.mkldnn
        was_enabled = mkldnn.enabled
        native = self.native_kernels and not (vision and self.vision_onednn)
        with self.clock.section("model"), self.clock.stage(stage), torch.inference_mode():
            mkldnn.enabled = was_enabled and not native
            try:
                yield
            finally:
                mkldnn.enabled = was_enabled

    def load_models(self, vision: Path | None, memory: Path | None, controller: Path | None) -> None:
        """Load each part that has a path; a missing or bad file leaves that part out with a note."""
        kinds: dict[Part, tuple[str, ...]] = {
            "vision": VISION_KINDS, "memory": ("mdnrnn",), "controller": ("controller",),
        }  # fmt: skip
        for part, path in (("vision", vision), ("memory", memory), ("controller", controller)):
            if path is None:
                continue
            try:
                with warnings.catch_warnings(record=True) as caught:  # e.g. a shipped file with no manifest to check
                    warnings.simplefilter("always", AssetWarning)
                    model = load_model(path, kinds[part])  # type: ignore[index]
            except CheckpointError as exc:
                setattr(self, part, None)
                self.model_paths[part] = Path(path)
                missing = not Path(path).is_file()
                self.model_notes[part] = MISSING[part] if missing else f"cannot load {part}: {exc}"
                log.warning("%s: %s", part, self.model_notes[part])
                continue
            setattr(self, part, model)
            self.model_paths[part] = Path(path)
            self.model_notes[part] = describe(model, Path(path))
            for w in caught:
                if issubclass(w.category, AssetWarning):
                    self.model_notes[part] += f"; warning: {w.message}"
                    log.warning("%s: %s", part, w.message)
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self._assemble()

    def use_shipped(self, vision_kind: str) -> None:
        """Load the shipped world model of ``vision_kind`` (``conv_vae`` or ``dds_vae``) from the assets."""
        self.config.vision_kind = vision_kind
        self.vision = self.memory = self.controller = None
        self.model_notes = dict(MISSING)
        self.model_paths = dict.fromkeys(MISSING)
        paths = default_paths(vision_kind, self.config.assets)
        self.load_models(paths.vision, paths.memory, paths.controller)

    def load_checkpoint(self, path: str | Path) -> str:
        """Load one checkpoint into the running session, choosing the part by the kind it holds.

        Returns:
            A one-line message for the GUI.

        Raises:
            CheckpointError: unreadable file or a kind the explorer does not use.
        """
        kind = read_checkpoint(path).kind
        part: Part
        if kind in VISION_KINDS:
            part = "vision"
        elif kind == "mdnrnn":
            part = "memory"
        elif kind == "controller":
            part = "controller"
        else:
            raise CheckpointError(f"{path}: a {kind!r} checkpoint is not a vision, memory or controller model")
        self.load_models(*(Path(path) if p == part else None for p in ("vision", "memory", "controller")))
        message = f"loaded {part}: {self.model_notes[part]}"
        if self.world_model is not None and self.world_model.lineage_warning:  # M trained on another V's latents
            message += f"; warning: {self.world_model.lineage_warning}"
        log.info(message)
        return message

    def _assemble(self) -> None:
        """Rebuild the world model from the loaded parts, dropping those that do not fit, and resync."""
        self.world_model = None
        if self.vision is not None:
            for drop in ((), ("controller",), ("memory", "controller")):
                for part in drop:
                    if getattr(self, part) is not None:
                        setattr(self, part, None)
                        self.model_notes[part] = f"unloaded: it does not fit the vision model ({part} sizes differ)"
                        log.warning("%s: %s", part, self.model_notes[part])
                try:
                    self.world_model = WorldModel(self.vision, self.memory, self.controller)  # type: ignore[arg-type]
                    break
                except CheckpointError:
                    continue
        self.vision_onednn = getattr(self.vision, "kind", None) in ONEDNN_CHANNELS_LAST
        if self.vision is not None:
            fmt = torch.channels_last if self.vision_onednn else torch.contiguous_format
            self.vision.to(memory_format=fmt)
        self._cache.clear()
        self._track_reset()
        self.dream = None
        if self.mode != "real" and self.can_dream:
            self.start_dream()
        if not self.can_autopilot and self.driver == "autopilot":
            self.driver = "human"

    @property
    def can_dream(self) -> bool:
        """V and M are loaded."""
        return self.world_model is not None and self.world_model.memory is not None

    @property
    def can_autopilot(self) -> bool:
        """C is loaded (with V, and with M when it reads h)."""
        return self.world_model is not None and self.world_model.controller is not None

    @property
    def has_mask(self) -> bool:
        """The vision model is a DDS+VAE (it has a ``mask`` method)."""
        return self.vision is not None and hasattr(self.vision, "mask")

    @property
    def dds_eval_gates(self) -> str | None:
        """How the DDS+VAE's DDS gates in evaluation ("deterministic" or "frozen-noise"; None for a ConvVAE)."""
        return self.vision.config.eval_gates if self.has_mask else None  # type: ignore[union-attr]

    def set_dds_eval_gates(self, eval_gates: str) -> None:
        """Switch the DDS+VAE's evaluation gates and re-encode the current real frame (a diagnostic: M and C
        were trained on the latents of the checkpoint's own choice).

        Raises:
            ConfigError: an unknown choice, or V is not a DDS+VAE.
        """
        if not self.has_mask:
            raise ConfigError("evaluation gates belong to a DDS+VAE; the loaded vision model is not one")
        self.vision.set_eval_gates(eval_gates)  # type: ignore[union-attr, operator]
        self._cache.clear()
        self._encode_real()

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
        self._real_state = None
        if self.world_model is not None and self.world_model.memory is not None:
            self._real_state = self.world_model.initial_state(1)
        self._encode_real()

    def _encode_real(self) -> None:
        self.real_version += 1
        self._real_x = self._real_z = self._real_mask = None
        if self.world_model is None:
            return
        with self._inference("encode", vision=True):
            x = self.world_model.preprocess(self.real_frame)
            if self.vision_onednn:
                x = x.contiguous(memory_format=torch.channels_last)
            encode_with_mask = getattr(self.vision, "encode_with_mask", None)
            if encode_with_mask is not None:
                mu, _, self._real_mask = encode_with_mask(x)
            else:
                mu, _ = self.world_model.vision.encode(x)
        self._real_x, self._real_z = x, mu

    def _real_obs(self) -> Tensor:
        """``[z_t, h_t]`` (or ``z_t`` for a V-only controller), float32 (1, input_dim)."""
        assert self.world_model is not None and self.world_model.controller is not None and self._real_z is not None
        if self.world_model.controller.config.hidden_dim == 0 or self._real_state is None:
            return self._real_z
        return torch.cat([self._real_z, self._real_state[0][0]], dim=1)

    def _step_real(self, action: np.ndarray) -> tuple[float, bool, bool]:
        if self._real_state is not None and self._real_z is not None:
            assert self.world_model is not None
            with self._inference("memory"):
                a = torch.from_numpy(action).view(1, 3)
                _, self._real_state = self.world_model.require_memory().step(self._real_z, a, self._real_state)
        with self.clock.section("env"):
            frame, reward, terminated, truncated, _ = self.env.step(action)
            velocity = self.env.unwrapped.car.hull.linearVelocity  # type: ignore[attr-defined]
        self.real_frame = frame
        speed = math.hypot(velocity[0], velocity[1])
        self.speed = speed if speed > 1e-3 else 0.0  # Box2D leaves ~1e-11 at rest
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
    # dream
    # ------------------------------------------------------------------------------------------------
    def start_dream(self, source: DreamSource | None = None, z: np.ndarray | None = None) -> None:
        """Start ``futures`` dreams from one state.

        Args:
            source: ``"real"``: the current real frame and, when M tracks reality, its LSTM state (the dream
                continues where reality stands); ``"random"``: z ~ N(0, I); ``"dataset"``: a random frame of a
                random episode in ``data_dir``. Default: ``dream_source``.
            z: start from this latent (float32 (z_dim,)) with a zero LSTM state instead.
        """
        if not self.can_dream:
            return
        wm = self.world_model
        assert wm is not None
        source = source or self.dream_source
        state = None
        if z is not None:
            z0 = torch.as_tensor(np.asarray(z, np.float32)).view(1, -1)
        elif source == "real":
            assert self._real_z is not None
            z0, state = self._real_z, self._real_state
        elif source == "random":
            z0 = torch.randn(1, wm.z_dim, generator=self.torch_rng)
        else:
            try:
                self.dataset_frame = self.pick_dataset_frame()
            except DreamExplorerError as exc:
                log.warning("dream from the dataset: %s; dreaming from the real frame", exc)
                self.start_dream("real")
                return
            with self._inference("encode", vision=True):
                z0 = wm.encode(self.dataset_frame)[0]
        if self.dream is None or self.dream.n != self.futures or self.dream.memory is not wm.memory:
            self.dream = BatchedDream(wm.require_memory(), self.futures, tau=self._tau, max_steps=self._horizon)
        seeds = self.rng.integers(0, 2**31, size=self.futures).tolist()
        with self._inference("memory"):
            self.dream.reset(seeds, z=z0, state=state)
        self.dream_tally = Tally(episode=self.dream_tally.episode + 1)
        self.dream_origin = "edit" if z is not None else source
        self.history["dream_return"].clear()
        self.dream_version += 1
        self._measure_road(restarted=True)

    def pick_dataset_frame(self) -> np.ndarray:
        """A random frame (past the zoom-in) of a random episode in ``data_dir``, uint8 (96, 96, 3).

        Raises:
            EpisodeError: no episodes or a corrupt one.
        """
        files = list_episodes(self.data_dir)
        frames = read_episode(files[int(self.rng.integers(len(files)))]).frames
        return np.array(frames[int(self.rng.integers(min(ZOOM_STEPS, len(frames) - 1), len(frames)))])

    def _dream_actions(self, action: np.ndarray) -> Tensor:
        """Actions of the N dreams, float32 (N, 3): in dream mode the autopilot acts on each dream's own
        ``[z, h]``; otherwise every dream gets ``action`` (reality's, in split mode)."""
        assert self.dream is not None
        if self.driver == "autopilot" and self.mode == "dream" and self.can_autopilot and self.dream.n > 1:
            assert self.world_model is not None and self.world_model.controller is not None
            controller = self.world_model.controller
            obs = self.dream.observation()
            if controller.config.hidden_dim == 0:
                obs = obs[:, : self.world_model.z_dim]
            with self._inference("controller"):
                return controller(obs)
        return torch.from_numpy(action).view(1, 3).expand(self.dream.n, 3)

    def _step_dream(self, action: np.ndarray) -> tuple[float, bool]:
        assert self.dream is not None
        actions = self._dream_actions(action)
        with self._inference("memory"):
            _, reward, _, _ = self.dream.step(actions)
        self.dream_version += 1
        self.dream_tally.add(float(reward[0]))
        self.history["dream_return"].append(self.dream_tally.ret)
        if self.dream.n > 1:
            self.history["spread"].append(self.dream_spread())
        self._measure_road()
        return float(reward[0]), bool(self.dream.done[0])

    @property
    def dream_z(self) -> np.ndarray | None:
        """z of the first dream, float32 (z_dim,), or None when not dreaming."""
        return None if self.dream is None else self.dream.z[0].numpy()

    def dream_spread(self) -> float:
        """Spread of the N dreams: the std over dreams of z, averaged over dimensions (0 for one dream)."""
        if self.dream is None or self.dream.n < 2:
            return 0.0
        return float(self.dream.z.std(0).mean())

    def next_step_spread(self) -> float:
        """How far z_{t+1} scatters at the current tau from the first dream's state and the current action.

        The std over SPREAD_SAMPLES draws of ``sample_mdn`` (logits / tau, noise * sqrt(tau)), averaged over
        dimensions; it shows what the temperature does before the dream takes the step. 0 when not dreaming.
        A new tau shows at once; new steps at most every SPREAD_PERIOD seconds (a figure to read, not a plot).
        """
        if self.dream is None or self.world_model is None:
            return 0.0
        key = (self.dream_version, self._tau, tuple(self.action.tolist()))
        cached = self._cache.get("spread")
        now = time.monotonic()
        if cached is not None:
            (old_key, when), value = cached  # type: ignore[misc]
            if old_key == key or (old_key[1] == self._tau and now - when < SPREAD_PERIOD):
                return float(value)
        memory = self.world_model.require_memory()
        h, c = self.dream.state
        with self._inference("memory"):
            out, _ = memory.step(self.dream.z[:1], torch.from_numpy(self.action).view(1, 3), (h[:, :1], c[:, :1]))
            k = SPREAD_SAMPLES
            draws = sample_mdn(
                out.log_pi.expand(k, -1, -1), out.mu.expand(k, -1, -1), out.log_sigma.expand(k, -1, -1),
                self._tau, generator=self.torch_rng, joint=memory.config.joint,
            )  # fmt: skip
        spread = float(draws.std(0).mean())
        self._cache["spread"] = ((key, now), spread)
        return spread

    def dream_frames(self) -> np.ndarray | None:
        """Decoded dreams, uint8 (K, S, S, 3): all N when ``decode_all_futures`` else the first. None when idle."""
        if self.dream is None or self.world_model is None:
            return None
        k = self.dream.n if self.decode_all_futures else 1
        cached = self._cache.get("dream")
        if cached is not None and cached[0] == self.dream_version and len(cached[1]) >= k:  # type: ignore[arg-type]
            return cached[1]  # type: ignore[return-value]
        now = time.monotonic()
        with_recon = self._batched_reconstruction and self._real_z is not None and self._recon_due(now)
        z = torch.cat([self.dream.z[:k], self._real_z]) if with_recon else self.dream.z[:k]  # type: ignore[list-item]
        with self._inference("decode", vision=True):
            decoded = self.world_model.decode(z)
        if with_recon:  # one batch for both: V's decode costs less per image at batch 2 than at batch 1
            self._recon_seconds = (time.monotonic() - now) / len(z)
            self._make_reconstruction(decoded[k:], now)
            decoded = decoded[:k]
        frames = to_uint8_hwc(decoded)
        self._cache["dream"] = (self.dream_version, frames)
        self._cache["dream_x"] = (self.dream_version, decoded[:1])
        return frames

    def dream_frame(self) -> np.ndarray | None:
        """The first dream, decoded: uint8 (S, S, 3), or None."""
        frames = self.dream_frames()
        return None if frames is None else frames[0]

    @property
    def road(self) -> RoadShares | None:
        """Road shares of the current frames: reality's and the dream's in split mode, the dream's alone in dream
        mode, None in real mode or without a dream."""
        road = self._road
        if road is None or self.dream is None or self.mode == "real":
            return None
        if self.mode == "dream" and road.real is not None:  # measured in split mode, before a switch
            return RoadShares(road.dream, None, None, road.dream_steps)
        return road

    def _measure_road(self, restarted: bool = False) -> None:
        """Measure the road shares of the current frames (after a dream step, or at a (re)start with
        ``restarted``), and in split mode append them to the history.

        No extra model pass: the dream's share comes from the decode the view shows (cached per step; split mode
        decodes every step anyway for the divergence), reality's from V's input, already made to encode the frame.
        """
        if self.dream is None or self.mode == "real":
            self._road = None
            return
        self.dream_frames()
        cached = self._cache.get("dream_x")
        assert cached is not None and cached[0] == self.dream_version
        dream = road_share(cached[1])  # type: ignore[arg-type]
        steps = self.dream_tally.step  # 0 at a (re)start
        if self.mode != "split" or self._real_x is None:
            self._road = RoadShares(float(dream[0]), None, None, steps)
            return
        real = road_share(self._real_x)
        tracks = bool(tracks_road(dream, real)[0])
        previous = 0 if self._road is None else self._road.lost_steps
        lost = 0 if restarted or tracks or float(real[0]) <= REAL_ROAD_MIN else previous + 1
        self._road = RoadShares(float(dream[0]), float(real[0]), tracks, steps, lost)
        if not restarted:
            self.history["road_real"].append(float(real[0]))
            self.history["road_dream"].append(float(dream[0]))

    # ------------------------------------------------------------------------------------------------
    # seeing inside
    # ------------------------------------------------------------------------------------------------
    def reconstruction(self) -> Reconstruction | None:
        """V's reconstruction of the current real frame and its error (None without V).

        Refreshed at most every RECON_PERIOD seconds, and less often when the decode is slow (it then takes at
        most RECON_SHARE of the time): a decode per frame only for this picture would cost the DDS+VAE ~30 ms.
        In split mode with ``_batched_reconstruction``, the refresh comes with the dream's decode, in one batch.
        """
        if self.world_model is None or self._real_x is None or self._real_z is None:
            return None
        now = time.monotonic()
        cached = self._cache.get("recon")
        batched = self._batched_reconstruction and self.mode == "split" and self.dream is not None
        if cached is not None and (batched or not self._recon_due(now)):
            return cached[1]  # type: ignore[return-value]  # in split mode it comes with the next dream decode
        with self._inference("recon", vision=True):
            out = self.world_model.decode(self._real_z)
        self._recon_seconds = time.monotonic() - now
        return self._make_reconstruction(out, now)

    @property
    def _batched_reconstruction(self) -> bool:
        """The reconstruction is decoded with the dream: the Vision panel is on screen and V runs on oneDNN (there
        a batch of 2 costs the DDS+VAE 1.6 single decodes; the ConvVAE's native batch of 2 costs 3.4)."""
        return self.wants_reconstruction and self.vision_onednn

    def _recon_due(self, now: float) -> bool:
        """The reconstruction shown is of an older real frame and old enough to be refreshed."""
        cached = self._cache.get("recon")
        if cached is None:
            return True
        (version, when), _ = cached  # type: ignore[misc]
        period = max(RECON_PERIOD, self._recon_seconds / RECON_SHARE)
        return version != self.real_version and now - when >= period

    def _make_reconstruction(self, out: Tensor, now: float) -> Reconstruction:
        """The Reconstruction of the current real frame from ``out`` = decode(mu), float32 (1, 3, S, S); cached."""
        assert self._real_x is not None
        x = self._real_x
        err = (out - x).abs().mean(1)[0].numpy()
        max_error = 0.25
        recon = Reconstruction(
            input=to_uint8_hwc(x)[0],
            output=to_uint8_hwc(out)[0],
            error=heat_map(err, max_error),
            mse=float((out - x).pow(2).mean()),
            max_error=max_error,
        )
        self._cache["recon"] = ((self.real_version, now), recon)
        self.recon_version += 1
        return recon

    def mask_views(self) -> MaskViews | None:
        """The DDS mask, gated input and mini mask of the current real frame (None unless V is a DDS+VAE)."""
        if not self.has_mask or self._real_x is None:
            return None
        cached = self._cache.get("mask")
        now = time.monotonic()
        if cached is not None:
            version, when = cached[0]  # type: ignore[misc]
            slow = self.clock.last_frame > FRAME_BUDGET
            if version == self.real_version or (slow and now - when < MASK_PERIOD):
                return cached[1]  # type: ignore[return-value]
        selected = self._real_mask
        if selected is None:
            with self._inference("encode", vision=True):
                selected = self.vision.mask(self._real_x)  # type: ignore[union-attr, operator]
        with self.clock.stage("mask"):
            views = self._make_mask_views(selected)
        self._cache["mask"] = ((self.real_version, now), views)
        self.mask_version += 1
        return views

    @staticmethod
    def _make_mask_views(selected: Any) -> MaskViews:
        """The views of a DDS+VAE selection (``mask``, ``gated``, ``mini_mask`` tensors of batch 1)."""
        mini = selected.mini_mask[0]  # (4, 16, 16) -> a 2x2 grid (32, 32), grey
        grid = torch.cat([torch.cat([mini[0], mini[1]], 1), torch.cat([mini[2], mini[3]], 1)], 0)
        tiles = grid.unsqueeze(0).expand(3, -1, -1)
        views = MaskViews(
            mask=to_uint8_hwc(selected.mask[0]),
            gated=to_uint8_hwc((selected.gated[0] * 4.0).clamp(0, 1)),
            mini_mask=to_uint8_hwc(tiles),
            kept=float(selected.mask[0].mean()),
        )
        return views

    def latent(self) -> np.ndarray | None:
        """The z the latent panel shows live: the dream's in dream mode, else reality's."""
        return self.dream_z if self.mode == "dream" else self.real_z

    def edit_latent(self, index: int, value: float) -> None:
        """Set one dimension of the edited latent (starting from the live z at the first edit)."""
        if self.z_edit is None:
            live = self.latent()
            if live is None:
                return
            self.z_edit = live.copy()
        self.z_edit[index] = value
        self.edit_version += 1

    def stop_editing(self) -> None:
        """Forget the edited latent; the panel follows the live z again."""
        self.z_edit = None
        self.edit_version += 1

    def edited_frame(self) -> np.ndarray | None:
        """decode(z_edit), uint8 (S, S, 3), or None when not editing."""
        if self.z_edit is None or self.world_model is None:
            return None
        cached = self._cache.get("edit")
        if cached is not None and cached[0] == self.edit_version:
            return cached[1]  # type: ignore[return-value]
        with self._inference("decode", vision=True):
            frame = self.world_model.decode_uint8(torch.from_numpy(self.z_edit).view(1, -1))[0]
        self._cache["edit"] = (self.edit_version, frame)
        return frame

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
        if runs_real:
            reward, terminated, truncated = self._step_real(self.action)
        dream_done = False
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

    def _record_divergence(self) -> None:
        """Reality vs dream, same actions: RMS latent distance and pixel MSE of decode(z_dream) vs V's input."""
        assert self.dream is not None and self._real_z is not None and self._real_x is not None
        latent = float((self.dream.z[0] - self._real_z[0]).pow(2).mean().sqrt())
        frame = self.dream_frame()
        assert frame is not None
        x = self._real_x[0].permute(1, 2, 0).numpy()
        pixel = float(np.mean((frame.astype(np.float32) / 255.0 - x) ** 2))
        self.history["div_latent"].append(latent)
        self.history["div_pixel"].append(pixel)

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
        """Release the env."""
        self.env.close()
