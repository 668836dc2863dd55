"""The explorer session's settings, value types and constants: what the panels read (no GUI imports)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import cv2
import numpy as np
from torch import nn

from core.checkpoint import saved_metadata
from core.vision_runtime import Backend
from explorer.input import DriveKeys

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
DEFAULT_TAU = 0.5
"""The app's dream temperature until the user moves the slider: below Ha's 1.0 the dream fed reality's actions
keeps reality's road for longer while its futures still differ (measured per tau in docs/history.md, session 15).
The command-line stages keep 1.0, the temperature the MDN was trained to sample at."""
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
WIDE_VISION_KINDS = ("dds_vae",)
"""Vision kinds whose ONNX Runtime calls may run on VISION_THREADS threads when nothing else of the app computes
beside the frame (dream and real mode, no stage running; :class:`core.vision_runtime.ThreadChoice` keeps one thread
wherever that is faster of late, e.g. while another process takes the cores). Batch 1, median of 60 calls, 1 -> 2
threads: the DDS+VAE encodes in 7.5 -> 4.9 ms; the ConvVAE's calls (0.3 and 1.0 ms) do not gain. The app's frame
rate with it: docs/history.md, session 22."""
VISION_THREADS = min(2, os.cpu_count() or 1)
"""V's intra-op threads for a vision model of WIDE_VISION_KINDS (this machine's cores)."""
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
    tau: float = DEFAULT_TAU
    """MDN temperature of the dream, in TAU_RANGE (0: the deterministic dream, the MDN's mode)."""
    seed: int = 0
    """Track seed of the real env (and seed of the dream's random streams)."""
    horizon: int = 300
    """Dream steps before the dream restarts (in split mode: re-synchronises with reality)."""
    futures: int = 1
    """Dreams batched from the same state (the futures grid)."""
    dream_source: DreamSource = "real"
    """Where a new dream starts: the current real frame, a random z, or a frame of the dataset."""
    data_dir: Path = Path("data/episodes")
    """Dataset directory (dataset frames for dreams, recorded episodes)."""
    vision_runtime: Backend = "onnxruntime"
    """Where V's encode and decode run: ONNX Runtime (exported once per model, checked against PyTorch; PyTorch
    where that fails) or PyTorch."""
    vision_bf16: bool = False
    """A DDS+VAE decodes in bfloat16 where that is faster on this CPU and within ``BF16_TOLERANCE`` of float32
    (:class:`core.vision_runtime.VisionRuntime`); False: float32. The app turns it on (``--no-vision-bf16``)."""
    vision_threads: int | None = None
    """V's threads where it is the only model work of the frame and ``second_core_free`` (None: VISION_THREADS for
    a vision model of WIDE_VISION_KINDS, else 1; 1 keeps V on the frame's thread)."""
    ground_dream: bool = True
    """A dream that starts from reality moves its car on CarRacing's car physics over a map of the ground it has
    shown, paid by CarRacing's reward rule for the road its car covers (:mod:`explorer.session_ground`); False: M's
    dream alone, paid by M's reward head."""
    parallel_split: bool = True
    """Split mode steps the dream (MDN-RNN and V's decode) on a second thread while reality steps the env and V
    encodes its frame (both take the same action, so neither waits for the other); False: one after the other."""


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

    def __len__(self) -> int:
        """How many values :meth:`values` returns."""
        return min(self._n, len(self._data))

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
    metrics = saved_metadata(model)[0]
    keys = [k for k in metrics if k.endswith(("val/recon", "val/nll", "return_mean", "real_return", "fitness_best"))]
    extra = f", {keys[0].split('/', 1)[-1]} {metrics[keys[0]]:.4g}" if keys else ""
    return f"{getattr(model, 'kind', type(model).__name__)}: {path.name}{extra}"


def heat_map(error: np.ndarray, max_error: float) -> np.ndarray:
    """Errors float (H, W) in [0, max_error] -> uint8 (H, W, 3) RGB inferno colours."""
    scaled = np.clip(error / max(max_error, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
