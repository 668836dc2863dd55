"""Episode files: one compressed ``.npz`` per episode, written atomically, validated on read.

Layout of an episode of T steps (observation o_t, action a_t, then reward r_{t+1} and flags):
``frames`` uint8 (T+1, 96, 96, 3): o_0..o_T; ``actions`` float32 (T, 3): a_0..a_{T-1};
``rewards`` float32 (T,): r_1..r_T; ``terminated`` / ``truncated`` bool (T,); ``seed`` int64 (the track seed);
``policy`` str (what drove).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.checkpoint import atomic_path
from core.errors import EpisodeError

EPISODE_GLOB = "ep_*.npz"


@dataclass(frozen=True)
class Episode:
    """One recorded episode (see the module docstring for the array layout)."""

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    seed: int
    policy: str = "random"

    def __post_init__(self) -> None:
        validate_episode(self.frames, self.actions, self.rewards, self.terminated, self.truncated, "episode")

    @property
    def steps(self) -> int:
        return len(self.actions)

    @property
    def episode_return(self) -> float:
        return float(self.rewards.sum())


def validate_episode(
    frames: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    where: str,
) -> None:
    """Check array dtypes, shapes and values agree with the layout (actions and rewards real, finite numbers;
    flags boolean or 0/1).

    Raises:
        EpisodeError: ``where``: the first problem found.
    """
    problems = []
    if actions.ndim != 2 or actions.shape[1:] != (3,) or actions.dtype.kind not in "fiu":
        problems.append(f"actions must be numbers of shape (T, 3), got {actions.dtype} {actions.shape}")
        raise EpisodeError(f"{where}: {problems[0]}")
    t = len(actions)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (96, 96, 3):
        problems.append(f"frames must be uint8 (T+1, 96, 96, 3), got {frames.dtype} {frames.shape}")
    elif len(frames) != t + 1:
        problems.append(f"{len(frames)} frames for {t} actions (expected {t + 1})")
    for name, arr in (("rewards", rewards), ("terminated", terminated), ("truncated", truncated)):
        if arr.shape != (t,) or arr.dtype.kind not in "fiub":
            problems.append(f"{name} must be numbers of shape ({t},), got {arr.dtype} {arr.shape}")
    if t < 1:
        problems.append("episode has no steps")
    if not problems and not (np.isfinite(actions).all() and np.isfinite(rewards).all()):
        problems.append("actions or rewards hold NaN or inf")
    for name, arr in (("terminated", terminated), ("truncated", truncated)):
        if not problems and not np.isin(arr, (0, 1)).all():
            problems.append(f"{name} must hold only 0/1 (False/True)")
    if problems:
        raise EpisodeError(f"{where}: {problems[0]}")


def episode_path(out_dir: str | os.PathLike[str], seed: int) -> Path:
    """File name of the episode on track ``seed``: ``<out_dir>/ep_<seed, 10 digits>.npz``."""
    return Path(out_dir) / f"ep_{seed:010d}.npz"


def write_episode(path: str | os.PathLike[str], episode: Episode) -> Path:
    """Write ``episode`` compressed to ``path`` atomically (temporary file, then rename)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                frames=episode.frames,
                actions=episode.actions.astype(np.float32),
                rewards=episode.rewards.astype(np.float32),
                terminated=episode.terminated.astype(bool),
                truncated=episode.truncated.astype(bool),
                seed=np.int64(episode.seed),
                policy=np.array(episode.policy),
            )
    return target


def read_episode(path: str | os.PathLike[str], frames: bool = True) -> Episode:
    """Read and validate an episode file.

    Args:
        path: an ``ep_*.npz`` file.
        frames: when False, skip decompressing frames (an empty (1, 96, 96, 3) placeholder per step
            is not built; ``frames`` is then a zero-stride view of shape (T+1, 96, 96, 3)).

    Raises:
        EpisodeError: missing, truncated, or inconsistent file.
    """
    p = Path(path)
    if not p.is_file():
        raise EpisodeError(f"episode file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as data:
            actions = data["actions"]
            seed, policy = data["seed"], data["policy"] if "policy" in data.files else np.array("random")
            if seed.shape != () or seed.dtype.kind not in "iu":
                raise EpisodeError(f"seed must be one integer, got {seed.dtype} {seed.shape}")
            if policy.shape != () or policy.dtype.kind != "U":
                raise EpisodeError(f"policy must be one string, got {policy.dtype} {policy.shape}")
            if actions.ndim != 2:
                raise EpisodeError(f"actions must be (T, 3), got {actions.dtype} {actions.shape}")
            t = len(actions)
            arr = data["frames"] if frames else np.broadcast_to(np.zeros((1, 96, 96, 3), np.uint8), (t + 1, 96, 96, 3))
            ep = Episode(
                frames=arr,
                actions=actions,
                rewards=data["rewards"],
                terminated=data["terminated"],
                truncated=data["truncated"],
                seed=int(seed),
                policy=str(policy),
            )
    except EpisodeError as exc:
        raise EpisodeError(f"{p}: {str(exc).split(': ', 1)[-1]}") from None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EpisodeError(f"corrupt or truncated episode file {p} ({msg[:120]})") from None
    return ep


def list_episodes(data_dir: str | os.PathLike[str]) -> list[Path]:
    """Sorted episode files in ``data_dir``.

    Raises:
        EpisodeError: the directory does not exist or holds no episode files.
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise EpisodeError(f"dataset directory not found: {d} (run `dream-explorer collect` first)")
    files = sorted(d.glob(EPISODE_GLOB))
    if not files:
        raise EpisodeError(f"no episode files (ep_*.npz) in {d} (run `dream-explorer collect` first)")
    return files


def split_episodes(files: list[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Split episode files into train and validation sets by whole episodes (no frame leaks across).

    At least one episode goes to validation when there are two or more and ``val_fraction`` > 0.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(files))
    n_val = int(round(val_fraction * len(files)))
    if val_fraction > 0 and len(files) >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, len(files) - 1)
    val = sorted(files[i] for i in order[:n_val])
    train = sorted(files[i] for i in order[n_val:])
    return train, val
