"""How fast a world model's inputs change along an episode: 1 - autocorrelation at several lags.

For a sequence x_t (one feature) this prints E[(x_{t+k} - x_t)^2] / (2 Var x), which is 1 - the lag-k
autocorrelation of a stationary process: 0 means x has not moved after k steps, 1 that it is as far as two
independent draws. Averaged over the active latent dimensions (Var mu > 0.3, the rest being collapsed
posteriors) of a latent file written by ``encode``; with ``--episodes-dir`` and a DDS+VAE ``--vision``, also over
the pixels of the frame V reads, its binary DDS mask and its mini mask, to see which stage of V moves fast.

Usage:
    .venv/bin/python scripts/latent_speed.py --latents runs/s18/dds_latents.npz runs/s20/cv_s17.npz
    .venv/bin/python scripts/latent_speed.py --episodes-dir data/check_agent10 --vision assets/ddsvae_vision.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

LAGS = (1, 4, 16, 64)
ACTIVE_VAR = 0.3
"""A latent dimension whose posterior mean varies less than this over the data counts as collapsed."""


def decorrelation(sequences: list[np.ndarray], lags: tuple[int, ...], var: np.ndarray) -> list[float]:
    """Mean over features of E[(x_{t+k} - x_t)^2] / (2 var) for each lag k.

    Args:
        sequences: float arrays (T_i, F), one per episode, features in the same order.
        lags: steps k; episodes shorter than k + 1 steps are skipped for that k.
        var: float (F,) variance of each feature over all the data (> 0).
    """
    out = []
    for k in lags:
        diffs = [((x[k:] - x[:-k]) ** 2).mean(0) for x in sequences if len(x) > k]
        out.append(float((np.mean(diffs, 0) / (2 * var)).mean()))
    return out


def from_latents(path: Path, policy: str, lags: tuple[int, ...]) -> None:
    from core.data.datasets import LatentEpisodes

    latents = LatentEpisodes.load(path)
    var = latents.mu.var(0)
    active = var > ACTIVE_VAR
    policies = np.asarray(latents.policies, str)
    chosen = [i for i in range(latents.n_episodes) if policy in ("all", policies[i])]
    sequences = [latents.episode(i)["mu"][:, active] for i in chosen]
    figures = " / ".join(f"{v:.3f}" for v in decorrelation(sequences, lags, var[active]))
    print(f"{path}: {latents.vision_kind}, {len(chosen)} {policy} episodes, {int(active.sum())} active dims: {figures}")


def from_episodes(episodes_dir: Path, vision_path: Path, max_episodes: int, lags: tuple[int, ...]) -> None:
    from core.checkpoint import load_model
    from core.data.episodes import list_episodes, read_episode
    from core.envs.car_racing import preprocess_frames

    vision = load_model(vision_path, ("conv_vae", "dds_vae")).eval()
    size = vision.input_size
    parts: dict[str, list[np.ndarray]] = {"frame": [], "mu": []}
    is_dds = hasattr(vision, "mask")
    if is_dds:
        parts |= {"dds mask": [], "mini mask": []}
    for path in list_episodes(episodes_dir)[:max_episodes]:
        frames = preprocess_frames(read_episode(path).frames, size)
        x = torch.from_numpy(frames).float() / 255.0
        with torch.inference_mode():
            chunks = [_encode(vision, x[i : i + 64], is_dds) for i in range(0, len(x), 64)]
        for key in parts:
            parts[key].append(np.concatenate([c[key] for c in chunks]) if key != "frame" else x.flatten(1).numpy())
    for key, sequences in parts.items():
        var = np.concatenate(sequences).var(0)
        keep = var > (ACTIVE_VAR if key == "mu" else 1e-4)
        figures = " / ".join(f"{v:.3f}" for v in decorrelation([s[:, keep] for s in sequences], lags, var[keep]))
        print(f"{key:>10} ({int(keep.sum())} features that vary): {figures}")


def _encode(vision: torch.nn.Module, x: torch.Tensor, is_dds: bool) -> dict[str, np.ndarray]:
    """V's z (and for a DDS+VAE its binary mask and mini mask) of frames x (B, 3, S, S) in [0, 1], flattened."""
    if is_dds:
        mu, _, selected = vision.encode_with_mask(x)  # type: ignore[operator]
        return {"mu": mu.numpy(), "dds mask": selected.mask.flatten(1).numpy(),
                "mini mask": selected.mini_mask.flatten(1).numpy()}  # fmt: skip
    return {"mu": vision.encode(x)[0].numpy()}  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latents", type=Path, nargs="*", default=[], help="latent files written by `encode`")
    parser.add_argument("--policy", default="controller", help="episodes of this driving policy, or 'all'")
    parser.add_argument("--episodes-dir", type=Path, help="episode files to run V on")
    parser.add_argument("--vision", type=Path, help="V for --episodes-dir")
    parser.add_argument("--max-episodes", type=int, default=5)
    parser.add_argument("--lags", type=int, nargs="+", default=list(LAGS))
    args = parser.parse_args()
    lags = tuple(args.lags)
    print("1 - autocorrelation at lags " + " / ".join(str(k) for k in lags) + " steps")
    for path in args.latents:
        from_latents(path, args.policy, lags)
    if args.episodes_dir is not None:
        if args.vision is None:
            parser.error("--episodes-dir needs --vision")
        from_episodes(args.episodes_dir, args.vision, args.max_episodes, lags)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
