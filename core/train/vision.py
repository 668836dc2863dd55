"""The ``train-vision`` stage: a ConvVAE, or a DDS+VAE in two phases, on episode frames."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import torch
from torch import Tensor, nn

from core.checkpoint import (
    build_model,
    check_output_file,
    load_model,
    load_resume_state,
    read_checkpoint,
    resume_path,
    resuming,
    save_checkpoint,
    saved_metadata,
)
from core.config import VisionTrainConfig
from core.data.datasets import load_episode_frames, load_frames
from core.data.episodes import list_episodes, split_episodes
from core.errors import CheckpointError, ConfigError, EpisodeError
from core.models import DDSVAE, MODEL_KINDS, VisionModel, set_memory_format
from core.precision import use_bf16
from core.progress import Progress, ProgressFn, never_stop, no_progress
from core.train.loop import EpochLoop, StageResult, seed_everything

VISION_RESUME = {"epoch": int, "phase": int, "optimizer": dict, "scheduler": dict}
"""Entries of a train-vision resume state, with their types."""
BN_RECALIBRATION_FRAMES = 1024
"""Training frames over which a DDS+VAE's BatchNorm statistics are re-estimated after each phase-1 epoch."""


def recipe(config: VisionTrainConfig) -> tuple[str, float, float, float]:
    """Optimiser recipe ``(optimizer, lr, final_lr, weight_decay)`` for the model and phase.

    ConvVAE: Adam 1e-3 cosine to 1e-4. DDS+VAE (seed work): phase 1 AdamW 1e-2 -> 5e-5, wd 1e-5;
    phase 2 AdamW 1e-3 -> 1e-4, wd 1e-5. ``config.lr`` overrides the peak (final = peak / 10).
    """
    if config.model == "conv_vae":
        opt, lr, final, wd = "adam", 1e-3, 1e-4, 0.0
    elif config.phase == 1:
        opt, lr, final, wd = "adamw", 1e-2, 5e-5, 1e-5
    else:
        opt, lr, final, wd = "adamw", 1e-3, 1e-4, 1e-5
    if config.lr is not None:
        lr, final = config.lr, config.lr / 10
    return opt, lr, final, wd


@torch.no_grad()
def reconstruction_mse(model: VisionModel, frames: Tensor, batch_size: int = 256) -> float:
    """Mean squared error per pixel value (in [0, 1] units) of the eval-mode reconstruction against ``frames``:
    ``decode(mu)``, except in DDS+VAE phase 1, where the mini-VAE is bypassed (frame -> mini mask -> frame).

    Args:
        frames: uint8 (N, 3, S, S) at the model's input size.
    """
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(frames), batch_size):
        x = frames[i : i + batch_size].float().div_(255.0)
        total += (model(x)[0] - x).pow(2).sum().item()
        count += x.numel()
    return total / max(1, count)


def _as_vision(model: nn.Module, where: Path) -> VisionModel:
    if not isinstance(model, VisionModel):
        raise CheckpointError(f"{where}: holds a {type(model).__name__}, not a vision model")
    return model


def _pair_firsts(starts: Tensor) -> Tensor:
    """Indices of the loaded frames that have a next frame in their episode. Raises EpisodeError: none has."""
    ends = torch.zeros(int(starts[-1]), dtype=torch.bool)
    ends[starts[1:] - 1] = True
    firsts = torch.nonzero(~ends).flatten()
    if len(firsts) == 0:
        raise EpisodeError("the temporal term needs episodes of at least 2 frames after --frame-stride")
    return firsts


def _build(config: VisionTrainConfig) -> tuple[VisionModel, int]:
    """The model to train and the number of epochs already done (resume / phase 2)."""
    kind = config.model
    if kind not in MODEL_KINDS:
        raise ConfigError(f"vision model {config.model!r} is not available in this build")
    out = Path(config.out)
    if config.resume:
        state = load_resume_state(resume_path(out), "train-vision", VISION_RESUME, checkpoint=out)
        if int(state.get("phase", 1)) != config.phase:
            raise CheckpointError(f"{out}: resume state is of phase {state.get('phase')}, not {config.phase}")
        ckpt = read_checkpoint(out)
        if ckpt.kind != kind:
            raise CheckpointError(f"{out}: holds a {ckpt.kind!r} model, not {kind!r}")
        try:
            model = _as_vision(build_model(kind, ckpt.config), out)
        except CheckpointError as exc:
            raise CheckpointError(f"{out}: {exc}") from None
        if isinstance(model, DDSVAE):
            model.set_phase(config.phase)  # before loading: phase 2 re-initialises the mini-VAE
        with resuming(out):
            model.load_state_dict(ckpt.state_dict)
        return model, int(state["epoch"])
    if kind == "dds_vae" and config.phase == 2:
        source = Path(config.init_from) if config.init_from is not None else out
        if not source.is_file():
            raise CheckpointError(f"phase 2 needs the phase-1 checkpoint at {source} (run --phase 1 first)")
        dds = load_model(source, (kind,))
        assert isinstance(dds, DDSVAE)  # the kind checked by load_model
        fine_tune = int(saved_metadata(dds)[1].get("phase", 1)) == 2
        if fine_tune and config.init_from is None:  # fine-tuning a phase-2 mini-VAE is asked for by name only
            raise CheckpointError(f"{source}: phase 2 starts from a phase-1 checkpoint, this one is phase 2")
        mini_vae = {k: v.clone() for k, v in dds.mini_vae.state_dict().items()}
        dds.set_phase(2)  # freezes the rest and draws a fresh mini-VAE
        if fine_tune:
            dds.mini_vae.load_state_dict(mini_vae)
        if config.kl_weight is not None:
            dds.config = dataclasses.replace(dds.config, kl_weight=config.kl_weight)
        if config.temporal_weight is not None:
            dds.config = dataclasses.replace(dds.config, temporal_weight=config.temporal_weight)
        return dds, 0
    if config.init_from is not None:  # a phase-2 checkpoint holds the phase-1 weights unchanged
        model = _as_vision(load_model(config.init_from, kind), config.init_from)
        if isinstance(model, DDSVAE):
            model.set_phase(1)
        return model, 0
    config_cls, model_cls = MODEL_KINDS[kind]
    model = _as_vision(model_cls(config_cls(mask_input=True) if config.mask_input else config_cls()), out)
    if isinstance(model, DDSVAE):
        model.set_phase(1)
    return model, 0


def train_vision(
    config: VisionTrainConfig,
    *,
    on_progress: ProgressFn = no_progress,
    should_stop: threading.Event | None = None,
) -> StageResult:
    """Train a vision model (V) on the frames of ``config.data_dir`` and write ``config.out``.

    Reports ``vision/train/{loss,recon,kl,...}`` every 10 steps and ``vision/val/recon`` (MSE per pixel value
    of decode(mu) on held-out episodes, at the model's own resolution) after every epoch; a checkpoint and
    resume state are written after every epoch and when stopped. A DDS+VAE in phase 1 with deterministic
    evaluation gates re-estimates its BatchNorm statistics on the evaluation-mode data flow before each
    validation (:meth:`DDSVAE.recalibrate_batchnorm`), so every checkpoint holds statistics that match
    evaluation; with frozen-noise gates (``config.eval_gates``) the training statistics already do.

    Raises:
        EpisodeError: no or corrupt episodes. CheckpointError: bad resume / phase-1 checkpoint.
        ConfigError: a model that is not available. OutputError: ``config.out`` cannot be written (checked
        before any work).
    """
    stop = should_stop or never_stop()
    check_output_file(config.out, "checkpoint")
    seed_everything(config.seed)
    files = list_episodes(config.data_dir)
    if config.max_episodes:
        files = files[: config.max_episodes]
    model, start_epoch = _build(config)
    kind = config.model
    dds = model if isinstance(model, DDSVAE) else None
    if dds is not None and config.eval_gates is not None and not config.resume:
        dds.set_eval_gates(config.eval_gates)
    size = int(model.input_size)
    train_files, val_files = split_episodes(files, config.val_fraction, config.seed)
    on_progress(Progress("vision", 0, 1, message=f"loading {len(files)} episodes at {size}x{size}"))
    train_frames, train_starts = load_episode_frames(train_files, size, config.frame_stride)
    # the temporal term pairs each frame with the next loaded one of its episode (frame_stride steps later)
    paired = dds is not None and dds.phase == 2 and dds.config.temporal_weight > 0
    firsts = _pair_firsts(train_starts) if paired else torch.arange(len(train_frames))
    val_frames = load_frames(val_files, size, max(config.frame_stride, 4)) if val_files else train_frames[:512]
    epoch_frames = min(config.epoch_frames or len(train_frames), len(train_frames))
    steps_per_epoch = max(1, epoch_frames // config.batch_size)

    opt_name, lr, final_lr, wd = recipe(config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer
    if opt_name == "adam":
        optimizer = torch.optim.Adam(params, lr=lr)
    else:
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs * steps_per_epoch, eta_min=final_lr
    )
    if config.resume:
        state = load_resume_state(resume_path(config.out), "train-vision", VISION_RESUME)
        with resuming(resume_path(config.out)):
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
    # where bfloat16 is emulated, it is many times slower
    bf16 = use_bf16(config.bf16, "conv_train", lambda line: on_progress(Progress("vision", 0, 1, message=line)))
    if bf16:
        set_memory_format(model, torch.channels_last)

    alpha_to = config.anneal_gate_alpha_to
    anneal = alpha_to is not None and dds is not None and config.phase == 1
    alpha_start = float(dds.config.gate_alpha) if dds is not None and anneal else 0.0
    total_steps = config.epochs * steps_per_epoch

    def batches(epoch: int):
        g = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = firsts[torch.randperm(len(firsts), generator=g)]  # the epoch's frames are its first steps*batch
        per_step = config.batch_size // 2 if paired else config.batch_size

        def frames(index: Tensor) -> Tensor:
            x = train_frames[index].float().div_(255.0)
            return x.contiguous(memory_format=torch.channels_last) if bf16 else x

        for i in range(steps_per_epoch):
            if anneal and dds is not None and alpha_to is not None:
                done = (epoch * steps_per_epoch + i) / max(1, total_steps - 1)
                dds.dds.alpha = alpha_start + (alpha_to - alpha_start) * done
            pick = order[i * per_step : (i + 1) * per_step]
            yield (frames(pick), frames(pick + 1)) if paired else frames(pick)

    # frozen-noise evaluation gates draw masks from the training distribution, whose BatchNorm statistics
    # the training run already holds (re-estimating them on the frozen-noise flow measured worse: 0.0037 vs
    # 0.0027 held-out phase-1 MSE at 64x64)
    recalibrate = dds is not None and config.phase == 1 and dds.config.eval_gates == "deterministic"

    def evaluate() -> dict[str, float]:
        if recalibrate and dds is not None:  # running BatchNorm statistics of the evaluation-mode flow (see the method)
            g = torch.Generator().manual_seed(config.seed)
            pick = torch.randperm(len(train_frames), generator=g)[:BN_RECALIBRATION_FRAMES]
            batches = (train_frames[pick[i : i + 128]].float().div_(255.0) for i in range(0, len(pick), 128))
            dds.recalibrate_batchnorm(batches)
        metrics = {"vision/val/recon": reconstruction_mse(model, val_frames)}
        if anneal and dds is not None:
            metrics["vision/gate_alpha"] = float(dds.dds.alpha)
        return metrics

    def save(epochs_done: int, metrics: dict[str, float]) -> Path:
        path = save_checkpoint(
            config.out,
            model,
            kind=kind,
            config=model.config,
            metrics=metrics,
            extra={
                "phase": config.phase,
                "epochs_done": epochs_done,
                "train_config": {k: str(v) for k, v in dataclasses.asdict(config).items()},
                "train_episodes": len(train_files),
                "val_episodes": len(val_files),
            },
            resume_state={
                "stage": "train-vision",
                "epoch": epochs_done,
                "phase": config.phase,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            },
        )
        return path

    loop = EpochLoop(
        stage="vision", prefix="vision", model=model, optimizer=optimizer, scheduler=scheduler,
        epochs=config.epochs, steps_per_epoch=steps_per_epoch, batches=batches, evaluate=evaluate,
        save=save, on_progress=on_progress, should_stop=stop, start_epoch=start_epoch, bf16=bf16,
        loss_fn=(lambda pair: model.loss(*pair)) if paired else None,
    )  # fmt: skip
    return loop.run()
