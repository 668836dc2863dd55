"""In-memory datasets for V (preprocessed frames) and M (latent sequences)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.checkpoint import atomic_path, file_sha256  # noqa: F401  (file_sha256 re-exported)
from core.data.episodes import read_episode
from core.envs.car_racing import preprocess_frames
from core.errors import EpisodeError


def load_frames(files: list[Path], size: int, stride: int = 1, threads: int = 2) -> Tensor:
    """Read, HUD-crop and resize every ``stride``-th frame of ``files``.

    Returns:
        uint8 tensor (N, 3, size, size).

    Raises:
        EpisodeError: a file is corrupt, or no frames at all.
    """
    return load_episode_frames(files, size, stride, threads)[0]


def load_episode_frames(files: list[Path], size: int, stride: int = 1, threads: int = 2) -> tuple[Tensor, Tensor]:
    """:func:`load_frames` and where each episode's frames start.

    Returns:
        ``(frames, starts)``: uint8 (N, 3, size, size), episodes back to back, and int64 (E + 1,) offsets;
        episode i is ``frames[starts[i]:starts[i + 1]]``, frame j of it is the episode's step ``j * stride``.

    Raises:
        EpisodeError: a file is corrupt, or no frames at all.
    """

    def one(path: Path) -> np.ndarray:
        return preprocess_frames(read_episode(path).frames[::stride], size)

    if not files:
        raise EpisodeError("no episodes to load frames from")
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = list(pool.map(one, files))
    starts = torch.from_numpy(np.cumsum([0] + [len(p) for p in parts]))
    return torch.from_numpy(np.concatenate(parts)), starts


@dataclass(frozen=True)
class LatentEpisodes:
    """Encoded episodes as written by the ``encode`` stage.

    Attributes:
        mu, logvar: float32 (sum of (T_i + 1), z_dim), episodes back to back.
        actions: float32 (sum T_i, 3); rewards, terminated: float32 (sum T_i,).
        starts: int64 (E + 1,) offsets into mu/logvar; episode i is mu[starts[i]:starts[i+1]].
        seeds: int64 (E,) track seeds.
        vision_kind: which vision model made the latents; vision_sha256: hash of its checkpoint file.
        policies: str (E,) what drove each episode ("random", "controller", ...; files written before this
            field read as "random", which is what every earlier collection used).
        speeds: optional float32 (sum of (T_i + 1),): the car's speed at each frame, world units per second, read
            from the HUD (:func:`core.envs.car_racing.hud_speed`); None in files written before it was recorded.
        yaw_rates: optional float32 (sum of (T_i + 1),): the car's yaw rate at each frame, rad/s, counter-clockwise
            positive, read from the HUD's gyroscope bar (:func:`core.envs.car_racing.hud_yaw_rate`); None in files
            written before it was recorded.
    """

    mu: np.ndarray
    logvar: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    starts: np.ndarray
    seeds: np.ndarray
    vision_kind: str
    vision_sha256: str
    policies: np.ndarray | None = None
    speeds: np.ndarray | None = None
    yaw_rates: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.policies is None:
            object.__setattr__(self, "policies", np.full(len(self.seeds), "random"))
        elif len(self.policies) != len(self.seeds):
            raise EpisodeError(f"{len(self.policies)} policy labels for {len(self.seeds)} episodes")

    def policy_counts(self) -> dict[str, int]:
        """Episodes per driving policy, e.g. ``{"controller": 200, "random": 150}``."""
        names, counts = np.unique(np.asarray(self.policies, str), return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts, strict=True)}

    @property
    def n_episodes(self) -> int:
        return len(self.seeds)

    @property
    def z_dim(self) -> int:
        return int(self.mu.shape[1])

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """Arrays of episode ``i``: ``mu``/``logvar`` (T+1, z_dim), ``action`` (T, 3), ``reward``/``done`` (T,),
        and ``speed`` / ``yaw_rate`` (T+1,) when the file has them."""
        a, b = int(self.starts[i]), int(self.starts[i + 1])
        sa, sb = a - i, b - i - 1  # step arrays have one entry fewer per episode
        speed = {} if self.speeds is None else {"speed": self.speeds[a:b]}
        yaw = {} if self.yaw_rates is None else {"yaw_rate": self.yaw_rates[a:b]}
        return (
            speed
            | yaw
            | {
                "mu": self.mu[a:b],
                "logvar": self.logvar[a:b],
                "action": self.actions[sa:sb],
                "reward": self.rewards[sa:sb],
                "done": self.terminated[sa:sb],
            }
        )

    def subset(self, episodes: Sequence[int] | np.ndarray) -> LatentEpisodes:
        """The listed episodes, in the order given, with their seeds, policy labels and vision identity.

        Args:
            episodes: episode indices in ``[0, n_episodes)``; a boolean mask of length ``n_episodes`` also works.

        Raises:
            EpisodeError: an index out of range, or no episode selected.
        """
        idx = np.asarray(episodes)
        if idx.dtype == bool:
            if len(idx) != self.n_episodes:
                raise EpisodeError(f"episode mask of length {len(idx)} for {self.n_episodes} episodes")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).ravel()
        if len(idx) == 0:
            raise EpisodeError("no episode selected")
        if idx.min() < 0 or idx.max() >= self.n_episodes:
            raise EpisodeError(f"episode index out of range [0, {self.n_episodes}): {idx.min()}..{idx.max()}")
        parts = [self.episode(int(i)) for i in idx]
        lengths = np.array([len(p["mu"]) for p in parts], np.int64)
        return LatentEpisodes(
            mu=np.concatenate([p["mu"] for p in parts]),
            logvar=np.concatenate([p["logvar"] for p in parts]),
            actions=np.concatenate([p["action"] for p in parts]),
            rewards=np.concatenate([p["reward"] for p in parts]),
            terminated=np.concatenate([p["done"] for p in parts]),
            starts=np.concatenate([[0], np.cumsum(lengths)]),
            seeds=self.seeds[idx],
            vision_kind=self.vision_kind,
            vision_sha256=self.vision_sha256,
            policies=np.asarray(self.policies, str)[idx],
            speeds=None if self.speeds is None else np.concatenate([p["speed"] for p in parts]),
            yaw_rates=None if self.yaw_rates is None else np.concatenate([p["yaw_rate"] for p in parts]),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically to an ``.npz`` file."""
        target = Path(path)
        arrays: dict[str, Any] = {
            "mu": self.mu, "logvar": self.logvar, "actions": self.actions, "rewards": self.rewards,
            "terminated": self.terminated, "starts": self.starts, "seeds": self.seeds,
            "vision_kind": np.array(self.vision_kind), "vision_sha256": np.array(self.vision_sha256),
            "policies": np.asarray(self.policies, str),
        }  # fmt: skip
        if self.speeds is not None:
            arrays["speeds"] = self.speeds
        if self.yaw_rates is not None:
            arrays["yaw_rates"] = self.yaw_rates
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatentEpisodes:
        """Read a latent file. Raises EpisodeError when missing, truncated or inconsistent."""
        p = Path(path)
        if not p.is_file():
            raise EpisodeError(f"latent file not found: {p} (run `dream-explorer encode` first)")
        try:
            with np.load(p, allow_pickle=False) as d:
                out = cls(
                    mu=d["mu"], logvar=d["logvar"], actions=d["actions"], rewards=d["rewards"],
                    terminated=d["terminated"], starts=d["starts"], seeds=d["seeds"],
                    vision_kind=str(d["vision_kind"]), vision_sha256=str(d["vision_sha256"]),
                    policies=d["policies"].astype(str) if "policies" in d.files else None,
                    speeds=d["speeds"] if "speeds" in d.files else None,
                    yaw_rates=d["yaw_rates"] if "yaw_rates" in d.files else None,
                )  # fmt: skip
        except Exception as exc:  # numpy raises many types for a bad file
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EpisodeError(f"corrupt or truncated latent file {p} ({msg[:120]})") from None
        problem = out.problem()
        if problem is not None:
            raise EpisodeError(f"latent file {p} is inconsistent ({problem})")
        return out

    def problem(self) -> str | None:
        """What is wrong with the arrays (shapes, dtypes, offsets, non-finite values), or None."""
        e, n = len(self.seeds), len(self.mu)
        if self.mu.ndim != 2 or self.logvar.shape != self.mu.shape or self.mu.shape[1] < 1:
            return f"mu and logvar must be (N, z_dim), got {self.mu.shape} and {self.logvar.shape}"
        if self.mu.dtype.kind != "f" or self.logvar.dtype.kind != "f":
            return "mu and logvar must be floating point"
        if self.seeds.ndim != 1 or e < 1 or self.seeds.dtype.kind not in "iu":
            return f"seeds must be a non-empty vector of integers, got {self.seeds.dtype} {self.seeds.shape}"
        if self.starts.shape != (e + 1,) or self.starts.dtype.kind not in "iu":
            return f"starts must be {e + 1} integers (one per episode and the end), got {self.starts.shape}"
        if self.starts[0] != 0 or self.starts[-1] != n or (np.diff(self.starts) < 2).any():
            return "episode offsets (starts) must rise from 0 to the number of frames, two or more per episode"
        steps = n - e
        if self.actions.shape != (steps, 3) or self.actions.dtype.kind != "f":
            return f"actions must be float ({steps}, 3), got {self.actions.dtype} {self.actions.shape}"
        for name, arr in (("rewards", self.rewards), ("terminated", self.terminated)):
            if arr.shape != (steps,) or arr.dtype.kind not in "fiub":
                return f"{name} must be ({steps},) numbers, got {arr.dtype} {arr.shape}"
        for name, per_frame in (("speeds", self.speeds), ("yaw_rates", self.yaw_rates)):
            if per_frame is not None and (per_frame.shape != (n,) or per_frame.dtype.kind != "f"):
                return f"{name} must be float ({n},), one per frame, got {per_frame.dtype} {per_frame.shape}"
        for name, arr in (
            ("speeds", self.speeds if self.speeds is not None else np.zeros(0)),
            ("yaw_rates", self.yaw_rates if self.yaw_rates is not None else np.zeros(0)),
            ("mu", self.mu),
            ("logvar", self.logvar),
            ("actions", self.actions),
            ("rewards", self.rewards),
        ):
            if not np.isfinite(arr).all():
                return f"{name} hold NaN or inf"
        return None


def n_validation(n_episodes: int, val_fraction: float) -> int:
    """Episodes to hold out for validation: ``round(val_fraction * n)``, at least one when there are two or more,
    and always leaving one for training."""
    return min(n_episodes - 1, max(1 if n_episodes > 1 else 0, round(val_fraction * n_episodes)))


def parse_mix(text: str) -> dict[str, float]:
    """``"controller:0.7,random:0.3"`` -> ``{"controller": 0.7, "random": 0.3}`` (weights > 0, any scale; "" -> {}).

    Raises:
        ConfigError: a malformed entry, a repeated name or a weight that is not a finite positive number.
    """
    from core.errors import ConfigError

    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition(":")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not name.strip() or not (0 < weight < float("inf")) or name.strip() in mix:
            raise ConfigError(
                f"mix entries are policy:weight with a weight > 0, e.g. controller:0.7,random:0.3; got {part!r}"
            )
        mix[name.strip()] = weight
    return mix


def episode_weights(policies: np.ndarray, mix: dict[str, float]) -> np.ndarray:
    """Per-episode sampling probabilities so that each policy's episodes together get its share of ``mix``.

    Args:
        policies: str (E,) policy label of each episode.
        mix: policy -> weight (normalised here); empty: every episode equally likely.

    Returns:
        float64 (E,) probabilities summing to 1.

    Raises:
        EpisodeError: a policy in ``mix`` has no episode, or an episode's policy is not in ``mix``.
    """
    policies = np.asarray(policies, str)
    if not mix:
        return np.full(len(policies), 1.0 / len(policies))
    present = set(policies.tolist())
    missing = sorted(set(mix) - present)
    unlisted = sorted(present - set(mix))
    if missing or unlisted:
        raise EpisodeError(
            f"mix {mix} does not match the episodes' policies {sorted(present)}"
            + (f" (no episodes of {missing})" if missing else "")
            + (f" (no weight for {unlisted})" if unlisted else "")
        )
    total = sum(mix.values())
    weights = np.zeros(len(policies))
    for name, w in mix.items():
        sel = policies == name
        weights[sel] = w / total / sel.sum()
    return weights


class SequenceSampler:
    """Random windows of ``seq_len`` steps from encoded episodes, for MDN-RNN training.

    Each call samples z ~ N(mu, exp(logvar)) afresh (Ha's data augmentation). Episodes shorter than the
    window are zero-padded and masked. With ``mix`` (policy -> weight) a window comes from each driving policy's
    episodes with that policy's share of the weights (see :func:`episode_weights`); otherwise every episode is
    equally likely.
    """

    def __init__(
        self, latents: LatentEpisodes, episodes: list[int], seq_len: int, seed: int, mix: dict[str, float] | None = None
    ) -> None:
        if not episodes:
            raise EpisodeError("no episodes for the MDN-RNN")
        self.latents, self.episodes, self.seq_len = latents, episodes, seq_len
        self.rng = np.random.default_rng(seed)
        self.data = [latents.episode(i) for i in episodes]
        self.total_steps = sum(len(d["action"]) for d in self.data)
        # None without a mix: windows then draw episodes uniformly, as before mixes existed (same seeds, same run)
        self.probabilities = episode_weights(np.asarray(latents.policies, str)[episodes], mix) if mix else None

    def batch(
        self, batch_size: int, sample_z: bool = True, target_mu: bool = False, clean_input_fraction: float = 0.0
    ) -> dict[str, Tensor]:
        """A batch: ``z`` (B, L+1, z_dim) (inputs z_0..z_{L-1}, and z_1..z_L as targets unless ``z_target``),
        ``action`` (B, L, 3), ``reward``/``done``/``mask`` (B, L), ``episode`` int64 (B,) (each window's episode
        index in the latent file), optional ``z_target`` (B, L, z_dim), and ``speed`` (B, L) (the speeds at
        frames 1..L, world units per second) and ``speed_in`` (B, L) (frames 0..L-1) when the latent file has
        speeds, and ``yaw``, ``yaw_in`` (B, L) (rad/s, the same frames) when it has yaw rates.

        ``sample_z``: z ~ N(mu, exp(logvar)) (else z = mu). ``target_mu``: the targets are mu_1..mu_L (denoised)
        while the inputs stay sampled. ``clean_input_fraction``: this share of the sequences (drawn at random)
        takes mu as inputs while keeping its sampled targets. Either option adds ``z_target``.
        """
        L, zd = self.seq_len, self.latents.z_dim
        z = np.zeros((batch_size, L + 1, zd), np.float32)
        action = np.zeros((batch_size, L, 3), np.float32)
        reward = np.zeros((batch_size, L), np.float32)
        done = np.zeros((batch_size, L), np.float32)
        speed = np.zeros((batch_size, L + 1), np.float32) if self.latents.speeds is not None else None
        yaw = np.zeros((batch_size, L + 1), np.float32) if self.latents.yaw_rates is not None else None
        mask = np.zeros((batch_size, L), np.float32)
        split = target_mu or clean_input_fraction > 0
        z_target = np.zeros((batch_size, L, zd), np.float32) if split else None
        episode = np.zeros(batch_size, np.int64)
        for b in range(batch_size):
            if self.probabilities is None:
                k = int(self.rng.integers(len(self.data)))
            else:
                k = int(self.rng.choice(len(self.data), p=self.probabilities))
            d, episode[b] = self.data[k], self.episodes[k]
            t = len(d["action"])
            start = int(self.rng.integers(0, max(1, t - L + 1)))
            n = min(L, t - start)
            mu, logvar = d["mu"][start : start + n + 1], d["logvar"][start : start + n + 1]
            eps = self.rng.standard_normal(mu.shape).astype(np.float32) if sample_z else 0.0
            sampled = mu + np.exp(0.5 * logvar) * eps
            z[b, : n + 1] = sampled
            if z_target is not None:
                z_target[b, :n] = mu[1:] if target_mu else sampled[1:]
                if clean_input_fraction > 0 and self.rng.random() < clean_input_fraction:
                    z[b, : n + 1] = mu
            action[b, :n] = d["action"][start : start + n]
            reward[b, :n] = d["reward"][start : start + n]
            done[b, :n] = d["done"][start : start + n]
            if speed is not None:
                speed[b, : n + 1] = d["speed"][start : start + n + 1]
            if yaw is not None:
                yaw[b, : n + 1] = d["yaw_rate"][start : start + n + 1]
            mask[b, :n] = 1.0
        out = {
            "z": torch.from_numpy(z),
            "action": torch.from_numpy(action),
            "reward": torch.from_numpy(reward),
            "done": torch.from_numpy(done),
            "mask": torch.from_numpy(mask),
            "episode": torch.from_numpy(episode),
        }
        if z_target is not None:
            out["z_target"] = torch.from_numpy(z_target)
        if speed is not None:
            out["speed"], out["speed_in"] = torch.from_numpy(speed[:, 1:]), torch.from_numpy(speed[:, :-1])
        if yaw is not None:
            out["yaw"], out["yaw_in"] = torch.from_numpy(yaw[:, 1:]), torch.from_numpy(yaw[:, :-1])
        return out

    def full_episodes(self) -> list[dict[str, Tensor]]:
        """Every episode whole, with z = mu (for validation), each as a batch of one."""
        out = []
        for d in self.data:
            out.append(
                {
                    "z": torch.from_numpy(d["mu"]).unsqueeze(0),
                    "action": torch.from_numpy(d["action"]).unsqueeze(0),
                    "reward": torch.from_numpy(d["reward"]).unsqueeze(0),
                    "done": torch.from_numpy(d["done"].astype(np.float32)).unsqueeze(0),
                }
                | _per_frame(d, "speed", "speed")
                | _per_frame(d, "yaw_rate", "yaw")
            )
        return out


def _per_frame(episode: dict[str, np.ndarray], key: str, name: str) -> dict[str, Tensor]:
    """An episode's per-frame reading ``key`` (T+1,) as ``{name: frames 1..T, name_in: frames 0..T-1}``, each a
    batch of one (1, T); empty when the episode lacks it."""
    if key not in episode:
        return {}
    x = torch.from_numpy(episode[key])
    return {name: x[1:].unsqueeze(0), name + "_in": x[:-1].unsqueeze(0)}
