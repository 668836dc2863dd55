"""Dream-vs-real divergence: how far M's open-loop dream drifts from what really happened.

On held-out real episodes, M is run over the encoded real latents (z_t = mu_t, the real-env convention) to get
its state at each window start s; from there the batched dream continues open loop for H steps with the
*recorded* actions, ``samples`` times per window. At each horizon k the dream is compared with reality:

- latent MSE per dimension between dreamed z_{s+k} and the encoded real mu_{s+k}, against the "copy"
  baseline mu_s (a world that stands still), over all dimensions and over the active ones (mean KL above
  ``core.train.memory.ACTIVE_KL_NATS`` on the episode; the others are noise V's decoder ignores);
- pixel MSE (values in [0, 1], at V's resolution) between decode(dreamed z_{s+k}) and the real frame, against
  decode(mu_s) (copy) and decode(mu_{s+k}) (V's own reconstruction floor);
- the dream's summed reward over the H steps against the recorded real reward;
- the share of dreamed latents whose norm exceeds the largest real latent norm (off the data manifold).

A dream is stochastic, so a perfect M would not reach zero: the figures compare models and temperatures.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.data.episodes import list_episodes, read_episode
from core.envs.dream import BatchedDream
from core.envs.world_model import WorldModel
from core.errors import ConfigError, EpisodeError
from core.progress import Progress, ProgressFn, never_stop, no_progress
from core.train.loop import StageResult
from core.train.memory import active_dims


@dataclass(frozen=True)
class DivergenceConfig:
    """Measure how M's dream drifts from held-out reality (``dream-explorer divergence``)."""

    data_dir: Path = Path("data/heldout")
    """Held-out episode files (not used to train V or M)."""
    vision: Path = Path("runs/vision.safetensors")
    """Vision checkpoint (either kind)."""
    memory: Path = Path("runs/memory.safetensors")
    """MDN-RNN checkpoint trained on that vision model's latents."""
    horizons: tuple[int, ...] = (1, 10, 30, 100)
    """Dream steps after which the dream is compared with reality."""
    warmup: int = 50
    """Real steps M sees before the first window (the zoom-in at an episode's start is skipped)."""
    start_every: int = 50
    """A window starts every this many real steps."""
    samples: int = 4
    """Dreams per window (different random streams)."""
    tau: float = 1.0
    """MDN temperature of the dream."""
    max_episodes: int = 0
    """Use at most this many episodes (0 = all)."""
    seed: int = 0
    """Seed of the dreams' random streams."""
    json: bool = False
    """Print one JSON object instead of the table."""

    def __post_init__(self) -> None:
        if not self.horizons or min(self.horizons) < 1:
            raise ConfigError(f"horizons must be >= 1, got {self.horizons}")
        if self.warmup < 0 or self.start_every < 1 or self.samples < 1 or self.tau < 0:
            raise ConfigError("warmup must be >= 0, start_every and samples >= 1, tau >= 0")


@torch.no_grad()
def dream_divergence(
    config: DivergenceConfig,
    *,
    on_progress: ProgressFn = no_progress,
    should_stop: threading.Event | None = None,
) -> StageResult:
    """Run the measurement; metrics are ``divergence/<name>@<k>`` for each horizon k (see the module doc).

    Raises:
        EpisodeError: no episode long enough for warmup + the longest horizon.
        CheckpointError: bad checkpoints or no memory model.
    """
    t0 = time.perf_counter()
    stop = should_stop or never_stop()
    wm = WorldModel.load(config.vision, config.memory)
    memory = wm.require_memory()
    horizon = max(config.horizons)
    files = list_episodes(config.data_dir)
    if config.max_episodes:
        files = files[: config.max_episodes]
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(key: str, value: float, n: int) -> None:
        sums[key] = sums.get(key, 0.0) + value
        counts[key] = counts.get(key, 0) + n

    max_norm = 0.0
    windows = 0
    dream_norms: list[torch.Tensor] = []
    for e, path in enumerate(files):
        if stop.is_set():
            break
        ep = read_episode(path)
        steps = len(ep.actions)
        starts = list(range(config.warmup, steps - horizon + 1, config.start_every))
        if not starts:
            continue
        on_progress(Progress("divergence", e, len(files), message=f"{path.name}: {len(starts)} windows"))
        x = wm.preprocess(ep.frames)  # (T+1, 3, S, S) float in [0, 1]
        posterior = [wm.vision.encode(x[i : i + 256]) for i in range(0, len(x), 256)]
        mu = torch.cat([p[0] for p in posterior])
        logvar = torch.cat([p[1] for p in posterior])
        active = torch.from_numpy(active_dims(mu.numpy(), logvar.numpy()))
        if not bool(active.any()):
            active = torch.ones_like(active)
        max_norm = max(max_norm, float(mu.norm(dim=1).max()))
        actions = torch.from_numpy(np.asarray(ep.actions, np.float32))
        rewards = torch.from_numpy(np.asarray(ep.rewards, np.float64))
        # M over reality, keeping its state (h, c) before each window start
        state = memory.initial_state(1)
        states: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for t in range(max(starts) + 1):
            if t in starts:
                states[t] = (state[0][0, 0].clone(), state[1][0, 0].clone())
            if t < max(starts):
                _, state = memory.step(mu[t : t + 1], actions[t : t + 1], state)
        idx = torch.tensor(starts).repeat_interleave(config.samples)
        n = len(idx)
        dream = BatchedDream(memory, n, tau=config.tau, max_steps=horizon)
        h0 = torch.stack([states[int(s)][0] for s in idx]).unsqueeze(0)
        c0 = torch.stack([states[int(s)][1] for s in idx]).unsqueeze(0)
        seeds = [config.seed * 1_000_003 + e * 10_007 + j for j in range(n)]
        dream.reset(seeds, z=mu[idx], state=(h0, c0))
        dream_reward = torch.zeros(n, dtype=torch.float64)
        copy_frames = wm.decode(mu[idx])  # the standing-still baseline, the same at every horizon
        for k in range(1, horizon + 1):
            _, r, _, _ = dream.step(actions[idx + k - 1])
            dream_reward += r.double()
            dream_norms.append(dream.z.norm(dim=1))
            if k in config.horizons:
                real_z = mu[idx + k]
                add(f"latent_mse_dream@{k}", float((dream.z - real_z).pow(2).mean(1).sum()), n)
                add(f"latent_mse_copy@{k}", float((mu[idx] - real_z).pow(2).mean(1).sum()), n)
                dz, cz = (dream.z - real_z)[:, active], (mu[idx] - real_z)[:, active]
                add(f"latent_mse_dream_active@{k}", float(dz.pow(2).mean(1).sum()), n)
                add(f"latent_mse_copy_active@{k}", float(cz.pow(2).mean(1).sum()), n)
                frames = x[idx + k]
                add(f"pixel_mse_dream@{k}", float((wm.decode(dream.z) - frames).pow(2).flatten(1).mean(1).sum()), n)
                add(f"pixel_mse_copy@{k}", float((copy_frames - frames).pow(2).flatten(1).mean(1).sum()), n)
                add(f"pixel_mse_vision@{k}", float((wm.decode(real_z) - frames).pow(2).flatten(1).mean(1).sum()), n)
        real_reward = torch.stack([rewards[int(s) : int(s) + horizon].sum() for s in idx])
        add(f"reward_sum_dream@{horizon}", float(dream_reward.sum()), n)
        add(f"reward_sum_real@{horizon}", float(real_reward.sum()), n)
        add(f"reward_sum_abs_error@{horizon}", float((dream_reward - real_reward).abs().sum()), n)
        windows += len(starts)
    if not windows:
        raise EpisodeError(
            f"no episode in {config.data_dir} is longer than warmup {config.warmup} + horizon {horizon} steps"
        )
    metrics = {f"divergence/{k}": sums[k] / counts[k] for k in sums}
    norms = torch.cat(dream_norms)
    metrics["divergence/off_manifold_share"] = float((norms > max_norm).float().mean())
    metrics["divergence/windows"] = float(windows)
    metrics["divergence/dreams"] = float(windows * config.samples)
    return StageResult(None, metrics, stop.is_set(), time.perf_counter() - t0)


def format_table(metrics: dict[str, float], horizons: tuple[int, ...]) -> str:
    """The per-horizon figures as a plain-text table."""
    names = ("latent_mse_dream", "latent_mse_copy", "latent_mse_dream_active", "latent_mse_copy_active",
             "pixel_mse_dream", "pixel_mse_copy", "pixel_mse_vision")  # fmt: skip
    titles = ("latent dream", "latent copy", "active dream", "active copy", "pixel dream", "pixel copy", "pixel V")
    rows = [f"{'horizon':>8} " + " ".join(f"{t:>12}" for t in titles)]
    for k in horizons:
        values = [metrics.get(f"divergence/{name}@{k}", float("nan")) for name in names]
        rows.append(f"{k:>8} " + " ".join(f"{v:>12.5f}" for v in values))
    h = max(horizons)
    rows.append(
        f"reward over {h} steps: dream {metrics[f'divergence/reward_sum_dream@{h}']:.2f}, real "
        f"{metrics[f'divergence/reward_sum_real@{h}']:.2f}, mean abs error "
        f"{metrics[f'divergence/reward_sum_abs_error@{h}']:.2f}"
    )
    rows.append(
        f"off-manifold dreamed latents (norm above every real one): {metrics['divergence/off_manifold_share']:.2%}; "
        f"{int(metrics['divergence/windows'])} windows x {int(metrics['divergence/dreams'] / metrics['divergence/windows'])} dreams"
    )
    return "\n".join(rows)
