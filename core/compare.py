"""``compare-vision``: the ConvVAE and the DDS+VAE on the same held-out frames, side by side."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.assets import default_paths
from core.checkpoint import check_output_file
from core.config import EvalGates, check, check_finite
from core.data.episodes import list_episodes, read_episode
from core.envs.car_racing import preprocess_frames, to_tensor, to_uint8_hwc
from core.envs.world_model import load_vision
from core.errors import ConfigError, DreamExplorerError
from core.models import DDSVAE, ConvVAE, VisionModel
from core.progress import Progress, ProgressFn, no_progress
from core.video import write_png_grid


@dataclass(frozen=True)
class CompareVisionConfig:
    """Compare two vision checkpoints on held-out frames."""

    data_dir: Path = Path("data/heldout")
    """Episodes not used in training (e.g. `collect --seed 500000 --episodes 5 --out-dir data/heldout`)."""
    conv_vae: Path = default_paths("conv_vae").vision
    """ConvVAE checkpoint (default: the shipped one)."""
    dds_vae: Path = default_paths("dds_vae").vision
    """DDS+VAE checkpoint after phase 2 (default: the shipped one)."""
    frames: int = 1000
    """Held-out frames to score (spread evenly over the episodes)."""
    skip: int = 50
    """Skip each episode's first frames (CarRacing's zoom-in)."""
    grid: Path = Path("runs/compare_vision.png")
    """PNG grid written: original, ConvVAE, DDS mask, gated input, DDS+VAE (one row per sample)."""
    grid_rows: int = 6
    """Rows of the grid."""
    dds_eval_gates: EvalGates | None = None
    """The DDS+VAE's evaluation gates for this comparison (None: the checkpoint's own; the shipped one's are
    "frozen-noise"); "deterministic" scores the same weights with the seed work's noise-free top-k masks."""
    inception: Path | None = None
    """TorchScript Inception-v3 file for FID (cannot be downloaded here; FID is skipped when absent)."""
    json: bool = False
    """Print one JSON object."""

    def __post_init__(self) -> None:
        check_finite(self)
        check(
            self.frames >= 1 and self.grid_rows >= 1 and self.skip >= 0,
            "frames and grid_rows must be >= 1 and skip >= 0",
        )
        check(
            self.dds_eval_gates in (None, *get_args(EvalGates)),
            f"dds_eval_gates must be deterministic or frozen-noise, got {self.dds_eval_gates!r}",
        )


def _heldout_frames(config: CompareVisionConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """-> (frames uint8 (N, 96, 96, 3), each frame's episode index int (N,), the episode files' names)."""
    files = list_episodes(config.data_dir)
    per = max(1, config.frames // len(files))
    parts, episode = [], []
    for i, f in enumerate(files):
        frames = read_episode(f).frames[config.skip :]
        idx = np.linspace(0, len(frames) - 1, min(per, len(frames))).astype(int)
        parts.append(frames[idx])
        episode.append(np.full(len(idx), i))
    out = np.concatenate(parts)[: config.frames]
    if len(out) == 0:
        raise DreamExplorerError(f"no frames after skipping {config.skip} per episode in {config.data_dir}")
    return out, np.concatenate(episode)[: config.frames], [f.stem for f in files]


@torch.no_grad()
def _reconstruct(model: VisionModel, frames: np.ndarray, batch: int = 64) -> tuple[Tensor, Tensor]:
    """Real frames uint8 (N, 96, 96, 3) -> (inputs, reconstructions) float32 (N, 3, S, S) at the model's size."""
    size = int(model.input_size)
    x = to_tensor(preprocess_frames(frames, size))
    recon = torch.cat([model.decode(model.encode(x[i : i + batch])[0]) for i in range(0, len(x), batch)])
    return x, recon


REFERENCE = "64x64: the HUD-cropped 84x96 frame area-resized (cv2 INTER_AREA) to 64x64, the ConvVAE's input"
"""The one reference both models are scored against (``compare/<model>/mse_64*``)."""


def _area_resize(x: Tensor, size: int) -> Tensor:
    """float32 (N, 3, S, S) -> (N, 3, size, size) with cv2's INTER_AREA, the resize of :func:`preprocess_frames`."""
    if x.shape[-1] == size:
        return x
    hwc = x.permute(0, 2, 3, 1).numpy()
    out = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in hwc])
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def _latency_ms(fn, repeats: int = 30) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def compare_vision(
    config: CompareVisionConfig, *, on_progress: ProgressFn = no_progress, should_stop: threading.Event | None = None
) -> dict[str, float | str]:
    """Score both models; write the PNG grid. Returns namespaced figures (``compare/<model>/...``).
    Reports one step per model scored; it runs to the end (``should_stop`` is not checked: about a minute).

    MSE is per pixel value in [0, 1] of decode(mu). ``mse_64`` scores both models against ONE reference,
    :data:`REFERENCE` (the HUD-cropped frame resized straight to 64x64); the DDS+VAE's 96x96 reconstruction is
    area-resized to 64x64 the same way first. With it the median and 95th percentile over frames, which tell a
    model that is worse everywhere from one that fails on a few rare frames (e.g. the black void beyond the
    map's edge), and the mean per episode (``mse_64_per_episode``, in the order of ``compare/episodes``), which
    says whether a difference between the models holds on every episode or comes from one. ``mse_own`` is each model against its own input at its own resolution (ConvVAE 64x64, DDS+VAE
    96x96, the resolution of the seed work's figures).

    Raises:
        CheckpointError, EpisodeError: bad inputs. ConfigError: the checkpoints are not one of each kind.
        OutputError: ``config.grid`` cannot be written (checked before any work).
    """
    check_output_file(config.grid, "grid image")
    conv, dds = load_vision(config.conv_vae), load_vision(config.dds_vae)
    if not isinstance(conv, ConvVAE) or not isinstance(dds, DDSVAE):
        raise ConfigError(f"expected a conv_vae and a dds_vae checkpoint, got {conv.kind} and {dds.kind}")
    if config.dds_eval_gates is not None:
        dds.set_eval_gates(config.dds_eval_gates)
    frames, episode, names = _heldout_frames(config)
    scored = sorted(set(episode.tolist()))
    out: dict[str, float | str] = {"compare/frames": float(len(frames)), "compare/reference": REFERENCE}
    out["compare/episodes"] = " / ".join(names[i] for i in scored)
    out["compare/dds_vae/eval_gates"] = str(dds.config.eval_gates)
    reference = to_tensor(preprocess_frames(frames, 64))
    recons = {}
    models: tuple[tuple[str, VisionModel], ...] = (("conv_vae", conv), ("dds_vae", dds))
    for i, (name, model) in enumerate(models):
        on_progress(Progress("compare-vision", i, 2, message=f"scoring {name} on {len(frames)} frames"))
        x, recon = _reconstruct(model, frames)
        recons[name] = recon
        if name == "dds_vae":
            x96 = x  # the DDS+VAE's own input: HUD-cropped frames at 96x96
        # per frame, then over frames, as mse_64 below: for the ConvVAE (own input = the reference) the two are equal
        out[f"compare/{name}/mse_own"] = float((recon - x).pow(2).flatten(1).mean(1).mean())
        out[f"compare/{name}/resolution_own"] = float(x.shape[-1])
        per_frame = (_area_resize(recon, 64) - reference).pow(2).flatten(1).mean(1)
        out[f"compare/{name}/mse_64"] = float(per_frame.mean())
        out[f"compare/{name}/mse_64_median"] = float(per_frame.median())
        out[f"compare/{name}/mse_64_p95"] = float(per_frame.quantile(0.95))
        by_episode = [float(per_frame[torch.from_numpy(episode == i)].mean()) for i in scored]
        out[f"compare/{name}/mse_64_per_episode"] = " / ".join(f"{m:.5g}" for m in by_episode)
        out[f"compare/{name}/params"] = float(sum(p.numel() for p in model.parameters()))
        one = x[:1]
        out[f"compare/{name}/encode_ms"] = _latency_ms(lambda m=model, one=one: m.encode(one))
        z = model.encode(one)[0]
        out[f"compare/{name}/decode_ms"] = _latency_ms(lambda m=model, z=z: m.decode(z))
    with torch.no_grad():
        sel = dds.mask(x96[: config.grid_rows])
        out["compare/dds_vae/mask_kept_per_frame"] = float(sel.mask.flatten(1).sum(1).mean())
    if config.inception is not None:
        from core.metrics.frechet import fid, load_inception_extractor

        extractor = load_inception_extractor(config.inception)
        real = to_uint8_hwc(x96)
        for name, recon in recons.items():
            out[f"compare/{name}/fid"] = fid(real, to_uint8_hwc(F.interpolate(recon, size=(96, 96))), extractor)
    else:
        out["compare/fid"] = "skipped: no --inception weights (they cannot be downloaded here)"
    _write_grid(config, x96, recons, sel.mask, sel.gated)
    on_progress(Progress("compare-vision", 2, 2))
    return out


def _write_grid(
    config: CompareVisionConfig, x96: Tensor, recons: dict[str, Tensor], mask: Tensor, gated: Tensor
) -> None:
    n = config.grid_rows
    mask_img = mask.amax(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    columns = [to_uint8_hwc(t[:n]) for t in (x96, recons["conv_vae"], mask_img, gated, recons["dds_vae"])]
    rows = [[c[i] for c in columns] for i in range(len(columns[0]))]
    write_png_grid(config.grid, rows, ["original", "ConvVAE", "DDS mask", "gated input", "DDS+VAE"])
