"""Record a drive (real, dream, or both) and save it to the dataset as an episode, or to an MP4 / GIF. No GUI."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from core.api import FRAME_SHAPE, HUD_ROWS, DreamExplorerError, Episode, write_episode, write_video

MAX_STEPS = 3000
"""A recording stops by itself after this many steps (about 250 MB of frames with both sides)."""
VIDEO_SIDE = 288
"""Side of each view in a saved video, in pixels (nearest-neighbour upscaling keeps the pixels crisp)."""


def dream_to_episode_frame(frame: np.ndarray) -> np.ndarray:
    """A decoded dream frame uint8 (S, S, 3) -> a CarRacing-shaped frame uint8 (96, 96, 3).

    Vision models see the frame without its 12 HUD rows, resized to S x S; this puts the dream back into the
    84 x 96 play area and leaves the HUD rows black, so the episode goes through the same preprocessing.
    """
    h, w, _ = FRAME_SHAPE
    out = np.zeros(FRAME_SHAPE, np.uint8)
    out[: h - HUD_ROWS] = cv2.resize(frame, (w, h - HUD_ROWS), interpolation=cv2.INTER_LINEAR)
    return out


class Recorder:
    """Frames, actions and rewards of one drive, held in memory until saved.

    ``real`` frames are uint8 (96, 96, 3) observations, ``dream`` frames the decoded uint8 (S, S, 3) dream;
    either list may be empty. Rewards and flags follow the recorded side that drives the episode (real when
    there is one). A recording stops by itself at :data:`MAX_STEPS`.
    """

    def __init__(self) -> None:
        self.active = False
        self.real: list[np.ndarray] = []
        self.dream: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.terminated: list[bool] = []
        self.truncated: list[bool] = []
        self.seed = 0
        self.drivers: set[str] = set()

    @property
    def policy(self) -> str:
        """Who drove, e.g. ``"human"`` or ``"autopilot+human"``."""
        return "+".join(sorted(self.drivers)) or "human"

    @property
    def steps(self) -> int:
        """Steps recorded so far."""
        return len(self.actions)

    def start(self, real: np.ndarray | None, dream: np.ndarray | None, seed: int) -> None:
        """Start a new recording from the current frame(s) (o_0); any unsaved recording is dropped."""
        self.clear()
        self.active = True
        self.seed = seed
        if real is not None:
            self.real.append(real.copy())
        if dream is not None:
            self.dream.append(dream.copy())

    def add(
        self,
        real: np.ndarray | None,
        dream: np.ndarray | None,
        action: np.ndarray,
        reward: float,
        terminated: bool,
        truncated: bool,
        policy: str,
    ) -> None:
        """Append one step: the frame(s) after ``action``, its reward and flags, and who drove."""
        if not self.active:
            return
        if real is not None and self.real:
            self.real.append(real.copy())
        if dream is not None and self.dream:
            self.dream.append(dream.copy())
        self.actions.append(np.asarray(action, np.float32).copy())
        self.rewards.append(float(reward))
        self.terminated.append(bool(terminated))
        self.truncated.append(bool(truncated))
        self.drivers.add(policy)
        if self.steps >= MAX_STEPS or terminated or truncated:
            self.active = False

    def stop(self) -> None:
        """Stop recording; the frames stay until saved or cleared."""
        self.active = False

    def clear(self) -> None:
        """Drop everything recorded."""
        self.active = False
        for buf in (self.real, self.dream, self.actions, self.rewards, self.terminated, self.truncated):
            buf.clear()
        self.drivers = set()

    def episode(self) -> Episode:
        """The recording as an :class:`Episode` (real frames when recorded, else the dream's, reshaped to 96x96).

        Raises:
            DreamExplorerError: nothing recorded.
        """
        if not self.steps:
            raise DreamExplorerError("nothing recorded yet: start recording and drive a few steps")
        if self.real:
            frames, policy = np.stack(self.real), self.policy
        else:
            frames, policy = np.stack([dream_to_episode_frame(f) for f in self.dream]), f"dream:{self.policy}"
        truncated = np.asarray(self.truncated, bool)
        if not (self.terminated[-1] or truncated[-1]):
            truncated[-1] = True  # the drive was cut here, as collect marks its last step
        return Episode(
            frames=frames,
            actions=np.stack(self.actions),
            rewards=np.asarray(self.rewards, np.float32),
            terminated=np.asarray(self.terminated, bool),
            truncated=truncated,
            seed=self.seed,
            policy=policy,
        )

    def save_episode(self, data_dir: str | Path) -> Path:
        """Write the recording to ``data_dir`` as ``ep_drive_<time>.npz`` (picked up by every stage's episode list).

        Raises:
            DreamExplorerError: nothing recorded.
        """
        episode = self.episode()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(data_dir) / f"ep_drive_{stamp}_{'real' if self.real else 'dream'}.npz"
        return write_episode(path, episode)

    def video_frames(self) -> list[np.ndarray]:
        """Frames of the video: real | dream side by side when both were recorded, each VIDEO_SIDE square."""

        def up(f: np.ndarray) -> np.ndarray:
            return cv2.resize(f, (VIDEO_SIDE, VIDEO_SIDE), interpolation=cv2.INTER_NEAREST)

        n = max(len(self.real), len(self.dream))
        frames = []
        for i in range(n):
            parts = [up(seq[min(i, len(seq) - 1)]) for seq in (self.real, self.dream) if seq]
            frames.append(np.concatenate(parts, axis=1))
        return frames

    def save_video(self, path: str | Path, fps: int = 50) -> Path:
        """Write the recording to an MP4 (``.mp4``) or an animated GIF (``.gif``), atomically.

        Raises:
            DreamExplorerError: nothing recorded, an unknown extension, or the encoder failed.
        """
        target = Path(path)
        frames = self.video_frames()
        if not frames:
            raise DreamExplorerError("nothing recorded yet: start recording and drive a few steps")
        suffix = target.suffix.lower()
        if suffix == ".mp4":
            return write_video(target, frames, fps)
        if suffix != ".gif":
            raise DreamExplorerError(f"video must end in .mp4 or .gif, got {target.name}")
        animation = cv2.Animation()
        animation.frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames[::2]]  # GIF: 25 fps is plenty
        animation.durations = [int(round(2000 / fps))] * len(animation.frames)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.tmp.gif")
        if not cv2.imwriteanimation(str(tmp), animation):
            tmp.unlink(missing_ok=True)
            raise DreamExplorerError(f"OpenCV could not write the GIF {target}")
        os.replace(tmp, target)
        return target
