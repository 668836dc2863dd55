"""The ``train-memory`` stage: the MDN-RNN on encoded episodes, with reward and done heads."""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import (
    check_output_file,
    load_model,
    load_resume_state,
    resume_path,
    resuming,
    save_checkpoint,
)
from core.config import MemoryTrainConfig
from core.data.datasets import LatentEpisodes, SequenceSampler, n_validation, parse_mix
from core.envs.dream import BatchedDream, window_seeds
from core.errors import CheckpointError, ConfigError
from core.models.mdn import mixture_mean
from core.models.mdnrnn import MDNRNN, SPEED_SCALE, YAW_SCALE, MDNRNNConfig
from core.models.open_loop import open_loop_loss
from core.progress import ProgressFn, never_stop, no_progress
from core.train.loop import EpochLoop, StageResult, seed_everything

ACTIVE_KL_NATS = 0.1
"""A latent dimension is *active* when its mean KL(q(z_d|x) || N(0, 1)) over the training frames exceeds this
(the ConvVAE on 200 random episodes: 13 of 32 dims between 0.11 and 1.9 nats, the rest at most 0.05)."""


def active_dims(mu: np.ndarray, logvar: np.ndarray, threshold: float = ACTIVE_KL_NATS) -> np.ndarray:
    """Boolean (z_dim,) mask of the dimensions V uses: mean per-dimension KL of the Gaussian posterior
    (Kingma & Welling, 2014, eq. 10) over the frames, above ``threshold`` nats. mu, logvar: float32 (N, z_dim)."""
    kl = 0.5 * (mu.astype(np.float64) ** 2 + np.exp(logvar) - 1.0 - logvar).mean(axis=0)
    return kl > threshold


@torch.no_grad()
def evaluate_memory(
    model: MDNRNN, episodes: list[dict[str, torch.Tensor]], active: np.ndarray | None = None
) -> dict[str, float]:
    """Held-out metrics of the MDN-RNN on whole episodes with z = mu.

    Returns ``memory/val/nll`` (nats per latent dimension), ``memory/val/mse_mean`` (MSE of the mixture
    mean of z_{t+1}), ``memory/val/mse_copy`` (MSE of predicting z_{t+1} = z_t, the baseline),
    ``memory/val/reward_mse`` and ``memory/val/done_acc`` (and ``memory/val/speed_mse``, in SPEED_SCALE units, for
    an M with a speed head; ``memory/val/yaw_mse``, in YAW_SCALE units, for one with ``yaw_input``); with ``active`` (bool (z_dim,), see
    :func:`active_dims`) also ``memory/val/mse_mean_active`` and ``memory/val/mse_copy_active`` over those
    dimensions only. (An M trained on sampled z cannot track mu in the unused dimensions, where the posterior
    noise, sigma ~ 0.95, hides changes of ~0.05 per step; the decoder ignores those dimensions.)
    """
    model.eval()
    nll = mse_mean = mse_copy = reward_mse = done_hits = speed_mse = yaw_mse = 0.0
    mse_mean_active = mse_copy_active = 0.0
    sel = torch.from_numpy(np.asarray(active, bool)) if active is not None and np.any(active) else None
    n = 0
    for ep in episodes:
        z, a = ep["z"], ep["action"]
        speed_in, yaw_in = ep.get("speed_in"), ep.get("yaw_in")
        h = model.hidden_sequence(z[:, :-1], a, None, speed_in, yaw_in)  # one LSTM pass for the heads and the car
        out = model.heads(h, z[:, :-1])
        target = z[:, 1:]
        steps = target.shape[1]
        nll += model.nll(out, target).sum().item()
        err_mean = (mixture_mean(out.log_pi, out.mu) - target).pow(2)
        err_copy = (z[:, :-1] - target).pow(2)
        mse_mean += err_mean.mean(-1).sum().item()
        mse_copy += err_copy.mean(-1).sum().item()
        if sel is not None:
            mse_mean_active += err_mean[..., sel].mean(-1).sum().item()
            mse_copy_active += err_copy[..., sel].mean(-1).sum().item()
        reward_mse += (out.reward - ep["reward"]).pow(2).sum().item()
        car = model.next_car(h, speed_in, a, z[:, :-1], yaw_in) if "speed" in ep else None
        if car is not None:
            speed_mse += (car[0] - ep["speed"]).div(SPEED_SCALE).pow(2).sum().item()
            if car[1] is not None:
                yaw_mse += (car[1] - ep["yaw"]).div(YAW_SCALE).pow(2).sum().item()
        done_hits += ((out.done_logit > 0).float() == ep["done"]).float().sum().item()
        n += steps
    n = max(n, 1)
    metrics = {
        "memory/val/nll": nll / n,
        "memory/val/mse_mean": mse_mean / n,
        "memory/val/mse_copy": mse_copy / n,
        "memory/val/reward_mse": reward_mse / n,
        "memory/val/done_acc": done_hits / n,
    }
    if model.speed_head is not None:
        metrics["memory/val/speed_mse"] = speed_mse / n
    if model.config.yaw_input:
        metrics["memory/val/yaw_mse"] = yaw_mse / n
    if sel is not None:
        metrics["memory/val/mse_mean_active"] = mse_mean_active / n
        metrics["memory/val/mse_copy_active"] = mse_copy_active / n
        metrics["memory/val/active_dims"] = float(sel.sum())
    return metrics


DREAM_CHECK_WARMUP = 50
"""Dream checks start after this many steps of an episode (CarRacing zooms in on the track over its first ~50)."""
DREAM_CHECK_EVERY = 100
"""Steps between the starts of dream checks within an episode."""
DREAM_CHECK_SAMPLES = 4
"""Dreams per start (each its own random stream, the same every epoch)."""
DREAM_CHECK_TAU = 0.5
"""MDN temperature of the dream checks: the app's default."""


@torch.no_grad()
def dream_latent_error(
    model: MDNRNN, episodes: list[dict[str, torch.Tensor]], steps: int, active: np.ndarray | None = None, seed: int = 0
) -> dict[str, float]:
    """Open-loop check of M on held-out episodes: how far its dreams drift from what happened.

    From every DREAM_CHECK_EVERY-th step s of each episode (after the first DREAM_CHECK_WARMUP), M reads the real
    z = mu up to s, then dreams ``steps`` steps from mu_s on its own samples (tau DREAM_CHECK_TAU, DREAM_CHECK_SAMPLES
    dreams per start, fixed random streams), fed the episode's real actions: the app's split mode and
    ``dream-explorer divergence`` in latent space, with no decoding. Teacher-forced metrics (:func:`evaluate_memory`)
    miss this error: they never feed M its own samples (Bengio et al., 2015, "Scheduled Sampling").

    Args:
        episodes: as :meth:`SequenceSampler.full_episodes` (``z`` float32 (1, T+1, z_dim), ``action`` (1, T, 3)).
        steps: dream length, >= 1; episodes shorter than DREAM_CHECK_WARMUP + steps are skipped.
        active: bool (z_dim,) dimensions to score (see :func:`active_dims`); None or none active: all.

    Returns:
        ``memory/val/dream_mse``: squared error of the dreamed z against the real mu, mean over the scored
        dimensions, over dream steps 1..steps and over dreams; ``memory/val/dream_mse_copy``: the same for z held at
        mu_s (standing still, the baseline). Empty when no episode is long enough.

    Raises:
        ValueError: ``steps`` < 1.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    sel = torch.from_numpy(np.asarray(active, bool)) if active is not None and np.any(active) else None
    dream_sum = copy_sum = 0.0
    n = 0
    for e, ep in enumerate(episodes):
        z, actions = ep["z"][0], ep["action"][0]
        starts = list(range(DREAM_CHECK_WARMUP, len(actions) - steps + 1, DREAM_CHECK_EVERY))
        if not starts:
            continue
        k = len(starts)
        speed = ep["speed_in"][0] if "speed_in" in ep else None  # frames 0..T-1
        yaw = ep["yaw_in"][0] if "yaw_in" in ep and model.config.yaw_input else None
        h, c = model.state_after(
            z[:-1].expand(k, -1, -1), actions.expand(k, -1, -1), torch.tensor(starts),
            None if speed is None else speed.expand(k, -1), None if yaw is None else yaw.expand(k, -1),
        )  # fmt: skip
        idx = torch.tensor(starts).repeat_interleave(DREAM_CHECK_SAMPLES)
        dream = BatchedDream(model, len(idx), tau=DREAM_CHECK_TAU, max_steps=steps)
        state = (h.repeat_interleave(DREAM_CHECK_SAMPLES, 1), c.repeat_interleave(DREAM_CHECK_SAMPLES, 1))
        dream.reset(
            window_seeds(seed, e, len(idx)), z=z[idx], state=state, speed=None if speed is None else speed[idx],
            yaw=None if yaw is None else yaw[idx],
        )  # fmt: skip
        for t in range(1, steps + 1):
            dream.step(actions[idx + t - 1])
            real = z[idx + t]
            err_dream, err_copy = (dream.z - real).pow(2), (z[idx] - real).pow(2)
            if sel is not None:
                err_dream, err_copy = err_dream[:, sel], err_copy[:, sel]
            dream_sum += float(err_dream.mean(1).sum())
            copy_sum += float(err_copy.mean(1).sum())
            n += len(idx)
    if not n:
        return {}
    return {"memory/val/dream_mse": dream_sum / n, "memory/val/dream_mse_copy": copy_sum / n}


def train_memory(
    config: MemoryTrainConfig,
    *,
    on_progress: ProgressFn = no_progress,
    should_stop: threading.Event | None = None,
) -> StageResult:
    """Train the MDN-RNN (M) on ``config.latents`` and write ``config.out``.

    Each epoch draws enough random windows of ``seq_len`` steps to cover the training steps once, with
    z ~ N(mu, exp(logvar)) sampled afresh; Adam with global gradient-norm clipping. With
    ``config.open_loop_steps`` each batch also scores one dream of that many steps from a random step of the
    window (:func:`core.models.open_loop.open_loop_loss`).

    Raises:
        EpisodeError: missing or corrupt latent file. CheckpointError: bad resume state, or an --init-from M
            over latents of another size. OutputError: ``config.out`` cannot be written (checked before any work).
    """
    stop = should_stop or never_stop()
    check_output_file(config.out, "checkpoint")
    seed_everything(config.seed)
    latents = LatentEpisodes.load(config.latents)
    if config.speed_weight > 0 and latents.speeds is None:
        raise ConfigError(f"--speed-weight needs speeds in {config.latents}; encode the episodes again to write them")
    if config.yaw_input and latents.yaw_rates is None:
        raise ConfigError(f"--yaw-input needs yaw rates in {config.latents}; encode again or scripts/add_yaw_rates.py")
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(latents.n_episodes)
    n_val = n_validation(latents.n_episodes, config.val_fraction)
    val_ids, train_ids = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
    sampler = SequenceSampler(latents, train_ids, config.seq_len, config.seed, parse_mix(config.mix))
    val_episodes = SequenceSampler(latents, val_ids or train_ids[:1], config.seq_len, config.seed).full_episodes()

    train_rows = np.concatenate([np.arange(latents.starts[i], latents.starts[i + 1]) for i in train_ids])
    active = active_dims(latents.mu[train_rows], latents.logvar[train_rows])

    start_epoch = 0
    state = None
    if config.resume:  # before the checkpoint is read: the pair must match (a killed run's is repaired)
        state = load_resume_state(
            resume_path(config.out), "train-memory", {"epoch": int, "optimizer": dict}, checkpoint=config.out
        )
    if config.resume or config.init_from is not None:
        source = config.out if config.resume or config.init_from is None else config.init_from
        model = load_model(source, "mdnrnn")
        if model.config.z_dim != latents.z_dim:
            raise CheckpointError(
                f"{source}: an MDN-RNN over {model.config.z_dim}-d latents cannot train on "
                f"{config.latents} ({latents.z_dim}-d)"
            )
    else:
        model = MDNRNN(
            MDNRNNConfig(
                z_dim=latents.z_dim,
                hidden_dim=config.hidden_dim,
                n_gaussians=config.n_gaussians,
                residual=config.residual,
                joint=config.joint,
                speed_weight=config.speed_weight,
                speed_input=config.speed_input,
                speed_model=config.speed_model,
                yaw_input=config.yaw_input,
            )
        )
        if config.head_prior:
            rewards = np.concatenate([d["reward"] for d in sampler.data])
            model.init_head_priors(
                float(rewards.mean()), float(np.concatenate([d["done"] for d in sampler.data]).mean())
            )
    steps_per_epoch = max(1, sampler.total_steps // (config.seq_len * config.batch_size))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    if state is not None:
        with resuming(resume_path(config.out)):
            optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        sampler.rng = np.random.default_rng([config.seed, start_epoch])
    scheduler = None
    if config.lr_min is not None:
        total, floor = config.epochs * steps_per_epoch, config.lr_min / config.lr

        def factor(step: int) -> float:  # cosine from 1 to lr_min / lr over the whole run, by global step
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

        for group in optimizer.param_groups:
            group["lr"] = config.lr
            group.setdefault("initial_lr", config.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=start_epoch * steps_per_epoch - 1)

    dream_rng = np.random.default_rng([config.seed, 1, start_epoch])
    dream_noise = torch.Generator().manual_seed(config.seed * 1_000_003 + start_epoch)

    dream_policies = {p.strip() for p in config.open_loop_policies.split(",") if p.strip()}
    unknown = dream_policies - set(latents.policy_counts())
    if unknown:
        raise ConfigError(
            f"--open-loop-policies names {sorted(unknown)}, not in {config.latents} (it has {sorted(latents.policy_counts())})"
        )
    episode_policy = np.asarray(latents.policies, str)

    def loss_fn(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        loss, parts = model.loss(batch)
        if config.speed_rollout_weight > 0:
            rolled = model.speed_rollout_mse(batch)
            loss, parts = loss + config.speed_rollout_weight * rolled, {**parts, "speed_rollout_mse": rolled.item()}
        if config.open_loop_steps == 0:
            return loss, parts
        start = int(dream_rng.integers(0, config.seq_len - config.open_loop_steps))
        if dream_policies:
            chosen = np.isin(episode_policy[batch["episode"].numpy()], sorted(dream_policies))
            if not chosen.any():
                return loss, parts
            batch = {**batch, "mask": batch["mask"] * torch.from_numpy(chosen.astype(np.float32)).unsqueeze(1)}
        dream_loss, dream_parts = open_loop_loss(model, batch, start, config.open_loop_steps, dream_noise)
        return loss + config.open_loop_weight * dream_loss, {**parts, **dream_parts}

    def batches(epoch: int):
        for _ in range(steps_per_epoch):
            yield sampler.batch(config.batch_size, config.sample_z, config.target_mu, config.clean_input_fraction)

    def save(epochs_done: int, metrics: dict[str, float]) -> Path:
        path = save_checkpoint(
            config.out, model, kind="mdnrnn", config=model.config, metrics=metrics,
            extra={
                "epochs_done": epochs_done,
                "vision_kind": latents.vision_kind,
                "vision_sha256": latents.vision_sha256,
                "policies": latents.policy_counts(),
                "train_config": {k: str(v) for k, v in dataclasses.asdict(config).items()},
            },
            resume_state={"stage": "train-memory", "epoch": epochs_done, "optimizer": optimizer.state_dict()},
        )  # fmt: skip
        return path

    def evaluate() -> dict[str, float]:
        metrics = evaluate_memory(model, val_episodes, active)
        if config.dream_check_steps:
            metrics.update(dream_latent_error(model, val_episodes, config.dream_check_steps, active, config.seed))
        return metrics

    loop = EpochLoop(
        stage="memory", prefix="memory", model=model, optimizer=optimizer, scheduler=scheduler,
        epochs=config.epochs, steps_per_epoch=steps_per_epoch, batches=batches,
        evaluate=evaluate, save=save, on_progress=on_progress,
        should_stop=stop, start_epoch=start_epoch, grad_clip=config.grad_clip, loss_fn=loss_fn,
    )  # fmt: skip
    return loop.run()
